import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seededRandom, startPostgres, waitFor, type Postgres } from "@wharf/testkit";
import { EtcdError, errors } from "../../errors.js";
import type { ReplicatedGroup, VersionRow } from "../../mvcc/group-log.js";
import { decodeKeyValue, encodeKeyValue } from "../../mvcc/kv-wire.js";
import { parseRevisionKey } from "../../mvcc/revision.js";
import { MvccStore } from "../../mvcc/store.js";
import { Table, tableEnd, tableStart } from "../../storage/keys.js";
import { openRocksEngine } from "../../storage/rocks-engine.js";
import { LogTruncated, PgGroupLog } from "./group-log.js";
import { migrate } from "./migrations.js";
import { openPool } from "./pool.js";
import { freshDatabase, sql } from "./pg-test.fixture.js";

let server: Postgres;
beforeAll(async () => {
  server = await startPostgres();
});
afterAll(async () => {
  await server?.stop();
});

async function openLog() {
  const url = await freshDatabase(server);
  const pool = openPool(url, { name: "test" });
  await migrate(pool);
  const log = new PgGroupLog(pool);
  return { url, pool, log, close: async () => { await log.close(); await pool.end(); } };
}

function version(main: number, sub: number, key: string, value: string, createRevision = main, version = 1): VersionRow {
  const kv = encodeKeyValue({ key: Buffer.from(key), value: Buffer.from(value), createRevision, modRevision: main, version, lease: 0n });
  return { main, sub, tombstone: false, key: Buffer.from(key), kv };
}

function tombstone(main: number, sub: number, key: string): VersionRow {
  const kv = encodeKeyValue({ key: Buffer.from(key), value: new Uint8Array(), createRevision: 0, modRevision: main, version: 0, lease: 0n });
  return { main, sub, tombstone: true, key: Buffer.from(key), kv };
}

/** What the log hands back, with byte fields as plain arrays so equality is exact. */
function plain(groups: ReplicatedGroup[]) {
  return groups.map((group) => ({
    ...group,
    rows: group.rows.map((row) => ({ ...row, key: [...row.key], kv: [...row.kv] })),
  }));
}

