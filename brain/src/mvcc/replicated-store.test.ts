// The store as a replica set uses it: a leader whose groups become durable in
// a GroupLog, and followers that apply those groups. The log here is an
// in-process one that hands each group (copied, as a database would) to the
// followers before the leader's append settles; the PostgreSQL log is tested
// on its own (replica/pg). Every store runs on a real RocksDB engine.
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { seededRandom } from "@wharf/testkit";
import { EtcdError, errors } from "../errors.js";
import { Lessor } from "../lease/lessor.js";
import { openRocksEngine } from "../storage/rocks-engine.js";
import { metaKey, Table, tableEnd, tableStart } from "../storage/keys.js";
import type { StorageEngine } from "../storage/engine.js";
import type { GroupLog, ReplicatedGroup } from "./group-log.js";
import { keyId, type KeyValue, type WatchEvent } from "./kv.js";
import { decodeKeyValue } from "./kv-wire.js";
import { metaNames } from "./meta.js";
import { MvccStore, type Commit, type StoreOptions } from "./store.js";

const all = { start: Uint8Array.of(0), end: undefined, single: false };

const directories: string[] = [];
const opened: MvccStore[] = [];
const engines: StorageEngine[] = [];

afterEach(async () => {
  for (const store of opened.splice(0)) await store.close().catch(() => undefined);
  for (const engine of engines.splice(0)) await engine.close().catch(() => undefined);
  for (const dir of directories.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "brain-replicated-"));
  directories.push(dir);
  return dir;
}

interface Replica {
  store: MvccStore;
  lessor: Lessor;
  dir: string;
  /** Every commit's events and leases, as the listeners saw them. */
  commits: unknown[];
}

async function openReplica(options: StoreOptions, now: () => number = Date.now): Promise<Replica> {
  const dir = await tempDir();
  const lessor = new Lessor(now);
  const store = await MvccStore.open(await openRocksEngine(dir), options, lessor);
  lessor.bind(store);
  opened.push(store);
  const commits: unknown[] = [];
  store.onCommit((commit) => {
    // A group that wrote nothing publishes an empty commit on the leader and
    // never reaches a follower: it carries nothing to compare.
    if (commit.revisions.length > 0 || commit.leases.length > 0) commits.push(describeCommit(commit));
  });
  return { store, lessor, dir, commits };
}

const plainKv = (kv: KeyValue) => ({ ...kv, key: Buffer.from(kv.key).toString("latin1"), value: Buffer.from(kv.value).toString("latin1") });
const plainEvent = (event: WatchEvent) => ({
  type: event.type,
  sub: event.sub,
  kv: plainKv(event.kv),
  prevKv: event.prevKv === undefined ? undefined : plainKv(event.prevKv),
});

function describeCommit(commit: Commit) {
  return {
    revision: commit.revision,
    revisions: commit.revisions.map(({ revision, events }) => ({ revision, events: events.map(plainEvent) })),
    leases: commit.leases.map(({ id, ttl }) => ({ id: id.toString(), ttl })),
  };
}

/** What a database hands back: the same values in fresh buffers. */
function copyGroup(group: ReplicatedGroup): ReplicatedGroup {
  const copy: ReplicatedGroup = {
    sequence: group.sequence,
    revision: group.revision,
    rows: group.rows.map((row) => ({ ...row, key: Uint8Array.from(row.key), kv: Uint8Array.from(row.kv) })),
    leases: group.leases.map((change) => ({ ...change })),
  };
  if (group.compactRevision !== undefined) copy.compactRevision = group.compactRevision;
  return copy;
}

/**
 * An in-process shared log: each append is "committed" one event-loop turn
 * later, in call order, and applied to every follower first. `failFrom`
 * makes that sequence and every later one fail, once `trip` is called.
 */
class InProcessLog implements GroupLog {
  readonly groups: ReplicatedGroup[] = [];
  readonly compactions: number[] = [];
  /** Appends called so far. */
  calls = 0;
  private tail: Promise<void> = Promise.resolve();
  private failed = false;
  private tripped: ((error: unknown) => void) | undefined;
  private readonly tripping: Promise<never>;

