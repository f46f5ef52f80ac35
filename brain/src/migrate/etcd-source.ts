// A running etcd as a migration source, read over its v3 API:
//   1. the revision R to migrate up to (a count-only range);
//   2. the compact revision C (a watch from revision 1 is cancelled with it);
//   3. the keys live at C (ranges at revision C, a page at a time);
//   4. every event after C up to R (a watch from C + 1);
//   5. the leases and their granted TTLs.
// Together these are exactly what etcd retains, so brain ends up answering
// reads and watches at every revision from C to R. Writers (the
// kube-apiservers) must be stopped first: writes after R are not migrated,
// and the migration fails if it sees any.
import { readFileSync } from "node:fs";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { credentials, type ChannelCredentials } from "@grpc/grpc-js";
import { createGrpcClient, type GrpcClient } from "@wharf/proto/grpc";
import {
  KV,
  Lease,
  LeaseLeasesRequestSchema,
  LeaseTimeToLiveRequestSchema,
  RangeRequestSchema,
  Watch,
  WatchRequestSchema,
  type LeaseLeasesResponseSchema,
  type LeaseTimeToLiveResponseSchema,
  type RangeResponseSchema,
  type WatchRequest,
  type WatchResponse,
} from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import { Event_EventType } from "@wharf/proto/etcd/api/mvccpb/kv_pb.js";
import { importedKeyValue, MigrationError, type ImportedEvent } from "./import-writer.js";
import type { MigrationSource } from "./source.js";

export interface EtcdSourceOptions {
  /** http://host:port or https://host:port */
  endpoint: string;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
}

const allKeys = { key: Uint8Array.of(0), rangeEnd: Uint8Array.of(0) };
const pageSize = 1000n;

function channelCredentials(options: EtcdSourceOptions): ChannelCredentials {
  if (options.endpoint.startsWith("http://")) return credentials.createInsecure();
  const read = (file: string | undefined) => (file ? readFileSync(file) : null);
  return credentials.createSsl(read(options.caFile), read(options.keyFile), read(options.certFile));
}

/** The responses of one watch, pulled one at a time. */
function watchFrom(client: GrpcClient, startRevision: bigint): { next(): Promise<WatchResponse>; close(): void } {
  const stream = client.duplex<WatchRequest, WatchResponse>("Watch");
  const queue: WatchResponse[] = [];
  const waiting: Array<{ resolve(response: WatchResponse): void; reject(error: Error): void }> = [];
  let failure: Error | undefined;
  stream.on("data", (response: WatchResponse) => {
    const waiter = waiting.shift();
    if (waiter) waiter.resolve(response);
    else queue.push(response);
  });
  const fail = (error: Error) => {
    failure = error;
    for (const waiter of waiting.splice(0)) waiter.reject(error);
  };
  stream.on("error", fail);
  stream.on("end", () => fail(new MigrationError("etcd closed the watch stream")));
  stream.write(create(WatchRequestSchema, { requestUnion: { case: "createRequest", value: { ...allKeys, startRevision } } }));
  return {
    next: () => {
      const queued = queue.shift();
      if (queued) return Promise.resolve(queued);
      if (failure) return Promise.reject(failure);
      return new Promise((resolve, reject) => waiting.push({ resolve, reject }));
    },
    close: () => stream.cancel(),
  };
}

export function openEtcdSource(options: EtcdSourceOptions): MigrationSource {
  const address = options.endpoint.replace(/^https?:\/\//, "");
  const channel = channelCredentials(options);
  const channelOptions = { "grpc.max_receive_message_length": -1 };
  const kv = createGrpcClient(KV, address, channel, channelOptions);
  const watch = createGrpcClient(Watch, address, channel, channelOptions);
  const lease = createGrpcClient(Lease, address, channel, channelOptions);
  const range = (request: MessageInitShape<typeof RangeRequestSchema>) => kv.unary<typeof RangeResponseSchema>("Range", create(RangeRequestSchema, request));
  let target = 0n;
  let compactRevision = 0n;

  return {
    description: `etcd ${options.endpoint}`,
    async *events(): AsyncGenerator<ImportedEvent> {
      target = (await range({ ...allKeys, countOnly: true })).header!.revision;
      if (target > 1n) {
        // After the "created" answer, a watch from revision 1 either is
        // cancelled with the compact revision or starts delivering events.
        const probe = watchFrom(watch, 1n);
        try {
          let response = await probe.next();
          while (response.created && !response.canceled && response.events.length === 0) response = await probe.next();
          compactRevision = response.compactRevision;
        } finally {
          probe.close();
        }
      }

      if (compactRevision > 0n) {
        // The versions live at C, in key order; distinct keys, numbered
        // within their revision as a transaction would have.
        const subs = new Map<number, number>();
        let key = allKeys.key;
        for (;;) {
          const page = await range({ key, rangeEnd: allKeys.rangeEnd, revision: compactRevision, limit: pageSize });
          for (const kv of page.kvs) {
            const main = Number(kv.modRevision);
            const sub = subs.get(main) ?? 0;
            subs.set(main, sub + 1);
            yield { type: "put", main, sub, kv: importedKeyValue(kv), base: true };
          }
          if (!page.more || page.kvs.length === 0) break;
          key = Uint8Array.from([...page.kvs[page.kvs.length - 1]!.key, 0]);
        }
      }

      if (target > compactRevision) {
        const events = watchFrom(watch, compactRevision + 1n);
        try {
          let revision = 0;
          let sub = 0;
          for (let done = false; !done; ) {
            const response = await events.next();
            if (response.canceled) throw new MigrationError(`etcd cancelled the watch from revision ${compactRevision + 1n}: ${response.cancelReason || `compacted at ${response.compactRevision}`}`);
            for (const event of response.events) {
              const kv = event.kv!;
              const main = Number(kv.modRevision);
              if (main > Number(target)) {
                done = true;
                break;
              }
              sub = main === revision ? sub + 1 : 0;
              revision = main;
              yield event.type === Event_EventType.Delete ? { type: "delete", main, sub, key: kv.key } : { type: "put", main, sub, kv: importedKeyValue(kv) };
              if (main === Number(target)) done = true;
            }
          }
        } finally {
          events.close();
        }
      }
    },
    async finish() {
      const ids = (await lease.unary<typeof LeaseLeasesResponseSchema>("LeaseLeases", create(LeaseLeasesRequestSchema, {}))).leases.map((status) => status.ID);
      const leases: Array<{ id: bigint; ttl: number }> = [];
      for (const id of ids) {
        const status = await lease.unary<typeof LeaseTimeToLiveResponseSchema>("LeaseTimeToLive", create(LeaseTimeToLiveRequestSchema, { ID: id }));
        if (status.TTL > 0n) leases.push({ id, ttl: Number(status.grantedTTL) });
      }
      const now = (await range({ ...allKeys, countOnly: true })).header!.revision;
      if (now !== target) {
        throw new MigrationError(`etcd moved from revision ${target} to ${now} during the migration; stop every writer (the kube-apiservers) and migrate again`);
      }
      return { revision: Number(target), compactRevision: Number(compactRevision), leases };
    },
    close() {
      kv.close();
      watch.close();
      lease.close();
    },
  };
}
