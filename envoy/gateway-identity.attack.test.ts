// attack: the gateway's identity handling, in real Envoy in front of the
// shared kube-apiserver. Every identity the gateway forwards is compared
// with what the same apiserver derives from the same credential directly.
import { readFileSync } from "node:fs";
import { connect as http2Connect } from "node:http2";
import { request as httpsRequest } from "node:https";
import { connect } from "node:tls";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { encodeGatewayConfig, gatewayHost, request, type GatewayConfigInit } from "../filters/src/gateway/harness.js";
import { wasmPath } from "@wharf/filters";
import {
  issueCertificate,
  kubectlOn,
  loadOrCreateClusterPki,
  makeWorkDir,
  removeWorkDir,
  startGatewayEnvoy,
  waitFor,
  writeKubeconfig,
  type CertificateRequest,
  type ClusterPki,
  type GatewayEnvoy,
  type KeyPair,
} from "@wharf/testkit";

let dir: string;
let pki: ClusterPki;
let kubeUrl: string;
let envoy: GatewayEnvoy;
let admin: KeyPair;
let mallory: KeyPair;

const reviewRate = 2;
const reviewBurst = 5;
const gatewayConfig: GatewayConfigInit = {
  policies: [{ name: "wrong-name", rules: [{ namespaces: ["wrong-name"] }], action: { target: { case: "upstream", value: "pool-b" } } }],
  defaultAction: { target: { case: "upstream", value: "pool-a" } },
  tokenReview: { cluster: "pool-a", authority: "localhost", reviewer: "wharf:gateway-identity-test", reviewsPerSecondPerSource: reviewRate, reviewBurstPerSource: reviewBurst },
};
let robotToken: string;

beforeAll(async () => {
  dir = await makeWorkDir("gateway-identity");
  const kube = inject("kube");
  kubeUrl = kube.url;
  // The shared apiserver's own PKI: its CA signs the crafted client certificates.
  pki = await loadOrCreateClusterPki(dirname(kube.caFile));
  admin = pki.admin;
  const serving = await issueCertificate(dir, pki.ca, { name: "envoy", commonName: "envoy", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], usage: "server" });
  mallory = await issueCertificate(dir, pki.ca, { name: "mallory", commonName: "mallory", usage: "client" });
  const asAdmin = kubectlOn(kube.kubeconfig);
  const created = (error: Error) => {
    if (!/AlreadyExists/.test(error.message)) throw error;
  };
  await asAdmin("create", "clusterrolebinding", "wharf-gateway-identity-test-reviews", "--clusterrole=system:auth-delegator", "--user=wharf:gateway-identity-test").catch(created);
  await asAdmin("create", "serviceaccount", "identity-robot", "-n", "default").catch(created);
  robotToken = (await asAdmin("create", "token", "identity-robot", "-n", "default")).trim();
  envoy = await startGatewayEnvoy({
    pki,
    serving,
    wasmFile: wasmPath("gateway"),
    gatewayConfig: encodeGatewayConfig(gatewayConfig),
    poolA: [kube.url],
    poolB: [kube.url],
    // pool-a checks the apiserver's DNS SAN (and sends it as SNI); pool-b
    // expects a name the apiserver's certificate does not hold.
    serverNames: { "pool-a": "localhost", "pool-b": "wrong.example" },
  });
  await waitFor(
    async () => (await (await fetch(`${envoy.adminUrl}/clusters`)).text()).includes("pool-a::127.0.0.1:" + new URL(kube.url).port + "::health_flags::healthy"),
    30_000,
    "Envoy's health check to see pool-a healthy",
  );
}, 120_000);

afterAll(async () => {
  await envoy?.stop();
  if (dir) await removeWorkDir(dir);
});

interface Reply {
  status: number;
  body: string;
}

/** One HTTPS request with a client certificate (or none) and any headers. */
function send(base: string, method: string, path: string, client: KeyPair | undefined, headers: Record<string, string | string[]> = {}, body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      `${base}${path}`,
      {
        method,
        ca: readFileSync(pki.ca.certFile),
        cert: client ? readFileSync(client.certFile) : undefined,
        key: client ? readFileSync(client.keyFile) : undefined,
        headers: { ...(body ? { "content-type": "application/json" } : {}), ...headers },
        timeout: 10_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on("error", reject);
    req.end(body);
  });
}