  constructor(
    readonly followers: MvccStore[] = [],
    private readonly failFrom = Number.POSITIVE_INFINITY,
  ) {
    this.tripping = new Promise<never>((_, reject) => (this.tripped = reject));
    this.tripping.catch(() => undefined);
  }

  /** Fails the held appends (sequence >= failFrom) with `error`. */
  trip(error: unknown): void {
    this.tripped!(error);
  }

  append(group: ReplicatedGroup): Promise<void> {
    this.calls++;
    const copy = copyGroup(group);
    const result = this.tail.then(async () => {
      if (this.failed) throw new Error("an earlier append failed");
      if (copy.sequence >= this.failFrom) {
        try {
          await this.tripping;
        } catch (error) {
          this.failed = true;
          throw error;
        }
      }
      await new Promise((resolve) => setImmediate(resolve));
      this.groups.push(copy);
      for (const follower of this.followers) follower.applyGroup(copy);
    });
    this.tail = result.catch(() => undefined);
    return result;
  }

  async compacted(revision: number): Promise<void> {
    this.compactions.push(revision);
  }
}


/**
 * Puts, deletes, multi-op transactions (some failing halfway), lease grants
 * and revokes (which delete the keys attached) and compactions, many at once
 * so groups are pipelined. Returns once every request settled.
 */
async function workload(leader: Replica, seed: number, rounds: number): Promise<void> {
  const next = seededRandom(seed);
  const pick = <T>(items: T[]): T => items[Math.floor(next() * items.length)]!;
  const keys = Array.from({ length: 24 }, (_, i) => Buffer.from(`key/${String.fromCharCode(97 + (i % 6))}/${i}`));
  const leases: bigint[] = [];
  const { store, lessor } = leader;
  for (let round = 0; round < rounds; round++) {
    const requests: Array<Promise<unknown>> = [];
    const burst = 1 + Math.floor(next() * 12);
    for (let i = 0; i < burst; i++) {
      const roll = next();
      if (roll < 0.45) {
        const key = pick(keys);
        const lease = leases.length > 0 && next() < 0.3 ? pick(leases) : 0n;
        const value = Buffer.from(`v${round}.${i}`);
        requests.push(
          store.write(async (context) => {
            context.put(key, value, lease !== 0n && context.hasLease(lease) ? lease : 0n, context.get(key));
          }),
        );
      } else if (roll < 0.6) {
        const key = pick(keys);
        requests.push(
          store.write(async (context) => {
            const previous = context.get(key);
            if (previous) context.delete(previous);
          }),
        );
      } else if (roll < 0.75) {
        // A transaction: several changes in one revision, or none when it fails halfway.
        const chosen = [...new Set([pick(keys), pick(keys), pick(keys)])];
        const fails = next() < 0.25;
        requests.push(
          store
            .write(async (context) => {
              chosen.forEach((key, n) => {
                const previous = context.get(key);
                if (previous && n === 1) context.delete(previous);
                else context.put(key, Buffer.from(`t${round}.${i}.${n}`), 0n, previous);
              });
              if (fails) throw new Error("the transaction failed after writing");
            })
            .catch((error: unknown) => {
              if (!fails) throw error;
            }),
        );
      } else if (roll < 0.85) {
        requests.push(lessor.grant(0n, 5 + Math.floor(next() * 100)).then(({ id }) => leases.push(id)));
      } else if (roll < 0.93) {
        if (leases.length > 0) {
          const id = leases.splice(Math.floor(next() * leases.length), 1)[0]!;
          requests.push(lessor.revoke(id));
        }
      } else if (roll < 0.96) {
        // A read-only request: its group writes nothing.
        requests.push(store.write(async (context) => context.get(pick(keys))));
      } else {
        const target = store.compactRevision + Math.floor((store.revision - store.compactRevision) * next() * 0.5);
        if (target > store.compactRevision) {
          requests.push(
            store.compact(target, next() < 0.5).catch((error: unknown) => {
              // Another compaction in the same burst went further.
              if (!(error instanceof Error) || error.message !== errors.compacted().message) throw error;
            }),
          );
        }
      }
    }
    await Promise.all(requests);
  }
}

