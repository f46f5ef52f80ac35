// Tenants end to end on real parts: the control plane (config file, admin
// API), `wharf tenant ...`, a gateway Envoy configured over xDS, and a
// kube-apiserver with an audit log, which says what identity each request
// reached it with (what the gateway forwarded, not what a response says).
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { X509Certificate } from "node:crypto";
import { readFile, stat, writeFile } from "node:fs/promises";
import { request as httpsRequest } from "node:https";
import { connect as http2Connect, type ClientHttp2Session } from "node:http2";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { parse, stringify } from "yaml";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AdminService } from "@wharf/proto/wharf/admin/v1/admin_pb.js";
import { wasmPath } from "@wharf/filters";
import {
  freePort,
  issueCertificate,
  kubectlOn,
  makeWorkDir,
  removeWorkDir,
  repoRoot,
  startKubeApiserver,
  startXdsEnvoy,
  waitFor,
  writeKubeconfig,
  type Envoy,
  type KubeApiserver,
} from "@wharf/testkit";
import { startControlPlane, type RunningControlPlane } from "../control-plane.js";
import { writeCredentials } from "../credentials/node-ca.js";

const run = promisify(execFile);
const wharf = join(repoRoot, "control-plane", "dist", "cli.js");

let dir: string;
let kube: KubeApiserver;
let controlPlane: RunningControlPlane;
let envoy: Envoy;
let gatewayUrl: string;
let configFile: string;
let tokenFile: string;
let adminUrl: string;
let admin: (...args: string[]) => Promise<string>;
/** kubectl as the control plane's own identity upstream (deploy/tenancy-rbac.yaml's user). */
let asControlPlane: (...args: string[]) => Promise<string>;

/** Names of `resource` upstream that are the tenant's: "wt-<tenant>-…", or a CRD "plural.wt-<tenant>-group". */
async function upstreamNames(resource: string, tenant: string): Promise<string[]> {
  return (await admin("get", resource, "-o", "name"))
    .split("\n")
    .map((line) => line.slice(line.indexOf("/") + 1))
    .filter((name) => name.startsWith(`wt-${tenant}-`) || name.includes(`.wt-${tenant}-`))
    .sort();
}

/** A request straight to the apiserver as a tenant identity (front-proxy headers), bypassing the gateway. */
function asTenantUpstream(method: string, path: string, user: string, groups: string[], body?: unknown): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = httpsRequest(
      `${kube.url}${path}`,
      {
        method,
        ca: readFileSync(kube.pki.ca.certFile),
        cert: readFileSync(kube.pki.frontProxyClient.certFile),
        key: readFileSync(kube.pki.frontProxyClient.keyFile),
        headers: { "x-remote-user": user, "x-remote-group": groups, "content-type": "application/json", accept: "application/json" },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}

interface KubeconfigFile {
  clusters: Array<{ name: string; cluster: { server: string; "certificate-authority-data": string } }>;
  users: Array<{ name: string; user: { "client-certificate-data": string; "client-key-data": string } }>;
  contexts: Array<{ name: string; context: { cluster: string; user: string } }>;
  "current-context": string;
}

interface Credentials {
  ca: string;
  cert: string;
  key: string;
}

async function credentialsOf(kubeconfigFile: string): Promise<Credentials> {
  const config = parse(await readFile(kubeconfigFile, "utf8")) as KubeconfigFile;
  const decode = (value: string) => Buffer.from(value, "base64").toString("utf8");
  return { ca: decode(config.clusters[0]!.cluster["certificate-authority-data"]), cert: decode(config.users[0]!.user["client-certificate-data"]), key: decode(config.users[0]!.user["client-key-data"]) };
}

function wharfTenant(...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run(process.execPath, [wharf, "tenant", ...args, "--admin", adminUrl, "--token-file", tokenFile]);
}

async function wharfTenantFails(...args: string[]): Promise<string> {
  const error = await wharfTenant(...args).then(
    () => undefined,
    (failure: { stderr: string }) => failure,
  );
  expect(error, `wharf tenant ${args.join(" ")} should fail`).toBeDefined();
  return error!.stderr;
}

interface AuditEvent {
  stage: string;
  requestURI: string;
  verb: string;
  user: { username: string; groups?: string[] };
  responseStatus?: { code: number };
}

/** The audit events (ResponseComplete) of requests for `uriPart` whose user name contains `who`. */
async function audited(uriPart: string, who: string): Promise<AuditEvent[]> {
  const text = await readFile(kube.auditLogFile!, "utf8");
  return text
    .split("\n")
    .filter((line) => line.includes(uriPart))
    .map((line) => JSON.parse(line) as AuditEvent)
    .filter((event) => event.stage === "ResponseComplete" && event.requestURI.includes(uriPart) && event.user.username.includes(who));
}

/** An HTTP/2 connection to the gateway presenting `credentials`. */
function session(credentials: Credentials): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const connection = http2Connect(gatewayUrl, { ca: credentials.ca, cert: credentials.cert, key: credentials.key });
    connection.once("connect", () => resolve(connection));
    connection.once("error", reject);
  });
}

