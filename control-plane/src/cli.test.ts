// The wharf command end to end: a YAML config file, the control plane as
// its own process, Envoy from `wharf envoy bootstrap`, a kube-apiserver.
import { execFile } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { parse, stringify } from "yaml";
import {
  createClusterPki,
  freePort,
  httpsGet,
  issueCertificate,
  makeWorkDir,
  removeWorkDir,
  repoRoot,
  startEnvoy,
  startKubeApiserver,
  startProcess,
  toolPath,
  waitUntilReady,
  type ClusterPki,
  type Envoy,
  type KeyPair,
  type KubeApiserver,
  type RunningProcess,
  waitFor,
} from "@wharf/testkit";

const run = promisify(execFile);
const wharf = join(repoRoot, "control-plane", "dist", "cli.js");

let dir: string;
let pki: ClusterPki;
let kube: KubeApiserver;
let controlPlane: RunningProcess;
let envoy: Envoy;
let client: KeyPair;
let gatewayUrl: string;
let configFile: string;
let serving: KeyPair;
let listenPort: number;
let adminUrl: string;
let tokenFile: string;
let xdsAddress: string;
let stateDir: string;

/** A bootstrap for a gateway node, with credentials from `wharf envoy credentials`. */
async function gatewayBootstrap(node: string, adminPort: number, ...flags: string[]): Promise<string> {
  const credentials = join(dir, `credentials-${node}`);
  await run(process.execPath, [wharf, "envoy", "credentials", "--role", "gateway", "--node", node, "--out", credentials, "--state-dir", stateDir]);
  const args = ["envoy", "bootstrap", "--node", node, "--xds", xdsAddress, "--xds-server-name", "localhost", "--credentials", credentials, "--admin-port", String(adminPort)];
  return (await run(process.execPath, [wharf, ...args, ...flags])).stdout;
}

let starts = 0;
function startControlPlane(): RunningProcess {
  return startProcess({
    name: "wharf control-plane",
    command: process.execPath,
    args: [wharf, "control-plane", "--config", configFile, "--state-dir", stateDir, "--xds-listen", xdsAddress, "--admin-token-file", tokenFile, "--admin-listen", adminUrl.replace("http://", "")],
    // A log per start, so a readiness check never reads the previous run's lines.
    logFile: join(dir, `control-plane-${++starts}.log`),
  });
}

function config(policies: unknown[], pools = ["main"]): string {
  return stringify({
    listener: { port: listenPort, cert_file: serving.certFile, key_file: serving.keyFile, client_ca_file: pki.ca.certFile },
    upstream_cluster: {
      pools: pools.map((name) => ({ name, servers: [`127.0.0.1:${new URL(kube.url).port}`] })),
      default_pool: "main",
      ca_file: pki.ca.certFile,
      client_cert_file: pki.frontProxyClient.certFile,
      client_key_file: pki.frontProxyClient.keyFile,
      dispatch_policies: policies,
    },
  });
}

beforeAll(async () => {
  dir = await makeWorkDir("wharf-cli");
  pki = await createClusterPki(dir);
  kube = await startKubeApiserver({ etcdServers: [inject("referenceEtcd").endpoint], pki, extraArgs: ["--etcd-prefix=/wharf-cli-test"] });
  serving = await issueCertificate(dir, pki.ca, { name: "envoy", commonName: "envoy", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], usage: "server" });
  client = await issueCertificate(dir, pki.ca, { name: "dave", commonName: "dave", organizations: ["system:masters"], usage: "client" });
  listenPort = await freePort();
  configFile = join(dir, "wharf.yaml");
  await writeFile(configFile, config([]));
  const xdsPort = await freePort();
  adminUrl = `http://127.0.0.1:${await freePort()}`;
  tokenFile = join(dir, "admin-token");
  await writeFile(tokenFile, "a-test-admin-token-0123456789\n", { mode: 0o600 });
  xdsAddress = `127.0.0.1:${xdsPort}`;
  stateDir = join(dir, "control-plane-state");
  controlPlane = startControlPlane();
  await waitUntilReady(controlPlane, async () => controlPlane.logTail(50).includes("control plane serving ADS"), 20_000);
  const adminPort = await freePort();
  const bootstrap = await gatewayBootstrap("sidecar-1", adminPort);
  envoy = await startEnvoy({ bootstrap, adminPort });
  gatewayUrl = `https://127.0.0.1:${listenPort}`;
  await waitFor(async () => (await httpsGet(`${gatewayUrl}/readyz`, pki.ca.certFile, client)).status === 200, 30_000, "the gateway");
}, 120_000);

afterAll(async () => {
  await envoy?.stop();
  await controlPlane?.stop();
  await kube?.stop();
  if (dir) await removeWorkDir(dir);
});

