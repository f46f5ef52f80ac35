// A real kube-apiserver on brain, driven by kubectl, compared with one on the
// reference etcd (started once per run by the global setup).
import { execFile, spawn } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startBrainProcess, startKubeApiserver, toolPath, type Brain, type KubeApiserver } from "@wharf/testkit";

const run = promisify(execFile);

let brain: Brain;
let kube: KubeApiserver;

beforeAll(async () => {
  brain = await startBrainProcess();
  kube = await startKubeApiserver({ etcdServers: [brain.endpoint] });
});
afterAll(async () => {
  await kube?.stop();
  await brain?.stop();
});

const kubectlOn = (kubeconfig: string) => async (...args: string[]) =>
  (await run(toolPath("kubectl"), ["--kubeconfig", kubeconfig, ...args], { maxBuffer: 64 * 1024 * 1024 })).stdout;

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

describe("kube-apiserver on brain", () => {
  it("is ready", async () => {
    expect((await kubectlOn(kube.kubeconfig)("get", "--raw", "/readyz")).trim()).toBe("ok");
  });

  it("serves the same kubectl session as kube-apiserver on etcd", async () => {
    const reference = inject("kube");
    const [onEtcd, onBrain] = [await session(reference.kubeconfig), await session(kube.kubeconfig)];
    expect(onBrain).toEqual(onEtcd);
    expect((onBrain.list as unknown[]).length).toBe(20);
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
