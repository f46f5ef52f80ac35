// The gateway in real Envoy (the control plane's resources as one static
// config, see startGatewayEnvoy) in front of real kube-apiservers: pool-a
// has two, pool-b one, all on the reference etcd under their own prefix and
// one PKI.
import { execFile, spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { encodeGatewayConfig, gatewayHost, request, type GatewayConfigInit } from "../filters/src/gateway/harness.js";
import { wasmPath } from "@wharf/filters";
import {
  createClusterPki,
  httpsGet,
  kubectlOn,
  issueCertificate,
  makeWorkDir,
  removeWorkDir,
  startGatewayEnvoy,
  startKubeApiserver,
  toolPath,
  writeKubeconfig,
  type ClusterPki,
  type GatewayEnvoy,
  type KeyPair,
  type KubeApiserver,
} from "@wharf/testkit";

const run = promisify(execFile);

let dir: string;
let pki: ClusterPki;
let apiservers: KubeApiserver[] = [];
let envoy: GatewayEnvoy;
let gatewayUrl: string;
let alice: KeyPair;
let kubeconfig: string;

const gatewayConfig: GatewayConfigInit = {
  flowControlSchemas: [{ name: "tight", qps: 0.001, burst: 2 }],
  policies: [
    { name: "no-secrets", rules: [{ resources: ["secrets"], userGroups: ["devs"] }], action: { target: { case: "deny", value: { message: "devs may not touch secrets" } } } },
    { name: "limited", rules: [{ namespaces: ["limited"] }], action: { target: { case: "upstream", value: "pool-a" }, flowControl: "tight" } },
    { name: "services", rules: [{ resources: ["services"] }], action: { target: { case: "upstream", value: "pool-b" } } },
  ],
  defaultAction: { target: { case: "upstream", value: "pool-a" } },
  tokenReview: { cluster: "pool-a", authority: "localhost", reviewer: "wharf:gateway" },
};

beforeAll(async () => {
  dir = await makeWorkDir("gateway");
  pki = await createClusterPki(dir);
  const etcd = inject("referenceEtcd");
  apiservers = await Promise.all(
    [1, 2, 3].map(() => startKubeApiserver({ etcdServers: [etcd.endpoint], pki, extraArgs: ["--etcd-prefix=/gateway-test"] })),
  );
  const serving = await issueCertificate(dir, pki.ca, { name: "envoy", commonName: "envoy", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], usage: "server" });
  alice = await issueCertificate(dir, pki.ca, { name: "alice", commonName: "alice", organizations: ["system:masters", "devs"], usage: "client" });
  const config = encodeGatewayConfig(gatewayConfig);
  envoy = await startGatewayEnvoy({
    pki,
    serving,
    wasmFile: wasmPath("gateway"),
    gatewayConfig: config,
    poolA: apiservers.slice(0, 2).map((server) => server.url),
    poolB: apiservers.slice(2).map((server) => server.url),
  });
  gatewayUrl = envoy.url;
  kubeconfig = await writeKubeconfig(join(dir, "alice.kubeconfig"), gatewayUrl, pki.ca.certFile, alice);
  // Until the health checks have seen every apiserver ready (in the pools' HTTP/2 clusters; their upgrade twins are upgrades.test.ts's).
  const deadline = Date.now() + 30_000;
  for (;;) {
    const clusters = await (await fetch(`${envoy.adminUrl}/clusters`)).text();
    const healthy = clusters.split("\n").filter((line) => /^pool-[ab]::/.test(line) && line.endsWith("::health_flags::healthy")).length;
    if (healthy === 3) break;
    if (Date.now() > deadline) throw new Error(`Envoy's health checks never saw 3 healthy apiservers:\n${clusters}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}, 180_000);

afterAll(async () => {
  await envoy?.stop();
  await Promise.all(apiservers.map((server) => server.stop()));
  if (dir) await removeWorkDir(dir);
});

const kubectl = (...args: string[]) => kubectlOn(kubeconfig)(...args);
const get = (path: string) => httpsGet(`${gatewayUrl}${path}`, pki.ca.certFile, alice);

async function servedCounts(): Promise<Map<string, number>> {
  const clusters = await (await fetch(`${envoy.adminUrl}/clusters`)).text();
  const counts = new Map<string, number>();
  for (const line of clusters.split("\n")) {
    const match = /^(pool-[ab])::(127\.0\.0\.1:\d+)::rq_total::(\d+)$/.exec(line);
    if (match) counts.set(`${match[1]} ${match[2]}`, Number(match[3]));
  }
  return counts;
}

describe("the gateway filter in Envoy in front of kube-apiservers", () => {
  it("passes kubectl through: /readyz and a configmap round trip", async () => {
    expect((await kubectl("get", "--raw", "/readyz")).trim()).toBe("ok");
    await kubectl("create", "configmap", "through-envoy", "--from-literal=k=v");
    expect(await kubectl("get", "configmap", "through-envoy", "-o", "jsonpath={.data.k}")).toBe("v");
  });

  it("forwards the client certificate's identity: auth whoami names the client", async () => {
    const review = JSON.parse(await kubectl("auth", "whoami", "-o", "json")) as { status: { userInfo: { username: string; groups: string[] } } };
    expect(review.status.userInfo.username).toBe("alice");
    expect(review.status.userInfo.groups).toEqual(expect.arrayContaining(["system:masters", "devs", "system:authenticated"]));
  });

  it("verifies a service account's bearer token with a TokenReview", async () => {
    const admin = (...args: string[]) => run(toolPath("kubectl"), ["--kubeconfig", apiservers[0]!.kubeconfig, ...args]);
    await admin("create", "clusterrolebinding", "wharf-gateway-token-reviews", "--clusterrole=system:auth-delegator", "--user=wharf:gateway");
    await admin("create", "serviceaccount", "robot");
    const token = (await admin("create", "token", "robot")).stdout.trim();
    const asRobot = (...args: string[]) =>
      run(toolPath("kubectl"), ["--kubeconfig", "/dev/null", `--server=${gatewayUrl}`, `--certificate-authority=${pki.ca.certFile}`, `--token=${token}`, ...args]);
    const whoami = await asRobot("auth", "whoami", "-o", "json");
    const review = JSON.parse(whoami.stdout) as { status: { userInfo: { username: string } } };
    expect(review.status.userInfo.username).toBe("system:serviceaccount:default:robot");
    const rejected = await run(toolPath("kubectl"), ["--kubeconfig", "/dev/null", `--server=${gatewayUrl}`, `--certificate-authority=${pki.ca.certFile}`, "--token=not-a-token", "get", "pods"]).catch(
      (error: { stderr: string }) => error.stderr,
    );
    expect(rejected).toMatch(/Unauthorized/);
  });

  it("routes by the filter's decision: Envoy picks the route after the filter ran", async () => {
    const services = await get("/api/v1/namespaces/default/services");
    expect(services.status).toBe(200);
    expect(services.headers["x-wharf-served-by"]).toBe("pool-b");
    const configmaps = await get("/api/v1/namespaces/default/configmaps");
    expect(configmaps.headers["x-wharf-served-by"]).toBe("pool-a");
  });

  it("denies by policy with 403 and a Status body kubectl understands", async () => {
    const denied = await get("/api/v1/namespaces/default/secrets");
    expect(denied.status).toBe(403);
    expect(JSON.parse(denied.body)).toMatchObject({ kind: "Status", reason: "Forbidden", code: 403, message: "devs may not touch secrets" });
    const failure = await kubectl("get", "secrets").catch((error: Error) => error.message);
    expect(failure).toContain("devs may not touch secrets");
  });

  it("limits by flow-control schema with 429 and Retry-After", async () => {
    const statuses: number[] = [];
    let last;
    for (let i = 0; i < 4; i++) {
      last = await get("/api/v1/namespaces/limited/configmaps");
      statuses.push(last.status);
    }
    expect(statuses.slice(0, 2).every((status) => status === 200)).toBe(true);
    expect(statuses.slice(2)).toEqual([429, 429]);
    expect(last!.headers["retry-after"]).toMatch(/^\d+$/);
    expect(JSON.parse(last!.body)).toMatchObject({ reason: "TooManyRequests", code: 429 });
  });

  it("balances requests, not connections, across a pool", async () => {
    const before = await servedCounts();
    for (let i = 0; i < 60; i++) await get("/api/v1/namespaces/default/configmaps/through-envoy");
    const after = await servedCounts();
    const served = [...after.entries()].filter(([host]) => host.startsWith("pool-a")).map(([host, total]) => total - (before.get(host) ?? 0));
    expect(served.length).toBe(2);
    expect(served.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(60);
    // One HTTP/2 connection from this client; both apiservers still get a fair share.
    for (const count of served) expect(count).toBeGreaterThanOrEqual(15);
  });

  it("keeps serving every request while one apiserver of the pool restarts", async () => {
    const victim = apiservers[1]!;
    const port = Number(new URL(victim.url).port);
    const statuses: number[] = [];
    const failures: string[] = [];
    let running = true;
    const load = (async () => {
      while (running) {
        const response = await get("/api/v1/namespaces/default/configmaps");
        statuses.push(response.status);
        if (response.status !== 200) failures.push(`${response.status} ${response.body.slice(0, 200)}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    try {
      await victim.process.stop();
      await new Promise((resolve) => setTimeout(resolve, 3000));
      apiservers[1] = await startKubeApiserver({ etcdServers: [inject("referenceEtcd").endpoint], pki, port, extraArgs: ["--etcd-prefix=/gateway-test"] });
      // Until Envoy's health check takes it back.
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline) {
        const clusters = await (await fetch(`${envoy.adminUrl}/clusters`)).text();
        if (clusters.includes(`pool-a::127.0.0.1:${port}::health_flags::healthy`)) break;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    } finally {
      running = false;
      await load;
    }
    expect(statuses.length).toBeGreaterThan(50);
    // Failed connects are retried on the other apiserver: no request fails.
    expect(failures).toEqual([]);
    const before = await servedCounts();
    for (let i = 0; i < 40; i++) await get("/api/v1/namespaces/default/configmaps");
    const after = await servedCounts();
    expect((after.get(`pool-a 127.0.0.1:${port}`) ?? 0) - (before.get(`pool-a 127.0.0.1:${port}`) ?? 0)).toBeGreaterThanOrEqual(8);
  }, 60_000);

  it("keeps a watch open past Envoy's default 15 s route timeout", async () => {
    const watcher = spawn(toolPath("kubectl"), ["--kubeconfig", kubeconfig, "get", "configmaps", "--watch", "-o", "name"]);
    let output = "";
    watcher.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    try {
      await new Promise((resolve) => setTimeout(resolve, 17_000));
      await kubectl("create", "configmap", "after-seventeen-seconds");
      const deadline = Date.now() + 10_000;
      while (!output.includes("after-seventeen-seconds") && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
      expect(output).toContain("configmap/after-seventeen-seconds");
      expect(watcher.exitCode).toBeNull();
    } finally {
      watcher.kill();
    }
  }, 40_000);

  it("decides exactly as the test host does for the same requests", async () => {
    const host = await gatewayHost(gatewayConfig, { clientCert: await readFile(alice.certFile, "utf8") });
    const paths = ["/api/v1/namespaces/kube-system/services", "/api/v1/namespaces/default/secrets/x", "/api/v1/nodes", "/apis/apps/v1/deployments", "/version"];
    for (const path of paths) {
      const inEnvoy = await get(path);
      const { stream } = request(host, "GET", path);
      const inHost = stream.localResponse
        ? { status: stream.localResponse.status, body: stream.localResponse.body }
        : { pool: stream.header("x-wharf-upstream") };
      // Envoy adds the route's response headers to local replies too, so the
      // status tells an upstream answer from the filter's own.
      const seen = inEnvoy.status === 200 ? { pool: inEnvoy.headers["x-wharf-served-by"] } : { status: inEnvoy.status, body: inEnvoy.body };
      expect(seen, path).toEqual(inHost);
      stream.finish();
    }
  });

  it("shows the filter's metrics in Envoy's stats", async () => {
    const stats = await (await fetch(`${envoy.adminUrl}/stats?filter=wharf_gateway`)).text();
    expect(stats).toMatch(/wharf_gateway\.requests\.policy\.services\.verb\.list\.resource\.services: [1-9]/);
    expect(stats).toMatch(/wharf_gateway\.rejections\.reason\.denied: [1-9]/);
    expect(stats).toMatch(/wharf_gateway\.rejections\.reason\.rate: [1-9]/);
  });
});
