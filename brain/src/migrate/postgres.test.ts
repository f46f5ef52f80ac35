// `brain migrate --to-postgres` against a real PostgreSQL, from a real etcd
// (its snapshot file and the running member) and from a real brain's
// RocksDB data dir. The same workload (history, multi-key transactions,
// binary keys, deletes, a lease, a compaction, some hundreds of keys) is
// written to each source; every version PostgreSQL then holds is compared
// with what the source answers over etcd's API (the versions live at the
// compact revision, and every event after it), with the revision, compact
// revision and leases. Brains started on the migrated database
// (--storage postgres, and a copy made by the replica loader) must answer
// reads, watches and lease queries as the source did, and a kube-apiserver
// moved this way keeps its resource versions. Failures half-way (a
// constraint, the connection cut) must leave the database exactly as it
// was; a second migration is refused.
import { execFile } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { fromBinary } from "@bufbuild/protobuf";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CompactionRequestSchema,
  DeleteRangeRequestSchema,
  LeaseGrantRequestSchema,
  LeaseLeasesRequestSchema,
  LeaseTimeToLiveRequestSchema,
  PutRequestSchema,
  RangeRequestSchema,
  TxnRequestSchema,
  WatchRequestSchema,
  type DeleteRangeResponse,
  type LeaseGrantResponse,
  type LeaseLeasesResponse,
  type LeaseTimeToLiveResponse,
  type PutResponse,
  type RangeResponse,
  type WatchRequest,
  type WatchResponse,
} from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import { Event_EventType, KeyValueSchema } from "@wharf/proto/etcd/api/mvccpb/kv_pb.js";
import { create } from "@bufbuild/protobuf";
import {
  createClusterPki,
  etcdServices,
  kubectlOn,
  makeWorkDir,
  rawEtcdClient,
  removeWorkDir,
  repoRoot,
  startBrainProcess,
  startBrainReplicaSet,
  startKubeApiserver,
  startPostgres,
  startReferenceEtcd,
  toolPath,
  type Brain,
  type BrainReplicaSet,
  type KubeApiserver,
  type Postgres,
  type RawEtcdClient,
  type ReferenceEtcd,
} from "@wharf/testkit";
import { encodeKeyValue } from "../mvcc/kv-wire.js";
import { revisionKey } from "../mvcc/revision.js";
import { tombstoneKeyValue } from "../mvcc/version-writer.js";
import { loadReplica } from "../replica/pg/loader.js";
import { migrate as migrateSchema } from "../replica/pg/migrations.js";
import { openPool } from "../replica/pg/pool.js";
import { Table, tableEnd, tableStart } from "../storage/keys.js";
import { openRocksEngine } from "../storage/rocks-engine.js";
import { clientView } from "./client-view.fixture.js";
import { migrateToPostgres } from "./migrate-postgres.js";

const run = promisify(execFile);
const brainMain = join(repoRoot, "brain", "dist", "main.js");
const all = { key: Uint8Array.of(0), rangeEnd: Uint8Array.of(0) };
const text = (value: string) => new TextEncoder().encode(value);
const poisonKey = "/poison";
const password = "s3cret-Pa55word";

async function brainMigrate(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [brainMain, "migrate", ...args], { env: { ...process.env, ...env } });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failure = error as { code: number; stdout: string; stderr: string };
    return { code: failure.code, stdout: failure.stdout, stderr: failure.stderr };
  }
}

/**
 * The server's shutdown at the end ends idle sessions; a pool reports that
 * as an event, which with no listener would end the test process. Queries
 * still fail with their own errors.
 */
function quiet(pool: pg.Pool): pg.Pool {
  pool.on("error", () => undefined);
  return pool;
}

/** One version as a client sees it; a delete carries only its key and revision. */
interface Version {
  type: "put" | "delete";
  key: string;
  createRevision: number;
  modRevision: number;
  version: number;
  lease: string;
  value: string;
}

