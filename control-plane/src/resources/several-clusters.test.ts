// Two real clusters (each its own kube-apiserver, PKI and etcd prefix) behind
// one real Envoy, configured as in production: a config file, the control
// plane, ADS (mTLS) to a gateway node. The hostname a client connects to
// (TLS SNI) picks the cluster, and nothing one cluster's clients send
// reaches the other.
import { connect as http2Connect } from "node:http2";
import { request } from "node:https";
import { readFileSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from "node:tls";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { stringify } from "yaml";
import { wasmPath } from "@wharf/filters";
import {
  freePort,
  issueCertificate,
  kubectlOn,
  makeWorkDir,
  removeWorkDir,
  startKubeApiserver,
  startXdsEnvoy,
  waitFor,
  writeKubeconfig,
  type Envoy,
  type KeyPair,
  type KubeApiserver,
} from "@wharf/testkit";
import { startControlPlane, type RunningControlPlane } from "../control-plane.js";
import { writeCredentials } from "../credentials/node-ca.js";

interface Side {
  /** The hostname that selects this cluster at the gateway. */
  hostname: string;
  kube: KubeApiserver;
  /** system:masters of this cluster's CA. */
  admin: KeyPair;
  /** Through the gateway, by this cluster's hostname. */
  kubectl: (...args: string[]) => Promise<string>;
  /** Straight to the apiserver. */
  direct: (...args: string[]) => Promise<string>;
}

let dir: string;
let controlPlane: RunningControlPlane;
let envoy: Envoy;
let port: number;
let a: Side;
let b: Side;
const unique = `${Date.now().toString(36)}`;

interface Answer {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

interface Call {
  /** SNI sent; none when undefined. */
  servername?: string;
  ca: string;
  client?: KeyPair;
  method?: string;
  path: string;
  headers?: Record<string, string>;
  body?: string;
  checkServerIdentity?: () => undefined;
}

/** One HTTP/1.1 request to the gateway on 127.0.0.1, with the SNI and client certificate given. */
function call({ servername, ca, client, method = "GET", path, headers = {}, body, checkServerIdentity }: Call): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        method,
        path,
        servername,
        headers,
        ca: readFileSync(ca),
        cert: client ? readFileSync(client.certFile) : undefined,
        key: client ? readFileSync(client.keyFile) : undefined,
        agent: false,
        timeout: 5000,
        ...(checkServerIdentity ? { checkServerIdentity } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8"), headers: res.headers }));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", reject);
    req.end(body);
  });
}

async function stat(name: string): Promise<number> {
  const text = await (await fetch(`${envoy.adminUrl}/stats?filter=${encodeURIComponent(`^${name.replace(/\./g, "\\.")}$`)}`)).text();
  const match = new RegExp(`^${name.replace(/\./g, "\\.")}: (\\d+)$`, "m").exec(text);
  return match ? Number(match[1]) : 0;
}

const listenerStat = (name: string) => stat(`listener.127.0.0.1_${port}.${name}`);

// b also serves every name under it, except one that a lists exactly.
const wildcardOfB = "*.b.clusters.wharf.test";
const exactUnderB = "exact.b.clusters.wharf.test";

async function side(name: string, kube: KubeApiserver, more: string[]): Promise<{ hostname: string; hostnames: string[]; serving: KeyPair; admin: KeyPair; kube: KubeApiserver }> {
  const hostname = `${name}.clusters.wharf.test`;
  const hostnames = [hostname, ...more];
  const serving = await issueCertificate(dir, kube.pki.ca, { name: `gateway-${name}`, commonName: hostname, dnsNames: hostnames, usage: "server" });
  // One user name in both clusters: whatever the filter keys by user (limits, caches) must still not cross.
  const admin = await issueCertificate(dir, kube.pki.ca, { name: `admin-${name}`, commonName: "ops-admin", organizations: ["system:masters"], usage: "client" });
  return { hostname, hostnames, serving, admin, kube };
}

