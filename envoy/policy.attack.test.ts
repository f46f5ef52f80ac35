// attack: policy bypass by query and path quirks, collections and
// all-namespace requests, through real Envoy in front of a real
// kube-apiserver that writes an audit log. The audit log is the apiserver's
// own reading of each request (verb and objectRef come from its
// RequestInfo), so the filter's classification is compared with the
// reference, not with a hand-written table; and each deny is checked by its
// effect (the object is still there).
import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { request as httpsRequest } from "node:https";
import { connect } from "node:tls";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { clientCertificate, encodeGatewayConfig, gatewayHost, requestInfoOf, type GatewayConfigInit } from "../filters/src/gateway/harness.js";
import type { ProxyWasmHost } from "../filters/src/test-host/host.js";
import { wasmPath } from "@wharf/filters";
import {
  createClusterPki,
  issueCertificate,
  kubectlOn,
  makeWorkDir,
  removeWorkDir,
  startGatewayEnvoy,
  startKubeApiserver,
  waitFor,
  type ClusterPki,
  type GatewayEnvoy,
  type KeyPair,
  type KubeApiserver,
} from "@wharf/testkit";

const deny = (name: string, rules: NonNullable<GatewayConfigInit["policies"]>[number]["rules"]) => ({
  name,
  rules,
  action: { target: { case: "deny" as const, value: { message: `denied by ${name}` } } },
});

const gatewayConfig: GatewayConfigInit = {
  policies: [
    deny("protect-critical", [{ resources: ["configmaps"], resourceNames: ["critical"], namespaces: ["prod"], verbs: ["get", "delete"] }]),
    deny("no-vault", [{ namespaces: ["vault"] }]),
    deny("no-exec", [{ resources: ["pods/exec"] }]),
    deny("no-listing-dev-secrets", [{ resources: ["secrets"], namespaces: ["dev"], verbs: ["list", "-watch"] }]),
  ],
  defaultAction: { target: { case: "upstream", value: "pool-a" } },
};

let dir: string;
let pki: ClusterPki;
let apiserver: KubeApiserver;
let envoy: GatewayEnvoy;
let alice: KeyPair;
let host: ProxyWasmHost;

interface Answer {
  status: number;
  body: string;
}

/** One request with the path sent byte for byte (no URL normalisation); a streaming answer is cut after `cutMs`. */
function send(base: string, client: KeyPair, method: string, path: string, auditId: string, cutMs = 300): Promise<Answer> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: url.hostname,
        port: url.port,
        method,
        path,
        ca: readFileSync(pki.ca.certFile),
        cert: readFileSync(client.certFile),
        key: readFileSync(client.keyFile),
        headers: { "audit-id": auditId },
        timeout: 10_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        const done = () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") });
        const cut = setTimeout(() => {
          done();
          res.destroy();
        }, cutMs);
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => {
          clearTimeout(cut);
          done();
        });
        res.on("error", () => undefined);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on("error", reject);
    req.end();
  });
}

/** A request written on the socket as is (Node's client would upper-case the method); the status line and body. */
function sendRaw(base: string, client: KeyPair, method: string, path: string): Promise<string> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(
      { host: url.hostname, port: Number(url.port), ca: readFileSync(pki.ca.certFile), cert: readFileSync(client.certFile), key: readFileSync(client.keyFile), servername: "localhost" },
      () => socket.write(`${method} ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`),
    );
    let text = "";
    socket.on("data", (chunk: Buffer) => (text += chunk.toString("utf8")));
    socket.on("end", () => resolve(text));
    socket.on("error", reject);
    socket.setTimeout(10_000, () => socket.destroy(new Error(`${method} ${path} timed out`)));
  });
}

interface AuditEvent {
  auditID: string;
  stage: string;
  verb: string;
  objectRef?: { resource?: string; subresource?: string; namespace?: string; name?: string; apiGroup?: string; apiVersion?: string };
}

async function auditEvents(): Promise<AuditEvent[]> {
  const text = await readFile(apiserver.auditLogFile!, "utf8");
  return text
    .split("\n")
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as AuditEvent);
}

