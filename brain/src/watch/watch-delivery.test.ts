// Watch delivery under load, with a client that stops reading, and from the
// recent-events ring versus storage: a real brain process over real gRPC,
// each case also run against the reference etcd.
import { create } from "@bufbuild/protobuf";
import { credentials, type ClientDuplexStream } from "@grpc/grpc-js";
import {
  CompactionRequestSchema,
  DeleteRangeRequestSchema,
  KV,
  PutRequestSchema,
  TxnRequestSchema,
  Watch,
  WatchCreateRequest_FilterType as Filter,
  WatchRequestSchema,
  type WatchCreateRequestSchema,
  type WatchRequest,
  type WatchResponse,
} from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Event_EventType } from "@wharf/proto/etcd/api/mvccpb/kv_pb.js";
import { createGrpcClient, type GrpcClient } from "@wharf/proto/grpc";
import { startBrainProcess, startReferenceEtcd, waitFor, type Brain, type ReferenceEtcd } from "@wharf/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const bytes = (text: string) => encoder.encode(text);
const text = (data: Uint8Array) => decoder.decode(data);

interface Target {
  name: "etcd" | "brain";
  endpoint: string;
  metricsUrl: string;
}

let brain: Brain | undefined;
let etcd: ReferenceEtcd | undefined;
const targets: Target[] = [];

// A dedicated etcd, not the shared one: these cases write ~60 MiB and compact,
// which would disturb the kube-apiserver and other files on the shared one.
beforeAll(async () => {
  [brain, etcd] = await Promise.all([startBrainProcess({ extraArgs: ["--watch-progress-notify-interval=100ms"] }), startReferenceEtcd()]);
  targets.push(
    { name: "etcd", endpoint: etcd.endpoint, metricsUrl: `${etcd.endpoint}/metrics` },
    { name: "brain", endpoint: brain.endpoint, metricsUrl: `${brain.metricsUrl}/metrics` },
  );
});

afterAll(async () => {
  await Promise.all([brain?.stop(), etcd?.stop()]);
});

/** One gRPC connection of its own (no subchannel sharing), so one client's flow control cannot stall another's. */
class Connection {
  private readonly kv: GrpcClient;
  private readonly watch: GrpcClient;

  constructor(endpoint: string) {
    const address = endpoint.replace(/^https?:\/\//, "");
    const options = { "grpc.use_local_subchannel_pool": 1, "grpc.max_receive_message_length": 256 * 1024 * 1024 };
    this.kv = createGrpcClient(KV, address, credentials.createInsecure(), options);
    this.watch = createGrpcClient(Watch, address, credentials.createInsecure(), options);
  }

  async put(key: string, value: Uint8Array): Promise<number> {
    const response = await this.kv.unary<typeof PutRequestSchema>("Put", create(PutRequestSchema, { key: bytes(key), value }));
    return revisionOf(response);
  }

  /** The delete's revision, or undefined when nothing was deleted (no new revision). */
  async delete(key: string): Promise<number | undefined> {
    const response = (await this.kv.unary("DeleteRange", create(DeleteRangeRequestSchema, { key: bytes(key) }))) as unknown as { deleted: bigint };
    return response.deleted > 0n ? revisionOf(response) : undefined;
  }

  async txnPuts(puts: Array<[string, Uint8Array]>): Promise<number> {
    const response = await this.kv.unary(
      "Txn",
      create(TxnRequestSchema, { success: puts.map(([key, value]) => ({ request: { case: "requestPut" as const, value: { key: bytes(key), value } } })) }),
    );
    return revisionOf(response);
  }

  async compact(revision: number): Promise<void> {
    await this.kv.unary("Compact", create(CompactionRequestSchema, { revision: BigInt(revision), physical: true }));
  }

  stream(): WatchStream {
    return new WatchStream(this.watch.duplex<WatchRequest, WatchResponse>("Watch"));
  }

  close(): void {
    this.kv.close();
    this.watch.close();
  }
}

function revisionOf(response: unknown): number {
  return Number((response as { header?: { revision: bigint } }).header?.revision ?? 0n);
}

interface Received {
  response: WatchResponse;
  at: number;
}

/** A watch stream that records every response in arrival order. */
class WatchStream {
  readonly received: Received[] = [];