function clusterConfig(name: string, s: Awaited<ReturnType<typeof side>>, policies: unknown[], schemas: unknown[]) {
  return {
    name,
    hostnames: s.hostnames,
    cert_file: s.serving.certFile,
    key_file: s.serving.keyFile,
    client_ca_file: s.kube.pki.ca.certFile,
    // Both clusters call their pool "main": the gateway keeps them apart.
    pools: [{ name: "main", servers: [`127.0.0.1:${new URL(s.kube.url).port}`] }],
    default_pool: "main",
    ca_file: s.kube.pki.ca.certFile,
    client_cert_file: s.kube.pki.frontProxyClient.certFile,
    client_key_file: s.kube.pki.frontProxyClient.keyFile,
    token_review: { cluster: "main", authority: "localhost" },
    flow_control_schemas: schemas,
    dispatch_policies: policies,
  };
}

beforeAll(async () => {
  dir = await makeWorkDir("several-clusters");
  const etcd = inject("referenceEtcd").endpoint;
  // Two clusters on the shared etcd, apart by prefix; each makes its own PKI.
  const [kubeA, kubeB] = await Promise.all([
    startKubeApiserver({ etcdServers: [etcd], extraArgs: [`--etcd-prefix=/several-clusters-a-${unique}`] }),
    startKubeApiserver({ etcdServers: [etcd], extraArgs: [`--etcd-prefix=/several-clusters-b-${unique}`] }),
  ]);
  const sideA = await side("a", kubeA, [exactUnderB]);
  const sideB = await side("b", kubeB, [wildcardOfB]);
  port = await freePort();
  // Same policy and schema names on both sides, with different contents:
  // each cluster's filter must use its own.
  const config = {
    listener: { port },
    upstream_clusters: [
      clusterConfig(
        "a",
        sideA,
        [
          { name: "closed", rules: [{ resources: ["configmaps"] }], action: { deny: { message: "configmaps are closed on a" } } },
          { name: "limited", rules: [{ resources: ["limitranges"] }], action: { upstream: "main", flow_control: "tight" } },
        ],
        [{ name: "tight", qps: 0.001, burst: 3, per_user: true }],
      ),
      clusterConfig(
        "b",
        sideB,
        [
          { name: "closed", rules: [{ resources: ["secrets"] }], action: { deny: { message: "secrets are closed on b" } } },
          { name: "limited", rules: [{ resources: ["limitranges"] }], action: { upstream: "main", flow_control: "tight" } },
        ],
        [{ name: "tight", qps: 0.001, burst: 1, per_user: true }],
      ),
    ],
  };
  const configFile = join(dir, "wharf.yaml");
  await writeFile(configFile, stringify(config));
  controlPlane = await startControlPlane({ stateDir: join(dir, "control-plane"), xds: { host: "127.0.0.1", port: 0 }, config: { file: configFile }, wasmFile: wasmPath("gateway") });
  const credentialsDir = join(dir, "gateway-credentials");
  await writeCredentials(credentialsDir, controlPlane.ca.issueNode({ name: "gateway-1", role: "gateway" }));
  envoy = await startXdsEnvoy({ nodeId: "gateway-1", xdsAddress: controlPlane.xdsAddress, credentialsDir });

  const make = async (s: Awaited<ReturnType<typeof side>>): Promise<Side> => {
    const file = await writeKubeconfig(join(dir, `${s.hostname}.kubeconfig`), `https://127.0.0.1:${port}`, s.kube.pki.ca.certFile, s.admin);
    // kubectl connects to 127.0.0.1 and says the cluster's hostname in SNI.
    const text = (await readFile(file, "utf8")).replace("certificate-authority:", `tls-server-name: ${s.hostname}\n      certificate-authority:`);
    await writeFile(file, text);
    const direct = kubectlOn(s.kube.kubeconfig);
    // The gateway sends TokenReviews as wharf:gateway.
    await direct("create", "clusterrolebinding", "wharf-gateway-reviews", "--clusterrole=system:auth-delegator", "--user=wharf:gateway");
    return { hostname: s.hostname, kube: s.kube, admin: s.admin, kubectl: kubectlOn(file), direct };
  };
  [a, b] = await Promise.all([make(sideA), make(sideB)]);
  for (const s of [a, b]) {
    await waitFor(async () => (await call({ servername: s.hostname, ca: s.kube.pki.ca.certFile, client: s.admin, path: "/readyz" })).status === 200, 30_000, `${s.hostname} through the gateway, from xDS`);
  }
}, 180_000);