const selfReview = JSON.stringify({ apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" });

interface UserInfo {
  username: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

/** Who the apiserver says the caller is (a SelfSubjectReview), or the refusal's status and body. */
async function whoami(base: string, client: KeyPair | undefined, headers: Record<string, string | string[]> = {}): Promise<UserInfo | Reply> {
  const reply = await send(base, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", client, headers, selfReview);
  if (reply.status !== 201) return reply;
  return (JSON.parse(reply.body) as { status: { userInfo: UserInfo } }).status.userInfo;
}

/** Raw HTTP/1.1 bytes to the gateway, for header spellings a client library would not send. */
function rawRequest(client: KeyPair, head: string, body: string): Promise<string> {
  const port = Number(new URL(envoy.url).port);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port, ca: readFileSync(pki.ca.certFile), cert: readFileSync(client.certFile), key: readFileSync(client.keyFile), servername: "localhost", ALPNProtocols: ["http/1.1"] }, () => {
      socket.write(head.replace(/\n/g, "\r\n") + `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n` + body);
    });
    const chunks: Buffer[] = [];
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    socket.on("error", reject);
    socket.setTimeout(10_000, () => socket.destroy(new Error("raw request timed out")));
  });
}

function userInfoOf(raw: string): UserInfo | string {
  const [head, ...rest] = raw.split("\r\n\r\n");
  if (!/^HTTP\/1\.1 201/.test(head ?? "")) return head ?? raw;
  const body = rest.join("\r\n\r\n");
  // A chunked body: the JSON object sits between the chunk sizes.
  const json = body.slice(body.indexOf("{"), body.lastIndexOf("}") + 1);
  return (JSON.parse(json) as { status: { userInfo: UserInfo } }).status.userInfo;
}

describe("attack: client certificates with crafted subjects", () => {
  const crafted: Array<[string, Omit<CertificateRequest, "name" | "commonName" | "usage">]> = [
    ["plain CN and two O", { subject: "/O=devs/O=ops/CN=carol" }],
    ["RFC 2253 specials in the CN", { subject: '/CN=a,b\\+c"d\\\\e;f<g>h#i=j' }],
    ["an injected O inside the CN", { subject: "/CN=x,O=system:masters" }],
    ["leading and trailing spaces", { subject: "/O= lead and trail /CN=  spaced user  " }],
    ["two CNs: the last one is the user", { subject: "/CN=first/O=g/CN=last" }],
    ["a multi-valued RDN", { subject: "/CN=mv-user+O=mv-group/O=other", multiValueRdn: true }],
    ["UTF-8 strings", { subject: "/O=グループ/CN=ünïcødé 🙂" }],
    ["T61String (Latin-1) and BMPString", { subject: "/O=café/O=名前/CN=Zoë", stringMask: "default" }],
    ["'=' and '\\' in values", { subject: "/CN=k=v\\\\/O=a=b" }],
  ];
  for (const [what, subject] of crafted) {
    it(`${what}: the same user through the gateway as directly`, async () => {
      const name = `crafted-${crafted.findIndex(([w]) => w === what)}`;
      const cert = await issueCertificate(dir, pki.ca, { name, commonName: "unused", usage: "client", ...subject });
      const direct = await whoami(kubeUrl, cert);
      expect(direct, "the apiserver itself authenticates the certificate").toHaveProperty("username");
      expect(await whoami(envoy.url, cert)).toEqual(direct);
    });
  }

  it("kubectl auth whoami agrees through the gateway and directly", async () => {
    const cert = await issueCertificate(dir, pki.ca, { name: "kubectl-crafted", commonName: "unused", usage: "client", subject: '/O=a,b/O= g /CN=dave\\\\\\+"x"' });
    const through = kubectlOn(await writeKubeconfig(join(dir, "through.kubeconfig"), envoy.url, pki.ca.certFile, cert));
    const direct = kubectlOn(await writeKubeconfig(join(dir, "direct.kubeconfig"), kubeUrl, pki.ca.certFile, cert));
    const viaGateway = JSON.parse(await through("auth", "whoami", "-o", "json")) as { status: unknown };
    const straight = JSON.parse(await direct("auth", "whoami", "-o", "json")) as { status: unknown };
    expect(viaGateway.status).toEqual(straight.status);
  });

  it("refuses a certificate the apiserver refuses: server-auth only", async () => {
    const cert = await issueCertificate(dir, pki.ca, { name: "server-only", commonName: "server-only", usage: "server" });
    const direct = (await whoami(kubeUrl, cert)) as Reply;
    expect(direct.status).toBe(401);
    // Envoy itself refuses it in the handshake (the filter would answer 401).
    await expect(whoami(envoy.url, cert)).rejects.toThrow(/unsupported certificate/);
  });

  it("refuses (401) a name that cannot travel in a header, rather than forward another", async () => {
    const cert = await issueCertificate(dir, pki.ca, { name: "newline", commonName: "unused", usage: "client", subject: "/O=ops\nsystem:masters/CN=eve" });
    const direct = (await whoami(kubeUrl, cert)) as UserInfo;
    expect(direct.groups).toContain("ops\nsystem:masters");
    const through = (await whoami(envoy.url, cert)) as Reply;
    expect(through.status).toBe(401);
    expect(JSON.parse(through.body)).toMatchObject({ kind: "Status", code: 401, message: expect.stringContaining("cannot be forwarded exactly") });
  });
});