function get(connection: ClientHttp2Session, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const stream = connection.request({ ":path": path, ":method": "GET" });
    let status = 0;
    const chunks: Buffer[] = [];
    stream.on("response", (headers) => (status = Number(headers[":status"])));
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("end", () => resolve({ status, body: Buffer.concat(chunks).toString("utf8") }));
    stream.on("error", reject);
  });
}

/** POST a SelfSubjectReview (JSON) as `credentials`: what `kubectl auth whoami` does. */
async function whoami(credentials: Credentials): Promise<number> {
  const connection = await session(credentials);
  try {
    return await new Promise((resolve, reject) => {
      const stream = connection.request({ ":path": "/apis/authentication.k8s.io/v1/selfsubjectreviews", ":method": "POST", "content-type": "application/json", accept: "application/json" });
      stream.on("response", (headers) => resolve(Number(headers[":status"])));
      stream.on("error", reject);
      stream.end(JSON.stringify({ apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" }));
    });
  } finally {
    connection.close();
  }
}

function adminClient() {
  return createClient(
    AdminService,
    createConnectTransport({ baseUrl: adminUrl, httpVersion: "1.1", interceptors: [(next) => (request) => (request.header.set("authorization", "Bearer a-tenants-test-admin-token-0123"), next(request))] }),
  );
}

/** Whether a fresh TLS connection presenting `credentials` gets an HTTP answer at all. */
async function handshakeAccepted(credentials: Credentials): Promise<boolean> {
  try {
    const connection = await session(credentials);
    const answer = await get(connection, "/version").catch(() => undefined);
    connection.close();
    return answer !== undefined;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  dir = await makeWorkDir("tenants");
  // An apiserver of its own: its audit log is how the tests see what identity
  // the gateway forwarded. Its data goes to the shared etcd under its own prefix.
  kube = await startKubeApiserver({ etcdServers: [inject("referenceEtcd").endpoint], auditLog: true, extraArgs: ["--etcd-prefix=/tenants-test"] });
  admin = kubectlOn(kube.kubeconfig);
  // The control plane acts upstream as deploy/tenancy-rbac.yaml's user, with that least privilege.
  await admin("apply", "-f", join(repoRoot, "deploy", "tenancy-rbac.yaml"));
  const identity = await issueCertificate(dir, kube.pki.ca, { name: "control-plane-upstream", commonName: "wharf:control-plane", usage: "client" });
  const controlPlaneKubeconfig = await writeKubeconfig(join(dir, "control-plane-upstream.kubeconfig"), kube.url, kube.pki.ca.certFile, identity);
  asControlPlane = kubectlOn(controlPlaneKubeconfig);
  const serving = await issueCertificate(dir, kube.pki.ca, { name: "gateway", commonName: "gateway", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], usage: "server" });
  const port = await freePort();
  gatewayUrl = `https://127.0.0.1:${port}`;
  configFile = join(dir, "wharf.yaml");
  await writeFile(
    configFile,
    `# The gateway in front of the test apiserver; tenants are added below by the admin API.
${stringify({
  listener: { port, cert_file: serving.certFile, key_file: serving.keyFile, client_ca_file: kube.pki.ca.certFile },
  upstream_cluster: {
    pools: [{ name: "main", servers: [`127.0.0.1:${new URL(kube.url).port}`] }],
    default_pool: "main",
    ca_file: kube.pki.ca.certFile,
    client_cert_file: kube.pki.frontProxyClient.certFile,
    client_key_file: kube.pki.frontProxyClient.keyFile,
  },
  tenancy: { kubeconfig: controlPlaneKubeconfig },
})}`,
  );
  tokenFile = join(dir, "admin-token");
  await writeFile(tokenFile, "a-tenants-test-admin-token-0123\n", { mode: 0o600 });
  const adminPort = await freePort();
  adminUrl = `http://127.0.0.1:${adminPort}`;
  controlPlane = await startControlPlane({
    stateDir: join(dir, "control-plane"),
    xds: { host: "127.0.0.1", port: 0 },
    config: { file: configFile },
    wasmFile: wasmPath("gateway"),
    admin: { token: "a-tenants-test-admin-token-0123", host: "127.0.0.1", port: adminPort },
  });
  const credentials = join(dir, "xds-gateway");
  await writeCredentials(credentials, controlPlane.ca.issueNode({ name: "gateway-1", role: "gateway" }));
  envoy = await startXdsEnvoy({ nodeId: "gateway-1", xdsAddress: controlPlane.xdsAddress, credentialsDir: credentials });
  await waitFor(async () => controlPlane.cache.nodeStatus("gateway-1", "gateway")?.acked.listener === controlPlane.config!.currentVersion, 30_000, "the gateway's ACK");
}, 120_000);

afterAll(async () => {
  await envoy?.stop();
  await controlPlane?.stop();
  await kube?.stop();
  if (dir) await removeWorkDir(dir);
});

describe("tenants", () => {
  let acmeAdmin: string;

  it("create: a kubeconfig for the gateway, and the apiserver receives the tenant's mapped identity", async () => {
    acmeAdmin = join(dir, "acme-admin.kubeconfig");
    const { stderr } = await wharfTenant("create", "acme", "--shared-view", "nodes", "-o", acmeAdmin);
    expect(stderr).toContain("tenant acme created");
    expect((await stat(acmeAdmin)).mode & 0o777).toBe(0o600);
    const kubeconfig = parse(await readFile(acmeAdmin, "utf8")) as KubeconfigFile;
    expect(kubeconfig["current-context"]).toBe("acme");
    expect(kubeconfig.clusters[0]!.cluster.server).toBe(gatewayUrl);
    const { cert, ca } = await credentialsOf(acmeAdmin);
    const leaf = new X509Certificate(cert);
    expect(leaf.subject).toBe("O=system:masters\nCN=admin");
    expect(leaf.issuer).toMatch(/^CN=wharf tenant acme CA [0-9a-f]{16}\nO=wharf\.dev$/);
    // The kubeconfig's CA is the one that signed the gateway's serving certificate.
    expect(new X509Certificate(ca).subject).toBe(new X509Certificate(await readFile(kube.pki.ca.certFile)).subject);

    // The config file now lists the tenant (and kept its comment).
    const file = await readFile(configFile, "utf8");
    expect(file).toContain("# The gateway in front of the test apiserver");
    expect((parse(file) as { tenants: unknown }).tenants).toEqual([{ name: "acme", shared_views: ["nodes"] }]);

    expect(await whoami(await credentialsOf(acmeAdmin))).toBe(201);
    const [event] = await audited("/selfsubjectreviews", "acme");
    expect(event, "the tenant's whoami in the audit log").toBeDefined();
    expect(event!.user.username).toBe("wharf:tenant:acme:admin");
    expect(event!.user.groups).toEqual(["wharf:tenant:acme", "wharf:tenant:acme:system:masters", "system:authenticated"]);

    // Upstream: its system namespaces and RBAC (upstream.ts), made before its credentials were served.
    expect(await upstreamNames("namespaces", "acme")).toEqual(["wt-acme-default", "wt-acme-kube-node-lease", "wt-acme-kube-public", "wt-acme-kube-system"]);
    expect(await upstreamNames("clusterrolebindings", "acme")).toEqual(["wt-acme-wharf-shared-views", "wt-acme-wharf-tenant-admin"]);
    expect(JSON.parse(await admin("get", "validatingadmissionpolicy", "wharf-tenancy", "-o", "json"))).toMatchObject({ metadata: { name: "wharf-tenancy" } });
  });

  it("rewrites a tenant's admin role when a CRD of its own group appears", async () => {
    const crd = {
      apiVersion: "apiextensions.k8s.io/v1",
      kind: "CustomResourceDefinition",
      metadata: { name: "widgets.wt-acme-example.com", labels: { "tenancy.wharf.dev/tenant": "acme" } },
      spec: {
        group: "wt-acme-example.com",
        scope: "Namespaced",
        names: { plural: "widgets", singular: "widget", kind: "Widget" },
        versions: [{ name: "v1", served: true, storage: true, schema: { openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true } } }],
      },
    };
    const created = await asTenantUpstream("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", "wharf:tenant:acme:admin", ["wharf:tenant:acme", "wharf:tenant:acme:system:masters"], crd);
    expect(created.status, created.body).toBe(201);
    const groups = async () => (JSON.parse(await admin("get", "clusterrole", "wt-acme-wharf-tenant-admin", "-o", "json")) as { rules: Array<{ apiGroups: string[] }> }).rules.flatMap((rule) => rule.apiGroups);
    await waitFor(async () => (await groups()).includes("wt-acme-example.com"), 10_000, "the CRD's group in acme's admin role");
    expect(await upstreamNames("customresourcedefinitions", "acme")).toEqual(["widgets.wt-acme-example.com"]);
  });

  it("kubeconfig: a user with groups and a TTL, forwarded as that tenant user", async () => {
    const aliceFile = join(dir, "alice.kubeconfig");
    const { stderr } = await wharfTenant("kubeconfig", "acme", "--user", "alice", "--group", "dev", "--group", "ops", "--ttl", "30m", "-o", aliceFile);
    const expires = Date.parse(/expires (\S+)/.exec(stderr)![1]!);
    const leaf = new X509Certificate((await credentialsOf(aliceFile)).cert);
    expect(leaf.subject).toBe("O=dev\nO=ops\nCN=alice");
    expect(Date.parse(leaf.validTo)).toBe(expires);
    expect(Math.abs(expires - Date.now() - 30 * 60 * 1000)).toBeLessThan(60_000);
    expect(await whoami(await credentialsOf(aliceFile))).toBe(201);
    const [event] = await audited("/selfsubjectreviews", "acme:alice");
    expect(event!.user.groups).toEqual(["wharf:tenant:acme", "wharf:tenant:acme:dev", "wharf:tenant:acme:ops", "system:authenticated"]);
    // To stdout without -o.
    const { stdout } = await wharfTenant("kubeconfig", "acme", "--user", "bob");
    expect((parse(stdout) as KubeconfigFile).users[0]!.name).toBe("acme-bob");
  });

  it("list: each tenant with its shared views and live certificates by user", async () => {
    const { stdout } = await wharfTenant("list");
    expect(stdout).toMatch(/^acme\tcreated \S+\tshared nodes\tcertificates admin:1,alice:1,bob:1\n$/);
  });

  it("refuses a tenant that exists, a bad name (naming the rule), a view that cannot be shared, and a TTL over 720h", async () => {
    expect(await wharfTenantFails("create", "acme")).toMatch(/tenant acme exists/);
    expect(await wharfTenantFails("create", "ac-me")).toMatch(/tenant name "ac-me" may not contain '-'/);
    expect(await wharfTenantFails("create", "globex", "--shared-view", "secrets")).toMatch(/shared_views\[0\]: "secrets" cannot be shared/);
    expect(await wharfTenantFails("kubeconfig", "acme", "--ttl", "721h")).toMatch(/ttl: at most 720h/);
    expect(await wharfTenantFails("kubeconfig", "nobody")).toMatch(/no tenant nobody/);
    expect(await wharfTenantFails("kubeconfig", "acme", "--ttl", "soon")).toMatch(/--ttl soon: want a duration/);
  });

  it("refuses a name whose upstream prefix is taken", async () => {
    // Left by a delete cut short: the control plane made it (nobody else may make wt- names).
    await asControlPlane("create", "namespace", "wt-initech-leftover");
    expect(await wharfTenantFails("create", "initech")).toMatch(/tenant name initech is taken upstream: namespace wt-initech-leftover exists/);
    expect((parse(await readFile(configFile, "utf8")) as { tenants: Array<{ name: string }> }).tenants.map((tenant) => tenant.name)).toEqual(["acme"]);
  });

  it("revoke: the user's next request is refused within a second, also on a connection opened before", async () => {
    const carolFile = join(dir, "carol.kubeconfig");
    await wharfTenant("kubeconfig", "acme", "--user", "carol", "-o", carolFile);
    const carol = await credentialsOf(carolFile);
    const connection = await session(carol);
    const kept = await session(await credentialsOf(acmeAdmin));
    try {
      expect((await get(connection, "/version")).status).toBe(200);
      // Measured from the admin call (the CLI's own start-up is not the gateway's latency).
      const client = adminClient();
      const started = performance.now();
      expect((await client.revokeTenantUser({ tenant: "acme", user: "carol" })).revokedCertificates).toBe(1);
      const answered = performance.now() - started;
      let status = 0;
      await waitFor(async () => (status = (await get(connection, "/version")).status) === 401, 1000, () => `carol refused (last status ${status})`, 5);
      const elapsed = performance.now() - started;
      console.log(`revocation: the admin call returned after ${answered.toFixed(0)} ms; carol refused ${elapsed.toFixed(0)} ms after the call started`);
      expect(elapsed).toBeLessThan(1000);
      // The CLI says what it did.
      expect((await wharfTenant("revoke", "acme", "--user", "carol")).stdout).toBe("revoked 0 certificate(s) of carol in tenant acme\n");
      expect(await handshakeAccepted(carol)).toBe(true); // the CA is still trusted: the refusal is the filter's
      expect((await get(await session(carol), "/version")).status).toBe(401);
      // Others of the tenant are untouched.
      expect((await get(kept, "/version")).status).toBe(200);
    } finally {
      connection.close();
      kept.close();
    }
  });

  it("delete: the credentials are refused at once, on open connections too, and no tenant certificate is taken for a host one", async () => {
    const credentials = await credentialsOf(acmeAdmin);
    const open = await session(credentials);
    try {
      expect((await get(open, "/version")).status).toBe(200);
      const { stdout } = await wharfTenant("delete", "acme");
      expect(stdout).toMatch(/^tenant acme deleted \(removed upstream: .*4 namespaces/);
      // Nothing of it is left upstream; what is not the tenant's stays.
      for (const resource of ["namespaces", "clusterroles", "clusterrolebindings", "customresourcedefinitions"]) expect(await upstreamNames(resource, "acme"), resource).toEqual([]);
      expect(await upstreamNames("namespaces", "initech")).toEqual(["wt-initech-leftover"]);
      // The tenant's system:masters never becomes the host's: refused on the connection opened before.
      expect((await get(open, "/api/v1/namespaces")).status).toBe(401);
      // A new connection with its certificate no longer completes the handshake.
      expect(await handshakeAccepted(credentials)).toBe(false);
      expect(await wharfTenantFails("kubeconfig", "acme")).toMatch(/no tenant acme/);
      expect((parse(await readFile(configFile, "utf8")) as { tenants?: unknown }).tenants).toBeUndefined();
      expect((await wharfTenant("list")).stdout).toBe("");
    } finally {
      open.close();
    }
  });

  it("a tenant added to the config file by hand is set up upstream and served", async () => {
    const text = await readFile(configFile, "utf8");
    await writeFile(configFile, `${text.trimEnd()}\ntenants:\n  - name: globex\n`);
    await waitFor(async () => (await upstreamNames("namespaces", "globex")).length === 4, 20_000, "globex's namespaces upstream");
    const file = join(dir, "globex.kubeconfig");
    await wharfTenant("kubeconfig", "globex", "-o", file);
    expect(await whoami(await credentialsOf(file))).toBe(201);
    const [event] = await audited("/selfsubjectreviews", "globex");
    expect(event!.user.username).toBe("wharf:tenant:globex:admin");
    await wharfTenant("delete", "globex");
    expect(await upstreamNames("namespaces", "globex")).toEqual([]);
  });

  it("a certificate from a deleted tenant's CA stays refused when a tenant of the same name is created again", async () => {
    const old = await credentialsOf(acmeAdmin);
    const again = join(dir, "acme-again.kubeconfig");
    // Measured (not asserted): the admin call, and until the kubeconfig's first request is answered.
    const started = performance.now();
    const created = await adminClient().createTenant({ name: "acme" });
    const answered = performance.now() - started;
    await writeFile(again, created.kubeconfig, { mode: 0o600 });
    const fresh = await credentialsOf(again);
    expect(await whoami(fresh)).toBe(201);
    console.log(`tenant create: the admin call took ${answered.toFixed(0)} ms; the first request was answered ${(performance.now() - started).toFixed(0)} ms after the call started`);
    expect(new X509Certificate(fresh.cert).issuer).not.toBe(new X509Certificate(old.cert).issuer);
    expect(await handshakeAccepted(old)).toBe(false);
    const connection = await session(fresh);
    try {
      expect((await get(connection, "/version")).status).toBe(200);
    } finally {
      connection.close();
    }
    await wharfTenant("delete", "acme");
  });
});