function version(type: Version["type"], kv: { key: Uint8Array; createRevision: bigint; modRevision: bigint; version: bigint; lease: bigint; value: Uint8Array }): Version {
  return {
    type,
    key: Buffer.from(kv.key).toString("hex"),
    createRevision: Number(kv.createRevision),
    modRevision: Number(kv.modRevision),
    version: Number(kv.version),
    lease: kv.lease.toString(),
    value: Buffer.from(kv.value).toString("hex"),
  };
}

/** What a source serves: the revision and compaction, the versions live at C, every event after C, the leases. */
interface Dataset {
  revision: number;
  compactRevision: number;
  base: Version[];
  events: Version[];
  leases: Array<{ id: string; ttl: number }>;
}

const byRevisionThenKey = (a: Version, b: Version) => a.modRevision - b.modRevision || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

/**
 * The workload, the same on etcd and brain: history on one key, a binary
 * key, multi-key transactions (300 keys in three revisions, so a migration
 * spans many batches), deletes, a lease, a compaction, and the key a test
 * constraint rejects near the end.
 */
async function seed(client: RawEtcdClient): Promise<{ compactRevision: number; revision: number; firstA: number; deleteF: number }> {
  const put = async (key: string | Uint8Array, value: string, lease = 0n) =>
    Number(((await client.call(etcdServices.KV, "Put", PutRequestSchema, { key: typeof key === "string" ? text(key) : key, value: text(value), lease })) as PutResponse).header!.revision);
  const txn = (ops: Array<{ put?: string; value?: string; del?: string; end?: string }>) =>
    client.call(etcdServices.KV, "Txn", TxnRequestSchema, {
      success: ops.map((op) =>
        op.put !== undefined
          ? { request: { case: "requestPut" as const, value: { key: text(op.put), value: text(op.value ?? "") } } }
          : { request: { case: "requestDeleteRange" as const, value: { key: text(op.del!), rangeEnd: op.end === undefined ? undefined : text(op.end) } } },
      ),
    });
  const firstA = await put("/a", "1");
  await put("/b", "1");
  await put(Uint8Array.from([0x2f, 0x00, 0x62, 0x69, 0x6e, 0x00]), "binary key");
  await txn([{ put: "/c", value: "1" }, { put: "/d", value: "1" }, { del: "/b" }]);
  for (let batch = 0; batch < 3; batch++) {
    await txn(Array.from({ length: 100 }, (_, i) => ({ put: `/bulk/${batch}/${String(i).padStart(3, "0")}`, value: `v${batch}.${i}`.repeat(8) })));
  }
  const lease = (await client.call(etcdServices.Lease, "LeaseGrant", LeaseGrantRequestSchema, { TTL: 600n })) as LeaseGrantResponse;
  await put("/leased", "x", lease.ID);
  await put("/f", "1");
  const deleteF = Number(((await client.call(etcdServices.KV, "DeleteRange", DeleteRangeRequestSchema, { key: text("/f") })) as DeleteRangeResponse).header!.revision);
  const compactRevision = await put("/a", "2");
  await client.call(etcdServices.KV, "Compact", CompactionRequestSchema, { revision: BigInt(compactRevision), physical: true });
  await put("/a", "3");
  await txn([{ put: "/g", value: "1" }, { del: "/c", end: "/d\0" }, { put: "/bulk/1/050", value: "again" }]);
  await txn(Array.from({ length: 100 }, (_, i) => ({ put: `/late/${String(i).padStart(3, "0")}`, value: "late" })));
  await put(poisonKey, "rejected by the constraint test");
  const revision = await put("/h", "last");
  return { compactRevision, revision, firstA, deleteF };
}