  constructor(readonly call: ClientDuplexStream<WatchRequest, WatchResponse>) {
    call.on("data", (response: WatchResponse) => this.received.push({ response, at: performance.now() }));
    call.on("error", () => undefined);
  }

  send(request: MessageInitShape<typeof WatchRequestSchema>): void {
    this.call.write(create(WatchRequestSchema, request));
  }

  /** Creates a watcher; resolves with its id and the created header's revision. */
  async create(value: MessageInitShape<typeof WatchCreateRequestSchema>): Promise<{ id: bigint; revision: number }> {
    const before = this.received.filter(({ response }) => response.created).length;
    this.send({ requestUnion: { case: "createRequest", value } });
    await waitFor(async () => this.received.filter(({ response }) => response.created).length > before, 10_000, "watch created");
    const created = this.received.filter(({ response }) => response.created)[before]!.response;
    expect(created.canceled).toBe(false);
    return { id: created.watchId, revision: Number(created.header!.revision) };
  }

  eventsOf(id: bigint): Array<{ event: WatchResponse["events"][number]; at: number }> {
    return this.received.filter(({ response }) => response.watchId === id).flatMap(({ response, at }) => response.events.map((event) => ({ event, at })));
  }

  close(): void {
    this.call.end();
    this.call.cancel();
  }
}

const isProgress = (response: WatchResponse) =>
  response.events.length === 0 && !response.created && !response.canceled && response.compactRevision === 0n && response.header!.revision !== 0n;

/** What was written, as events in revision order: the expected truth. */
interface Written {
  revision: number;
  sub: number;
  type: "put" | "delete";
  key: string;
  value: string;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function metric(target: Target, name: string): Promise<number> {
  const body = await (await fetch(target.metricsUrl)).text();
  const line = body.split("\n").find((candidate) => candidate.startsWith(`${name} `));
  if (!line) throw new Error(`${target.name} has no metric ${name}`);
  return Number(line.split(" ")[1]);
}

/** A deterministic generator, so a failing sequence reproduces. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

let scenario = 0;
const prefixFor = (name: string) => `watch-delivery-${process.pid}-${++scenario}-${name}/`;

describe("watch ordering under write load", () => {
  it.each(["etcd", "brain"] as const)("%s: many watchers on overlapping ranges get every event once, in order, never after a progress notification covering it", async (name) => {
    const target = targets.find((candidate) => candidate.name === name)!;
    const prefix = prefixFor("order");
    const key = (i: number) => `${prefix}${String(i).padStart(2, "0")}`;
    const specs: Array<{ start: number; end?: number; prevKv?: boolean; noPut?: boolean; noDelete?: boolean; progressNotify?: boolean }> = [
      { start: 0, end: 40, prevKv: true },
      { start: 10, end: 30 },
      { start: 20, end: 40, noDelete: true, progressNotify: true },
      { start: 15 },
      { start: 0, end: 40, noPut: true },
      { start: 5, end: 25, prevKv: true, progressNotify: true },
    ];
    const connections = Array.from({ length: 4 }, () => new Connection(target.endpoint));
    const writers = Array.from({ length: 6 }, () => new Connection(target.endpoint));
    try {
      const streams = connections.map((connection) => connection.stream());
      const watchers: Array<{ stream: WatchStream; id: bigint; from: number; spec: (typeof specs)[number] }> = [];
      for (const stream of streams) {
        for (const spec of specs) {
          const { id, revision } = await stream.create({
            key: bytes(key(spec.start)),
            rangeEnd: spec.end === undefined ? new Uint8Array() : bytes(key(spec.end)),
            prevKv: spec.prevKv ?? false,
            progressNotify: spec.progressNotify ?? false,
            filters: [...(spec.noPut ? [Filter.Noput] : []), ...(spec.noDelete ? [Filter.Nodelete] : [])],
          });
          watchers.push({ stream, id, from: revision + 1, spec });
        }
      }

      // Writers: puts, deletes and two-key txns on 40 keys, concurrently;
      // meanwhile every stream asks for progress every few milliseconds.
      const written: Written[] = [];
      const next = random(11);
      let writing = true;
      const asking = streams.map(async (stream) => {
        while (writing) {
          stream.send({ requestUnion: { case: "progressRequest", value: {} } });
          await new Promise((resolve) => setTimeout(resolve, 3));
        }
      });
      await Promise.all(
        writers.map(async (writer, w) => {
          for (let op = 0; op < 120; op++) {
            const choice = next();
            const a = Math.floor(next() * 40);
            const value = `${w}-${op}-${"x".repeat(Math.floor(next() * 200))}`;
            if (choice < 0.6) {
              written.push({ revision: await writer.put(key(a), bytes(value)), sub: 0, type: "put", key: key(a), value });
            } else if (choice < 0.85) {
              const revision = await writer.delete(key(a));
              if (revision !== undefined) written.push({ revision, sub: 0, type: "delete", key: key(a), value: "" });
            } else {
              const b = (a + 1 + Math.floor(next() * 39)) % 40;
              const revision = await writer.txnPuts([
                [key(a), bytes(value)],
                [key(b), bytes(`${value}-b`)],
              ]);
              written.push({ revision, sub: 0, type: "put", key: key(a), value }, { revision, sub: 1, type: "put", key: key(b), value: `${value}-b` });
            }
          }
        }),
      );
      writing = false;
      await Promise.all(asking);
      written.sort((x, y) => x.revision - y.revision || x.sub - y.sub);
      const last = written.at(-1)!.revision;

      // Every stream eventually confirms progress through the last write.
      for (const stream of streams) {
        await waitFor(
          async () => {
            if (stream.received.some(({ response }) => isProgress(response) && response.watchId === -1n && Number(response.header!.revision) >= last)) return true;
            stream.send({ requestUnion: { case: "progressRequest", value: {} } });
            return false;
          },
          20_000,
          `a progress notification at or past revision ${last}`,
          100,
        );
      }

      // What each key held before each write, for prev_kv.
      const before = new Map<string, string | undefined>();
      const expectedPrev = new Map<Written, string | undefined>();
      for (const write of written) {
        expectedPrev.set(write, before.get(write.key));
        before.set(write.key, write.type === "put" ? write.value : undefined);
      }
      const inSpec = (spec: (typeof specs)[number], write: Written) => {
        if (write.type === "put" ? spec.noPut : spec.noDelete) return false;
        if (spec.end === undefined) return write.key === key(spec.start);
        return write.key >= key(spec.start) && write.key < key(spec.end);
      };

      let interleaved = 0;
      for (const { stream, id, from, spec } of watchers) {
        const expected = written
          .filter((write) => write.revision >= from && inSpec(spec, write))
          .map((write) => ({
            revision: write.revision,
            type: write.type,
            key: write.key,
            value: write.value,
            ...(spec.prevKv ? { prev: expectedPrev.get(write) } : {}),
          }));
        const received = stream.eventsOf(id).map(({ event }) => ({
          revision: Number(event.kv!.modRevision),
          type: event.type === Event_EventType.Delete ? "delete" : "put",
          key: text(event.kv!.key),
          value: text(event.kv!.value),
          ...(spec.prevKv ? { prev: event.prevKv ? text(event.prevKv.value) : undefined } : {}),
        }));
        expect(received, `${name} watcher ${id} on ${JSON.stringify(spec)}`).toEqual(expected);

        // No event at or below a progress notification's revision comes after it.
        let covered = 0;
        for (const { response } of stream.received) {
          if (isProgress(response) && (response.watchId === -1n || response.watchId === id)) {
            covered = Math.max(covered, Number(response.header!.revision));
            if (covered < last) interleaved++;
          } else if (response.watchId === id) {
            for (const event of response.events) {
              expect(Number(event.kv!.modRevision), `${name} watcher ${id}: event after progress at ${covered}`).toBeGreaterThan(covered);
            }
          }
        }
      }
      // The check above was exercised: progress notifications arrived mid-load.
      expect(interleaved).toBeGreaterThan(watchers.length * 5);
      for (const stream of streams) stream.close();
    } finally {
      for (const connection of [...connections, ...writers]) connection.close();
    }
  });
});

describe("a watcher whose client stops reading", () => {
  /** 64 KiB values: a few hundred fill any HTTP/2 window and brain's stream queue. */
  const value = (i: number) => new Uint8Array(64 * 1024).fill(i % 251);

