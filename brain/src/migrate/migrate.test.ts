// `brain migrate` against a real etcd: a keyspace with history, a
// multi-key transaction, binary keys, deletes, a lease and a compaction is
// migrated from a snapshot file and from the running member; then each
// migrated brain must answer reads at every revision, watches and lease
// queries exactly as the etcd it came from.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CompactionRequestSchema,
  DeleteRangeRequestSchema,
  LeaseGrantRequestSchema,
  PutRequestSchema,
  TxnRequestSchema,
  type LeaseGrantResponse,
  type PutResponse,
} from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import {
  createClusterPki,
  etcdServices,
  kubectlOn,
  makeWorkDir,
  rawEtcdClient,
  repoRoot,
  startBrainProcess,
  startKubeApiserver,
  startReferenceEtcd,
  toolPath,
  type Brain,
  type KubeApiserver,
  type ReferenceEtcd,
} from "@wharf/testkit";
import { bytes, type Target } from "../compat/differential.js";
import { clientView } from "./client-view.fixture.js";

const run = promisify(execFile);
const brainMain = join(repoRoot, "brain", "dist", "main.js");

async function brainMigrate(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [brainMain, "migrate", ...args]);
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failure = error as { code: number; stdout: string; stderr: string };
    return { code: failure.code, stdout: failure.stdout, stderr: failure.stderr };
  }
}

describe("brain migrate", () => {
  let etcd: ReferenceEtcd;
  let work: string;
  let source: Target;
  let compactRevision = 0;
  let finalRevision = 0;
  const brains: Brain[] = [];

  const put = async (key: string | Uint8Array, value: string, lease = 0n) =>
    Number(
      ((await source.client.call(etcdServices.KV, "Put", PutRequestSchema, { key: typeof key === "string" ? bytes(key) : key, value: bytes(value), lease })) as PutResponse)
        .header!.revision,
    );

  beforeAll(async () => {
    work = await makeWorkDir("migrate");
    etcd = await startReferenceEtcd();
    source = { name: "etcd", endpoint: etcd.endpoint, client: rawEtcdClient(etcd.endpoint) };
    await put("/a", "1");
    await put("/b", "1");
    await put(Uint8Array.from([0x2f, 0x00, 0x62, 0x69, 0x6e, 0x00]), "binary key");
    // One revision, three events.
    await source.client.call(etcdServices.KV, "Txn", TxnRequestSchema, {
      success: [
        { request: { case: "requestPut", value: { key: bytes("/c"), value: bytes("1") } } },
        { request: { case: "requestPut", value: { key: bytes("/d"), value: bytes("1") } } },
        { request: { case: "requestDeleteRange", value: { key: bytes("/b") } } },
      ],
    });
    const lease = (await source.client.call(etcdServices.Lease, "LeaseGrant", LeaseGrantRequestSchema, { TTL: 600n })) as LeaseGrantResponse;
    await put("/leased", "x", lease.ID);
    await put("/f", "1");
    await source.client.call(etcdServices.KV, "DeleteRange", DeleteRangeRequestSchema, { key: bytes("/f") });
    compactRevision = await put("/a", "2");
    await source.client.call(etcdServices.KV, "Compact", CompactionRequestSchema, { revision: BigInt(compactRevision), physical: true });
    await put("/a", "3");
    await source.client.call(etcdServices.KV, "Txn", TxnRequestSchema, {
      success: [
        { request: { case: "requestPut", value: { key: bytes("/g"), value: bytes("1") } } },
        { request: { case: "requestDeleteRange", value: { key: bytes("/c"), rangeEnd: bytes("/d\0") } } },
      ],
    });
    finalRevision = await put("/h", "last");
  }, 120_000);

  afterAll(async () => {
    source?.client.close();
    await Promise.all(brains.map((brain) => brain.stop()));
    await etcd?.stop();
    await rm(work, { recursive: true, force: true });
  });

  async function startMigrated(dataDir: string): Promise<Target> {
    const brain = await startBrainProcess({ dataDir });
    brains.push(brain);
    return { name: "brain", endpoint: brain.endpoint, client: rawEtcdClient(brain.endpoint) };
  }

  /** Migrates with `args`, starts brain on the result and compares everything a client can read with the source. */
  async function expectMigratedLikeSource(name: string, ...args: string[]): Promise<void> {
    const dataDir = join(work, name);
    const result = await brainMigrate("--data-dir", dataDir, ...args);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`up to revision ${finalRevision} \\(compacted at ${compactRevision}\\)`));
    const migrated = await startMigrated(dataDir);
    try {
      expect(await clientView(migrated, compactRevision, finalRevision)).toEqual(await clientView(source, compactRevision, finalRevision));
    } finally {
      migrated.client.close();
    }
  }

  it("from an etcdctl snapshot: every revision, the history's events, the compaction and the leases as etcd has them", async () => {
    const snapshot = join(work, "etcd.snapshot");
    await run(toolPath("etcdctl"), ["--endpoints", etcd.endpoint, "snapshot", "save", snapshot]);
    await expectMigratedLikeSource("from-snapshot", "--from-snapshot", snapshot);
  });

  it("from the running etcd: the same", async () => {
    await expectMigratedLikeSource("from-etcd", "--from-etcd", etcd.endpoint);
  });

  it("refuses a data dir that holds anything, and a file that is not a snapshot, leaving nothing behind", async () => {
    const used = join(work, "used");
    await mkdir(used);
    await writeFile(join(used, "something"), "x");
    const refused = await brainMigrate("--data-dir", used, "--from-etcd", etcd.endpoint);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/exists and is not empty/);

    const garbage = join(work, "garbage.db");
    await writeFile(garbage, Buffer.alloc(16384, 7));
    const fresh = join(work, "never");
    const bad = await brainMigrate("--data-dir", fresh, "--from-snapshot", garbage);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/not a bbolt database/);
    expect(existsSync(fresh) || existsSync(`${fresh}.migrating`)).toBe(false);

    const usage = await brainMigrate("--data-dir", fresh);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/one of --from-snapshot or --from-etcd/);
  });

  it("moves a Kubernetes cluster from etcd to brain: objects, resource versions and watches from them carry over", async () => {
    await mkdir(join(work, "cluster-pki"));
    const pki = await createClusterPki(join(work, "cluster-pki"));
    const clusterEtcd = await startReferenceEtcd();
    let apiserver: KubeApiserver | undefined;
    const kubectl = (...args: string[]) => kubectlOn(apiserver!.kubeconfig)(...args);
    try {
      apiserver = await startKubeApiserver({ etcdServers: [clusterEtcd.endpoint], pki });
      await kubectl("create", "namespace", "moving");
      await kubectl("-n", "moving", "create", "configmap", "settings", "--from-literal=mode=etcd");
      const before = JSON.parse(await kubectl("-n", "moving", "get", "configmap", "settings", "-o", "json")) as { metadata: { resourceVersion: string; uid: string } };
      // The documented order: stop the apiservers, migrate, start them on brain.
      await apiserver.stop();
      const dataDir = join(work, "cluster-brain");
      const result = await brainMigrate("--data-dir", dataDir, "--from-etcd", clusterEtcd.endpoint);
      expect(result.code, result.stderr).toBe(0);
      await clusterEtcd.stop();
      const brain = await startBrainProcess({ dataDir });
      brains.push(brain);
      apiserver = await startKubeApiserver({ etcdServers: [brain.endpoint], pki });
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
      await clusterEtcd.stop();
    }
  }, 180_000);
});
