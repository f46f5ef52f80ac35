// Crash safety of brain as a black box: a real brain process killed with
// SIGKILL at random moments under concurrent writers (puts, txns, deletes,
// lease grants). After each restart: every acknowledged write is found at
// the revision it was acknowledged with and nothing else is there (no
// revision reused), every revision from 1 to the current one has its events
// in a watch from revision 1 (nothing skipped, nothing beyond), the current
// state is what that history adds up to, and every acknowledged lease exists.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { status } from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import {
  Compare_CompareResult as Result,
  Compare_CompareTarget as Target,
  DeleteRangeRequestSchema,
  LeaseGrantRequestSchema,
  LeaseTimeToLiveRequestSchema,
  PutRequestSchema,
  RangeRequestSchema,
  TxnRequestSchema,
  type RequestOpSchema,
  WatchRequestSchema,
  type DeleteRangeResponse,
  type LeaseGrantResponse,
  type LeaseTimeToLiveResponse,
  type PutResponse,
  type RangeResponse,
  type TxnResponse,
  type WatchRequest,
  type WatchResponse,
} from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import { Event_EventType as EventType } from "@wharf/proto/etcd/api/mvccpb/kv_pb.js";
import { execFileSync } from "node:child_process";
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { etcdServices, makeWorkDir, rawEtcdClient, removeWorkDir, startBrainProcess, waitFor, type Brain, type RawEtcdClient } from "@wharf/testkit";

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (value: Uint8Array) => new TextDecoder().decode(value);
const everything = { key: Uint8Array.of(0), rangeEnd: Uint8Array.of(0) };

/** One event as the watch shows it, reduced to what a write determines. */
interface ExpectedEvent {
  type: "put" | "delete";
  key: string;
  value?: string;
  lease?: string;
}

/** A write the server acknowledged: the revision it answered with and the events it must have made there. */
interface AcknowledgedWrite {
  what: string;
  revision: bigint;
  events: ExpectedEvent[];
}

interface History {
  writes: AcknowledgedWrite[];
  /** Lease ids whose grant was acknowledged. */
  leases: bigint[];
}

const leaseTtl = 3600n;

/** One client's sequential workload: each request waits for the answer to the one before. */
async function writer(client: RawEtcdClient, history: History, worker: number, trial: number, stopped: () => boolean): Promise<number> {
  const own = (i: number) => `w${worker}/t${trial}/${i}`;
  const live: string[] = []; // own keys put and not deleted, all acknowledged
  const leases: bigint[] = [];
  let counterRevision = -1n; // the shared counter's mod_revision as last seen (-1: unknown)
  let acknowledged = 0;
  for (let i = 0; !stopped(); i++) {
    const roll = Math.random();
    try {
      if (roll < 0.35) {
        // A put of a new own key, or of a shared key many writers overwrite; sometimes on a lease.
        const key = roll < 0.2 ? own(i) : `shared/${i % 5}`;
        const lease = leases.length > 0 && roll < 0.1 ? leases[i % leases.length]! : 0n;
        const value = `${worker}:${trial}:${i}`;
        const response = (await client.call(etcdServices.KV, "Put", PutRequestSchema, { key: bytes(key), value: bytes(value), lease })) as unknown as PutResponse;
        history.writes.push({ what: `put ${key}`, revision: response.header!.revision, events: [{ type: "put", key, value, lease: String(lease) }] });
        if (key === own(i)) live.push(key);
      } else if (roll < 0.55) {
        // A txn of several puts in one revision.
        const keys = [own(i), `${own(i)}/b`, `shared/${i % 5}`];
        const value = `txn ${worker}:${trial}:${i}`;
        const response = (await client.call(etcdServices.KV, "Txn", TxnRequestSchema, {
          compare: [{ target: Target.Version, result: Result.Equal, key: bytes(own(i)), targetUnion: { case: "version", value: 0n } }],
          success: keys.map((key): MessageInitShape<typeof RequestOpSchema> => ({ request: { case: "requestPut", value: { key: bytes(key), value: bytes(value) } } })),
        })) as unknown as TxnResponse;
        expect(response.succeeded, `txn on the fresh key ${own(i)}`).toBe(true);
        history.writes.push({ what: `txn ${own(i)}`, revision: response.header!.revision, events: keys.map((key) => ({ type: "put", key, value, lease: "0" })) });
        live.push(own(i));
      } else if (roll < 0.7) {
        // Compare-and-swap on one counter every writer races for: a lost race is a read, not a write.
        const value = `cas ${worker}:${trial}:${i}`;
        const response = (await client.call(etcdServices.KV, "Txn", TxnRequestSchema, {
          compare: [{ target: Target.Mod, result: Result.Equal, key: bytes("counter"), targetUnion: { case: "modRevision", value: counterRevision } }],
          success: [{ request: { case: "requestPut", value: { key: bytes("counter"), value: bytes(value) } } }],
          failure: [{ request: { case: "requestRange", value: { key: bytes("counter") } } }],
        })) as unknown as TxnResponse;
        if (response.succeeded) {
          counterRevision = response.header!.revision;
          history.writes.push({ what: "cas counter", revision: response.header!.revision, events: [{ type: "put", key: "counter", value, lease: "0" }] });
        } else {
          const read = response.responses[0]!.response;
          counterRevision = read.case === "responseRange" ? (read.value.kvs[0]?.modRevision ?? 0n) : 0n;
        }
      } else if (roll < 0.85 && live.length > 0) {
        // A delete of an own key whose put was acknowledged: it must still be there to delete.
        const key = live.splice(Math.floor(Math.random() * live.length), 1)[0]!;
        const response = (await client.call(etcdServices.KV, "DeleteRange", DeleteRangeRequestSchema, { key: bytes(key) })) as unknown as DeleteRangeResponse;
        expect(response.deleted, `delete of the acknowledged ${key}`).toBe(1n);
        history.writes.push({ what: `delete ${key}`, revision: response.header!.revision, events: [{ type: "delete", key }] });
      } else {
        const id = BigInt(worker * 1_000_000 + trial * 10_000 + i + 1);
        const response = (await client.call(etcdServices.Lease, "LeaseGrant", LeaseGrantRequestSchema, { ID: id, TTL: leaseTtl })) as unknown as LeaseGrantResponse;
        expect(response.ID).toBe(id);
        history.leases.push(id);
        leases.push(id);
      }
      acknowledged++;
    } catch (error) {
      // The server died under us: this request's outcome is unknown. Anything else is a failure.
      if ((error as { code?: unknown }).code !== status.UNAVAILABLE) throw error;
      return acknowledged;
    }
  }
  return acknowledged;
}

