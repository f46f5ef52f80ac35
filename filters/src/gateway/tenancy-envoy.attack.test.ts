// attack: tenant identities through real Envoy in front of the shared
// kube-apiserver. The listener trusts the cluster's client CA and three
// tenant-shaped CAs; only "acme" is a configured tenant. What the apiserver
// authenticates through the gateway is compared with what it authenticates
// when the mapped identity is stated to it directly in front-proxy headers.
import { readFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { wasmPath } from "../index.js";
import { certificateAuthority, encodeGatewayConfig, serialOf } from "./harness.js";
import { issueCertificate, kubectlOn, makeWorkDir, removeWorkDir, startGatewayEnvoy, waitFor, writeKubeconfig, type ClusterPki, type GatewayEnvoy, type KeyPair } from "@wharf/testkit";

let dir: string;
let pki: ClusterPki;
let kubeUrl: string;
let envoy: GatewayEnvoy;
/** Client key pairs by name. */
const clients = new Map<string, KeyPair>();

type Authority = Awaited<ReturnType<typeof certificateAuthority>>;
let acmeCa: Authority;

beforeAll(async () => {
  dir = await makeWorkDir("gateway-tenancy");
  const kube = inject("kube");
  kubeUrl = kube.url;
  pki = kube.pki;
  let gone: Authority;
  let nearAcme: Authority;
  [acmeCa, gone, nearAcme] = await Promise.all([
    certificateAuthority("/CN=wharf tenant acme CA 0123456789abcdef/O=wharf.dev"),
    certificateAuthority("/CN=wharf tenant gone CA 0123456789abcdef/O=wharf.dev"),
    // One byte off, and not one that name comparison folds (case): Envoy still verifies the chain.
    certificateAuthority("/CN=wharf tenant acme CA 0123456789abcdee/O=wharf.dev"),
  ]);
  const issue = async (name: string, ca: KeyPair, subject: string) => clients.set(name, await issueCertificate(dir, ca, { name, commonName: "unused", usage: "client", subject }));
  await Promise.all([
    issue("acme-dev", acmeCa, "/O=devs/O=system:masters/CN=dev"),
    issue("acme-revoked", acmeCa, "/O=system:masters/CN=admin"),
    issue("gone-admin", gone, "/O=system:masters/CN=admin"),
    issue("near-admin", nearAcme, "/O=system:masters/CN=admin"),
    issue("host-mallory", pki.ca, "/CN=mallory"),
    issue("host-claims-user", pki.ca, "/CN=wharf:tenant:acme:admin"),
    issue("host-claims-group", pki.ca, "/O=wharf:tenant:acme:system:masters/CN=eve"),
  ]);
  const serving = await issueCertificate(dir, pki.ca, { name: "envoy", commonName: "envoy", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], usage: "server" });
  const revoked = serialOf(readFileSync(clients.get("acme-revoked")!.certFile, "utf8"));
  envoy = await startGatewayEnvoy({
    pki,
    serving,
    wasmFile: wasmPath("gateway"),
    gatewayConfig: encodeGatewayConfig({
      tenants: [{ name: "acme", issuerSha256: acmeCa.issuerSha256, revokedSerials: [revoked] }],
      defaultAction: { target: { case: "upstream", value: "pool-a" } },
    }),
    // Envoy trusts every one of them; the filter knows only acme.
    extraClientCas: [acmeCa.pem, gone.pem, nearAcme.pem],
    poolA: [kube.url],
    poolB: [kube.url],
    serverNames: { "pool-a": "localhost" },
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

function send(base: string, method: string, path: string, client: KeyPair, headers: Record<string, string | string[]> = {}, body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      `${base}${path}`,
      {
        method,
        ca: readFileSync(pki.ca.certFile),
        cert: readFileSync(client.certFile),
        key: readFileSync(client.keyFile),
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

interface UserInfo {
  username: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

const selfReview = JSON.stringify({ apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" });

async function whoami(base: string, client: KeyPair, headers: Record<string, string | string[]> = {}): Promise<UserInfo | Reply> {
  const reply = await send(base, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", client, headers, selfReview);
  if (reply.status !== 201) return reply;
  return (JSON.parse(reply.body) as { status: { userInfo: UserInfo } }).status.userInfo;
}

/** The apiserver's own answer for an identity stated in front-proxy headers (what the gateway must produce). */
function asFrontProxy(user: string, groups: string[], extra: Record<string, string[]> = {}): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = { "x-remote-user": user, "x-remote-group": groups };
  for (const [key, values] of Object.entries(extra)) headers[`x-remote-extra-${encodeURIComponent(key).toLowerCase()}`] = values;
  return headers;
}

async function canI(base: string, client: KeyPair, headers: Record<string, string> = {}): Promise<boolean> {
  const review = { apiVersion: "authorization.k8s.io/v1", kind: "SelfSubjectAccessReview", spec: { resourceAttributes: { verb: "list", resource: "secrets", namespace: "kube-system" } } };
  const reply = await send(base, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", client, headers, JSON.stringify(review));
  expect(reply.status, reply.body).toBe(201);
  return (JSON.parse(reply.body) as { status: { allowed: boolean } }).status.allowed;
}

function refusal(reply: UserInfo | Reply): { status: number; message: string } {
  expect(reply, "a refusal, not an identity").toHaveProperty("status");
  const { status, body } = reply as Reply;
  const parsed = JSON.parse(body) as { kind: string; message: string };
  expect(parsed.kind).toBe("Status");
  return { status, message: parsed.message };
}

describe("tenant identities through Envoy", () => {
  it("a tenant CA's certificate reaches the apiserver as the mapped identity, exactly as stated directly", async () => {
    const dev = clients.get("acme-dev")!;
    const through = (await whoami(envoy.url, dev)) as UserInfo;
    expect(through.username).toBe("wharf:tenant:acme:dev");
    expect(through.groups).toEqual(["wharf:tenant:acme", "wharf:tenant:acme:devs", "wharf:tenant:acme:system:masters", "system:authenticated"]);
    const direct = await whoami(kubeUrl, pki.frontProxyClient, asFrontProxy(through.username, through.groups!, through.extra));
    expect(through).toEqual(direct);
    expect(Object.keys(through.extra ?? {})).toEqual(["authentication.kubernetes.io/credential-id"]);
  });

  it("kubectl auth whoami with the tenant's certificate says the same", async () => {
    const kubectl = kubectlOn(await writeKubeconfig(join(dir, "acme-dev.kubeconfig"), envoy.url, pki.ca.certFile, clients.get("acme-dev")!));
    const { status } = JSON.parse(await kubectl("auth", "whoami", "-o", "json")) as { status: { userInfo: UserInfo } };
    expect(status.userInfo).toEqual(await whoami(envoy.url, clients.get("acme-dev")!));
  });

  it("a tenant's own system:masters is not the host's: no cluster-wide rights upstream", async () => {
    expect(await canI(envoy.url, clients.get("acme-dev")!)).toBe(false);
    // The same question as the host's system:masters is allowed: the check can say yes.
    expect(await canI(kubeUrl, pki.frontProxyClient, { "x-remote-user": "dev", "x-remote-group": "system:masters" })).toBe(true);
  });
});

describe("attack: tenant identities through Envoy", () => {
  it("ignores client-sent x-wharf-tenant and X-Remote-* for tenant and host callers", async () => {
    const spoof = { "x-wharf-tenant": "beta", "x-remote-user": "wharf:tenant:beta:admin", "x-remote-group": ["wharf:tenant:beta:system:masters", "system:masters"] };
    expect(await whoami(envoy.url, clients.get("acme-dev")!, spoof)).toEqual(await whoami(envoy.url, clients.get("acme-dev")!));
    const mallory = clients.get("host-mallory")!;
    const spoofed = (await whoami(envoy.url, mallory, { ...spoof, "x-wharf-tenant": "acme" })) as UserInfo;
    expect(spoofed).toEqual(await whoami(kubeUrl, mallory));
    expect(spoofed.username).toBe("mallory");
  });

  it("refuses (401) a host certificate claiming a tenant user or group, which the apiserver itself would accept", async () => {
    for (const name of ["host-claims-user", "host-claims-group"]) {
      const client = clients.get(name)!;
      expect((await whoami(kubeUrl, client)) as UserInfo, "directly, the cluster CA's certificate authenticates").toHaveProperty("username");
      expect(refusal(await whoami(envoy.url, client))).toEqual({ status: 401, message: expect.stringContaining("reserved for tenant identities") });
    }
  });

  it("refuses (401) a revoked serial", async () => {
    expect(refusal(await whoami(envoy.url, clients.get("acme-revoked")!))).toEqual({ status: 401, message: expect.stringMatching(/^client certificate: revoked \(serial [0-9a-f]+ of tenant acme\)$/) });
  });

  it("refuses (401) a certificate of a tenant CA Envoy trusts but no configured tenant has (a deleted tenant)", async () => {
    expect(refusal(await whoami(envoy.url, clients.get("gone-admin")!))).toEqual({ status: 401, message: "client certificate: issued by a wharf tenant CA of no configured tenant" });
  });

  it("refuses (401) a CA whose subject differs from the tenant's by one byte", async () => {
    expect(refusal(await whoami(envoy.url, clients.get("near-admin")!)).status).toBe(401);
  });

  it("refuses (403) impersonation by a tenant identity, before the apiserver sees it", async () => {
    const reply = await whoami(envoy.url, clients.get("acme-dev")!, { "impersonate-user": "system:admin" });
    expect(refusal(reply)).toEqual({ status: 403, message: "impersonation is not available to tenant identities" });
  });
});