afterAll(async () => {
  await envoy?.stop();
  await controlPlane?.stop();
  await Promise.all([a?.kube.stop(), b?.kube.stop()]);
  if (dir) await removeWorkDir(dir);
});

describe("several clusters behind one gateway", () => {
  it("takes kubectl to the cluster its hostname names, and only there", async () => {
    await a.kubectl("create", "namespace", "only-on-a");
    await b.kubectl("create", "namespace", "only-on-b");
    expect(await a.direct("get", "namespace", "only-on-a", "-o", "name")).toBe("namespace/only-on-a\n");
    expect(await b.direct("get", "namespace", "only-on-b", "-o", "name")).toBe("namespace/only-on-b\n");
    await expect(b.direct("get", "namespace", "only-on-a")).rejects.toThrow(/NotFound|not found/);
    await expect(a.direct("get", "namespace", "only-on-b")).rejects.toThrow(/NotFound|not found/);
    // Through the gateway each hostname sees its own cluster's list, as the apiserver gives it.
    const names = async (kubectl: Side["kubectl"]) => (await kubectl("get", "namespaces", "-o", "name")).split("\n").filter((line) => line.startsWith("namespace/only-on-"));
    expect(await names(a.kubectl)).toEqual(await names(a.direct));
    expect(await names(a.kubectl)).toEqual(["namespace/only-on-a"]);
    expect(await names(b.kubectl)).toEqual(["namespace/only-on-b"]);
  });

  it("applies each cluster's policies to that cluster only", async () => {
    await expect(a.kubectl("get", "configmaps")).rejects.toThrow(/configmaps are closed on a/);
    await expect(b.kubectl("get", "secrets")).rejects.toThrow(/secrets are closed on b/);
    // The same requests on the other hostname are the apiserver's to answer.
    expect(await b.kubectl("get", "configmaps", "-n", "kube-system", "-o", "name")).toBe(await b.direct("get", "configmaps", "-n", "kube-system", "-o", "name"));
    expect(await a.kubectl("get", "secrets", "-n", "kube-system", "-o", "name")).toBe(await a.direct("get", "secrets", "-n", "kube-system", "-o", "name"));
  });

  it("applies each cluster's limits to that cluster only, though both name their schema alike", async () => {
    const get = (s: Side) => call({ servername: s.hostname, ca: s.kube.pki.ca.certFile, client: s.admin, path: "/api/v1/namespaces/default/limitranges" });
    // b's burst of one is gone after one request...
    expect((await get(b)).status).toBe(200);
    expect((await get(b)).status).toBe(429);
    // ...while a (same user, same schema name) still has its own three: had the
    // two clusters shared a bucket, a would find it empty.
    for (let i = 0; i < 3; i++) expect((await get(a)).status).toBe(200);
    expect((await get(a)).status).toBe(429);
    expect((await get(b)).status).toBe(429);
  });

  it("lets an exact hostname win over another cluster's wildcard, which covers one or more labels", async () => {
    // The answer says which cluster: each holds only its own namespace, and each admits only its own client certificate.
    const namespace = async (s: Side, servername: string, checkServerIdentity?: () => undefined) =>
      (await call({ servername, ca: s.kube.pki.ca.certFile, client: s.admin, path: `/api/v1/namespaces/only-on-${s === a ? "a" : "b"}`, checkServerIdentity })).status;
    expect(await namespace(a, exactUnderB)).toBe(200);
    expect(await namespace(b, "other.b.clusters.wharf.test")).toBe(200);
    // A certificate's wildcard covers one label, Envoy's server_names more: the chain (b's CA) is still checked.
    expect(await namespace(b, "deeper.other.b.clusters.wharf.test", () => undefined)).toBe(200);
  });

  it("verifies bearer tokens with the cluster the hostname names", async () => {
    for (const s of [a, b]) {
      await s.direct("create", "serviceaccount", "robot", "-n", "default");
    }
    const tokenA = (await a.direct("create", "token", "robot", "-n", "default")).trim();
    const whoami = (s: Side, token: string) =>
      kubectlOn("/dev/null")("--server", `https://127.0.0.1:${port}`, "--tls-server-name", s.hostname, "--certificate-authority", s.kube.pki.ca.certFile, "--token", token, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}");
    expect(await whoami(a, tokenA)).toBe("system:serviceaccount:default:robot");
    expect(await whoami(a, tokenA)).toBe(await kubectlOn("/dev/null")("--server", a.kube.url, "--certificate-authority", a.kube.pki.ca.certFile, "--token", tokenA, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"));
  });
});

/** A raw TLS connection to the gateway; resolves once the handshake is done (and the server has not refused it at once). */
function handshake(options: ConnectionOptions): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: "127.0.0.1", port, ALPNProtocols: ["http/1.1"], ...options }, () => resolve(socket));
    socket.on("error", reject);
  });
}