/** Everything a client can read from a store: each revision's keys, every watch log, counts. */
async function observe(store: MvccStore) {
  const ranges: unknown[] = [];
  for (let r = store.compactRevision; r <= store.revision; r++) {
    const { rows, count } = store.readRange(all, r, Number.POSITIVE_INFINITY, true);
    const limited = store.readRange({ start: Buffer.from("key/b"), end: Buffer.from("key/e"), single: false }, r, 2, true);
    ranges.push({ r, count, kvs: rows.map((row) => plainKv(decodeKeyValue(row))), limited: { count: limited.count, rows: limited.rows.length } });
  }
  const events: unknown[] = [];
  for (let from = Math.max(store.compactRevision, 1); from <= store.revision + 1; from++) {
    for (const withPrevKv of [false, true]) {
      const seen: unknown[] = [];
      const next = await store.readEvents(from, 1e6, withPrevKv, (revision, event) => seen.push({ revision, ...plainEvent(event) }));
      events.push({ from, withPrevKv, next, seen });
    }
  }
  return {
    revision: store.revision,
    compactRevision: store.compactRevision,
    sequence: store.sequence,
    liveKeys: store.liveKeys.size,
    liveCount: store.liveKeys.count("", undefined),
    index: store.index.dump(),
    ranges,
    events,
  };
}

function leasesOf(lessor: Lessor) {
  return lessor
    .list()
    .sort((a, b) => (a < b ? -1 : 1))
    .map((id) => {
      const info = lessor.lookup(id)!;
      return { id: id.toString(), ttl: info.ttl, keys: info.keys.map((key) => keyId(key)).sort() };
    });
}

/** The key and lease tables and the revision meta, as stored. */
async function tables(engine: StorageEngine) {
  const out: Record<string, string[]> = {};
  const view = engine.view();
  try {
    for (const table of [Table.Key, Table.Lease]) {
      const rows: string[] = [];
      await view.scan(tableStart(table), tableEnd(table), (key, value) => {
        rows.push(`${Buffer.from(key).toString("hex")}=${Buffer.from(value).toString("hex")}`);
        return true;
      });
      out[String.fromCharCode(table)] = rows;
    }
    for (const name of [metaNames.revision, metaNames.compactRevision, metaNames.compactedThrough]) {
      const value = await view.get(metaKey(name));
      out[name] = value === undefined ? [] : [Buffer.from(value).toString("hex")];
    }
  } finally {
    await view.close();
  }
  return out;
}

async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** Whether `promise` settled within a few event-loop turns (for "not yet" checks). */
async function settledSoon(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
  return settled;
}