describe("attack: spoofed identity headers", () => {
  const expected = { username: "mallory", groups: ["system:authenticated"] };
  const spoofs: Array<[string, string]> = [
    ["lower case", "x-remote-user: root\nx-remote-group: system:masters\n"],
    ["upper case", "X-REMOTE-USER: root\nX-REMOTE-GROUP: system:masters\n"],
    ["mixed case, repeated", "X-Remote-Group: system:masters\nx-REMOTE-group: system:masters\nX-Remote-User: root\nx-remote-user: root2\n"],
    ["extra and uid", "X-Remote-Extra-Scopes: all\nX-Remote-Extra-authentication.kubernetes.io%2Fcredential-id: x\nX-Remote-Uid: 0\n"],
    ["a forged x-forwarded-client-cert", "X-Forwarded-Client-Cert: Hash=00;Cert=\"-----BEGIN%20CERTIFICATE-----%0AMIIB-----END%20CERTIFICATE-----%0A\"\n"],
    ["value with leading spaces and tabs", "X-Remote-User:   \t root\n"],
  ];
  for (const [what, headers] of spoofs) {
    it(`strips client-sent X-Remote-* (${what})`, async () => {
      const raw = await rawRequest(mallory, `POST /apis/authentication.k8s.io/v1/selfsubjectreviews HTTP/1.1\nHost: localhost\nContent-Type: application/json\n${headers}`, selfReview);
      const info = userInfoOf(raw);
      expect(info).toMatchObject(expected);
      expect((info as UserInfo).extra ?? {}).toEqual((await whoami(kubeUrl, mallory) as UserInfo).extra ?? {});
    });
  }

  it("never forwards header names with spaces or odd bytes", async () => {
    for (const bad of ["X-Remote-User : root\n", "X-Remote-User\t: root\n", " X-Remote-User: root\n"]) {
      const raw = await rawRequest(mallory, `POST /apis/authentication.k8s.io/v1/selfsubjectreviews HTTP/1.1\nHost: localhost\nContent-Type: application/json\n${bad}`, selfReview);
      const info = userInfoOf(raw);
      // Envoy refuses the line (400) or reads it as a continuation of the
      // previous header; the apiserver never sees an identity header.
      if (typeof info === "string") expect(info, bad).toMatch(/^HTTP\/1\.1 4\d\d/);
      else expect(info, bad).toMatchObject(expected);
    }
  });

  it("sends the same identity over HTTP/2 whatever the client adds", async () => {
    const info = await whoami(envoy.url, mallory, { "x-remote-user": "root", "x-remote-group": ["system:masters", "x"], "x-remote-extra-a": "b" });
    expect(info).toEqual(await whoami(kubeUrl, mallory));
  });
});

