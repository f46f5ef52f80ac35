// A real kube-apiserver on brain, driven by kubectl, compared with one on the
// reference etcd (started once per run by the global setup). brain is a
// single brain on RocksDB, then a three-brain replica set on PostgreSQL that
// the apiserver reaches through a follower, then through the leader.
import { execFile, spawn } from "node:child_process";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { join } from "node:path";
import { kubectlOn, makeWorkDir, removeWorkDir, startBrainProcess, startBrainReplicaSet, startKubeApiserver, toolPath, type Brain, type BrainReplicaSet, type KubeApiserver, waitFor } from "@wharf/testkit";

/** The store under test, as the apiserver and these tests reach it. */
interface Store {
  endpoint: string;
  metricsUrl: string;
  /** Stops the member the apiserver talks to and starts it again at the same address, with its data. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

async function singleBrain(): Promise<Store> {
  // Its data outlives a restart, in a dir of the test's own (removed at stop).
  const dir = await makeWorkDir("kube-brain");
  let brain: Brain = await startBrainProcess({ dataDir: join(dir, "data") });
  return {
    endpoint: brain.endpoint,
    get metricsUrl() {
      return brain.metricsUrl;
    },
    async restart() {
      const { dataDir, endpoint, metricsUrl } = brain;
      await brain.stop({ keepData: true });
      brain = await startBrainProcess({ dataDir, port: Number(new URL(endpoint).port), metricsPort: Number(new URL(metricsUrl).port) });
    },
    async stop() {
      await brain.stop();
      await removeWorkDir(dir);
    },
  };
}

async function replicaMember(role: "follower" | "leader"): Promise<Store> {
  const set: BrainReplicaSet = await startBrainReplicaSet({ replicas: 3 });
  const leader = await set.leaderIndex();
  const index = role === "leader" ? leader : (leader + 1) % set.members.length;
  const member = set.members[index]!;
  return {
    endpoint: member.clientAddress,
    metricsUrl: member.metricsAddress,
    async restart() {
      await set.kill(index, "SIGTERM");
      await set.restart(index);
    },
    stop: () => set.stop(),
  };
}

const stores: Record<string, () => Promise<Store>> = {
  brain: singleBrain,
  "brain replica set via a follower": () => replicaMember("follower"),
  "brain replica set via its leader": () => replicaMember("leader"),
};

/** The reference session runs once: every target is compared with the same answers. */
let onEtcd: Promise<Record<string, unknown>> | undefined;

/** The same kubectl session against a cluster; returns what a user would see. */
async function session(kubeconfig: string): Promise<Record<string, unknown>> {
  const kubectl = kubectlOn(kubeconfig);
  const ns = "compat";
  const seen: Record<string, unknown> = {};
  await kubectl("create", "namespace", ns);
  for (let i = 0; i < 20; i++) {
    await kubectl("-n", ns, "create", "configmap", `cm-${String(i).padStart(2, "0")}`, `--from-literal=index=${i}`);
  }
  // Paginated list: the second and later pages read at the first page's revision.
  const listed = JSON.parse(await kubectl("-n", ns, "get", "configmaps", "--chunk-size=6", "-o", "json")) as {
    items: Array<{ metadata: { name: string }; data: Record<string, string> }>;
  };
  seen.list = listed.items.filter((item) => item.metadata.name.startsWith("cm-")).map((item) => [item.metadata.name, item.data.index]);
  await kubectl("-n", ns, "patch", "configmap", "cm-03", "--type=merge", "-p", '{"data":{"index":"patched"}}');
  seen.patched = await kubectl("-n", ns, "get", "configmap", "cm-03", "-o", "jsonpath={.data.index}");
  await kubectl("-n", ns, "delete", "configmap", "cm-04");
  seen.afterDelete = (await kubectl("-n", ns, "get", "configmaps", "-o", "name")).split("\n").filter((line) => line.includes("cm-")).length;
  seen.byLabel = await kubectl("-n", ns, "get", "configmaps", "-l", "missing=label", "-o", "name");
  const missing = await kubectl("-n", ns, "get", "configmap", "nope").catch((error: { stderr?: string }) => error.stderr ?? "");
  seen.notFound = missing.trim();
  await kubectl("delete", "namespace", ns, "--wait=false");
  return seen;
}

function apply(kubeconfig: string, manifest: object): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(toolPath("kubectl"), ["--kubeconfig", kubeconfig, "apply", "-f", "-"], (error, stdout, stderr) =>
      error ? reject(new Error(stderr || error.message)) : resolve(stdout),
    );
    child.stdin?.end(JSON.stringify(manifest));
  });
}