/** Every event from revision 1 to `current`, grouped by revision. */
async function watchFromOne(client: RawEtcdClient, current: bigint): Promise<Map<bigint, Array<{ type: EventType; key: string; value: string; lease: string; kv: unknown }>>> {
  const byRevision = new Map<bigint, Array<{ type: EventType; key: string; value: string; lease: string; kv: unknown }>>();
  if (current <= 1n) return byRevision;
  const stream = client.stream<WatchRequest, WatchResponse>(etcdServices.Watch, "Watch");
  stream.on("error", () => undefined); // our own cancel below
  let highest = 0n;
  stream.on("data", (response: WatchResponse) => {
    for (const event of response.events) {
      const revision = event.kv!.modRevision;
      highest = revision > highest ? revision : highest;
      const events = byRevision.get(revision) ?? [];
      events.push({ type: event.type, key: text(event.kv!.key), value: text(event.kv!.value), lease: String(event.kv!.lease), kv: event.kv });
      byRevision.set(revision, events);
    }
  });
  stream.write(create(WatchRequestSchema, { requestUnion: { case: "createRequest", value: { ...everything, startRevision: 1n } } }));
  await waitFor(async () => highest >= current, 15_000, () => `a watch from revision 1 to reach revision ${current} (at ${highest})`);
  stream.cancel();
  return byRevision;
}

async function verify(client: RawEtcdClient, history: History, label: string): Promise<bigint> {
  const state = (await client.call(etcdServices.KV, "Range", RangeRequestSchema, everything)) as unknown as RangeResponse;
  const current = state.header!.revision;
  const events = await watchFromOne(client, current);

  // Contiguous: every revision 2..current made events (revision 1 is the empty store's), nothing beyond.
  const revisions = [...events.keys()].sort((a, b) => (a < b ? -1 : 1));
  expect(revisions, `${label}: the revisions a watch from revision 1 shows`).toEqual(Array.from({ length: Number(current - 1n) }, (_, i) => BigInt(i + 2)));

  // Each acknowledged write is the one at its revision, exactly.
  const seen = new Set<bigint>();
  for (const write of history.writes) {
    expect(seen.has(write.revision), `${label}: revision ${write.revision} acknowledged twice (${write.what})`).toBe(false);
    seen.add(write.revision);
    const found = (events.get(write.revision) ?? []).map(({ type, key, value, lease }) =>
      type === EventType.Put ? { type: "put", key, value, lease } : { type: "delete", key },
    );
    expect(found, `${label}: ${write.what}, acknowledged at revision ${write.revision}`).toEqual(write.events);
  }

  // The current state is what the history adds up to.
  const replayed = new Map<string, unknown>();
  for (const revision of revisions) {
    for (const event of events.get(revision)!) {
      if (event.type === EventType.Put) replayed.set(event.key, event.kv);
      else replayed.delete(event.key);
    }
  }
  expect(new Map(state.kvs.map((kv) => [text(kv.key), kv])), `${label}: state after restart`).toEqual(replayed);

  for (const id of history.leases) {
    const lease = (await client.call(etcdServices.Lease, "LeaseTimeToLive", LeaseTimeToLiveRequestSchema, { ID: id })) as unknown as LeaseTimeToLiveResponse;
    expect(lease.grantedTTL, `${label}: acknowledged lease ${id}`).toBe(leaseTtl);
    expect(lease.TTL, `${label}: acknowledged lease ${id}`).toBeGreaterThan(0n);
  }
  return current;
}

