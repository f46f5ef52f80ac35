// Lease RPCs on the Lessor.
import { create } from "@bufbuild/protobuf";
import type { ServerCall } from "./transport/grpc-call.js";
import {
  LeaseGrantResponseSchema,
  LeaseKeepAliveResponseSchema,
  LeaseLeasesResponseSchema,
  LeaseRevokeResponseSchema,
  LeaseStatusSchema,
  LeaseTimeToLiveResponseSchema,
  type LeaseGrantRequest,
  type LeaseGrantResponse,
  type LeaseKeepAliveRequest,
  type LeaseKeepAliveResponse,
  type LeaseLeasesResponse,
  type LeaseRevokeRequest,
  type LeaseRevokeResponse,
  type LeaseTimeToLiveRequest,
  type LeaseTimeToLiveResponse,
  type ResponseHeader,
} from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import type { Lessor } from "../lease/lessor.js";
import type { MvccStore } from "../mvcc/store.js";

export class LeaseService {
  constructor(
    private readonly lessor: Lessor,
    private readonly store: MvccStore,
    private readonly header: (revision: number) => ResponseHeader,
  ) {}

  async grant(request: LeaseGrantRequest): Promise<LeaseGrantResponse> {
    const granted = await this.lessor.grant(request.ID, Number(request.TTL));
    return create(LeaseGrantResponseSchema, {
      header: this.header(granted.revision),
      ID: granted.id,
      TTL: BigInt(granted.ttl),
    });
  }

  async revoke(request: LeaseRevokeRequest): Promise<LeaseRevokeResponse> {
    const revision = await this.lessor.revoke(request.ID);
    return create(LeaseRevokeResponseSchema, { header: this.header(revision) });
  }

  async timeToLive(request: LeaseTimeToLiveRequest): Promise<LeaseTimeToLiveResponse> {
    const lease = this.lessor.lookup(request.ID);
    const header = this.header(this.store.revision);
    if (!lease) return create(LeaseTimeToLiveResponseSchema, { header, ID: request.ID, TTL: -1n });
    return create(LeaseTimeToLiveResponseSchema, {
      header,
      ID: lease.id,
      TTL: BigInt(lease.remaining),
      grantedTTL: BigInt(lease.ttl),
      keys: request.keys ? lease.keys : [],
    });
  }

  async leases(): Promise<LeaseLeasesResponse> {
    return create(LeaseLeasesResponseSchema, {
      header: this.header(this.store.revision),
      leases: this.lessor.list().map((id) => create(LeaseStatusSchema, { ID: id })),
    });
  }

  keepAliveStream(): (call: ServerCall<LeaseKeepAliveRequest, LeaseKeepAliveResponse>) => void {
    return (call) => {
      call.on("data", (request: LeaseKeepAliveRequest) => {
        const ttl = this.lessor.keepAlive(request.ID);
        call.write(create(LeaseKeepAliveResponseSchema, { header: this.header(this.store.revision), ID: request.ID, TTL: BigInt(ttl) }));
      });
      call.on("end", () => call.end());
      call.on("error", () => undefined);
    };
  }
}
