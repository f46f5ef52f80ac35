// Envoy booted from envoy/xds-bootstrap.yaml gets everything from our ADS
// server, and takes changes live; a configuration it rejects is NACKed and
// the previous one keeps serving.
import { execFile } from "node:child_process";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { X509Certificate } from "node:crypto";
import { connect as tlsConnect } from "node:tls";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { wasmPath } from "@wharf/filters";
import {
  createClusterPki,
  freePort,
  httpsGet,
  issueCertificate,
  makeWorkDir,
  removeWorkDir,
  startXdsEnvoy,
  startKubeApiserver,
  toolPath,
  writeKubeconfig,
  type ClusterPki,
  type Envoy,
  type KeyPair,
  type KubeApiserver,
  waitFor,
} from "@wharf/testkit";
import { encodeGatewayConfig, type GatewayConfigInit } from "../../../filters/src/gateway/harness.js";
import { startControlPlane, type RunningControlPlane } from "../control-plane.js";
import { writeCredentials } from "../credentials/node-ca.js";
import { gatewayResources, type SingleClusterDeployment } from "../resources/gateway-resources.js";
import { Snapshot, SnapshotError } from "./snapshot.js";

const run = promisify(execFile);

let dir: string;
let pki: ClusterPki;
let kube: KubeApiserver;
let controlPlane: RunningControlPlane;
let client: KeyPair;

const allowAll: GatewayConfigInit = { defaultAction: { target: { case: "upstream", value: "main" } } };
const denyConfigMaps: GatewayConfigInit = {
  policies: [{ name: "no-configmaps", rules: [{ resources: ["configmaps"] }], action: { target: { case: "deny", value: { message: "configmaps are closed" } } } }],
  defaultAction: { target: { case: "upstream", value: "main" } },
};

/** The serial number of the certificate a new TLS connection to `url` is served. */
function servedCertificateSerial(url: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: hostname, port: Number(port), rejectUnauthorized: false, ALPNProtocols: ["h2"] }, () => {
      const serial = socket.getPeerCertificate().serialNumber.toLowerCase();
      socket.end();
      resolve(serial);
    });
    socket.on("error", reject);
  });
}

let serving: KeyPair;
const pem = (file: string) => readFile(file, "utf8");

beforeAll(async () => {
  dir = await makeWorkDir("xds");
  pki = await createClusterPki(dir);
  kube = await startKubeApiserver({ etcdServers: [inject("referenceEtcd").endpoint], pki, extraArgs: ["--etcd-prefix=/xds-test"] });
  serving = await issueCertificate(dir, pki.ca, { name: "envoy", commonName: "envoy", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], usage: "server" });
  client = await issueCertificate(dir, pki.ca, { name: "carol", commonName: "carol", organizations: ["system:masters"], usage: "client" });
  controlPlane = await startControlPlane({ stateDir: join(dir, "control-plane"), xds: { host: "127.0.0.1", port: 0 } });
}, 120_000);

async function deploymentOn(listenPort: number): Promise<SingleClusterDeployment> {
  return {
    listenPort,
    servingCert: await pem(serving.certFile),
    servingKey: await pem(serving.keyFile),
    clientCa: await pem(pki.ca.certFile),
    upstreamCa: await pem(pki.ca.certFile),
    frontProxyCert: await pem(pki.frontProxyClient.certFile),
    frontProxyKey: await pem(pki.frontProxyClient.keyFile),
    wasmModule: readFileSync(wasmPath("gateway")),
    gatewayConfig: encodeGatewayConfig(allowAll),
    pools: [{ name: "main", endpoints: [{ host: "127.0.0.1", port: Number(new URL(kube.url).port) }] }],
    defaultPool: "main",
  };
}

/** An Envoy for one protocol variant, booted from the xDS bootstrap and its gateway credentials alone. */
async function startSidecar(nodeId: string, apiType: "GRPC" | "DELTA_GRPC", deployment: SingleClusterDeployment): Promise<{ envoy: Envoy; url: string }> {
  controlPlane.cache.setNodeSnapshot(nodeId, Snapshot.build("1", gatewayResources(deployment)));
  const credentialsDir = join(dir, `credentials-${nodeId}`);
  await writeCredentials(credentialsDir, controlPlane.ca.issueNode({ name: nodeId, role: "gateway" }));
  const envoy = await startXdsEnvoy({ nodeId, xdsAddress: controlPlane.xdsAddress, credentialsDir, apiType });
  const url = `https://127.0.0.1:${deployment.listenPort}`;
  await waitFor(async () => (await httpsGet(`${url}/readyz`, pki.ca.certFile, client)).status === 200, 30_000, "the gateway listener from xDS");
  return { envoy, url };
}