let brain: Brain | undefined;
let client: RawEtcdClient | undefined;
const workDirs: string[] = [];

afterEach(async () => {
  client?.close();
  await brain?.stop({ signal: "SIGKILL" });
  brain = undefined;
  client = undefined;
  for (const dir of workDirs.splice(0)) await removeWorkDir(dir);
});

describe("brain crash safety", () => {
  it("loses no acknowledged write, skips no revision and reuses none across 25 SIGKILLs under concurrent writers", async () => {
    const trials = 25;
    const trialsPerDataDir = 5; // a fresh data dir now and then keeps the watch from revision 1 short
    let history: History = { writes: [], leases: [] };
    let dataDir = "";
    const summary: string[] = [];
    for (let trial = 0; trial < trials; trial++) {
      const started = Date.now();
      if (trial % trialsPerDataDir === 0) {
        client?.close();
        await brain?.stop({ keepData: true, signal: "SIGKILL" });
        const dir = await makeWorkDir("crash");
        workDirs.push(dir);
        dataDir = `${dir}/data`;
        history = { writes: [], leases: [] };
        brain = await startBrainProcess({ dataDir });
        client = rawEtcdClient(brain.endpoint);
      }
      // The brain of the trial before, restarted after its crash and verified, takes this trial's writes.
      const target = client!;
      const writesBefore = history.writes.length;
      let stop = false;
      const writers = Array.from({ length: 8 }, (_, worker) => writer(target, history, worker, trial, () => stop));
      // Killed at a random moment once writes are being acknowledged (a slow start must not make a trial empty).
      await waitFor(async () => history.writes.length > writesBefore, 30_000, `trial ${trial}: a first acknowledged write`, 10);
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 700));
      await brain!.stop({ keepData: true, signal: "SIGKILL" });
      stop = true;
      const acknowledged = (await Promise.all(writers)).reduce((sum, count) => sum + count, 0);
      target.close();

      brain = await startBrainProcess({ dataDir });
      client = rawEtcdClient(brain.endpoint);
      const current = await verify(client, history, `trial ${trial}`);
      // The revision counter carries on from the recovered one.
      const next = (await client.call(etcdServices.KV, "Put", PutRequestSchema, { key: bytes(`after/${trial}`), value: bytes("x") })) as unknown as PutResponse;
      expect(next.header!.revision).toBe(current + 1n);
      history.writes.push({ what: `put after/${trial}`, revision: next.header!.revision, events: [{ type: "put", key: `after/${trial}`, value: "x", lease: "0" }] });
      summary.push(`${acknowledged} acks (${history.writes.length - writesBefore - 1} writes) in ${Date.now() - started} ms`);

    }
    console.log(`brain crash trials: ${summary.join("; ")}`);
  }, 240_000);

  it("fails every write after a failed log write, and leaves no gap (the log on a tmpfs that fills up)", async () => {
    const dir = await makeWorkDir("crash-full");
    workDirs.push(dir);
    const dataDir = join(dir, "data");
    brain = await startBrainProcess({ dataDir });
    client = rawEtcdClient(brain.endpoint);
    await client.call(etcdServices.KV, "Put", PutRequestSchema, { key: bytes("first"), value: bytes("x") });
    client.close();
    await brain.stop({ keepData: true });
    brain = undefined;
    const walDir = await findLogDir(dataDir);
    expect(walDir, `brain keeps a write-ahead log (segment files) under ${dataDir}`).toBeDefined();

    // The log moves onto a real file system with ~1 MiB free: a disk that fills up. Needs root (mount).
    const saved = await mkdtemp(join(dir, "wal-"));
    await cp(walDir!, saved, { recursive: true });
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", walDir!]);
    try {
      await cp(saved, walDir!, { recursive: true });
      brain = await startBrainProcess({ dataDir });
      client = rawEtcdClient(brain.endpoint);
      const target = client;
      const history: History = { writes: [{ what: "put first", revision: 2n, events: [{ type: "put", key: "first", value: "x", lease: "0" }] }], leases: [] };
      let firstFailureAt: number | undefined;
      const ackedAfterFailure: string[] = [];
      const failures: string[] = [];
      const value = "v".repeat(4096);
      const worker = async (w: number) => {
        let failuresSeen = 0;
        for (let i = 0; failuresSeen < 5 && i < 10_000; i++) {
          const key = `full/${w}/${i}`;
          const issuedAt = Date.now();
          try {
            const response = (await target.call(etcdServices.KV, "Put", PutRequestSchema, { key: bytes(key), value: bytes(value) })) as unknown as PutResponse;
            history.writes.push({ what: `put ${key}`, revision: response.header!.revision, events: [{ type: "put", key, value, lease: "0" }] });
            if (firstFailureAt !== undefined && issuedAt > firstFailureAt) ackedAfterFailure.push(key);
          } catch (error) {
            if (typeof (error as { code?: unknown }).code !== "number") throw error;
            firstFailureAt ??= Date.now();
            failures.push(`${key}: ${(error as Error).message}`);
            failuresSeen++;
          }
        }
      };
      await Promise.all(Array.from({ length: 8 }, (_, w) => worker(w)));
      expect(firstFailureAt, "a write failed once the log's disk was full").toBeDefined();
      expect(history.writes.length).toBeGreaterThan(10);
      // Once a log write failed, nothing issued later was acknowledged.
      expect(ackedAfterFailure).toEqual([]);
      console.log(`log full: ${history.writes.length} writes acknowledged, then ${failures.length} failed, first: ${failures[0]}`);

      // Space back, brain restarted (it may have stopped itself, as etcd does): what was acknowledged is there, with no gap.
      client.close();
      await brain.stop({ keepData: true, signal: "SIGKILL" });
      execFileSync("mount", ["-o", "remount,size=64m", walDir!]);
      brain = await startBrainProcess({ dataDir });
      client = rawEtcdClient(brain.endpoint);
      const current = await verify(client, history, "after the log failed");
      const next = (await client.call(etcdServices.KV, "Put", PutRequestSchema, { key: bytes("after"), value: bytes("x") })) as unknown as PutResponse;
      expect(next.header!.revision).toBe(current + 1n);
    } finally {
      client?.close();
      await brain?.stop({ keepData: true, signal: "SIGKILL" });
      brain = undefined;
      client = undefined;
      execFileSync("umount", [walDir!]);
      await rm(saved, { recursive: true, force: true });
    }
  }, 120_000);
});