/** The apiserver's classification of the request it logged under `auditId`. */
async function apiserverReading(auditId: string): Promise<Record<string, string>> {
  let event: AuditEvent | undefined;
  await waitFor(
    async () => {
      event = (await auditEvents()).find((candidate) => candidate.auditID === auditId);
      return event !== undefined;
    },
    5000,
    `an audit event with ID ${auditId}`,
  );
  const ref = event!.objectRef;
  return ref
    ? {
        isResource: "true",
        verb: event!.verb,
        group: ref.apiGroup ?? "",
        version: ref.apiVersion ?? "",
        namespace: ref.namespace ?? "",
        resource: ref.resource ?? "",
        subresource: ref.subresource ?? "",
        name: ref.name ?? "",
      }
    : { isResource: "false", verb: event!.verb };
}

function filterReading(method: string, path: string): Record<string, string> {
  const info = requestInfoOf(host, method, path);
  const fields = info.isResource === "true" ? ["isResource", "verb", "group", "version", "namespace", "resource", "subresource", "name"] : ["isResource", "verb"];
  return Object.fromEntries(fields.map((field) => [field, info[field] ?? "(missing)"]));
}

beforeAll(async () => {
  dir = await makeWorkDir("policy-attack");
  pki = await createClusterPki(dir);
  apiserver = await startKubeApiserver({ etcdServers: [inject("referenceEtcd").endpoint], pki, auditLog: true, extraArgs: ["--etcd-prefix=/policy-attack"] });
  const serving = await issueCertificate(dir, pki.ca, { name: "envoy", commonName: "envoy", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], usage: "server" });
  alice = await issueCertificate(dir, pki.ca, { name: "alice", commonName: "alice", organizations: ["system:masters"], usage: "client" });
  envoy = await startGatewayEnvoy({
    pki,
    serving,
    wasmFile: wasmPath("gateway"),
    gatewayConfig: encodeGatewayConfig(gatewayConfig),
    poolA: [apiserver.url],
    poolB: [apiserver.url],
  });
  host = await gatewayHost({ annotateRequests: true }, { clientCert: await clientCertificate({ subject: "/CN=classifier" }) });
  const admin = kubectlOn(apiserver.kubeconfig);
  for (const namespace of ["prod", "dev", "vault", "quirks"]) await admin("create", "namespace", namespace);
  for (const name of ["critical", "other"]) await admin("create", "configmap", name, "-n", "prod", "--from-literal=k=v");
  await admin("create", "configmap", "kept", "-n", "vault", "--from-literal=k=v");
  await admin("create", "secret", "generic", "token", "-n", "dev", "--from-literal=k=v");
  await waitFor(async () => (await send(envoy.url, alice, "GET", "/readyz", randomUUID())).status === 200, 30_000, "the gateway to pass /readyz");
}, 180_000);

afterAll(async () => {
  await envoy?.stop();
  await apiserver?.stop();
  if (dir) await removeWorkDir(dir);
});

const q = "/api/v1/namespaces/quirks/configmaps";

