import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seededRandom, startPostgres, type Postgres } from "@wharf/testkit";
import type { LeaseLedger } from "../../mvcc/backend.js";
import { decodeKeyValue } from "../../mvcc/kv-wire.js";
import { MvccStore } from "../../mvcc/store.js";
import { openRocksEngine } from "../../storage/rocks-engine.js";
import { PgGroupLog } from "./group-log.js";
import { loadReplica } from "./loader.js";
import { migrate } from "./migrations.js";
import { heartbeat, listMembers, registerMember } from "./members.js";
import { openPool } from "./pool.js";
import { freshDatabase, sql } from "./pg-test.fixture.js";

let server: Postgres;
beforeAll(async () => {
  server = await startPostgres();
});
afterAll(async () => {
  await server?.stop();
});

const all = { start: Uint8Array.of(0), end: undefined, single: false };

/** Everything a client can read from a store: every revision's range, the event log, the leases. */
async function observe(store: MvccStore, leases: Map<bigint, number>) {
  const ranges: unknown[] = [];
  for (let r = store.compactRevision; r <= store.revision; r++) {
    const { rows, count } = store.readRange(all, r, Number.POSITIVE_INFINITY, true);
    ranges.push({ r, count, kvs: rows.map((row) => decodeKeyValue(row)) });
  }
  const events: unknown[] = [];
  await store.readEvents(store.compactRevision, 1e6, true, (revision, event) => events.push({ revision, event }));
  return { ranges, events, revision: store.revision, compactRevision: store.compactRevision, leases: [...leases].sort() };
}

function ledger(leases: Map<bigint, number>): LeaseLedger {
  return { restore: (id, ttl) => leases.set(id, ttl), attach: () => {}, has: (id) => leases.has(id), apply: () => {} };
}

describe("loadReplica", () => {
  it("makes a local copy that MvccStore opens at the shared revision with the same keys, history and leases", async () => {
    const url = await freshDatabase(server);
    const pool = openPool(url, { name: "loader" });
    const dirs = [await mkdtemp(join(tmpdir(), "brain-pg-source-")), await mkdtemp(join(tmpdir(), "brain-pg-copy-"))];
    try {
      await migrate(pool);
      const log = new PgGroupLog(pool);
      // The leader: a real store whose groups become durable in PostgreSQL.
      const sourceLeases = new Map<bigint, number>();
      const source = await MvccStore.open(await openRocksEngine(dirs[0]!), { sync: false, log }, ledger(sourceLeases));
      const granted = new Map<bigint, number>();
      const random = seededRandom(7);
      const leaseIds = [5n, 2n ** 62n + 3n, 77n];
      for (let i = 0; i < 400; i++) {
        await source.write(async (context) => {
          if (i % 97 === 0) {
            const id = leaseIds[(i / 97) % leaseIds.length]!;
            if (context.hasLease(id)) {
              context.revokeLease(id);
              granted.delete(id);
            } else {
              context.grantLease(id, 30 + i);
              granted.set(id, 30 + i);
            }
            return;
          }
          const key = Buffer.from(`/registry/things/${Math.floor(random() * 40)}`);
          const previous = context.get(key);
          if (previous !== undefined && random() < 0.25) context.delete(previous);
          else {
            const lease = [...granted.keys()][0] ?? 0n;
            context.put(key, Buffer.from(`value ${i} ${"x".repeat(i % 50)}`), random() < 0.3 ? lease : 0n, previous);
          }
        });
      }
      await source.compact(250, true);
      await source.write(async (context) => context.put(Buffer.from("after-compaction"), Uint8Array.of(0, 1, 2), 0n, context.get(Buffer.from("after-compaction"))));

      const copyEngine = await openRocksEngine(dirs[1]!);
      const loaded = await loadReplica(pool, copyEngine, 4242n, { batchRows: 7 });
      const [state] = await sql(url, "SELECT cluster_id::text, sequence::int, revision::int, compact_revision::int FROM brain_state");
      expect(loaded).toEqual({ sequence: state!.sequence, revision: source.revision, compactRevision: 250, clusterId: BigInt(state!.cluster_id) });
      expect(loaded.revision).toBe(state!.revision);

      const copyLeases = new Map<bigint, number>();
      const copy = await MvccStore.open(copyEngine, { sync: false, follower: true, sequence: loaded.sequence }, ledger(copyLeases));
      expect(copy.memberId).toBe(4242n);
      expect(copy.clusterId).toBe(loaded.clusterId);
      expect([...copyLeases].sort()).toEqual([...granted].sort());
      expect(await observe(copy, copyLeases)).toEqual(await observe(source, granted));
      await copy.close();
      await source.close();
      await log.close();
    } finally {
      await pool.end();
      await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
    }
  });

  it("refuses to load into a copy that is not empty", async () => {
    const url = await freshDatabase(server);
    const pool = openPool(url);
    const dir = await mkdtemp(join(tmpdir(), "brain-pg-used-"));
    try {
      await migrate(pool);
      const engine = await openRocksEngine(dir);
      await engine.write([{ type: "put", key: Buffer.from("mleftover"), value: Buffer.from("x") }], { sync: false });
      await expect(loadReplica(pool, engine, 1n)).rejects.toThrow(/not empty/);
      await engine.close();
    } finally {
      await pool.end();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("replica set members", () => {
  it("keeps one member id per name across registrations, and lists those heard from recently", async () => {
    const url = await freshDatabase(server);
    const pool = openPool(url);
    try {
      await migrate(pool);
      const ids = await Promise.all(["a", "b", "c", "a"].map((name) => registerMember(pool, name, [`http://${name}:2379`])));
      expect(ids[0]).toBe(ids[3]);
      expect(new Set(ids).size).toBe(3);
      for (const id of ids) expect(id).toBeGreaterThan(0n);
      expect(await registerMember(pool, "b", ["http://b:2479"])).toBe(ids[1]);

      await sql(url, "UPDATE brain_member SET heartbeat_at = now() - interval '1 minute' WHERE name = 'c'");
      expect((await listMembers(pool)).map((member) => [member.name, member.memberId, member.clientUrls])).toEqual([
        ["a", ids[0], ["http://a:2379"]],
        ["b", ids[1], ["http://b:2479"]],
      ]);
      await heartbeat(pool, ids[2]!, ["http://c:2579"]);
      expect((await listMembers(pool)).map((member) => member.name)).toEqual(["a", "b", "c"]);
      await heartbeat(pool, ids[0]!);
      expect((await listMembers(pool)).find((member) => member.name === "a")?.clientUrls).toEqual(["http://a:2379"]);
      expect((await listMembers(pool, 120_000)).find((member) => member.name === "c")?.clientUrls).toEqual(["http://c:2579"]);
      await expect(heartbeat(pool, 12345n, [])).rejects.toThrow(/not registered/);
    } finally {
      await pool.end();
    }
  });
});