describe.each(Object.keys(stores))("%s", (name) => {
  let brain: Store;
  let kube: KubeApiserver;

  beforeAll(async () => {
    brain = await stores[name]!();
    kube = await startKubeApiserver({
      etcdServers: [brain.endpoint],
      // Short enough to watch happen within a test: the apiserver's own
      // compaction Txn on compact_rev_key, and events expiring by lease.
      extraArgs: ["--etcd-compaction-interval=2s", "--event-ttl=2s"],
    });
  });
  afterAll(async () => {
    await kube?.stop();
    await brain?.stop();
  });

  describe("kube-apiserver on brain", () => {
    it("is ready", async () => {
      expect((await kubectlOn(kube.kubeconfig)("get", "--raw", "/readyz")).trim()).toBe("ok");
    });

    it("serves the same kubectl session as kube-apiserver on etcd", async () => {
      const reference = inject("kube");
      onEtcd ??= session(reference.kubeconfig);
      const [etcdSeen, onBrain] = [await onEtcd, await session(kube.kubeconfig)];
      expect(onBrain).toEqual(etcdSeen);
      expect((onBrain.list as unknown[]).length).toBe(20);
    });

    it("answers an update with a stale resourceVersion with 409 Conflict", async () => {
      const kubectl = kubectlOn(kube.kubeconfig);
      await kubectl("create", "configmap", "conflicted", "--from-literal=v=1");
      const stale = JSON.parse(await kubectl("get", "configmap", "conflicted", "-o", "json")) as { data: Record<string, string> };
      await kubectl("patch", "configmap", "conflicted", "--type=merge", "-p", '{"data":{"v":"2"}}');
      stale.data.v = "3";
      const failure = await new Promise<string>((resolve) => {
        const child = execFile(toolPath("kubectl"), ["--kubeconfig", kube.kubeconfig, "replace", "-f", "-"], (_error, _stdout, stderr) => resolve(stderr));
        child.stdin?.end(JSON.stringify(stale));
      });
      expect(failure).toMatch(/Operation cannot be fulfilled on configmaps "conflicted": the object has been modified/);
      expect(await kubectl("get", "configmap", "conflicted", "-o", "jsonpath={.data.v}")).toBe("2");
    });

    it("serves a CRD and its custom resources", async () => {
      const kubectl = kubectlOn(kube.kubeconfig);
      await apply(kube.kubeconfig, {
        apiVersion: "apiextensions.k8s.io/v1",
        kind: "CustomResourceDefinition",
        metadata: { name: "harbors.wharf.dev" },
        spec: {
          group: "wharf.dev",
          names: { kind: "Harbor", plural: "harbors", singular: "harbor" },
          scope: "Namespaced",
          versions: [
            {
              name: "v1",
              served: true,
              storage: true,
              schema: { openAPIV3Schema: { type: "object", properties: { spec: { type: "object", properties: { berths: { type: "integer" } } } } } },
            },
          ],
        },
      });
      await kubectl("wait", "--for=condition=Established", "crd/harbors.wharf.dev", "--timeout=30s");
      await waitFor(async () => (await kubectl("api-resources", "--api-group=wharf.dev").catch(() => "")).includes("harbors"), 30_000, "harbors API");
      for (const name of ["north", "south"]) {
        await apply(kube.kubeconfig, { apiVersion: "wharf.dev/v1", kind: "Harbor", metadata: { name, namespace: "default" }, spec: { berths: name.length } });
      }
      expect(await kubectl("get", "harbors", "-o", "jsonpath={.items[*].spec.berths}")).toBe("5 5");
      await kubectl("delete", "harbor", "north");
      expect(await kubectl("get", "harbors", "-o", "jsonpath={.items[*].metadata.name}")).toBe("south");
    });

    it("expires events through leases, and the apiserver compacts", async () => {
      const kubectl = kubectlOn(kube.kubeconfig);
      await apply(kube.kubeconfig, {
        apiVersion: "v1",
        kind: "Event",
        metadata: { name: "short-lived", namespace: "default" },
        involvedObject: { kind: "ConfigMap", name: "conflicted", namespace: "default" },
        reason: "Testing",
        message: "expires with its lease",
        type: "Normal",
      });
      expect(await kubectl("get", "event", "short-lived", "-o", "name")).toContain("short-lived");
      await waitFor(
        async () => (await kubectl("get", "events", "--field-selector=metadata.name=short-lived", "-o", "name")).trim() === "",
        20_000,
        "the event's lease to expire",
      );
      const metrics = await (await fetch(`${brain.metricsUrl}/metrics`)).text();
      expect(Number(/^etcd_debugging_mvcc_compact_revision (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThan(0);
    });

    it("resumes a kubectl watch across a brain restart without losing updates", async () => {
      const kubectl = kubectlOn(kube.kubeconfig);
      await kubectl("create", "namespace", "restarted");
      const watcher = spawn(toolPath("kubectl"), ["--kubeconfig", kube.kubeconfig, "-n", "restarted", "get", "configmaps", "--watch", "-o", "name"]);
      let output = "";
      watcher.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
      try {
        await new Promise((resolve) => setTimeout(resolve, 1000));
        await kubectl("-n", "restarted", "create", "configmap", "before-restart");
        await waitFor(async () => output.includes("before-restart"), 10_000, "the first event");
        await brain.restart();
        await waitFor(async () => (await kubectl("get", "--raw", "/readyz").catch(() => "")).trim() === "ok", 30_000, "readyz after restart");
        for (const name of ["after-restart-1", "after-restart-2"]) await kubectl("-n", "restarted", "create", "configmap", name);
        await waitFor(async () => output.includes("after-restart-2"), 20_000, "events after the restart");
        expect(output).toContain("configmap/after-restart-1");
        expect(watcher.exitCode).toBeNull();
      } finally {
        watcher.kill();
      }
    });

    it("delivers watch events through kubectl get --watch", async () => {
      const kubectl = kubectlOn(kube.kubeconfig);
      await kubectl("create", "namespace", "watched");
      const watcher = spawn(toolPath("kubectl"), ["--kubeconfig", kube.kubeconfig, "-n", "watched", "get", "configmaps", "--watch", "-o", "name"]);
      let output = "";
      watcher.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
      try {
        await new Promise((resolve) => setTimeout(resolve, 1000));
        await kubectl("-n", "watched", "create", "configmap", "seen-by-watch", "--from-literal=a=b");
        const deadline = Date.now() + 10_000;
        while (!output.includes("configmap/seen-by-watch") && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        expect(output).toContain("configmap/seen-by-watch");
      } finally {
        watcher.kill();
      }
    });
  });
});