/** Requests whose reading by the filter must equal the apiserver's, field for field. */
const agreed: Array<[string, string]> = [
  ["GET", `${q}?watch=1;`],
  ["GET", `${q}?watch=1;&watch=1`],
  ["GET", `${q}?watch=%ZZ`],
  ["GET", `${q}?watch=%ZZ&watch=true`],
  ["GET", `${q}?watch=fal%C5%BFe`],
  ["GET", `${q}?watch=FaLsE`],
  ["GET", `${q}?watch=fals%C1%A5`],
  ["GET", `${q}?watch=false&watch=true`],
  ["GET", `${q}?watch=0+`],
  ["GET", `${q}?watch`],
  ["GET", `${q}?w%61tch=1`],
  ["GET", `${q}?fieldSelector=metadata.name%3Dcritical`],
  ["GET", `${q}?fieldSelector=metadata.name%3D%3Dcritical`],
  ["GET", `${q}?fieldSelector=metadata.name%3Dzeta,metadata.name%3Dalpha`],
  ["GET", `${q}?fieldSelector=metadata.name%3D%3Dzeta,metadata.name%3Dalpha`],
  ["GET", `${q}?fieldSelector=%20metadata.name%3Dcritical`],
  ["GET", `${q}?fieldSelector=metadata.name%3D%20critical`],
  ["GET", `${q}?fieldSelector=metadata.name%3Dcrit%5C%2Cical`],
  ["GET", `${q}?fieldSelector=metadata.name%3Da%2Fb`],
  ["GET", `${q}?fieldSelector=metadata.name!%3Dcritical`],
  ["GET", `${q}?fieldSelector=metadata.name%3Dcritical&fieldSelector=metadata.name%3Dother`],
  ["GET", `${q}?fieldSelector=metadata.name%3Dcritical&labelSelector=app%3Dweb,tier!%3Ddb`],
  ["GET", `${q}?labelSelector=app+in+(web,db)`],
  ["GET", `${q}?limit=%2B5&timeoutSeconds=007`],
  ["GET", `${q}?watch=true&fieldSelector=metadata.name%3Dcritical`],
  ["GET", `${q}?fieldSelector=metadata.name%3D${"x".repeat(30_000)}`],
  ["HEAD", q],
  ["DELETE", `${q}?fieldSelector=metadata.name%3Dcritical`],
  ["POST", `${q}?watch=true`],
  ["GET", `${q}/critical/`],
  ["GET", `${q}/a+b`],
  ["GET", `${q}/%C3%A9`],
  ["GET", "/api/v1/configmaps?watch=true"],
  ["GET", "/api/v1/configmaps?fieldSelector=metadata.namespace%3Dquirks"],
  ["GET", "/api/v1/watch/namespaces/quirks/configmaps/critical"],
  ["GET", "/api/v1/namespaces/quirks"],
  ["GET", "/api/v1/namespaces/quirks/status"],
  ["GET", "/apis/apps/v1/namespaces/quirks/deployments/d/scale"],
  ["GET", "/api/v1/namespaces/quirks/pods/p/log"],
  ["GET", "/api/v1/nodes"],
  ["GET", "/apis/apps/v1"],
  ["GET", "/healthz"],
];

/** Requests the filter refuses; `apiserver` is what the apiserver made of the same bytes, where that shows why. */
const refused: Array<{ method: string; path: string; apiserver?: Record<string, string> }> = [
  { method: "GET", path: `${q}?${"x&".repeat(10_000)}watch=true`, apiserver: { verb: "list" } },
  { method: "GET", path: `${q}?${"x&".repeat(1_000)}watch=true`, apiserver: { verb: "watch" } },
  { method: "GET", path: `${q}/critical%2Fstatus`, apiserver: { name: "critical", subresource: "status" } },
  { method: "GET", path: `/api/v1/namespaces/quirks/../prod/configmaps`, apiserver: { namespace: "quirks", resource: "..", name: "prod" } },
  { method: "GET", path: `/api/v1/namespaces//configmaps`, apiserver: { namespace: "", resource: "configmaps" } },
  { method: "GET", path: `${q}/%2e%2e` },
  { method: "GET", path: `${q}/%ZZ` },
  { method: "GET", path: `${q}?limit=abc&fieldSelector=metadata.name%3Dcritical`, apiserver: { verb: "list", name: "" } },
  { method: "GET", path: `${q}?fieldSelector=metadata.name%3Dcritical,garbage`, apiserver: { verb: "list", name: "" } },
  { method: "GET", path: `${q}?fieldSelector=metadata.name%3Dcrit%5Cical` },
  { method: "GET", path: `${q}?labelSelector=app+in+(web&fieldSelector=metadata.name%3Dcritical`, apiserver: { verb: "list", name: "" } },
];