describe("attack: impersonation is authorized by the apiserver, as directly", () => {
  // Each side with a discovery cache of its own, filled as the user itself
  // (discovery is open to every authenticated user) before impersonating.
  const kubectlPair = async (who: KeyPair, name: string) => {
    const side = async (where: string, url: string) => {
      const kubectl = kubectlOn(await writeKubeconfig(join(dir, `${name}-${where}.kubeconfig`), url, pki.ca.certFile, who));
      const cacheDir = `--cache-dir=${join(dir, `cache-${name}-${where}`)}`;
      await kubectl(cacheDir, "api-resources", "-o", "name");
      return (...args: string[]) => kubectl(cacheDir, ...args);
    };
    return { through: await side("through", envoy.url), direct: await side("direct", kubeUrl) };
  };
  // The server's words, without kubectl's command line.
  const outcome = (promise: Promise<string>) => promise.then((out) => ({ ok: out }), (error: Error) => ({ error: error.message.replace(/^kubectl [^\n]*?: (?=Error from server)/, "") }));

  it("a user without impersonate rights is Forbidden, as directly (never runs as themselves)", async () => {
    const { through, direct } = await kubectlPair(mallory, "mallory");
    const args = ["--as=nobody", "get", "pods", "-n", "default"];
    const straight = await outcome(direct(...args));
    expect(straight).toMatchObject({ error: expect.stringContaining("cannot impersonate") });
    expect(await outcome(through(...args))).toEqual(straight);
  });

  it("an admin who downscopes with --as gets the downscoped rights, as directly", async () => {
    const { through, direct } = await kubectlPair(admin, "admin");
    const args = ["--as=nobody", "get", "pods", "-n", "default"];
    const straight = await outcome(direct(...args));
    expect(straight).toMatchObject({ error: expect.stringContaining('User "nobody" cannot list resource "pods"') });
    expect(await outcome(through(...args))).toEqual(straight);
    const whoArgs = ["auth", "whoami", "-o", "json", "--as=nobody", "--as-group=team-a", "--as-uid=u-1"];
    // The status, not the whole review: its creationTimestamp is the second each was made in.
    const review = async (run: typeof through) => (JSON.parse((await outcome(run(...whoArgs)) as { ok: string }).ok) as { status: unknown }).status;
    expect(await review(through)).toEqual(await review(direct));
  });

  it("Impersonate-Extra-* and Impersonate-Uid reach the apiserver", async () => {
    const headers = { "impersonate-user": "nobody", "impersonate-uid": "u-2", "impersonate-extra-scopes": ["a", "b"] };
    const through = await whoami(envoy.url, admin, headers);
    expect(through).toMatchObject({ username: "nobody", uid: "u-2", extra: { scopes: ["a", "b"] } });
    expect(through).toEqual(await whoami(kubeUrl, admin, headers));
    const refused = (await whoami(envoy.url, mallory, headers)) as Reply;
    expect(refused.status).toBe(403);
    expect(refused).toEqual(await whoami(kubeUrl, mallory, headers));
  });
});

/** The status line a raw WebSocket handshake gets (HTTP/1.1 over TLS), from the gateway or directly. */
function upgradeStatus(url: string, client: KeyPair, path: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port), ca: readFileSync(pki.ca.certFile), cert: readFileSync(client.certFile), key: readFileSync(client.keyFile), servername: "localhost", ALPNProtocols: ["http/1.1"] }, () => {
      socket.write(
        [`GET ${path} HTTP/1.1`, "Host: localhost", "Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: d2hhcmYtdXBncmFkZS10ZXN0", "Sec-WebSocket-Protocol: v4.channel.k8s.io", "", ""].join("\r\n"),
      );
    });
    let head = "";
    socket.on("data", (chunk: Buffer) => {
      head += chunk.toString("latin1");
      const end = head.indexOf("\r\n");
      if (end >= 0) {
        resolve(head.slice(0, end));
        socket.destroy();
      }
    });
    socket.on("error", reject);
    socket.setTimeout(10_000, () => socket.destroy(new Error("upgrade request timed out")));
  });
}