describe("PgGroupLog", () => {
  it("hands back exactly the groups appended: rows byte for byte, leases, compactions", async () => {
    const { url, log, close } = await openLog();
    try {
      const binaryKey = Uint8Array.of(0, 255, 0x5c, 0x78, 1);
      const groups: ReplicatedGroup[] = [
        {
          sequence: 1,
          revision: 3,
          rows: [
            version(2, 0, "a", "one"),
            { main: 2, sub: 1, tombstone: false, key: binaryKey, kv: encodeKeyValue({ key: binaryKey, value: Uint8Array.of(0, 1, 2, 255), createRevision: 2, modRevision: 2, version: 1, lease: 7n }) },
            version(3, 0, "b", "two"),
          ],
          leases: [{ id: 7n, ttl: 30 }, { id: 9_007_199_254_740_993n, ttl: 60 }],
        },
        // A lease-only group: the revision does not move.
        { sequence: 2, revision: 3, rows: [], leases: [{ id: 7n, ttl: undefined }] },
        { sequence: 3, revision: 4, rows: [tombstone(4, 0, "a"), version(4, 1, "c", "three")], leases: [] },
        { sequence: 4, revision: 4, rows: [], leases: [], compactRevision: 3 },
      ];
      for (const group of groups) await log.append(group);

      expect(plain(await log.readGroups(0, 100))).toEqual(plain(groups));
      expect(plain(await log.readGroups(1, 2))).toEqual(plain(groups.slice(1, 3)));
      expect(await log.readGroups(4, 100)).toEqual([]);
      const leases = await sql(url, "SELECT id::text, ttl::text FROM brain_lease ORDER BY id");
      expect(leases).toEqual([{ id: "9007199254740993", ttl: "60" }]);
      const [state] = await sql(url, "SELECT sequence::text, revision::text, compact_revision::text FROM brain_state");
      expect(state).toEqual({ sequence: "4", revision: "4", compact_revision: "3" });
      const current = await sql(url, "SELECT key, revision::text FROM brain_current ORDER BY key");
      expect(current.map((row) => [[...row.key], row.revision])).toEqual([
        [[...binaryKey], "2"],
        [[...Buffer.from("b")], "3"],
        [[...Buffer.from("c")], "4"],
      ]);
    } finally {
      await close();
    }
  });

  it("commits concurrent appends in call order, and after a refused one commits nothing more", async () => {
    const { url, log, close } = await openLog();
    try {
      // Handed over without waiting, as the store's pipeline does.
      const ordered = Array.from({ length: 20 }, (_, i) => log.append({ sequence: i + 1, revision: i + 2, rows: [version(i + 2, 0, `k${i}`, "v")], leases: [] }));
      await Promise.all(ordered);
      const committed = await sql(url, "SELECT sequence::int FROM brain_group ORDER BY committed_at, sequence");
      expect(committed.map((row) => row.sequence)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));

      // Sequence 22 does not follow 20: refused as another leader's work would be.
      const skipped = log.append({ sequence: 22, revision: 23, rows: [version(23, 0, "x", "v")], leases: [] });
      // The right next group, handed over behind it, must not be committed either.
      const next = log.append({ sequence: 21, revision: 22, rows: [version(22, 0, "y", "v")], leases: [] });
      const [first, second] = await Promise.allSettled([skipped, next]);
      expect(first).toMatchObject({ status: "rejected", reason: errors.leaderChanged() });
      expect((first as PromiseRejectedResult).reason).toBeInstanceOf(EtcdError);
      expect(second).toMatchObject({ status: "rejected", reason: errors.leaderChanged() });
      const [state] = await sql(url, "SELECT sequence::int, revision::int FROM brain_state");
      expect(state).toEqual({ sequence: 20, revision: 21 });
      expect(await sql(url, "SELECT count(*)::int AS n FROM brain_kv WHERE revision > 21")).toEqual([{ n: 0 }]);
    } finally {
      await close();
    }
  });

  it("fails an append clearly when its connection is lost during the commit, and every later one without a round trip", async () => {
    const { url, log, close } = await openLog();
    const blocker = new pg.Client({ connectionString: url });
    await blocker.connect();
    try {
      const writer = "SELECT pid FROM pg_stat_activity WHERE query LIKE '%brain_commit_group($1%' AND pid <> pg_backend_pid()";
      await log.append({ sequence: 1, revision: 2, rows: [version(2, 0, "a", "v")], leases: [] });
      // A connection lost while idle is replaced: nothing was in flight.
      expect(await sql(url, `SELECT pg_terminate_backend(pid) AS done FROM (${writer}) w`)).toEqual([{ done: true }]);
      await waitFor(async () => (await sql(url, writer)).length === 0, 5_000, "the writer's backend to end");
      await log.append({ sequence: 2, revision: 3, rows: [version(3, 0, "b", "v")], leases: [] });

      // Lost while committing: hold the state row so the commit waits, then end its backend.
      await blocker.query("BEGIN");
      await blocker.query("SELECT 1 FROM brain_state FOR UPDATE");
      const inFlight = log.append({ sequence: 3, revision: 4, rows: [version(4, 0, "c", "v")], leases: [] }).catch((error: unknown) => error);
      await waitFor(async () => (await sql(url, `${writer} AND wait_event_type = 'Lock'`)).length === 1, 5_000, "the commit to wait on the state row");
      await sql(url, `SELECT pg_terminate_backend(pid) FROM (${writer}) w`);
      const lost = await inFlight;
      expect(lost).not.toBeInstanceOf(EtcdError);
      expect((lost as Error).message).toMatch(/^PostgreSQL did not commit group 3: /);
      await blocker.query("COMMIT");
      // The database would take group 3 now, but this log is done.
      const later = await log.append({ sequence: 3, revision: 4, rows: [version(4, 0, "c", "v")], leases: [] }).catch((error: unknown) => error);
      expect(later).toBe(lost);
      expect(await sql(url, "SELECT sequence::int FROM brain_state")).toEqual([{ sequence: 2 }]);
    } finally {
      await blocker.end();
      await close();
    }
  });

  it("refuses a commit at an epoch that is not the leader's (fenced)", async () => {
    const { url, log, close } = await openLog();
    try {
      await sql(url, "UPDATE brain_leader SET epoch = 5");
      log.epoch = 4;
      await expect(log.append({ sequence: 1, revision: 2, rows: [version(2, 0, "a", "v")], leases: [] })).rejects.toEqual(errors.leaderChanged());
      expect(await sql(url, "SELECT count(*)::int AS n FROM brain_kv")).toEqual([{ n: 0 }]);
      const fresh = new PgGroupLog(log["pool"]);
      fresh.epoch = 5;
      await fresh.append({ sequence: 1, revision: 2, rows: [version(2, 0, "a", "v")], leases: [] });
      await fresh.close();
      expect(await sql(url, "SELECT count(*)::int AS n FROM brain_kv")).toEqual([{ n: 1 }]);
    } finally {
      await close();
    }
  });

  it("answers concurrent ReadIndex calls with one query in flight, later callers sharing the next", async () => {
    const { log, close } = await openLog();
    try {
      await log.append({ sequence: 1, revision: 5, rows: [version(5, 0, "a", "v")], leases: [] });
      const before = log.readIndexQueries;
      // The first call starts a query at once; the 49 made while it runs share one more.
      const revisions = await Promise.all(Array.from({ length: 50 }, () => log.confirmedRevision()));
      expect(revisions).toEqual(Array(50).fill(5));
      expect(log.readIndexQueries - before).toBe(2);

      // A write acknowledged while a query is in flight is seen by a caller that arrives after it.
      const inflight = log.confirmedRevision();
      await log.append({ sequence: 2, revision: 6, rows: [version(6, 0, "b", "v")], leases: [] });
      const after = log.confirmedRevision();
      expect(await after).toBe(6);
      expect(await inflight).toBeGreaterThanOrEqual(5);
    } finally {
      await close();
    }
  });

  it("a leader's ReadIndex fails 'leader changed' once another epoch leads; a follower's is unaffected", async () => {
    const { url, pool, log, close } = await openLog();
    try {
      await log.append({ sequence: 1, revision: 5, rows: [version(5, 0, "a", "v")], leases: [] });
      await sql(url, "UPDATE brain_leader SET epoch = 1 WHERE id = 1");
      log.epoch = 1;
      expect(await log.confirmedRevision()).toBe(5);
      // Another brain took over before this one's renewal noticed: its copy may be stale.
      await sql(url, "UPDATE brain_leader SET epoch = 2 WHERE id = 1");
      await expect(log.confirmedRevision()).rejects.toThrow(errors.leaderChanged().message);
      expect(await new PgGroupLog(pool).confirmedRevision()).toBe(5);
    } finally {
      await close();
    }
  });

  it("delivers committed sequences to a LISTENer, and again after its connection is cut", async () => {
    const { url, log, close } = await openLog();
    const seen: number[] = [];
    let connects = 0;
    const stop = await log.subscribe((sequence) => seen.push(sequence), () => connects++);
    try {
      expect(connects).toBe(1);
      await log.append({ sequence: 1, revision: 2, rows: [version(2, 0, "a", "v")], leases: [] });
      await waitFor(async () => seen.includes(1), 5_000, "the NOTIFY of sequence 1");

      const killed = await sql(url, "SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity WHERE query = 'LISTEN brain_log' AND pid <> pg_backend_pid()");
      expect(killed).toEqual([{ done: true }]);
      await waitFor(async () => connects === 2, 10_000, () => `a reconnect (connects ${connects})`);
      await log.append({ sequence: 2, revision: 3, rows: [version(3, 0, "b", "v")], leases: [] });
      await waitFor(async () => seen.includes(2), 5_000, "the NOTIFY of sequence 2 after the reconnect");
      expect(seen).toEqual([1, 2]);
    } finally {
      await stop();
      await close();
    }
  });

  it("compacts as etcd does: the same versions stay as in brain's own store compacted at the same revision", async () => {
    const { url, log, close } = await openLog();
    const dir = await mkdtemp(join(tmpdir(), "brain-pg-compact-"));
    try {
      // A history of puts and deletes over a few keys, written by the real store.
      const store = await MvccStore.open(await openRocksEngine(dir), { sync: false });
      const random = seededRandom(13);
      for (let i = 0; i < 300; i++) {
        const key = Buffer.from(`key-${Math.floor(random() * 12)}`);
        await store.write(async (context) => {
          const previous = context.get(key);
          if (previous !== undefined && random() < 0.3) context.delete(previous);
          else context.put(key, Buffer.from(`value-${i}`), 0n, previous);
        });
      }
      const rowsOf = async () => {
        const rows: VersionRow[] = [];
        const view = store.engine.view();
        await view.scan(tableStart(Table.Key), tableEnd(Table.Key), (rowKey, value) => {
          const at = parseRevisionKey(rowKey);
          rows.push({ main: at.main, sub: at.sub, tombstone: at.tombstone, key: decodeKeyValue(value).key, kv: Buffer.from(value) });
          return true;
        });
        await view.close();
        return rows;
      };
      const written = await rowsOf();
      // One group per revision into PostgreSQL.
      let sequence = 0;
      for (const main of [...new Set(written.map((row) => row.main))]) {
        await log.append({ sequence: ++sequence, revision: main, rows: written.filter((row) => row.main === main), leases: [] });
      }
      const compactAt = 200;
      await log.append({ sequence: ++sequence, revision: store.revision, rows: [], leases: [], compactRevision: compactAt });
      await store.compact(compactAt, true);
      await log.compacted(compactAt);

      const kept = (await rowsOf()).map((row) => `${row.main}.${row.sub}${row.tombstone ? "t" : ""}`);
      const keptInPg = (await sql(url, "SELECT revision, sub, tombstone FROM brain_kv ORDER BY revision, sub")).map(
        (row) => `${row.revision}.${row.sub}${row.tombstone ? "t" : ""}`,
      );
      expect(kept.length).toBeLessThan(written.length);
      expect(keptInPg).toEqual(kept);
      // Of the groups below the compaction only the newest stays.
      const groups = await sql(url, "SELECT sequence::int, revision::int FROM brain_group WHERE revision < $1", [compactAt]);
      expect(groups).toEqual([{ sequence: compactAt - 2, revision: compactAt - 1 }]);
      // A follower whose next group starts below the removed rows must reload.
      await expect(log.readGroups(10, 10)).rejects.toBeInstanceOf(LogTruncated);
      // One at the compaction or later still follows.
      const after = await log.readGroups(compactAt - 1, 5);
      expect(after.map((group) => group.sequence)).toEqual([compactAt, compactAt + 1, compactAt + 2, compactAt + 3, compactAt + 4]);
      await store.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
      await close();
    }
  });

  it("compacts a hand-made history to exactly what etcd keeps", async () => {
    const { url, log, close } = await openLog();
    try {
      // a: put 2, put 3, put 5; b: put 4, delete 6; c: put 7, d: put 3, delete 8 (after the compaction).
      const history: ReplicatedGroup[] = [
        { sequence: 1, revision: 2, rows: [version(2, 0, "a", "1")], leases: [] },
        { sequence: 2, revision: 3, rows: [version(3, 0, "a", "2", 2, 2), version(3, 1, "d", "1")], leases: [] },
        { sequence: 3, revision: 4, rows: [version(4, 0, "b", "1")], leases: [] },
        { sequence: 4, revision: 5, rows: [version(5, 0, "a", "3", 2, 3)], leases: [] },
        { sequence: 5, revision: 6, rows: [tombstone(6, 0, "b")], leases: [] },
        { sequence: 6, revision: 7, rows: [version(7, 0, "c", "1")], leases: [] },
        { sequence: 7, revision: 8, rows: [tombstone(8, 0, "d")], leases: [] },
        { sequence: 8, revision: 8, rows: [], leases: [], compactRevision: 6 },
      ];
      for (const group of history) await log.append(group);
      await log.compacted(6);
      const kept = await sql(url, "SELECT convert_from(key, 'UTF8') AS key, revision::int, tombstone FROM brain_kv ORDER BY revision, sub");
      expect(kept).toEqual([
        { key: "d", revision: 3, tombstone: false },
        { key: "a", revision: 5, tombstone: false },
        { key: "c", revision: 7, tombstone: false },
        { key: "d", revision: 8, tombstone: true },
      ]);
      // Compacting again is a no-op, and a compaction above the recorded compact revision removes nothing more.
      await log.compacted(8);
      expect(await sql(url, "SELECT count(*)::int AS n FROM brain_kv")).toEqual([{ n: 4 }]);
    } finally {
      await close();
    }
  });
});