describe("attack: the filter reads every request as the apiserver does (its audit log)", () => {
  it(`agrees on ${agreed.length} crafted requests sent through Envoy`, async () => {
    const mismatches: string[] = [];
    for (const [method, path] of agreed) {
      let auditId = randomUUID();
      const answer = await send(envoy.url, alice, method, path, auditId);
      expect(answer.body, `${method} ${path.slice(0, 120)}`).not.toContain("the gateway refuses");
      if (answer.status === 403 && answer.body.includes("denied by ")) {
        // A policy of this file's gateway denied it: the same bytes straight to the apiserver.
        auditId = randomUUID();
        await send(apiserver.url, pki.admin, method, path, auditId);
      }
      const theirs = await apiserverReading(auditId).catch((error: Error) => ({ error: error.message }));
      const ours = filterReading(method, path);
      if (JSON.stringify(ours) !== JSON.stringify(theirs)) mismatches.push(`${method} ${path.slice(0, 120)}\n  apiserver ${JSON.stringify(theirs)}\n  filter    ${JSON.stringify(ours)}`);
    }
    expect(mismatches).toEqual([]);
  }, 120_000);

  it(`refuses ${refused.length} requests it cannot be sure about (400, Status), which never reach the apiserver`, async () => {
    const throughEnvoy: string[] = [];
    for (const { method, path, apiserver: expected } of refused) {
      const auditId = randomUUID();
      throughEnvoy.push(auditId);
      const answer = await send(envoy.url, alice, method, path, auditId);
      expect(answer.status, `${method} ${path.slice(0, 120)}`).toBe(400);
      expect(JSON.parse(answer.body)).toMatchObject({ kind: "Status", reason: "BadRequest", code: 400 });
      if (expected) {
        // The same bytes straight to the apiserver: its reading shows what a guess would have got wrong.
        const direct = randomUUID();
        await send(apiserver.url, pki.admin, method, path, direct);
        expect(await apiserverReading(direct), `${method} ${path.slice(0, 120)}`).toMatchObject(expected);
      }
    }
    // Nothing refused was forwarded: the apiserver never saw the IDs the refused requests carried.
    const seen = new Set((await auditEvents()).map((event) => event.auditID));
    expect(throughEnvoy.filter((id) => seen.has(id))).toEqual([]);
  }, 120_000);
});

/** Random requests built from the quirks above, from a fixed seed. */
function quirkyRequests(count: number): Array<[string, string]> {
  let seed = 20261202;
  const random = () => (seed = (seed * 48271) % 0x7fffffff) / 0x7fffffff;
  const pick = <T>(items: T[]): T => items[Math.floor(random() * items.length)]!;
  const keys = ["watch", "w%61tch", "%77atch", "watch+", "Watch", "fieldSelector", "fieldSelector", "labelSelector", "limit", "timeoutSeconds", "resourceVersion"];
  const watchValues = ["1", "0", "true", "false", "FALSE", "fal%C5%BFe", "fals%C1%A5", "", "%ZZ", "0+", "t%72ue", "%30", "%E2%84%AA"];
  const terms = ["metadata.name%3Dcritical", "metadata.name%3D%3Dother", "metadata.name!%3Dx", "%20metadata.name%3Dy", "metadata.namespace%3Dquirks", "spec.x%3Dz", "metadata.name%3Dc%5C%2Cd", "metadata.name%3D", "metadata.name%3Da%2Fb", "metadata.name%3D..", "garbage", "metadata.name%3Dzz%5Cx"];
  const labels = ["app%3Dweb", "app+in+(web)", "!app", "app", "a%3D%3Db", "bad%3D%3D%3D", "tier!%3Ddb,app"];
  const limits = ["5", "%2B5", "abc", "", "-1", "99999999999999999999", "007"];
  const paths = [q, q, q, "/api/v1/configmaps", "/apis/apps/v1/namespaces/quirks/deployments", "/api/v1/namespaces"];
  const requests: Array<[string, string]> = [];
  for (let i = 0; i < count; i++) {
    const pairs: string[] = [];
    const n = 1 + Math.floor(random() * 4);
    for (let j = 0; j < n; j++) {
      const key = pick(keys);
      const plain = key.replace("%61", "a").replace("%77", "w");
      let value: string;
      if (plain === "watch") value = pick(watchValues);
      else if (plain === "fieldSelector") value = Array.from({ length: 1 + Math.floor(random() * 3) }, () => pick(terms)).join(pick([",", "%2C"]));
      else if (plain === "labelSelector") value = pick(labels);
      else value = pick(limits);
      const form = random();
      pairs.push(form < 0.08 ? key : form < 0.14 ? `${key}=${value};` : `${key}=${value}`);
    }
    requests.push([random() < 0.85 ? "GET" : "DELETE", `${pick(paths)}?${pairs.join(random() < 0.9 ? "&" : "&&")}`]);
  }
  return requests;
}