describe("attack: names HTTP/1.1 would change, on an upgrade", () => {
  it("a group ' system:masters' never becomes system:masters on a WebSocket upgrade: 401, where directly it is a powerless group (403)", async () => {
    const padded = await issueCertificate(dir, pki.ca, { name: "padded-masters", commonName: "unused", subject: "/O= system:masters/CN=padded", usage: "client" });
    const path = "/api/v1/namespaces/kube-system/secrets?watch=true";
    // Directly, the apiserver keeps the space: the group is not system:masters.
    expect(await upgradeStatus(kubeUrl, padded, path)).toMatch(/^HTTP\/1\.1 403/);
    // Through the gateway an upgrade rides HTTP/1.1 to the apiserver, whose
    // header parsing trims spaces at the ends of values (" system:masters"
    // would be read as system:masters): the gateway refuses it instead.
    expect(await upgradeStatus(envoy.url, padded, path)).toMatch(/^HTTP\/1\.1 401/);
    // Control: the same certificate without an upgrade (HTTP/2 upstream) is that padded group, as directly.
    const viaGateway = await whoami(envoy.url, padded);
    expect(viaGateway).toMatchObject({ username: "padded", groups: expect.arrayContaining([" system:masters"]) as unknown });
    expect(viaGateway).toEqual(await whoami(kubeUrl, padded));
  });
});

describe("attack: a forged x-forwarded-client-cert carrying the admin's (public) certificate", () => {
  const forged = () => `Hash=00;Cert="${encodeURIComponent(readFileSync(admin.certFile, "utf8"))}"`;

  it("without a client certificate: 401, never the admin", async () => {
    const reply = (await whoami(envoy.url, undefined, { "x-forwarded-client-cert": forged() })) as Reply;
    expect(reply.status).toBe(401);
  });

  it("with another client's certificate: that client, never the admin", async () => {
    expect(await whoami(envoy.url, mallory, { "x-forwarded-client-cert": forged() })).toEqual(await whoami(kubeUrl, mallory));
    const raw = await rawRequest(mallory, `POST /apis/authentication.k8s.io/v1/selfsubjectreviews HTTP/1.1\nHost: localhost\nContent-Type: application/json\nX-Forwarded-Client-Cert: ${forged()}\nx-forwarded-client-cert: ${forged()}\n`, selfReview);
    expect(userInfoOf(raw)).toMatchObject({ username: "mallory", groups: ["system:authenticated"] });
  });
});

describe("attack: anonymous requests", () => {
  it("get a clear 401 Status from the gateway, never a TLS error", async () => {
    for (const path of ["/version", "/healthz", "/api"]) {
      const direct = await send(kubeUrl, "GET", path, undefined);
      expect([200, 403], `${path} directly`).toContain(direct.status);
      const through = await send(envoy.url, "GET", path, undefined);
      expect(through.status, path).toBe(401);
      expect(JSON.parse(through.body)).toMatchObject({ kind: "Status", reason: "Unauthorized", code: 401, message: "Unauthorized: present a client certificate or a bearer token" });
    }
  });
});

describe("attack: upstream TLS checks the apiserver's name", () => {
  it("refuses an apiserver whose certificate lacks the expected name; accepts the right one", async () => {
    const stat = async (name: string) => {
      const stats = await (await fetch(`${envoy.adminUrl}/stats?filter=${encodeURIComponent(name)}`)).text();
      return Number(/: (\d+)/.exec(stats)?.[1] ?? "0");
    };
    const refused = await send(envoy.url, "GET", "/api/v1/namespaces/wrong-name/configmaps", admin);
    expect(refused.status).toBe(503);
    expect(await stat("cluster.pool-b.ssl.fail_verify_san")).toBeGreaterThan(0);
    const served = await send(envoy.url, "GET", "/api/v1/namespaces/default/configmaps", admin);
    expect(served.status).toBe(200);
    expect(await stat("cluster.pool-a.ssl.fail_verify_san")).toBe(0);
  });
});