  it("delays neither writes nor other watchers, and gets every event once it reads again, as on etcd", async () => {
    const outcomes: Record<string, unknown> = {};
    for (const target of targets) {
      const prefix = prefixFor("stall");
      const stalled = new Connection(target.endpoint);
      const healthy = new Connection(target.endpoint);
      const writer = new Connection(target.endpoint);
      try {
        const slow = stalled.stream();
        const slowWatch = await slow.create({ key: bytes(prefix), rangeEnd: bytes(`${prefix.slice(0, -1)}0`), prevKv: true });
        slow.call.pause();
        const fast = healthy.stream();
        const fastWatch = await fast.create({ key: bytes(prefix), rangeEnd: bytes(`${prefix.slice(0, -1)}0`), prevKv: true });

        const puts = 300;
        const acked = new Map<number, number>();
        const putLatency: number[] = [];
        for (let i = 0; i < puts; i++) {
          const started = performance.now();
          const revision = await writer.put(`${prefix}${i % 50}`, value(i));
          const now = performance.now();
          putLatency.push(now - started);
          acked.set(revision, now);
        }
        // The other watcher has everything while the slow one still reads nothing...
        await waitFor(async () => fast.eventsOf(fastWatch.id).length === puts, 20_000, () => `${target.name}: healthy watcher ${fast.eventsOf(fastWatch.id).length}/${puts}`);
        // ...and the server has taken the slow one out of its fan-out.
        await waitFor(async () => (await metric(target, "etcd_debugging_mvcc_slow_watcher_total")) >= 1, 10_000, `${target.name} counts a slow watcher`);
        const delivery = fast.eventsOf(fastWatch.id).map(({ event, at }) => Math.max(0, at - acked.get(Number(event.kv!.modRevision))!));

        slow.call.resume();
        await waitFor(async () => slow.eventsOf(slowWatch.id).length >= puts, 30_000, () => `${target.name}: slow watcher ${slow.eventsOf(slowWatch.id).length}/${puts} after resuming`);
        await waitFor(async () => (await metric(target, "etcd_debugging_mvcc_slow_watcher_total")) === 0, 10_000, `${target.name} has no slow watcher left`);

        const events = slow.eventsOf(slowWatch.id).map(({ event }) => event);
        const revisions = events.map((event) => Number(event.kv!.modRevision));
        const first = Math.min(...acked.keys());
        expect(revisions).toEqual([...acked.keys()].sort((a, b) => a - b));
        events.forEach((event, i) => {
          expect(Buffer.compare(event.kv!.value, value(i))).toBe(0);
          if (i >= 50) expect(Buffer.compare(event.prevKv?.value ?? new Uint8Array(), value(i - 50))).toBe(0);
          else expect(event.prevKv).toBeUndefined();
        });
        console.log(
          `${target.name}: while a watcher stalled, put p50 ${percentile(putLatency, 50).toFixed(2)} ms p99 ${percentile(putLatency, 99).toFixed(2)} ms; ` +
            `other watcher delivery p50 ${percentile(delivery, 50).toFixed(2)} ms p99 ${percentile(delivery, 99).toFixed(2)} ms`,
        );
        outcomes[target.name] = {
          events: revisions.map((revision) => revision - first),
          canceled: slow.received.some(({ response }) => response.canceled),
          healthyEvents: fast.eventsOf(fastWatch.id).length,
        };
        slow.close();
        fast.close();
      } finally {
        for (const connection of [stalled, healthy, writer]) connection.close();
      }
    }
    expect(outcomes.brain).toEqual(outcomes.etcd);
  });