describe("attack: random combinations of the quirks, read by the filter and by the apiserver", () => {
  it("agree wherever the filter does not refuse", async () => {
    const requests = quirkyRequests(240);
    const sent: Array<{ method: string; path: string; auditId: string }> = [];
    const refusals: Array<{ method: string; path: string; reason: string }> = [];
    for (let i = 0; i < requests.length; i += 12) {
      await Promise.all(
        requests.slice(i, i + 12).map(async ([method, path]) => {
          const auditId = randomUUID();
          const answer = await send(envoy.url, alice, method, path, auditId, 50);
          if (answer.body.includes("the gateway refuses")) {
            refusals.push({ method, path, reason: (JSON.parse(answer.body) as { message: string }).message });
            return;
          }
          if (answer.status === 403 && answer.body.includes("denied by ")) {
            const direct = randomUUID();
            await send(apiserver.url, pki.admin, method, path, direct, 50);
            sent.push({ method, path, auditId: direct });
          } else {
            sent.push({ method, path, auditId });
          }
        }),
      );
    }
    let events = new Map<string, AuditEvent>();
    await waitFor(
      async () => {
        events = new Map((await auditEvents()).map((event) => [event.auditID, event]));
        return sent.every(({ auditId }) => events.has(auditId));
      },
      10_000,
      () => `audit events for ${sent.filter(({ auditId }) => !events.has(auditId)).length} requests`,
    );
    const mismatches: string[] = [];
    for (const { method, path, auditId } of sent) {
      const theirs = await apiserverReading(auditId);
      const ours = filterReading(method, path);
      if (JSON.stringify(ours) !== JSON.stringify(theirs)) mismatches.push(`${method} ${path}\n  apiserver ${JSON.stringify(theirs)}\n  filter    ${JSON.stringify(ours)}`);
    }
    expect(mismatches).toEqual([]);
    // Most of them are compared, not refused.
    expect(sent.length).toBeGreaterThan(requests.length / 2);
    expect(sent.length + refusals.length).toBe(requests.length);
    // A refusal costs nothing the apiserver would have served, except where a
    // label selector the filter cannot vouch for decides the reading.
    const served: string[] = [];
    for (const { method, path, reason } of refusals) {
      const direct = await send(apiserver.url, pki.admin, method, path, randomUUID(), 50);
      if (direct.status < 300 && !reason.includes("label selector")) served.push(`${method} ${path}: ${direct.status} (${reason})`);
    }
    expect(served).toEqual([]);
  }, 180_000);
});

