// Maintenance and Cluster RPCs: status, hashes, snapshot, membership.
import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import type { ServerCall } from "./transport/grpc-call.js";
import {
  AlarmResponseSchema,
  DefragmentResponseSchema,
  HashKVResponseSchema,
  HashResponseSchema,
  MemberListResponseSchema,
  MemberSchema,
  SnapshotResponseSchema,
  StatusResponseSchema,
  type AlarmResponse,
  type DefragmentResponse,
  type HashKVRequest,
  type HashKVResponse,
  type HashResponse,
  type MemberListResponse,
  type ResponseHeader,
  type SnapshotRequest,
  type SnapshotResponse,
  type StatusResponse,
} from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import { errors } from "../errors.js";
import type { MvccStore } from "../mvcc/store.js";
import { Crc32c } from "../storage/crc32c.js";
import { parseRevisionKey } from "../mvcc/revision.js";
import { Table } from "../storage/keys.js";

/** The etcd API version brain implements; kube-apiserver gates features on it. */
export const etcdApiVersion = "3.6.0";
/** A single member that has always been leader reports term 2, as etcd does. */
export const raftTerm = 2;

/** A replica set on a shared PostgreSQL, as Status and MemberList describe it. */
export interface ReplicaView {
  /** This member's id. */
  memberId: bigint;
  /** The leader's member id; 0 when none is known (etcd's "no leader"). */
  leaderId(): bigint;
  /** The leader's epoch, reported as etcd's raft term. */
  term(): number;
  /** Members with a recent heartbeat. */
  members(): Promise<Array<{ memberId: bigint; name: string; clientUrls: string[] }>>;
}

export class MaintenanceService {
  constructor(
    private readonly store: MvccStore,
    private readonly header: (revision: number) => ResponseHeader,
    private readonly member: { name: string; clientUrls: string[]; peerUrls: string[] },
    private readonly replica?: ReplicaView,
  ) {}

  async status(): Promise<StatusResponse> {
    const size = BigInt(await this.store.engine.approximateSize());
    // What this member has applied (its local copy), as etcd reports its own applied index.
    const revision = BigInt(this.store.revision);
    return create(StatusResponseSchema, {
      header: this.header(this.store.revision),
      version: etcdApiVersion,
      dbSize: size,
      dbSizeInUse: size,
      leader: this.replica?.leaderId() ?? this.store.memberId,
      // No raft log: the revision is the index of the last applied write.
      raftIndex: revision,
      raftAppliedIndex: revision,
      raftTerm: BigInt(this.replica?.term() ?? raftTerm),
    });
  }

  async alarm(): Promise<AlarmResponse> {
    return create(AlarmResponseSchema, { header: this.header(this.store.revision), alarms: [] });
  }

  async defragment(): Promise<DefragmentResponse> {
    await this.store.engine.defragment();
    // etcd answers Defragment without a header.
    return create(DefragmentResponseSchema, {});
  }

  /** Checksum of the whole keyspace (every table), at one snapshot. */
  async hash(): Promise<HashResponse> {
    const view = await this.store.view();
    try {
      const crc = new Crc32c();
      for (const table of [Table.Key, Table.Lease]) {
        await view.scanTable(table, (key, value) => {
          crc.update(key).update(value);
          return true;
        });
      }
      return create(HashResponseSchema, { header: this.header(view.revision), hash: crc.digest() });
    } finally {
      await view.close();
    }
  }

  /** Checksum of every key version up to `revision` (0 = current), as HashKV. */
  async hashKv(request: HashKVRequest): Promise<HashKVResponse> {
    const view = await this.store.view();
    try {
      const upTo = request.revision > 0n ? Number(request.revision) : view.revision;
      if (upTo > view.revision) throw errors.futureRevision();
      if (upTo < this.store.compactRevision) throw errors.compacted();
      const crc = new Crc32c();
      // Versions are keyed by revision: stop at the first one above upTo.
      await view.scanTable(Table.Key, (key, value) => {
        if (parseRevisionKey(key).main > upTo) return false;
        crc.update(key).update(value);
        return true;
      });
      return create(HashKVResponseSchema, {
        header: this.header(view.revision),
        hash: crc.digest(),
        compactRevision: BigInt(this.store.compactRevision),
      });
    } finally {
      await view.close();
    }
  }

  /**
   * A consistent backup: every entry of one engine snapshot, framed as
   * (u32 key length, key, u32 value length, value), then an end mark
   * (u32 0xFFFFFFFF) and zero padding to a multiple of 512 bytes, then the
   * SHA-256 of all that. etcdctl recognises a snapshot's checksum by exactly
   * this shape (size % 512 == 32), as etcd's bbolt pages give it.
   */
  snapshotStream(): (call: ServerCall<SnapshotRequest, SnapshotResponse>) => void {
    return (call) => {
      void (async () => {
        const chunks: Buffer[] = [];
        const view = await this.store.view();
        try {
          for (const table of [Table.Key, Table.Lease, Table.Meta]) {
            await view.scanTable(table, (key, value) => {
              const frame = Buffer.allocUnsafe(8 + key.length + value.length);
              frame.writeUInt32BE(key.length, 0);
              frame.set(key, 4);
              frame.writeUInt32BE(value.length, 4 + key.length);
              frame.set(value, 8 + key.length);
              chunks.push(frame);
              return true;
            });
          }
        } finally {
          await view.close();
        }
        const framed = Buffer.concat([...chunks, Buffer.from([0xff, 0xff, 0xff, 0xff])]);
        const padded = Buffer.concat([framed, Buffer.alloc((512 - (framed.length % 512)) % 512)]);
        const body = Buffer.concat([padded, createHash("sha256").update(padded).digest()]);
        const chunkSize = 32 * 1024;
        for (let offset = 0; offset < body.length; offset += chunkSize) {
          const blob = body.subarray(offset, offset + chunkSize);
          call.write(
            create(SnapshotResponseSchema, {
              header: this.header(this.store.revision),
              remainingBytes: BigInt(body.length - offset - blob.length),
              blob,
            }),
          );
        }
        call.end();
      })().catch((error: unknown) => call.destroy(error instanceof Error ? error : new Error(String(error))));
    };
  }

  async memberList(): Promise<MemberListResponse> {
    if (this.replica !== undefined) {
      const members = await this.replica.members();
      // A member serving this call is a member, even when its heartbeat is late.
      if (!members.some((member) => member.memberId === this.replica!.memberId)) {
        members.push({ memberId: this.replica.memberId, name: this.member.name, clientUrls: this.member.clientUrls });
      }
      return create(MemberListResponseSchema, {
        header: this.header(0),
        members: members.map((member) =>
          create(MemberSchema, { ID: member.memberId, name: member.name, peerURLs: [], clientURLs: member.clientUrls }),
        ),
      });
    }
    return create(MemberListResponseSchema, {
      // Membership is not part of the keyspace; etcd sends revision 0 here.
      header: this.header(0),
      members: [
        create(MemberSchema, {
          ID: this.store.memberId,
          name: this.member.name,
          peerURLs: this.member.peerUrls,
          clientURLs: this.member.clientUrls,
        }),
      ],
    });
  }
}