describe("a store replicated through a group log", () => {
  it("followers that apply the leader's groups read, watch, count and publish exactly what the leader does", async () => {
    const first = await openReplica({ sync: true, follower: true });
    const second = await openReplica({ sync: true, follower: true });
    const log = new InProcessLog([first.store, second.store]);
    const leader = await openReplica({ sync: true, log, maxGroup: 5 });
    expect(leader.store.isLeader).toBe(true);
    expect(first.store.isLeader).toBe(false);
    // No write-ahead log directory: the local copy is only a cache.
    expect(await readdir(leader.dir)).not.toContain("brain-wal");

    await workload(leader, 0x5eed13, 120);
    // Live keys attached to a lease at the end, whatever the workload left.
    const { id: kept } = await leader.lessor.grant(0n, 60);
    await Promise.all(
      ["key/a/0", "key/b/1", "key/c/2"].map((name) =>
        leader.store.write(async (context) => context.put(Buffer.from(name), Buffer.from("leased"), kept, context.get(Buffer.from(name)))),
      ),
    );

    const groups = log.groups;
    expect(groups.length).toBeGreaterThan(100);
    expect(groups.map((group) => group.sequence)).toEqual(groups.map((_, i) => i + 1));
    // The workload did what it is meant to: deletes, leases, revokes, compactions.
    expect(groups.some((group) => group.rows.some((row) => row.tombstone))).toBe(true);
    expect(groups.some((group) => group.leases.some((change) => change.ttl === undefined))).toBe(true);
    expect(groups.some((group) => group.leases.some((change) => change.ttl !== undefined))).toBe(true);
    expect(groups.filter((group) => group.compactRevision !== undefined).length).toBeGreaterThan(1);
    expect(leader.store.compactRevision).toBeGreaterThan(1);
    expect(leader.store.sequence).toBe(groups.length);

    const expected = await observe(leader.store);
    expect(expected.liveKeys).toBeGreaterThan(0);
    expect(expected.index.filter((entry) => entry.lease === kept)).toHaveLength(3);
    const expectedLeases = leasesOf(leader.lessor);
    for (const follower of [first, second]) {
      expect(await observe(follower.store)).toEqual(expected);
      expect(follower.commits).toEqual(leader.commits);
      expect(leasesOf(follower.lessor)).toEqual(leasesOf(leader.lessor));
    }
    expect(leader.lessor.size).toBeGreaterThan(0);
    // The leader told the log after each compaction's local removal.
    await until(() => log.compactions.includes(leader.store.compactRevision), "the log to hear of the last compaction");

    // The same bytes in the same layout: a follower's engine, opened as a
    // store of its own, is the leader's.
    await leader.store.close();
    await first.store.close();
    const leaderTables = await tablesIn(leader.dir);
    expect(await tablesIn(first.dir)).toEqual(leaderTables);
    expect(leaderTables.k!.length).toBeGreaterThan(0);
    expect(leaderTables.l!.length).toBe(leader.lessor.size);
    const restored = new Lessor();
    const reopened = await MvccStore.open(await openRocksEngine(first.dir), { sync: false, follower: true, sequence: groups.length }, restored);
    opened.push(reopened);
    expect(await observe(reopened)).toEqual(expected);
    expect(leasesOf(restored)).toEqual(expectedLeases);
  });

  it("refuses a group that does not follow the last one applied, and a follower refuses writes", async () => {
    const follower = await openReplica({ sync: true, follower: true });
    const log = new InProcessLog([]);
    const leader = await openReplica({ sync: true, log });
    for (let i = 0; i < 3; i++) await leader.store.write(async (context) => context.put(Buffer.from(`k${i}`), Buffer.from("v"), 0n, undefined));
    const [one, two, three] = log.groups;
    expect(() => follower.store.applyGroup(two!)).toThrow(/group 2 does not follow the last applied group, 0/);
    follower.store.applyGroup(one!);
    expect(() => follower.store.applyGroup(one!)).toThrow(/group 1 does not follow the last applied group, 1/);
    expect(() => follower.store.applyGroup(three!)).toThrow(/group 3 does not follow/);
    expect(follower.store.revision).toBe(2);
    expect(follower.store.sequence).toBe(1);
    follower.store.applyGroup(two!);
    follower.store.applyGroup(three!);
    expect(follower.store.revision).toBe(4);
    expect(await observe(follower.store)).toEqual(await observe(leader.store));

    await expect(follower.store.write(async () => undefined)).rejects.toThrow("etcdserver: not leader");
    await expect(follower.store.compact(2, false)).rejects.toThrow("etcdserver: not leader");
    await expect(follower.lessor.grant(0n, 10)).rejects.toThrow("etcdserver: not leader");
    // The leader applies nothing from a log.
    expect(() => leader.store.applyGroup({ ...three!, sequence: 4 })).toThrow(/only a follower/);
  });

  for (const [name, error, message] of [
    ["fenced (an etcd error)", errors.leaderChanged(), "etcdserver: leader changed"],
    ["broken (any other error)", new Error("connection terminated unexpectedly"), "etcdserver: server stopped"],
  ] as const) {
    it(`a ${name} append fails its group and every later one, stops writes and tells the replica`, async () => {
      const follower = await openReplica({ sync: true, follower: true });
      const log = new InProcessLog([follower.store], 3);
      const leader = await openReplica({ sync: true, log, maxGroup: 4 });
      const failures: unknown[] = [];
      leader.store.onFailure((failure) => failures.push(failure));
      const outcomes = Array.from({ length: 40 }, (_, i) =>
        leader.store
          .write(async (context) => {
            const key = Buffer.from(`k${i % 7}`);
            context.put(key, Buffer.from(`v${i}`), 0n, context.get(key));
            return context.revision;
          })
          .then(
            (revision) => ({ ok: true as const, revision }),
            (error: unknown) => ({ ok: false as const, error }),
          ),
      );
      // Groups 3 and 4 are in the log's hands (two in flight) when it fails.
      await until(() => leader.store.sequence === 2 && log.calls === 4, "groups 3 and 4 to be appended");
      log.trip(error);
      const settled = await Promise.all(outcomes);
      const answered = settled.filter((outcome) => outcome.ok);
      expect(answered.map((outcome) => outcome.revision)).toEqual(Array.from({ length: 8 }, (_, i) => i + 2));
      for (const outcome of settled.slice(8)) {
        expect(outcome.ok).toBe(false);
        if (outcome.ok) continue;
        expect(outcome.error).toBeInstanceOf(EtcdError);
        expect((outcome.error as Error).message).toBe(message);
      }
      expect(failures).toEqual([error]);
      expect(leader.store.sequence).toBe(2);
      expect(leader.store.revision).toBe(9);
      await expect(leader.store.write(async () => undefined)).rejects.toThrow(message);
      // A listener added afterwards hears of it too.
      const late = await new Promise((resolve) => leader.store.onFailure(resolve));
      expect(late).toBe(error);
      // Reads go on at what the log made durable, which the follower holds.
      expect(follower.store.revision).toBe(9);
      // (The leader's index still holds the failed groups' entries, above
      // its revision: nothing reads them, and the replica restarts anyway.)
      const { index: _leaderIndex, ...fromLeader } = await observe(leader.store);
      const { index: _followerIndex, ...fromFollower } = await observe(follower.store);
      expect(fromFollower).toEqual(fromLeader);
      expect(log.calls).toBe(4);
    });
  }

  it("a promoted follower writes on at the next revision and sequence, and its leases get their full TTL", async () => {
    let clock = 1_000_000;
    const now = () => clock;
    const first = await openReplica({ sync: true, follower: true }, now);
    const second = await openReplica({ sync: true, follower: true }, now);
    const log = new InProcessLog([first.store, second.store]);
    const leader = await openReplica({ sync: true, log, maxGroup: 3 }, now);
    await workload(leader, 77, 40);
    const { id } = await leader.lessor.grant(0n, 30);
    await leader.store.write(async (context) => context.put(Buffer.from("leased"), Buffer.from("x"), id, undefined));
    const revision = leader.store.revision;
    const sequence = leader.store.sequence;
    // The leader is gone; its followers hold everything it committed.
    await leader.store.close();
    expect(first.store.revision).toBe(revision);
    expect(first.store.sequence).toBe(sequence);

    clock += 20_000;
    expect(first.lessor.lookup(id)!.remaining).toBe(10);
    const next = new InProcessLog([second.store]);
    first.store.promote(next);
    first.lessor.promote();
    expect(first.store.isLeader).toBe(true);
    const info = first.lessor.lookup(id)!;
    expect({ ttl: info.ttl, remaining: info.remaining, keys: info.keys.map((key) => keyId(key)) }).toEqual({ ttl: 30, remaining: 30, keys: ["leased"] });
    expect(() => first.store.promote()).toThrow(/writer already/);

    const written = await first.store.write(async (context) => {
      context.put(Buffer.from("after"), Buffer.from("failover"), 0n, context.get(Buffer.from("after")));
      return context.revision;
    });
    expect(written).toBe(revision + 1);
    expect(next.groups.map((group) => [group.sequence, group.revision])).toEqual([[sequence + 1, revision + 1]]);
    await first.lessor.revoke(id);
    await workload(first, 78, 20);
    expect(second.store.sequence).toBe(first.store.sequence);
    expect(await observe(second.store)).toEqual(await observe(first.store));
    expect(leasesOf(second.lessor)).toEqual(leasesOf(first.lessor));
    // The second follower saw the first leader's commits, then the promoted one's, as the promoted one did.
    expect(second.commits).toEqual(first.commits);
    expect(second.commits.length).toBeGreaterThan(leader.commits.length);
  });

  it("a linearizable read waits until the follower has applied the revision the log confirmed", async () => {
    const held: ReplicatedGroup[] = [];
    const holding: GroupLog = {
      append: async (group) => {
        held.push(copyGroup(group));
      },
    };
    const leader = await openReplica({ sync: true, log: holding });
    let confirmed = 0;
    const follower = await openReplica({ sync: true, follower: true, readIndex: async () => ({ revision: confirmed, sequence: 0 }) });
    // Without a readIndex a follower has nothing pending.
    const plain = await openReplica({ sync: true, follower: true });
    expect(plain.store.caughtUp()).toBeUndefined();

    for (let i = 0; i < 3; i++) await leader.store.write(async (context) => context.put(Buffer.from(`k${i}`), Buffer.from("v"), 0n, undefined));
    confirmed = leader.store.revision;
    expect(confirmed).toBe(4);
    const read = follower.store.caughtUp()!;
    expect(read).toBeInstanceOf(Promise);
    expect(await settledSoon(read)).toBe(false);
    follower.store.applyGroup(held[0]!);
    follower.store.applyGroup(held[1]!);
    expect(await settledSoon(read)).toBe(false);
    follower.store.applyGroup(held[2]!);
    await read;
    expect(follower.store.readRange(all, follower.store.revision, 10, true).count).toBe(3);
    // Already there: answered without waiting for a group.
    await follower.store.caughtUp();

    // A follower closed while a read waits fails the read.
    confirmed = 5;
    const stranded = follower.store.caughtUp()!;
    expect(await settledSoon(stranded)).toBe(false);
    await follower.store.close();
    await expect(stranded).rejects.toThrow("etcdserver: server stopped");
  });

  it("on the leader a linearizable read waits for pending groups, and a revision it never wrote means another leader", async () => {
    let confirmed = 1;
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let appended = 0;
    const log: GroupLog = {
      append: () => {
        appended++;
        return gate;
      },
    };
    const leader = await openReplica({ sync: true, log, readIndex: async () => ({ revision: confirmed, sequence: 0 }) });
    const write = leader.store.write(async (context) => context.put(Buffer.from("k"), Buffer.from("v"), 0n, undefined));
    await until(() => appended === 1, "the write to reach the log");
    const read = leader.store.caughtUp()!;
    expect(await settledSoon(read)).toBe(false);
    release();
    await write;
    await read;
    expect(leader.store.revision).toBe(2);
    confirmed = 3;
    await expect(leader.store.caughtUp()).rejects.toThrow("etcdserver: leader changed");
  });

  it("on the leader a group that writes nothing is answered only once the log's ReadIndex confirms no other leader wrote", async () => {
    // A deposed leader that has not noticed yet must not answer a read-only
    // Txn from its stale copy (etcd serves those through ReadIndex).
    let confirmed = 1;
    let asked = 0;
    let release: () => void = () => undefined;
    const log = new InProcessLog();
    const leader = await openReplica({
      sync: true,
      log,
      readIndex: () => {
        asked++;
        return new Promise((resolve) => (release = () => resolve({ revision: confirmed, sequence: 0 })));
      },
    });
    const readOnly = leader.store.write(async (context) => context.revision);
    await until(() => asked === 1, "the group to ask the log");
    expect(await settledSoon(readOnly)).toBe(false);
    release();
    expect(await readOnly).toBe(1);
    // Another leader committed revision 2: the answer would be stale.
    confirmed = 2;
    const stale = leader.store.write(async (context) => context.revision);
    await until(() => asked === 2, "the group to ask the log");
    release();
    await expect(stale).rejects.toThrow("etcdserver: leader changed");
    // Nothing of it was to be durable: the store is not failed (the election deposes it), and writes go to the log.
    const write = leader.store.write(async (context) => context.put(Buffer.from("k"), Buffer.from("v"), 0n, undefined));
    await write;
    expect(log.groups.map((group) => group.sequence)).toEqual([1]);
    expect(asked).toBe(2);
  });
});

/** The key and lease tables and revision meta of a closed store's data dir. */
async function tablesIn(dir: string) {
  const engine = await openRocksEngine(dir);
  engines.push(engine);
  try {
    return await tables(engine);
  } finally {
    engines.splice(engines.indexOf(engine), 1);
    await engine.close();
  }
}