  it("is cancelled with the compact revision when what it missed was compacted meanwhile, as on etcd", async () => {
    const outcomes: Record<string, unknown> = {};
    for (const target of targets) {
      const prefix = prefixFor("stall-compact");
      const stalled = new Connection(target.endpoint);
      const writer = new Connection(target.endpoint);
      try {
        const slow = stalled.stream();
        const slowWatch = await slow.create({ key: bytes(prefix), rangeEnd: bytes(`${prefix.slice(0, -1)}0`) });
        slow.call.pause();
        const revisions: number[] = [];
        for (let i = 0; i < 300; i++) revisions.push(await writer.put(`${prefix}${i % 50}`, value(i)));
        await waitFor(async () => (await metric(target, "etcd_debugging_mvcc_slow_watcher_total")) >= 1, 10_000, `${target.name} counts a slow watcher`);
        const last = revisions.at(-1)!;
        await writer.compact(last);
        slow.call.resume();
        await waitFor(async () => slow.received.some(({ response }) => response.canceled), 30_000, `${target.name} cancels the slow watcher`);
        const cancel = slow.received.find(({ response }) => response.canceled)!.response;
        const delivered = slow.eventsOf(slowWatch.id).map(({ event }) => Number(event.kv!.modRevision));
        // What came before the cancel is a gapless start of what was written;
        // how much depends on buffering (on both servers), so only its shape is compared.
        expect(delivered).toEqual(revisions.slice(0, delivered.length));
        expect(delivered.length).toBeLessThan(revisions.length);
        outcomes[target.name] = {
          watchId: cancel.watchId === slowWatch.id,
          compactRevision: Number(cancel.compactRevision) - last,
          headerRevision: Number(cancel.header?.revision ?? 0n),
          events: cancel.events.length,
        };
        slow.close();
      } finally {
        stalled.close();
        writer.close();
      }
    }
    expect(outcomes.brain).toEqual(outcomes.etcd);
  });
});