/** One HTTP/1.1 request over an open TLS socket; the status line's code, or the error that ended it. */
function rawGet(socket: TLSSocket, path: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    let text = "";
    socket.on("data", (chunk: Buffer) => {
      text += chunk.toString("latin1");
      const match = /^HTTP\/1\.1 (\d{3})/.exec(text);
      if (match) {
        resolve(Number(match[1]));
        socket.destroy();
      }
    });
    socket.on("error", reject);
    socket.on("close", () => reject(new Error(`closed without an answer: ${JSON.stringify(text.slice(0, 200))}`)));
    socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
  });
}

describe("attack: one cluster's clients against the other behind the same gateway", () => {
  it("a hostname no cluster lists gets no TLS handshake, not a default cluster", async () => {
    const before = await listenerStat("no_filter_chain_match");
    await expect(call({ servername: "c.clusters.wharf.test", ca: a.kube.pki.ca.certFile, client: a.admin, path: "/api/v1/namespaces" })).rejects.toThrow(/ECONNRESET|socket hang up|disconnected/);
    expect(await listenerStat("no_filter_chain_match")).toBe(before + 1);
  });

  it("a connection without SNI (to the bare address) gets no TLS handshake", async () => {
    const before = await listenerStat("no_filter_chain_match");
    await expect(call({ ca: a.kube.pki.ca.certFile, client: a.admin, path: "/api/v1/namespaces" })).rejects.toThrow(/ECONNRESET|socket hang up|disconnected/);
    expect(await listenerStat("no_filter_chain_match")).toBe(before + 1);
  });

  it("a parent or child of a listed hostname is not that hostname", async () => {
    for (const servername of ["clusters.wharf.test", `x.${a.hostname}`, `${a.hostname}.evil.test`]) {
      await expect(call({ servername, ca: a.kube.pki.ca.certFile, client: a.admin, path: "/api/v1/namespaces" }), servername).rejects.toThrow(/ECONNRESET|socket hang up|disconnected/);
    }
  });

  it("cluster a's client certificate is refused on b's hostname (b's client CA)", async () => {
    const before = await listenerStat("ssl.fail_verify_error");
    // b's CA verifies the server, so the failure is the gateway refusing a's certificate.
    await expect(call({ servername: b.hostname, ca: b.kube.pki.ca.certFile, client: a.admin, path: "/api/v1/namespaces/only-on-b" })).rejects.toThrow(/alert|ECONNRESET|socket hang up|certificate/i);
    expect(await listenerStat("ssl.fail_verify_error")).toBe(before + 1);
    // And the other way round.
    await expect(call({ servername: a.hostname, ca: a.kube.pki.ca.certFile, client: b.admin, path: "/api/v1/namespaces/only-on-a" })).rejects.toThrow(/alert|ECONNRESET|socket hang up|certificate/i);
    expect(await listenerStat("ssl.fail_verify_error")).toBe(before + 2);
  });

  it("a Host header naming b on a connection to a (domain fronting) is served by a", async () => {
    for (const host of [b.hostname, `${b.hostname}:${port}`]) {
      const fronted = (path: string) => call({ servername: a.hostname, ca: a.kube.pki.ca.certFile, client: a.admin, path, headers: { host } });
      expect((await fronted("/api/v1/namespaces/only-on-b")).status).toBe(404);
      expect((await fronted("/api/v1/namespaces/only-on-a")).status).toBe(200);
    }
    // b's upstream saw none of it: its only namespace lookups are the ones b's own clients make.
    expect(await b.direct("get", "namespace", "only-on-a", "--ignore-not-found", "-o", "name")).toBe("");
  });

  it("an HTTP/2 :authority naming b on a connection to a is served by a", async () => {
    const session = http2Connect(`https://127.0.0.1:${port}`, {
      servername: a.hostname,
      ca: readFileSync(a.kube.pki.ca.certFile),
      cert: readFileSync(a.admin.certFile),
      key: readFileSync(a.admin.keyFile),
    });
    const status = (path: string) =>
      new Promise<number>((resolve, reject) => {
        const stream = session.request({ ":path": path, ":authority": `${b.hostname}:${port}` });
        stream.on("response", (headers) => resolve(Number(headers[":status"])));
        stream.on("error", reject);
        stream.resume();
      });
    try {
      expect(await status("/api/v1/namespaces/only-on-b")).toBe(404);
      expect(await status("/api/v1/namespaces/only-on-a")).toBe(200);
    } finally {
      session.close();
    }
  });

  it("a routing header naming b's pool is dropped: the request stays in a", async () => {
    for (const pool of ["b/main", "main"]) {
      const answer = await call({ servername: a.hostname, ca: a.kube.pki.ca.certFile, client: a.admin, path: "/api/v1/namespaces/only-on-b", headers: { "x-wharf-upstream": pool } });
      expect(answer.status).toBe(404);
      expect(answer.headers["x-wharf-served-by"]).toBe("main");
    }
  });

  it("a token of a, already verified and cached on a, is unauthenticated on b", async () => {
    const tokenA = (await a.direct("create", "token", "robot", "-n", "default")).trim();
    const bearer = (s: Side) => call({ servername: s.hostname, ca: s.kube.pki.ca.certFile, path: "/api/v1/namespaces/default/serviceaccounts/robot", headers: { authorization: `Bearer ${tokenA}` } });
    // The first answer on a fills a's cache; the robot may not read, but it is known: 403, not 401.
    expect((await bearer(a)).status).toBe(403);
    expect((await bearer(a)).status).toBe(403);
    expect((await bearer(b)).status).toBe(401);
  });

  it("b's admin certificate pasted into x-forwarded-client-cert, without a TLS client certificate, is no one on b", async () => {
    const forged = `Hash=00;Cert="${encodeURIComponent(readFileSync(b.admin.certFile, "utf8"))}";Subject="CN=ops-admin,O=system:masters"`;
    const answer = await call({ servername: b.hostname, ca: b.kube.pki.ca.certFile, path: "/api/v1/namespaces/only-on-b", headers: { "x-forwarded-client-cert": forged } });
    expect(answer.status).toBe(401);
  });

  it("a TLS session of a (with a's client certificate) does not resume on b's hostname", async () => {
    const path = "/api/v1/namespaces/only-on-a";
    const first = await handshake({ servername: a.hostname, ca: readFileSync(a.kube.pki.ca.certFile), cert: readFileSync(a.admin.certFile), key: readFileSync(a.admin.keyFile) });
    const ticket = new Promise<Buffer>((resolve) => first.once("session", resolve));
    expect(await rawGet(first, path, a.hostname)).toBe(200);
    const session = await ticket;
    // The control: the session does resume on a, with no certificate sent again.
    const again = await handshake({ servername: a.hostname, ca: readFileSync(a.kube.pki.ca.certFile), session });
    expect(again.isSessionReused()).toBe(true);
    expect(await rawGet(again, path, a.hostname)).toBe(200);
    // On b's hostname it must be a new handshake, without a's identity.
    const onB = await handshake({ servername: b.hostname, ca: readFileSync(b.kube.pki.ca.certFile), session });
    expect(onB.isSessionReused()).toBe(false);
    expect(await rawGet(onB, "/api/v1/namespaces/only-on-b", b.hostname)).not.toBe(200);
  });

  it("the hostname in capitals is the same hostname (DNS names have no case), not a way around it", async () => {
    const shouted = a.hostname.toUpperCase();
    const answer = (path: string) => call({ servername: shouted, ca: a.kube.pki.ca.certFile, client: a.admin, path, headers: { host: shouted }, checkServerIdentity: () => undefined });
    expect((await answer("/api/v1/namespaces/only-on-a")).status).toBe(200);
    expect((await answer("/api/v1/namespaces/only-on-b")).status).toBe(404);
    await expect(a.kubectl("get", "configmaps", "--tls-server-name", shouted)).rejects.toThrow(/configmaps are closed on a/);
  });
});