describe("attack: denies hold against collections, selectors and all-namespace requests (objects stay)", () => {
  const admin = () => kubectlOn(apiserver.kubeconfig);
  const through = (method: string, path: string) => send(envoy.url, alice, method, path, randomUUID());
  const exists = async (namespace: string, name: string) =>
    (await send(apiserver.url, pki.admin, "GET", `/api/v1/namespaces/${namespace}/configmaps/${name}`, randomUUID())).status === 200;

  it("deleting a denied object through deletecollection, with or without a selector, is denied and it survives", async () => {
    const prod = "/api/v1/namespaces/prod/configmaps";
    const attempts = [
      `${prod}?fieldSelector=metadata.name%3Dcritical`,
      `${prod}?fieldSelector=metadata.name%3D%3Dcritical`,
      `${prod}?fieldSelector=metadata.name%3Dzzz,metadata.name%3Dcritical`,
      prod,
      `${prod}?labelSelector=`,
      "/api/v1/configmaps",
    ];
    for (const path of attempts) {
      const answer = await through("DELETE", path);
      expect(answer.status, path).toBe(403);
      expect(JSON.parse(answer.body)).toMatchObject({ kind: "Status", reason: "Forbidden", message: "denied by protect-critical" });
    }
    expect((await through("DELETE", `${prod}/critical`)).status).toBe(403);
    expect(await exists("prod", "critical")).toBe(true);
    // A selector pinning another name may delete that one only.
    expect((await through("DELETE", `${prod}?fieldSelector=metadata.name%3Dother`)).status).toBe(200);
    expect(await exists("prod", "other")).toBe(false);
    expect(await exists("prod", "critical")).toBe(true);
  });

  it("reading a denied object through list, watch or an all-namespace list is denied", async () => {
    const prod = "/api/v1/namespaces/prod/configmaps";
    for (const path of [prod, `${prod}?watch=1`, `${prod}?fieldSelector=metadata.name%3Dcritical`, "/api/v1/configmaps", "/api/v1/configmaps?watch=true", "/api/v1/watch/configmaps"]) {
      const answer = await through("GET", path);
      expect(answer.status, path).toBe(403);
      expect(answer.body).not.toContain('"k":"v"');
    }
    const allowed = await through("GET", `/api/v1/configmaps?fieldSelector=metadata.namespace%3Dquirks`);
    expect(allowed.status).toBe(200);
  });

  it("a namespace deny covers every request that could include it", async () => {
    for (const [method, path] of [
      ["GET", "/api/v1/namespaces/vault/configmaps/kept"],
      ["GET", "/api/v1/secrets"],
      ["GET", "/apis/apps/v1/deployments?watch=true"],
      ["DELETE", "/api/v1/namespaces/vault/configmaps"],
      ["GET", "/api/v1/namespaces"],
    ] as const) {
      expect((await through(method, path)).status, `${method} ${path}`).toBe(403);
    }
    expect((await through("GET", "/api/v1/nodes")).status).toBe(200);
    expect((await through("GET", "/api/v1/namespaces/quirks/configmaps")).status).toBe(200);
    expect(await admin()("get", "configmap", "kept", "-n", "vault", "-o", "name")).toContain("configmap/kept");
  });

  it("a list dressed as a watch (watch=1;) is denied as the list the apiserver would serve", async () => {
    const secrets = "/api/v1/namespaces/dev/secrets";
    for (const path of [`${secrets}?watch=1;`, `${secrets}?watch=%ZZ`, `${secrets}?watch=fal%C5%BFe`]) {
      const answer = await through("GET", path);
      expect(answer.status, path).toBe(403);
      expect(answer.body).not.toContain("token");
    }
    // The rule leaves real watches alone, so the 403s above are not a blanket deny.
    expect((await through("GET", `${secrets}?watch=1&timeoutSeconds=1`)).status).toBe(200);
  });

  it("a method in another case never reads a denied object (the filter has no verb for it; the apiserver answers 405)", async () => {
    for (const method of ["get", "Get", "dElete"]) {
      const answer = await sendRaw(envoy.url, alice, method, "/api/v1/namespaces/prod/configmaps/critical");
      expect(answer, method).not.toMatch(/^HTTP\/1\.1 2/);
      expect(answer, method).not.toContain('"k":"v"');
    }
    expect(await exists("prod", "critical")).toBe(true);
    expect(await sendRaw(envoy.url, alice, "GET", "/api/v1/namespaces/quirks/configmaps")).toMatch(/^HTTP\/1\.1 200/);
  });

  it("pods/exec is denied before the upgrade; other pod subresources reach the apiserver", async () => {
    const exec = await through("POST", "/api/v1/namespaces/dev/pods/missing/exec?command=ls&stdout=true");
    expect(exec.status).toBe(403);
    expect(JSON.parse(exec.body)).toMatchObject({ message: "denied by no-exec" });
    // The apiserver's own 404 for the missing pod: the request got through.
    const log = await through("GET", "/api/v1/namespaces/dev/pods/missing/log");
    expect(log.status).toBe(404);
    expect(JSON.parse(log.body)).toMatchObject({ kind: "Status", reason: "NotFound" });
  });
});