describe("catch-up from the recent-events ring", () => {
  it("gives a watcher a few revisions back the same events as one reading storage, and as etcd", async () => {
    const outcomes: Record<string, unknown> = {};
    for (const target of targets) {
      const prefix = prefixFor("ring");
      const end = `${prefix.slice(0, -1)}0`;
      const connection = new Connection(target.endpoint);
      try {
        // ~24 MiB of events with prev_kv: more than brain's ring holds, so the
        // oldest revisions are read from storage and the newest from memory.
        const revisions: number[] = [];
        for (let i = 0; i < 200; i++) {
          const name = `${prefix}${i % 20}`;
          if (i % 10 === 9) {
            const revision = await connection.delete(name);
            if (revision !== undefined) revisions.push(revision);
          } else {
            revisions.push(await connection.put(name, new Uint8Array(64 * 1024).fill(i)));
          }
        }
        const first = revisions[0]!;
        const last = revisions.at(-1)!;
        const recent = revisions.at(-20)!;
        if (target.name === "brain") {
          const ringFirst = await metric(target, "brain_watch_ring_first_revision");
          expect(ringFirst).toBeGreaterThan(first);
          expect(ringFirst).toBeLessThanOrEqual(recent);
        }
        const stream = connection.stream();
        const fromStore = await stream.create({ key: bytes(prefix), rangeEnd: bytes(end), startRevision: BigInt(first), prevKv: true });
        const fromRing = await stream.create({ key: bytes(prefix), rangeEnd: bytes(end), startRevision: BigInt(recent), prevKv: true });
        const filtered = await stream.create({ key: bytes(prefix), rangeEnd: bytes(end), startRevision: BigInt(recent), filters: [Filter.Nodelete] });
        const seen = (id: bigint) =>
          stream.eventsOf(id).map(({ event }) => ({
            revision: Number(event.kv!.modRevision) - first,
            type: event.type,
            key: text(event.kv!.key).slice(prefix.length),
            value: event.kv!.value.length > 0 ? event.kv!.value[0] : undefined,
            prev: event.prevKv ? { value: event.prevKv.value[0], modRevision: Number(event.prevKv.modRevision) - first, version: Number(event.prevKv.version) } : undefined,
          }));
        await waitFor(async () => seen(fromStore.id).at(-1)?.revision === last - first && seen(fromRing.id).at(-1)?.revision === last - first, 30_000, `${target.name} catch-up to ${last}`);
        const puts = (id: bigint) => seen(id).filter((event) => event.type !== Event_EventType.Delete);
        await waitFor(async () => seen(filtered.id).length === puts(fromRing.id).length, 10_000, `${target.name} filtered catch-up`);
        const store = seen(fromStore.id);
        const ring = seen(fromRing.id);
        expect(store.map((event) => event.revision + first)).toEqual(revisions);
        expect(ring).toEqual(store.filter((event) => event.revision + first >= recent));
        expect(seen(filtered.id)).toEqual(ring.filter((event) => event.type !== Event_EventType.Delete).map((event) => ({ ...event, prev: undefined })));
        outcomes[target.name] = { store, ring, filtered: seen(filtered.id), canceled: stream.received.some(({ response }) => response.canceled) };
        stream.close();
      } finally {
        connection.close();
      }
    }
    expect(outcomes.brain).toEqual(outcomes.etcd);
  });
});
