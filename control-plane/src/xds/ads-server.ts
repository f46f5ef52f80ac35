// The Aggregated Discovery Service, state-of-the-world variant: one gRPC
// stream per Envoy carries every resource type. The server only speaks the
// protocol; what to send comes from the snapshot cache.
import { create } from "@bufbuild/protobuf";
import type { ServerDuplexStream } from "@grpc/grpc-js";
import {
  DiscoveryResponseSchema,
  type DiscoveryRequest,
  type DiscoveryResponse,
} from "@wharf/proto/envoy/service/discovery/v3/discovery_pb.js";
import type { SnapshotCache } from "./cache.js";
import { pushOrder, typeUrls, type ResourceKind, type Snapshot } from "./snapshot.js";

export interface NodeStatus {
  nodeId: string;
  connected: boolean;
  /** Last version Envoy accepted, by resource kind. */
  acked: Partial<Record<ResourceKind, string>>;
  lastNack?: { kind: ResourceKind; version: string; message: string; at: Date };
}

interface Subscription {
  names: string[];
  sentVersion?: string;
  nonce?: string;
}

const kindOf = new Map<string, ResourceKind>((Object.keys(typeUrls) as ResourceKind[]).map((kind) => [typeUrls[kind], kind]));

export class AdsServer {
  readonly nodes = new Map<string, NodeStatus>();
  private nonceCounter = 0;

  constructor(
    private readonly cache: SnapshotCache,
    private readonly log: (level: "info" | "warn", message: string, fields: Record<string, unknown>) => void = () => undefined,
  ) {}

  /** The handler for envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources. */
  handler(): (call: ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>) => void {
    return (call) => this.serve(call);
  }

  private serve(call: ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>): void {
    const subscriptions = new Map<ResourceKind, Subscription>();
    let status: NodeStatus | undefined;
    let cancelWatch: (() => void) | undefined;

    const send = (kind: ResourceKind, snapshot: Snapshot) => {
      const subscription = subscriptions.get(kind);
      if (!subscription) return;
      const nonce = String(++this.nonceCounter);
      subscription.sentVersion = snapshot.version;
      subscription.nonce = nonce;
      call.write(
        create(DiscoveryResponseSchema, {
          versionInfo: snapshot.version,
          typeUrl: typeUrls[kind],
          nonce,
          resources: snapshot.get(kind, subscription.names).map((resource) => resource.packed),
        }),
      );
    };

    call.on("data", (request: DiscoveryRequest) => {
      const kind = kindOf.get(request.typeUrl);
      if (!kind) return;
      if (!status) {
        const nodeId = request.node?.id ?? "";
        status = { nodeId, connected: true, acked: {} };
        this.nodes.set(nodeId, status);
        cancelWatch = this.cache.watch(nodeId, (snapshot) => {
          for (const each of pushOrder) if (subscriptions.get(each)?.sentVersion !== snapshot.version) send(each, snapshot);
        });
        this.log("info", "envoy connected", { node: nodeId });
      }
      const subscription = subscriptions.get(kind) ?? { names: [] };
      subscriptions.set(kind, subscription);
      if (request.responseNonce !== "" && request.responseNonce !== subscription.nonce) return; // answers an older response
      if (request.errorDetail) {
        // NACK: Envoy keeps what it had; so do we, and say so.
        status.lastNack = { kind, version: subscription.sentVersion ?? "", message: request.errorDetail.message, at: new Date() };
        this.log("warn", "envoy rejected configuration", { node: status.nodeId, kind, version: subscription.sentVersion, error: request.errorDetail.message });
        return;
      }
      if (request.responseNonce !== "") status.acked[kind] = request.versionInfo;
      const namesChanged = request.resourceNames.join("\0") !== subscription.names.join("\0");
      subscription.names = [...request.resourceNames];
      const snapshot = this.cache.get(status.nodeId);
      if (snapshot && (namesChanged || subscription.sentVersion !== snapshot.version)) send(kind, snapshot);
    });
    const close = () => {
      cancelWatch?.();
      if (status) status.connected = false;
    };
    call.on("end", () => {
      close();
      call.end();
    });
    call.on("error", close);
    call.on("cancelled", close);
  }
}