afterAll(async () => {
  await controlPlane?.stop();
  await kube?.stop();
  if (dir) await removeWorkDir(dir);
});

describe.each([
  ["state of the world", "GRPC" as const],
  ["delta", "DELTA_GRPC" as const],
])("xDS (ADS, %s) to a real Envoy", (variant, apiType) => {
  const nodeId = `gateway-${apiType.toLowerCase().replace("_", "-")}`;
  let envoy: Envoy;
  let gatewayUrl: string;
  let deployment: SingleClusterDeployment;
  const uptime = async () =>
    Number((JSON.parse(await (await fetch(`${envoy.adminUrl}/server_info`)).text()) as { uptime_current_epoch: string }).uptime_current_epoch.replace("s", ""));

  beforeAll(async () => {
    deployment = await deploymentOn(await freePort());
    ({ envoy, url: gatewayUrl } = await startSidecar(nodeId, apiType, deployment));
  }, 60_000);
  afterAll(async () => {
    await envoy?.stop();
  });

  it("boots Envoy from the bootstrap alone: kubectl reaches kube-apiserver through it", async () => {
    const kubeconfig = await writeKubeconfig(join(dir, `carol-${apiType}.kubeconfig`), gatewayUrl, pki.ca.certFile, client);
    const { stdout } = await run(toolPath("kubectl"), ["--kubeconfig", kubeconfig, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]);
    expect(stdout).toBe("carol");
    expect(controlPlane.cache.nodeStatus(nodeId)?.acked).toMatchObject({ secret: "1", cluster: "1", endpoint: "1", extension: "1", listener: "1", route: "1" });
  });

  it("applies a new filter configuration live, within a second, without restarting Envoy", async () => {
    const pid = envoy.process.child.pid;
    const before = await uptime();
    expect((await httpsGet(`${gatewayUrl}/api/v1/namespaces/default/configmaps`, pki.ca.certFile, client)).status).toBe(200);
    controlPlane.cache.setNodeSnapshot(nodeId, Snapshot.build("2", gatewayResources({ ...deployment, gatewayConfig: encodeGatewayConfig(denyConfigMaps) })));
    const took = await waitFor(async () => (await httpsGet(`${gatewayUrl}/api/v1/namespaces/default/configmaps`, pki.ca.certFile, client)).status === 403, 5000, "the deny policy");
    expect(took).toBeLessThan(1000);
    expect(envoy.process.child.pid).toBe(pid);
    expect(await uptime()).toBeGreaterThanOrEqual(before);
  });

  it("changes pools, limits and certificates live while a kubectl watch stays open", async () => {
    const pid = envoy.process.child.pid;
    const kubeconfig = await writeKubeconfig(join(dir, `watcher-${apiType}.kubeconfig`), gatewayUrl, pki.ca.certFile, client);
    const watcher = spawn(toolPath("kubectl"), ["--kubeconfig", kubeconfig, "get", "secrets", "--watch", "-o", "name"]);
    let watched = "";
    watcher.stdout.on("data", (chunk: Buffer) => (watched += chunk.toString()));
    const get = (path: string) => httpsGet(`${gatewayUrl}${path}`, pki.ca.certFile, client);
    let version = 10;
    const push = (next: SingleClusterDeployment) => {
      deployment = next;
      controlPlane.cache.setNodeSnapshot(nodeId, Snapshot.build(String(++version), gatewayResources(next)));
    };
    try {
      await new Promise((resolve) => setTimeout(resolve, 500));
      // A new pool, and services moved to it.
      const endpoints = deployment.pools[0]!.endpoints;
      push({
        ...deployment,
        pools: [...deployment.pools, { name: "second", endpoints }],
        gatewayConfig: encodeGatewayConfig({
          policies: [{ name: "services", rules: [{ resources: ["services"] }], action: { target: { case: "upstream", value: "second" } } }],
          defaultAction: { target: { case: "upstream", value: "main" } },
        }),
      });
      expect(await waitFor(async () => (await get("/api/v1/namespaces/default/services")).headers["x-wharf-served-by"] === "second", 5000, "the new pool")).toBeLessThan(1000);

      // A rate limit on configmaps.
      push({
        ...deployment,
        gatewayConfig: encodeGatewayConfig({
          flowControlSchemas: [{ name: "one", qps: 0.001, burst: 1 }],
          policies: [{ name: "configmaps", rules: [{ resources: ["configmaps"] }], action: { target: { case: "upstream", value: "main" }, flowControl: "one" } }],
          defaultAction: { target: { case: "upstream", value: "main" } },
        }),
      });
      expect(await waitFor(async () => (await get("/api/v1/namespaces/default/configmaps")).status === 429, 5000, "the rate limit")).toBeLessThan(1000);

      // A new serving certificate, and new upstream client credentials.
      const rotated = await issueCertificate(dir, pki.ca, { name: `envoy-rotated-${apiType}`, commonName: "envoy", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], usage: "server" });
      const proxy = await issueCertificate(dir, pki.frontProxyCa, { name: `front-proxy-rotated-${apiType}`, commonName: "front-proxy-client", usage: "client" });
      const serial = (file: string) => new X509Certificate(readFileSync(file)).serialNumber.toLowerCase();
      push({
        ...deployment,
        servingCert: await pem(rotated.certFile),
        servingKey: await pem(rotated.keyFile),
        frontProxyCert: await pem(proxy.certFile),
        frontProxyKey: await pem(proxy.keyFile),
      });
      expect(await waitFor(async () => (await servedCertificateSerial(gatewayUrl)) === serial(rotated.certFile), 5000, "the new serving certificate")).toBeLessThan(1000);
      expect(await waitFor(async () => (await (await fetch(`${envoy.adminUrl}/certs`)).text()).toLowerCase().includes(serial(proxy.certFile)), 5000, "the new client certificate")).toBeLessThan(1000);
      expect((await get("/api/v1/namespaces/default/services")).status).toBe(200);

      // The watch opened before all this is still there and still delivers.
      await run(toolPath("kubectl"), ["--kubeconfig", kubeconfig, "create", "secret", "generic", `after-changes-${apiType.toLowerCase().replace("_", "-")}`]);
      await waitFor(async () => watched.includes(`after-changes-${apiType.toLowerCase().replace("_", "-")}`), 5000, "the watch event");
      expect(watcher.exitCode).toBeNull();
      expect(envoy.process.child.pid).toBe(pid);
    } finally {
      watcher.kill();
    }
  });

  it("keeps the last good version when Envoy rejects one, and records the NACK", async () => {
    const ackedBefore = controlPlane.cache.nodeStatus(nodeId)?.acked.cluster;
    const resources = gatewayResources({ ...deployment, gatewayConfig: encodeGatewayConfig(denyConfigMaps) });
    // Valid protobuf, but Envoy's own validation refuses a negative timeout.
    (resources.cluster![0] as Record<string, unknown>).connect_timeout = "-1s";
    controlPlane.cache.setNodeSnapshot(nodeId, Snapshot.build("3", resources));
    await waitFor(async () => controlPlane.cache.nodeStatus(nodeId)?.lastNack?.version === "3", 5000, "the NACK");
    expect(controlPlane.cache.nodeStatus(nodeId)?.lastNack?.message).toMatch(/connect_timeout|Duration|value must be greater than/i);
    expect(ackedBefore).toBeDefined();
    expect(controlPlane.cache.nodeStatus(nodeId)?.acked.cluster).toBe(ackedBefore);
    expect(await controlPlane.metrics.registry.metrics()).toMatch(/^wharf_xds_nacks_total\{kind="cluster"\} [1-9]/m);
    expect((await httpsGet(`${gatewayUrl}/api/v1/namespaces/default/configmaps`, pki.ca.certFile, client)).status).toBe(403);
  });
});

describe("snapshots", () => {
  it("refuses an inconsistent snapshot before anything reaches Envoy", async () => {
    const resources = gatewayResources(await deploymentOn(1));
    resources.endpoint = [];
    expect(() => Snapshot.build("4", resources)).toThrow(SnapshotError);
    expect(() => Snapshot.build("4", resources)).toThrow(/cluster main refers to endpoint main, which the snapshot lacks/);
  });
});