describe("attack: bearer tokens through real Envoy", () => {
  it("a service account token: the same user, uid, groups and extra through the gateway as directly", async () => {
    const headers = { authorization: `Bearer ${robotToken}` };
    const direct = (await whoami(kubeUrl, undefined, headers)) as UserInfo;
    expect(direct.username).toBe("system:serviceaccount:default:identity-robot");
    expect(direct.uid).toBeTruthy();
    expect(Object.keys(direct.extra ?? {})).toContain("authentication.kubernetes.io/credential-id");
    expect(await whoami(envoy.url, undefined, headers)).toEqual(direct);
    // A cache hit states the same.
    expect(await whoami(envoy.url, undefined, headers)).toEqual(direct);
  });

  it("a flood of made-up tokens costs the apiserver a bounded number of TokenReviews", async () => {
    const upstreamRequests = async () => {
      const stats = await (await fetch(`${envoy.adminUrl}/stats?filter=^cluster\\.pool-a\\.upstream_rq_total$`)).text();
      return Number(/: (\d+)/.exec(stats)?.[1] ?? "NaN");
    };
    const before = await upstreamRequests();
    const started = Date.now();
    const statuses: number[] = [];
    for (let i = 0; i < 60; i++) statuses.push((await send(envoy.url, "GET", "/api/v1/namespaces/default/pods", undefined, { authorization: `Bearer junk-${Date.now()}-${i}` })).status);
    const elapsedSeconds = (Date.now() - started) / 1000;
    const reviews = (await upstreamRequests()) - before;
    // Every junk token is refused: 401 once reviewed, 429 when over the source's budget.
    expect(statuses.every((status) => status === 401 || status === 429)).toBe(true);
    expect(statuses.filter((status) => status === 429).length).toBeGreaterThan(30);
    // Only reviews reached pool-a (no request with a junk token is forwarded); a health check may add one per 2 s.
    expect(reviews).toBeLessThanOrEqual(reviewBurst + Math.ceil(elapsedSeconds * reviewRate) + Math.ceil(elapsedSeconds / 2) + 1);
  });
});

describe("attack: identities no client certificate can carry, decoded by the real apiserver", () => {
  it("the filter's X-Remote-* for odd uid, groups and extra keys read back exactly (replayed with the front-proxy certificate)", async () => {
    const host = await gatewayHost({ tokenReview: { cluster: "pool-a" } });
    const user = {
      username: " replayed user ",
      uid: "u-9 ",
      groups: ["g 1", "a,b", "system:authenticated"],
      extra: { "Scopes/Odd Key%": ["x", "y,z"], "example.com/ünïcode": ["v"], "a+b=c;d": ["w"], "authentication.kubernetes.io/credential-id": ["JTI=1"] },
    };
    const { stream } = request(host, "GET", "/api", [["authorization", "Bearer replayed"]]);
    host.respondToCall(host.calls[0]!, [[":status", "201"]], JSON.stringify({ status: { authenticated: true, user } }));
    const headers: Record<string, string[]> = {};
    for (const [name, value] of stream.requestHeaders) if (name.startsWith("x-remote-")) (headers[name] ??= []).push(value);
    // Over HTTP/2, as Envoy talks to the apiserver (HTTP/1.1 would trim the values' spaces).
    const session = http2Connect(kubeUrl, { ca: readFileSync(pki.ca.certFile), cert: readFileSync(pki.frontProxyClient.certFile), key: readFileSync(pki.frontProxyClient.keyFile) });
    try {
      const body = await new Promise<string>((resolve, reject) => {
        const req = session.request({ ":method": "POST", ":path": "/apis/authentication.k8s.io/v1/selfsubjectreviews", "content-type": "application/json", ...headers });
        let text = "";
        req.setEncoding("utf8");
        req.on("data", (chunk: string) => (text += chunk));
        req.on("end", () => resolve(text));
        req.on("error", reject);
        req.end(selfReview);
      });
      expect((JSON.parse(body) as { status: { userInfo: UserInfo } }).status.userInfo).toEqual(user);
    } finally {
      session.close();
    }
  });
});