/** Reads `Dataset` from a running source over etcd's API. */
async function observe(client: RawEtcdClient, compactRevision: number, revision: number): Promise<Dataset> {
  const range = (await client.call(etcdServices.KV, "Range", RangeRequestSchema, { ...all, revision: BigInt(compactRevision) })) as RangeResponse;
  const base = range.kvs.map((kv) => version("put", kv)).sort(byRevisionThenKey);
  const stream = client.stream<WatchRequest, WatchResponse>(etcdServices.Watch, "Watch");
  const events: Version[] = [];
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the watch from ${compactRevision + 1} did not reach ${revision}`)), 20_000);
    stream.on("error", reject);
    stream.on("data", (response: WatchResponse) => {
      for (const event of response.events) events.push(version(event.type === Event_EventType.Delete ? "delete" : "put", event.kv!));
      if (events.at(-1)?.modRevision === revision) {
        clearTimeout(timer);
        resolve();
      }
    });
    stream.write(create(WatchRequestSchema, { requestUnion: { case: "createRequest", value: { ...all, startRevision: BigInt(compactRevision + 1) } } }));
  });
  stream.cancel();
  const ids = ((await client.call(etcdServices.Lease, "LeaseLeases", LeaseLeasesRequestSchema, {})) as LeaseLeasesResponse).leases.map((lease) => lease.ID);
  const leases = [];
  for (const ID of ids) {
    const status = (await client.call(etcdServices.Lease, "LeaseTimeToLive", LeaseTimeToLiveRequestSchema, { ID })) as LeaseTimeToLiveResponse;
    leases.push({ id: ID.toString(), ttl: Number(status.grantedTTL) });
  }
  return { revision, compactRevision, base, events, leases };
}

describe("brain migrate --to-postgres", () => {
  let postgres: Postgres;
  let admin: pg.Pool;
  let work: string;
  let etcd: ReferenceEtcd;
  let etcdClient: RawEtcdClient;
  let fromEtcd: Dataset;
  let snapshot: string;
  let brainDataDir: string;
  let fromBrain: Dataset;
  let brainClusterId: bigint;
  let brainSeeded: Awaited<ReturnType<typeof seed>>;
  const brains: Brain[] = [];
  let databases = 0;

  /** A new, empty database on the one server; its URL carries a password (trust auth ignores it) to check it never shows. */
  async function newDatabase(): Promise<{ url: string; name: string; pool: pg.Pool }> {
    const name = `migrate_${++databases}`;
    await admin.query(`CREATE DATABASE ${name}`);
    const url = `postgres://postgres:${password}@127.0.0.1:${postgres.port}/${name}?sslmode=disable`;
    return { url, name, pool: quiet(new pg.Pool({ connectionString: url, max: 2 })) };
  }

  /** What PostgreSQL holds, in the source's terms. */
  async function stored(pool: pg.Pool): Promise<Dataset & { sequence: number; clusterId: bigint; subsInOrder: boolean }> {
    const state = (await pool.query<{ sequence: string; revision: string; compact_revision: string; cluster_id: string }>("SELECT * FROM brain_state")).rows;
    expect(state).toHaveLength(1);
    const compactRevision = Number(state[0]!.compact_revision);
    const rows = (await pool.query<{ revision: string; sub: number; key: Buffer; tombstone: boolean; kv: Buffer }>("SELECT * FROM brain_kv ORDER BY revision, sub")).rows;
    const base: Version[] = [];
    const events: Version[] = [];
    let subsInOrder = true;
    let previous = { revision: 0, sub: -1 };
    for (const row of rows) {
      const kv = fromBinary(KeyValueSchema, row.kv);
      // The key column and the revision columns agree with the stored KeyValue.
      expect(Buffer.from(kv.key).equals(row.key)).toBe(true);
      expect(Number(kv.modRevision)).toBe(Number(row.revision));
      const entry = version(row.tombstone ? "delete" : "put", kv);
      const revision = Number(row.revision);
      if (revision <= compactRevision) {
        base.push(entry);
        continue;
      }
      // After the compaction each revision's changes are numbered 0, 1, ... as written.
      if (row.sub !== (revision === previous.revision ? previous.sub + 1 : 0)) subsInOrder = false;
      previous = { revision, sub: row.sub };
      events.push(entry);
    }
    const leases = (await pool.query<{ id: string; ttl: string }>("SELECT id::text, ttl::text FROM brain_lease ORDER BY id")).rows.map((lease) => ({ id: lease.id, ttl: Number(lease.ttl) }));
    return {
      revision: Number(state[0]!.revision),
      compactRevision,
      base: base.sort(byRevisionThenKey),
      events,
      leases,
      sequence: Number(state[0]!.sequence),
      clusterId: BigInt(state[0]!.cluster_id),
      subsInOrder,
    };
  }

  async function counts(pool: pg.Pool): Promise<unknown> {
    const { rows } = await pool.query(
      `SELECT (SELECT count(*)::int FROM brain_kv) AS versions, (SELECT count(*)::int FROM brain_lease) AS leases,
              (SELECT count(*)::int FROM brain_group) AS groups, s.sequence::int, s.revision::int, s.compact_revision::int, s.cluster_id::text,
              l.epoch::int AS epoch, l.expires_at < now() AS leader_expired
       FROM brain_state s, brain_leader l`,
    );
    return rows[0];
  }

  beforeAll(async () => {
    work = await makeWorkDir("migrate-postgres");
    postgres = await startPostgres();
    admin = quiet(new pg.Pool({ connectionString: postgres.url, max: 2 }));
    etcd = await startReferenceEtcd();
    etcdClient = rawEtcdClient(etcd.endpoint);
    const etcdSeeded = await seed(etcdClient);
    fromEtcd = await observe(etcdClient, etcdSeeded.compactRevision, etcdSeeded.revision);
    snapshot = join(work, "etcd.snapshot");
    await run(toolPath("etcdctl"), ["--endpoints", etcd.endpoint, "snapshot", "save", snapshot]);

    brainDataDir = join(work, "brain-data");
    const brain = await startBrainProcess({ dataDir: brainDataDir });
    brains.push(brain);
    const brainClient = rawEtcdClient(brain.endpoint);
    try {
      brainSeeded = await seed(brainClient);
      fromBrain = await observe(brainClient, brainSeeded.compactRevision, brainSeeded.revision);
      brainClusterId = ((await brainClient.call(etcdServices.KV, "Range", RangeRequestSchema, all)) as RangeResponse).header!.clusterId;
    } finally {
      brainClient.close();
    }
    // Killed, not stopped: what a crashed brain left is what is migrated.
    await brain.stop({ signal: "SIGKILL" });
    brains.splice(brains.indexOf(brain), 1);
  }, 180_000);

  afterAll(async () => {
    etcdClient?.close();
    await Promise.all(brains.map((brain) => brain.stop()));
    await etcd?.stop();
    await admin?.end();
    await postgres?.stop();
    if (work) await removeWorkDir(work);
  });

  function expectLikeSource(got: Awaited<ReturnType<typeof stored>>, source: Dataset): void {
    expect({ revision: got.revision, compactRevision: got.compactRevision }).toEqual({ revision: source.revision, compactRevision: source.compactRevision });
    expect(got.base).toEqual(source.base);
    expect(got.events).toEqual(source.events);
    expect(got.leases).toEqual([...source.leases].sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1)));
    expect(got.subsInOrder).toBe(true);
    expect(got.sequence).toBe(0);
  }

  it("the workload is what the comparisons need: history after the compaction, deletes, a lease", () => {
    for (const source of [fromEtcd, fromBrain]) {
      expect(source.compactRevision).toBeGreaterThan(1);
      expect(source.events.filter((event) => event.type === "delete").length).toBeGreaterThanOrEqual(2);
      expect(source.base.length + source.events.length).toBeGreaterThan(400);
      expect(source.leases).toHaveLength(1);
    }
    // Both sources got the same writes, so they hold the same versions at the same revisions.
    // (Lease ids are each server's own choice.)
    const sameLease = (versions: Version[]) => versions.map((entry) => ({ ...entry, lease: entry.lease === "0" ? "none" : "the lease" }));
    expect(sameLease(fromBrain.events)).toEqual(sameLease(fromEtcd.events));
    expect(sameLease(fromBrain.base)).toEqual(sameLease(fromEtcd.base));
  });

  it("from an etcd snapshot file (URL on the command line): every version, the revision, compaction and leases; the password never printed", async () => {
    const database = await newDatabase();
    try {
      const result = await brainMigrate(["--to-postgres", database.url, "--from-snapshot", snapshot]);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toContain(`up to revision ${fromEtcd.revision} (compacted at ${fromEtcd.compactRevision})`);
      expect(result.stdout).toContain(`postgres://postgres:***@127.0.0.1:${postgres.port}/${database.name}`);
      expect(result.stdout + result.stderr).not.toContain(password);
      const got = await stored(database.pool);
      expectLikeSource(got, fromEtcd);
      expect(got.clusterId).toBeGreaterThan(0n);
      expect(await counts(database.pool)).toMatchObject({ groups: 0, epoch: 0, leader_expired: true });
    } finally {
      await database.pool.end();
    }
  });

  it("from the running etcd (URL from BRAIN_POSTGRES_URL): the same; a second migration into that database is refused and changes nothing", async () => {
    const database = await newDatabase();
    try {
      const result = await brainMigrate(["--to-postgres", "--from-etcd", etcd.endpoint], { BRAIN_POSTGRES_URL: database.url });
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout + result.stderr).not.toContain(password);
      expectLikeSource(await stored(database.pool), fromEtcd);
      const before = await counts(database.pool);

      const again = await brainMigrate(["--to-postgres", database.url, "--from-snapshot", snapshot]);
      expect(again.code).toBe(1);
      expect(again.stderr).toMatch(/already holds brain data \(revision \d+/);
      expect(again.stderr).toContain("postgres://postgres:***@");
      expect(again.stdout + again.stderr).not.toContain(password);
      expect(await counts(database.pool)).toEqual(before);
    } finally {
      await database.pool.end();
    }
  });

  it("from a killed brain's RocksDB data dir: every version, the revision, compaction, leases and the cluster id; a brain on the database answers as it did", async () => {
    const database = await newDatabase();
    try {
      // Versions the compaction dropped but whose removal a stop interrupted
      // (the put of /a and the delete of /f below the compact revision):
      // still on disk, never served, not migrated.
      const engine = await openRocksEngine(brainDataDir);
      const countRows = async () => {
        const view = engine.view();
        try {
          return await view.count(tableStart(Table.Key), tableEnd(Table.Key));
        } finally {
          await view.close();
        }
      };
      const rowsBefore = await countRows();
      await engine.write(
        [
          {
            type: "put",
            key: revisionKey(brainSeeded.firstA, 0, false),
            value: encodeKeyValue({ key: text("/a"), value: text("1"), createRevision: brainSeeded.firstA, modRevision: brainSeeded.firstA, version: 1, lease: 0n }),
          },
          { type: "put", key: revisionKey(brainSeeded.deleteF, 0, true), value: encodeKeyValue(tombstoneKeyValue(text("/f"), brainSeeded.deleteF)) },
        ],
        { sync: true },
      );
      expect(await countRows()).toBe(rowsBefore + 2);
      await engine.close();

      const result = await brainMigrate(["--to-postgres", database.url, "--from-data-dir", brainDataDir]);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toContain(`up to revision ${fromBrain.revision} (compacted at ${fromBrain.compactRevision})`);
      const got = await stored(database.pool);
      expectLikeSource(got, fromBrain);
      expect(got.clusterId).toBe(brainClusterId);

      // A brain on the database answers as the killed brain did, under the same cluster id.
      const set = await startBrainReplicaSet({ postgres: { ...postgres, url: database.url }, replicas: 1 });
      const client = rawEtcdClient(set.endpoints[0]!);
      try {
        expect(await observe(client, fromBrain.compactRevision, fromBrain.revision)).toEqual(fromBrain);
        const header = ((await client.call(etcdServices.KV, "Range", RangeRequestSchema, all)) as RangeResponse).header!;
        expect(header.clusterId).toBe(brainClusterId);
      } finally {
        client.close();
        await set.stop();
      }
    } finally {
      await database.pool.end();
    }
  }, 120_000);

  it("the migrated database, loaded as every replica loads it at start, serves what the source etcd serves: ranges at every revision, watches, leases", async () => {
    const database = await newDatabase();
    const copy = join(work, "loaded-copy");
    try {
      await migrateToPostgres({ etcd: { endpoint: etcd.endpoint } }, database.url);
      const pool = openPool(database.url, { max: 1 });
      try {
        const engine = await openRocksEngine(copy);
        try {
          expect(await loadReplica(pool, engine, 42n)).toMatchObject({ sequence: 0, revision: fromEtcd.revision, compactRevision: fromEtcd.compactRevision });
        } finally {
          await engine.close();
        }
      } finally {
        await pool.end();
      }
      // The copy is brain's own layout: a brain started on it answers as the source does.
      const brain = await startBrainProcess({ dataDir: copy });
      brains.push(brain);
      const served = { name: "brain" as const, endpoint: brain.endpoint, client: rawEtcdClient(brain.endpoint) };
      const source = { name: "etcd" as const, endpoint: etcd.endpoint, client: etcdClient };
      try {
        const seen = await clientView(served, fromEtcd.compactRevision, fromEtcd.revision);
        expect(seen.length).toBeGreaterThan(fromEtcd.revision - fromEtcd.compactRevision + 4);
        expect(seen).toEqual(await clientView(source, fromEtcd.compactRevision, fromEtcd.revision));
      } finally {
        served.client.close();
        await brain.stop();
        brains.splice(brains.indexOf(brain), 1);
      }
    } finally {
      await database.pool.end();
    }
  });

  it("a replica set started with --storage postgres on the migrated database serves what the source etcd serves, through the leader and a follower; its first write takes the next revision", async () => {
    const database = await newDatabase();
    let set: BrainReplicaSet | undefined;
    try {
      await migrateToPostgres({ etcd: { endpoint: etcd.endpoint } }, database.url);
      set = await startBrainReplicaSet({ postgres: { ...postgres, url: database.url }, replicas: 2 });
      const leader = await set.leaderIndex();
      const expected = await clientView({ name: "etcd", endpoint: etcd.endpoint, client: etcdClient }, fromEtcd.compactRevision, fromEtcd.revision);
      for (const endpoint of set.endpoints) {
        const client = rawEtcdClient(endpoint);
        try {
          expect(await clientView({ name: "brain", endpoint, client }, fromEtcd.compactRevision, fromEtcd.revision)).toEqual(expected);
        } finally {
          client.close();
        }
      }
      // A member's data dir holds only its local copy: not a source.
      const copyOnly = await brainMigrate(["--to-postgres", database.url, "--from-data-dir", set.members[0]!.dataDir]);
      expect(copyOnly.code).toBe(1);
      expect(copyOnly.stderr).toMatch(/belongs to a brain run with --storage postgres: its data is in PostgreSQL already/);

      // The first group after the migrated data: the next revision, seen by the leader too.
      const follower = rawEtcdClient(set.endpoints[1 - leader]!);
      const leaderClient = rawEtcdClient(set.endpoints[leader]!);
      try {
        const put = (await follower.call(etcdServices.KV, "Put", PutRequestSchema, { key: text("/after-migration"), value: text("1") })) as PutResponse;
        expect(Number(put.header!.revision)).toBe(fromEtcd.revision + 1);
        const read = (await leaderClient.call(etcdServices.KV, "Range", RangeRequestSchema, { key: text("/a") })) as RangeResponse;
        expect(read.kvs.map((kv) => [new TextDecoder().decode(kv.value), Number(kv.version)])).toEqual([["3", 3]]);
        expect(Number(read.header!.revision)).toBe(fromEtcd.revision + 1);
      } finally {
        follower.close();
        leaderClient.close();
      }
    } finally {
      await set?.stop();
      await database.pool.end();
    }
  }, 120_000);

  it("moves a Kubernetes cluster from etcd to brains on PostgreSQL: objects, resource versions and watches from them carry over", async () => {
    const database = await newDatabase();
    await mkdir(join(work, "cluster-pki"));
    const pki = await createClusterPki(join(work, "cluster-pki"));
    const clusterEtcd = await startReferenceEtcd();
    let apiserver: KubeApiserver | undefined;
    let set: BrainReplicaSet | undefined;
    const kubectl = (...args: string[]) => kubectlOn(apiserver!.kubeconfig)(...args);
    try {
      apiserver = await startKubeApiserver({ etcdServers: [clusterEtcd.endpoint], pki });
      await kubectl("create", "namespace", "moving");
      await kubectl("-n", "moving", "create", "configmap", "settings", "--from-literal=mode=etcd");
      const before = JSON.parse(await kubectl("-n", "moving", "get", "configmap", "settings", "-o", "json")) as { metadata: { resourceVersion: string; uid: string } };
      // The documented order: stop the apiservers, migrate, start the brains, then the apiservers on them.
      await apiserver.stop();
      apiserver = undefined;
      const result = await brainMigrate(["--to-postgres", "--from-etcd", clusterEtcd.endpoint], { BRAIN_POSTGRES_URL: database.url });
      expect(result.code, result.stderr).toBe(0);
      await clusterEtcd.stop();
      set = await startBrainReplicaSet({ postgres: { ...postgres, url: database.url }, replicas: 2 });
      apiserver = await startKubeApiserver({ etcdServers: set.endpoints, pki });
      const after = JSON.parse(await kubectl("-n", "moving", "get", "configmap", "settings", "-o", "json")) as typeof before;
      expect(after.metadata).toMatchObject({ resourceVersion: before.metadata.resourceVersion, uid: before.metadata.uid });
      // A client resuming its watch from the resource version it held sees what changed since.
      const watch = run(toolPath("kubectl"), [
        "--kubeconfig", apiserver.kubeconfig, "get", "--raw",
        `/api/v1/namespaces/moving/configmaps?watch=1&resourceVersion=${before.metadata.resourceVersion}&timeoutSeconds=5`,
      ]);
      await kubectl("-n", "moving", "patch", "configmap", "settings", "-p", '{"data":{"mode":"brain"}}');
      const events = (await watch).stdout.trim().split("\n").map((line) => JSON.parse(line) as { type: string; object: { data: { mode: string } } });
      expect(events.map((event) => [event.type, event.object.data.mode])).toEqual([["MODIFIED", "brain"]]);
    } finally {
      await apiserver?.stop();
      await set?.stop();
      await clusterEtcd.stop();
      await database.pool.end();
    }
  }, 180_000);

  it("refuses a data dir a running brain holds, before touching the database", async () => {
    const database = await newDatabase();
    const running = await startBrainProcess({ dataDir: join(work, "running-brain") });
    brains.push(running);
    try {
      const result = await brainMigrate(["--to-postgres", database.url, "--from-data-dir", running.dataDir]);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/is in use: a running brain holds its RocksDB lock/);
      const schema = await database.pool.query<{ table: string | null }>("SELECT to_regclass('brain_state')::text AS table");
      expect(schema.rows[0]!.table).toBeNull();
    } finally {
      await running.stop();
      brains.splice(brains.indexOf(running), 1);
      await database.pool.end();
    }
  });

  it("a row violating a constraint half-way leaves the database as it was; the same migration then succeeds", async () => {
    const database = await newDatabase();
    try {
      const schemaPool = new pg.Pool({ connectionString: database.url, max: 1 });
      await migrateSchema(schemaPool).finally(() => schemaPool.end());
      await database.pool.query(`ALTER TABLE brain_kv ADD CONSTRAINT no_poison CHECK (key <> '\\x${Buffer.from(poisonKey).toString("hex")}'::bytea)`);
      const before = await counts(database.pool);
      let written = 0;
      const failed = migrateToPostgres({ etcd: { endpoint: etcd.endpoint } }, database.url, { batchRows: 50, onBatch: (versions) => void (written = versions) });
      await expect(failed).rejects.toThrow(/^PostgreSQL postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/migrate_\d+\?sslmode=disable: .*no_poison/);
      // Rows went in batch by batch before the failing one; none of them is there now.
      expect(written).toBeGreaterThanOrEqual(300);
      expect(await counts(database.pool)).toEqual(before);

      await database.pool.query("ALTER TABLE brain_kv DROP CONSTRAINT no_poison");
      await migrateToPostgres({ etcd: { endpoint: etcd.endpoint } }, database.url, { batchRows: 50 });
      expectLikeSource(await stored(database.pool), fromEtcd);
    } finally {
      await database.pool.end();
    }
  });

  it("the connection cut half-way leaves the database as it was", async () => {
    const database = await newDatabase();
    try {
      const schemaPool = new pg.Pool({ connectionString: database.url, max: 1 });
      await migrateSchema(schemaPool).finally(() => schemaPool.end());
      const before = await counts(database.pool);
      let batches = 0;
      let terminated = 0;
      const cut = migrateToPostgres({ dataDir: brainDataDir }, database.url, {
        batchRows: 50,
        onBatch: async () => {
          if (++batches !== 3) return;
          const { rows } = await admin.query<{ ok: boolean }>(
            "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE datname = $1 AND application_name = 'brain migrate'",
            [database.name],
          );
          terminated = rows.filter((row) => row.ok).length;
        },
      });
      await expect(cut).rejects.toThrow(/terminat|Connection terminated|not queryable/i);
      expect(terminated).toBe(1);
      expect(await counts(database.pool)).toEqual(before);
    } finally {
      await database.pool.end();
    }
  });

  it("the command line: usage errors name what is missing; --help documents the PostgreSQL target", async () => {
    const noUrl = await brainMigrate(["--to-postgres", "--from-etcd", etcd.endpoint], { BRAIN_POSTGRES_URL: "" });
    expect(noUrl.code).toBe(2);
    expect(noUrl.stderr).toMatch(/--to-postgres without a URL reads BRAIN_POSTGRES_URL, which is not set/);
    const noSource = await brainMigrate(["--to-postgres", "postgres://127.0.0.1:1/x"]);
    expect(noSource.code).toBe(2);
    expect(noSource.stderr).toMatch(/needs one of --from-data-dir, --from-snapshot or --from-etcd/);
    const twoTargets = await brainMigrate(["--to-postgres", "postgres://127.0.0.1:1/x", "--data-dir", join(work, "never"), "--from-etcd", etcd.endpoint]);
    expect(twoTargets.code).toBe(2);
    expect(twoTargets.stderr).toMatch(/needs one target: --data-dir or --to-postgres/);
    const dataDirToDataDir = await brainMigrate(["--data-dir", join(work, "never"), "--from-data-dir", brainDataDir]);
    expect(dataDirToDataDir.code).toBe(2);
    expect(dataDirToDataDir.stderr).toMatch(/--from-data-dir is for --to-postgres/);
    const help = await brainMigrate(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/--to-postgres \[URL\]/);
    expect(help.stdout).toMatch(/--from-data-dir DIR/);
  });

  it("refuses a database a brain leads or is a live member of; once they are gone, migrates and fences the old leader's epoch", async () => {
    const database = await newDatabase();
    try {
      const schemaPool = new pg.Pool({ connectionString: database.url, max: 1 });
      await migrateSchema(schemaPool).finally(() => schemaPool.end());
      await database.pool.query("UPDATE brain_leader SET epoch = 4, name = 'brain-1', expires_at = now() + interval '1 hour'");
      const before = await counts(database.pool);
      await expect(migrateToPostgres({ snapshot }, database.url)).rejects.toThrow(/brain "brain-1" is the leader on postgres:\/\/postgres:\*\*\*@/);
      expect(await counts(database.pool)).toEqual(before);

      // Its lease ran out, but it (or another brain) is still a live member.
      await database.pool.query("UPDATE brain_leader SET expires_at = now() - interval '1 second'");
      await database.pool.query("INSERT INTO brain_member VALUES (7, 'brain-2', '{http://127.0.0.1:1}', now())");
      const withMember = await counts(database.pool);
      await expect(migrateToPostgres({ snapshot }, database.url)).rejects.toThrow(/brains are running on .*\(brain-2 sent a heartbeat/);
      expect(await counts(database.pool)).toEqual(withMember);

      // Once every brain is gone, the migration goes in and moves the epoch, fencing the old leader.
      await database.pool.query("UPDATE brain_member SET heartbeat_at = now() - interval '31 seconds'");
      await migrateToPostgres({ snapshot }, database.url);
      expect(await counts(database.pool)).toMatchObject({ epoch: 5, leader_expired: true, sequence: 0, revision: fromEtcd.revision });
    } finally {
      await database.pool.end();
    }
  });
});