describe("brain on a damaged write-ahead log", () => {
  it("refuses to start on a log with a bad record before intact ones, naming the file and offset, and changes nothing", async () => {
    const dir = await makeWorkDir("crash-corrupt");
    workDirs.push(dir);
    const dataDir = join(dir, "data");
    brain = await startBrainProcess({ dataDir });
    client = rawEtcdClient(brain.endpoint);
    for (let i = 0; i < 5; i++) await client.call(etcdServices.KV, "Put", PutRequestSchema, { key: bytes(`k${i}`), value: bytes(`value ${i}`) });
    client.close();
    client = undefined;
    await brain.stop({ keepData: true, signal: "SIGKILL" });
    brain = undefined;
    const walDir = await findLogDir(dataDir);
    expect(walDir, `brain keeps a write-ahead log (segment files) under ${dataDir}`).toBeDefined();
    const segments = (await readdir(walDir!)).filter((name) => /^[0-9a-f]{16}\.wal$/.test(name)).sort();
    const segment = join(walDir!, segments.at(-1)!);
    const original = await readFile(segment);
    // The first record after the 32-byte segment header: flip a bit in its body.
    const length = original.readUInt32LE(32);
    expect(original.length, "the segment holds more than one record").toBeGreaterThan(32 + 8 + length + 8);
    const damaged = Buffer.from(original);
    damaged[32 + 8]! ^= 0x01;
    await writeFile(segment, damaged);
    // startBrainProcess's error carries brain's log, where brain says why it did not start.
    await expect(startBrainProcess({ dataDir })).rejects.toThrow(
      `write-ahead log segment ${segment} is corrupt: bad record at offset 32 (an intact record follows at offset ${32 + 8 + length})`,
    );
    expect(await readFile(segment)).toEqual(damaged);
  }, 60_000);
});

/** The directory holding brain's write-ahead log segments (named like 0000000000000000.wal), wherever core put it. */
async function findLogDir(root: string): Promise<string | undefined> {
  for (const entry of await readdir(root, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && /^[0-9a-f]{16}\.wal$/.test(entry.name)) return entry.parentPath;
  }
  return undefined;
}
