// kube-apiserver given every member of a replica set as its etcd servers,
// the leader killed with SIGKILL while objects are being created and
// `kubectl get -w` watches them: the watch must go on delivering every
// object created after the kill, and the apiserver must not relist (no watch
// cache is initialised again: neither the metric nor its log shows it),
// because every member serves the watch history. The apiserver spreads its
// watches over the members, so after the leader each other member is killed
// in turn (each started again before the next): every watch of the
// apiserver, the configmaps one included, has to move to another member once.
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync, statSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { httpsGet, kubectlOn, startBrainReplicaSet, startKubeApiserver, toolPath, waitFor, type BrainReplicaSet, type KubeApiserver } from "@wharf/testkit";

let set: BrainReplicaSet;
let kube: KubeApiserver;

beforeAll(async () => {
  set = await startBrainReplicaSet({ replicas: 3, leaseTtl: "3s" });
  kube = await startKubeApiserver({ etcdServers: set.endpoints });
});
afterAll(async () => {
  await kube?.stop();
  await set?.stop();
});

/** apiserver_watch_cache_initializations_total, by resource ("group/resource"). */
async function cacheInitializations(): Promise<Record<string, number>> {
  const { status, body } = await httpsGet(`${kube.url}/metrics`, kube.pki.ca.certFile, kube.pki.admin);
  expect(status).toBe(200);
  const counts: Record<string, number> = {};
  for (const [, group, resource, value] of body.matchAll(/^apiserver_watch_cache_initializations_total\{group="([^"]*)",resource="([^"]*)"\} (\d+)$/gm)) {
    counts[`${group}/${resource}`] = Number(value);
  }
  return counts;
}

/** The apiserver's log lines (from byte `from`) that tell a cacher was (re)initialised. */
function cacheInitLines(from: number): string[] {
  const log = readFileSync(kube.process.logFile).subarray(from).toString();
  return log.split("\n").filter((line) => /"cacher initialized"|unexpected ListAndWatch error/.test(line));
}

/** Watchers each member serves. */
function watchersPerMember(): Promise<number[]> {
  return Promise.all(
    set.members.map(async (member) => {
      const text = await (await fetch(`${member.metricsAddress}/metrics`)).text();
      return Number(/^etcd_debugging_mvcc_watcher_total (\d+)$/m.exec(text)?.[1] ?? 0);
    }),
  );
}

/** Creates a ConfigMap, trying again while the store fails over; an AlreadyExists means an earlier try took effect. */
async function createConfigMap(kubectl: (...args: string[]) => Promise<string>, name: string): Promise<number> {
  const started = Date.now();
  let tries = 0;
  await waitFor(
    async () => {
      tries++;
      try {
        await kubectl("-n", "failover", "create", "configmap", name, `--from-literal=n=${name}`, "--request-timeout=10s");
        return true;
      } catch (error) {
        if (/AlreadyExists/.test((error as Error).message)) return true;
        throw error;
      }
    },
    30_000,
    `ConfigMap ${name} to be created`,
    100,
  );
  return tries > 1 ? Date.now() - started : 0;
}

describe("kube-apiserver on a replica set losing its leader", () => {
  it("keeps a kubectl watch delivering and does not relist", async () => {
    const kubectl = kubectlOn(kube.kubeconfig);
    await kubectl("create", "namespace", "failover");
    for (let i = 0; i < 5; i++) await createConfigMap(kubectl, `before-${i}`);
    let watch: ChildProcess | undefined;
    let output = "";
    try {
      watch = spawn(toolPath("kubectl"), ["--kubeconfig", kube.kubeconfig, "-n", "failover", "get", "configmaps", "--watch", "-o", "name"]);
      watch.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
      watch.stderr!.on("data", (chunk: Buffer) => (output += `[stderr] ${chunk.toString()}`));
      await waitFor(async () => output.includes("configmap/before-4"), 20_000, () => `the watch to list what exists (saw: ${output})`);
      await createConfigMap(kubectl, "before-watched");
      await waitFor(async () => output.includes("configmap/before-watched"), 20_000, () => `the watch to deliver a create (saw: ${output})`);

      // The metric and the log line are there to be counted: every cacher was initialised once at start.
      const initializations = await cacheInitializations();
      expect(initializations["/configmaps"], "configmaps cacher initialisations before the kill").toBeGreaterThanOrEqual(1);
      expect(cacheInitLines(0).filter((line) => line.includes('resource="configmaps"')).length, "the log line of the configmaps cacher's initialisation").toBeGreaterThanOrEqual(1);
      const logFrom = statSync(kube.process.logFile).size;

      const names: string[] = [];
      const retried: string[] = [];
      /** Kills a member with SIGKILL, creates ConfigMaps, and waits for the watch to deliver them; returns how long the creates took. */
      const killAndCreate = async (victim: number, round: string): Promise<number> => {
        const killedAt = Date.now();
        await set.kill(victim, "SIGKILL");
        const created = Array.from({ length: 10 }, (_, i) => `${round}-${String(i).padStart(2, "0")}`);
        for (const name of created) {
          const retriedFor = await createConfigMap(kubectl, name);
          if (retriedFor > 0) retried.push(`${name} ${retriedFor} ms`);
        }
        const took = Date.now() - killedAt;
        names.push(...created);
        await waitFor(
          async () => names.every((name) => output.includes(`configmap/${name}\n`)),
          30_000,
          () => `the watch to deliver every ConfigMap created after killing ${set.members[victim]!.name} (missing ${names.filter((name) => !output.includes(`configmap/${name}\n`)).join(", ")}; saw: ${output})`,
        );
        await set.restart(victim);
        return took;
      };

      const watchers = await watchersPerMember();
      const leader = await set.leaderIndex();
      const rounds = [`leader ${set.members[leader]!.name}: ${await killAndCreate(leader, "after-leader")} ms`];
      for (const [index, member] of set.members.entries()) {
        if (index !== leader) rounds.push(`${member.name}: ${await killAndCreate(index, `after-${member.name}`)} ms`);
      }
      console.log(`kube failover: watchers per member before ${watchers.join("/")}; 10 ConfigMaps created after killing ${rounds.join(", then ")} (retried: ${retried.join(", ") || "none"})`);
      expect(watch.exitCode, `the watch is still running (saw: ${output})`).toBeNull();
      expect(output).not.toContain("[stderr]");
      // Each object once: nothing replayed by a relist.
      for (const name of names) expect(output.split("\n").filter((line) => line === `configmap/${name}`).length, name).toBe(1);

      expect(await cacheInitializations(), "watch cache initialisations after the kills").toEqual(initializations);
      expect(cacheInitLines(logFrom)).toEqual([]);
      expect((await kubectl("get", "--raw", "/readyz")).trim()).toBe("ok");
    } finally {
      watch?.kill();
    }
  }, 180_000);
});