describe("wharf control-plane with a YAML file", () => {
  const get = (path: string) => httpsGet(`${gatewayUrl}${path}`, pki.ca.certFile, client);

  it("serves Envoy from the file: requests pass through", async () => {
    expect((await get("/api/v1/namespaces/default/configmaps")).status).toBe(200);
  });

  it("pushes every valid change to the file", async () => {
    await writeFile(configFile, config([{ name: "closed", rules: [{ resources: ["configmaps"] }], action: { deny: { message: "closed by file" } } }]));
    await waitFor(async () => (await get("/api/v1/namespaces/default/configmaps")).status === 403, 5000, "the deny rule");
    expect(JSON.parse((await get("/api/v1/namespaces/default/configmaps")).body)).toMatchObject({ message: "closed by file" });
  });

  it("refuses an invalid file with the field named, and keeps the last good config live", async () => {
    await writeFile(configFile, config([{ name: "lost", rules: [{ verbs: ["get"] }], action: { upstream: "nowhere" } }]));
    await waitFor(
      async () => controlPlane.logTail(20).includes('upstream_cluster.dispatch_policies[0].action.upstream: names no pool (\\"nowhere\\")'),
      5000,
      "the refusal in the log",
    );
    expect((await get("/api/v1/namespaces/default/configmaps")).status).toBe(403);
  });

  it("reports connected Envoys and their acknowledged versions through the authenticated admin API", async () => {
    const { stdout } = await run(process.execPath, [wharf, "status", "--admin", adminUrl, "--token-file", tokenFile, "--json"]);
    const status = JSON.parse(stdout) as { configVersion: string; nodes: Array<{ id: string; connected: boolean; ackedVersions: Record<string, string> }> };
    expect(status.nodes).toEqual([expect.objectContaining({ id: "sidecar-1", connected: true })]);
    expect(status.nodes[0]!.ackedVersions.extension).toBe(status.configVersion);
    await writeFile(join(dir, "wrong-token"), "not-the-admin-token-at-all");
    const refused = await run(process.execPath, [wharf, "status", "--admin", adminUrl, "--token-file", join(dir, "wrong-token")]).catch((error: { code: number; stderr: string }) => error);
    expect(refused).toMatchObject({ code: 1 });
    expect((refused as { stderr: string }).stderr).toMatch(/admin token/);
  });

  it("applies a config through the admin API: validated, served and written to the file", async () => {
    const next = join(dir, "next.yaml");
    await writeFile(next, config([]));
    const { stdout } = await run(process.execPath, [wharf, "config", "apply", "-f", next, "--admin", adminUrl, "--token-file", tokenFile]);
    expect(stdout).toMatch(/applied as version \d+/);
    await waitFor(async () => (await get("/api/v1/namespaces/default/configmaps")).status === 200, 5000, "the opened config");
    expect(await readFile(configFile, "utf8")).toBe(config([]));
    await writeFile(next, config([{ name: "lost", rules: [{}], action: { upstream: "nowhere" } }]));
    const refused = await run(process.execPath, [wharf, "config", "apply", "-f", next, "--admin", adminUrl, "--token-file", tokenFile]).catch((error: { code: number; stderr: string }) => error);
    expect(refused).toMatchObject({ code: 1 });
    expect((refused as { stderr: string }).stderr).toMatch(/dispatch_policies\[0\]\.action\.upstream: names no pool/);
    expect(await readFile(configFile, "utf8")).toBe(config([]));
  });

  it("exports metrics behind the admin token", async () => {
    const token = (await readFile(tokenFile, "utf8")).trim();
    expect((await fetch(`${adminUrl}/metrics`)).status).toBe(401);
    const text = await (await fetch(`${adminUrl}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();
    expect(text).toMatch(/^wharf_xds_connected_envoys 1$/m);
    expect(text).toMatch(/^wharf_xds_pushes_total\{kind="listener"\} [1-9]/m);
    expect(text).toMatch(/^wharf_config_version [1-9]/m);
  });

  it("gives an Envoy that connects later the current config, and Envoys resume after a control-plane restart", async () => {
    const statusOf = async () =>
      JSON.parse((await run(process.execPath, [wharf, "status", "--admin", adminUrl, "--token-file", tokenFile, "--json"])).stdout) as {
        configVersion: string;
        nodes: Array<{ id: string; connected: boolean; ackedVersions: Record<string, string> }>;
      };
    const adminPort = await freePort();
    const bootstrap = await gatewayBootstrap("sidecar-2", adminPort, "--delta");
    const second = await startEnvoy({ bootstrap, adminPort });
    try {
      await waitFor(async () => {
        const status = await statusOf();
        return status.nodes.some((node) => node.id === "sidecar-2" && node.ackedVersions.listener === status.configVersion);
      }, 10_000, "sidecar-2 to accept the current config");

      // Restart the control plane: both sidecars reconnect and keep serving.
      await controlPlane.stop();
      expect((await get("/api/v1/namespaces/default/configmaps")).status).toBe(200);
      controlPlane = startControlPlane();
      await waitUntilReady(controlPlane, async () => controlPlane.logTail(50).includes("admin API serving"), 20_000);
      await waitFor(async () => (await statusOf()).nodes.filter((node) => node.connected).length === 2, 15_000, "both sidecars to reconnect");
      expect((await get("/api/v1/namespaces/default/configmaps")).status).toBe(200);
    } finally {
      await second.stop();
    }
  }, 60_000);

  it("validates a file without serving it", async () => {
    await writeFile(join(dir, "bad.yaml"), config([]).replace("default_pool: main", "default_pool: main\n  surprise: true"));
    const failure = await run(process.execPath, [wharf, "config", "validate", "-f", join(dir, "bad.yaml")]).catch((error: { code: number; stderr: string }) => error);
    expect(failure).toMatchObject({ code: 1 });
    expect((failure as { stderr: string }).stderr).toMatch(/surprise/);
    await writeFile(join(dir, "good.yaml"), config([]));
    expect((await run(process.execPath, [wharf, "config", "validate", "-f", join(dir, "good.yaml")])).stdout).toContain("valid");
  });

  it("prints the same gateway as one static Envoy config, which Envoy accepts", async () => {
    await writeFile(join(dir, "static-source.yaml"), config([{ name: "closed", rules: [{ resources: ["secrets"] }], action: { deny: { message: "no" } } }]));
    const { stdout } = await run(process.execPath, [wharf, "envoy", "static", "-f", join(dir, "static-source.yaml"), "--admin-port", "19901"], { maxBuffer: 64 * 1024 * 1024 });
    const bootstrap = parse(stdout) as { static_resources: { clusters: Array<{ name: string; type: string }>; secrets: Array<{ name: string }> } };
    expect(bootstrap.static_resources.clusters.map((cluster) => [cluster.name, cluster.type])).toEqual([
      ["main", "STATIC"],
      ["main/upgrade", "STATIC"],
    ]);
    expect(bootstrap.static_resources.secrets.map((secret) => secret.name).sort()).toEqual(["client-ca", "front-proxy-client", "gateway-serving", "upstream-ca"]);
    expect(stdout).not.toMatch(/sds_config|config_discovery|\brds:/);
    await writeFile(join(dir, "static.yaml"), stdout);
    const validation = await run(toolPath("envoy"), ["--mode", "validate", "--config-path", join(dir, "static.yaml")]);
    expect(validation.stdout + validation.stderr).toMatch(/configuration '.*' OK/);
    const refused = await run(process.execPath, [wharf, "envoy", "static", "-f", join(dir, "bad.yaml")]).catch((error: { code: number; stderr: string }) => error);
    expect(refused).toMatchObject({ code: 1 });
  });
});

describe("wharf envoy ca / credentials", () => {
  it("makes a node CA once and issues a node's certificate from it, naming role and node", async () => {
    const state = join(dir, "ca-test");
    await run(process.execPath, [wharf, "envoy", "ca", "--state-dir", state]);
    const caBefore = await readFile(join(state, "node-ca.crt"), "utf8");
    await run(process.execPath, [wharf, "envoy", "ca", "--state-dir", state]);
    expect(await readFile(join(state, "node-ca.crt"), "utf8")).toBe(caBefore);
    expect((await stat(join(state, "node-ca.key"))).mode & 0o077).toBe(0);

    const out = join(dir, "issued");
    await run(process.execPath, [wharf, "envoy", "credentials", "--role", "client-sidecar", "--node", "pod-b", "--out", out, "--state-dir", state]);
    const cert = new X509Certificate(await readFile(join(out, "node.crt")));
    expect(cert.checkIssued(new X509Certificate(caBefore))).toBe(true);
    expect(cert.subjectAltName).toBe("URI:spiffe://wharf/client-sidecar/pod-b");
    expect((await stat(join(out, "node.key"))).mode & 0o077).toBe(0);
  });

  it.each([
    [["--role", "admin", "--node", "x"], /role "admin": want one of gateway, client-sidecar/],
    [["--role", "gateway", "--node", "a/b"], /node name "a\/b": want a DNS-1123 name/],
    [["--role", "gateway", "--node", "x", "--state-dir", "/nonexistent"], /no node CA in \/nonexistent/],
  ])("refuses %j with a clear error", async (args, message) => {
    const refused = await run(process.execPath, [wharf, "envoy", "credentials", "--out", join(dir, "refused"), "--state-dir", join(dir, "ca-test"), ...args]).catch((error: { code: number; stderr: string }) => error);
    expect(refused).toMatchObject({ code: 1 });
    expect((refused as { stderr: string }).stderr).toMatch(message);
  });
});
