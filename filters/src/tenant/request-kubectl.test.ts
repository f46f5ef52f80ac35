// kubectl's typed commands (create namespace/configmap/deployment/clusterrole/
// clusterrolebinding, auth can-i) send protobuf bodies. Here
// real kubectl talks to a small HTTP front that runs each request through the
// compiled tenant filter (request mapped, sent to the real kube-apiserver as
// the admin, response mapped back); every command's output must equal the
// same command run directly against the apiserver on a plain namespace, and
// the apiserver must hold the tenant's objects under their upstream names.
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { request } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { kubectlOn, makeWorkDir, removeWorkDir } from "@wharf/testkit";
import type { Headers, ProxyWasmHost } from "../test-host/host.js";
import { builtInGroups, tenantEntry, tenantHost } from "./request-harness.js";

const kube = inject("kube");
const suffix = randomBytes(3).toString("hex");
const tenant = `k${suffix}`;
const prefix = `wt-${tenant}-`;
const ns = `dev${suffix}`;
/**
 * Mapped requests go upstream as the tenant's mapped identity, as the gateway
 * forwards it (system:masters standing in for the RBAC the control plane
 * grants): once another test file has installed the admission policy
 * wharf-tenancy on the shared apiserver, it refuses wt- names to anyone else.
 */
const asTenant = { "impersonate-user": `wharf:tenant:${tenant}:admin`, "impersonate-group": [`wharf:tenant:${tenant}`, "system:masters"] };

let host: ProxyWasmHost;
let server: Server;
let dir: string;
let viaFilter: (...args: string[]) => Promise<string>;
let direct: (...args: string[]) => Promise<string>;
/** Content types of the request bodies the front saw: proves kubectl sent protobuf. */
const bodyTypes = new Set<string>();

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

function upstream(method: string, path: string, headers: Record<string, string | string[]>, body: Buffer | undefined): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${kube.url}${path}`,
      { method, ca: readFileSync(kube.caFile), cert: readFileSync(kube.admin.certFile), key: readFileSync(kube.admin.keyFile), headers, timeout: 20_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: { "content-type": String(res.headers["content-type"] ?? "") }, body: Buffer.concat(chunks) }));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on("error", reject);
    req.end(body);
  });
}

/** One request through the filter: mapped, answered by the apiserver, answer mapped back. */
async function throughFilter(method: string, path: string, headers: Headers, body: Buffer | undefined): Promise<Answer> {
  const stream = host.stream();
  stream.sendRequestHeaders([[":method", method], [":path", path], [":authority", "kubernetes"], ...headers, ["x-wharf-tenant", tenant]], body === undefined);
  if (body !== undefined && stream.localResponse === undefined) {
    stream.sendRequestBody(body, true);
  }
  const refused = stream.localResponse;
  if (refused !== undefined) {
    stream.finish();
    return { status: refused.status, headers: { "content-type": "application/json" }, body: Buffer.from(refused.body) };
  }
  const sent = Object.fromEntries(stream.requestHeaders.filter(([name]) => !name.startsWith(":") && name !== "host" && name !== "connection"));
  const answer = await upstream(method, stream.header(":path")!, { ...sent, ...asTenant }, body === undefined ? undefined : Buffer.from(stream.bodyBytes("request")));
  stream.sendResponseHeaders([[":status", String(answer.status)], ["content-type", answer.headers["content-type"] ?? ""]], answer.body.length === 0);
  let out = Buffer.alloc(0);
  if (answer.body.length > 0 && stream.localResponse === undefined) {
    stream.sendResponseBody(answer.body, true);
    out = Buffer.from(stream.bodyBytes("response"));
  }
  const failed = stream.localResponse;
  stream.finish();
  if (failed !== undefined) return { status: 502, headers: { "content-type": "text/plain" }, body: Buffer.from(`response refused: ${failed.body}`) };
  return { status: answer.status, headers: answer.headers, body: out };
}

beforeAll(async () => {
  dir = await makeWorkDir("tenant-kubectl");
  host = await tenantHost({ tenants: [tenantEntry(tenant)], hostGroups: builtInGroups });
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const headers: Headers = [];
      for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
        const name = req.rawHeaders[i]!.toLowerCase();
        if (name !== "host" && name !== "connection" && name !== "transfer-encoding") headers.push([name, req.rawHeaders[i + 1]!]);
      }
      const body = chunks.length === 0 ? undefined : Buffer.concat(chunks);
      if (body !== undefined) bodyTypes.add(String(req.headers["content-type"]));
      throughFilter(req.method ?? "GET", req.url ?? "/", headers, body).then(
        (answer) => {
          res.writeHead(answer.status, answer.headers);
          res.end(answer.body);
        },
        (error: unknown) => {
          res.writeHead(502, { "content-type": "text/plain" });
          res.end(String(error));
        },
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  const kubeconfig = join(dir, "tenant.kubeconfig");
  await writeFile(
    kubeconfig,
    JSON.stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "t", cluster: { server: `http://127.0.0.1:${port}` } }],
      users: [{ name: "t", user: {} }],
      contexts: [{ name: "t", context: { cluster: "t", user: "t" } }],
      "current-context": "t",
    }),
  );
  viaFilter = kubectlOn(kubeconfig);
  direct = kubectlOn(kube.kubeconfig);
});

afterAll(async () => {
  await new Promise<void>((resolve) => server?.close(() => resolve()));
  for (const name of [ns, prefix + ns]) await direct?.("delete", "namespace", name, "--wait=false").catch(() => "");
  for (const name of [`reader${suffix}`, `${prefix}reader${suffix}`]) await direct?.("delete", "clusterrole", name).catch(() => "");
  for (const name of [`readers${suffix}`, `${prefix}readers${suffix}`]) await direct?.("delete", "clusterrolebinding", name).catch(() => "");
  if (dir) await removeWorkDir(dir);
});

const volatile = new Set(["uid", "resourceVersion", "creationTimestamp", "time", "generation"]);

function normalise(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(normalise);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, volatile.has(key) ? "<volatile>" : normalise(inner)]));
  }
  return value;
}

async function both(...args: string[]): Promise<[string, string]> {
  const seen = await viaFilter(...args).catch((error: Error) => `error: ${error.message.replace(/^kubectl .*?: /, "")}`);
  const reference = await direct(...args).catch((error: Error) => `error: ${error.message.replace(/^kubectl .*?: /, "")}`);
  return [seen, reference];
}

describe("kubectl's typed (protobuf) commands through the filter", () => {
  it("create namespace, configmap, deployment, clusterrole and binding; auth can-i answers as on a plain cluster (whoami needs the gateway's tenant identity: the e2e suite)", async () => {
    const steps: string[][] = [
      ["create", "namespace", ns],
      ["create", "configmap", "c", "-n", ns, "--from-literal=k=v"],
      ["create", "deployment", "web", "-n", ns, "--image=registry.invalid/web:1"],
      ["create", "clusterrole", `reader${suffix}`, "--verb=get,list", "--resource=configmaps"],
      ["create", "clusterrolebinding", `readers${suffix}`, `--clusterrole=reader${suffix}`, "--user=alice", "--group=devs"],
      // A service account is bound in its namespace (the admission policy refuses it in a ClusterRoleBinding).
      ["create", "rolebinding", "builders", "-n", ns, `--clusterrole=reader${suffix}`, `--serviceaccount=${ns}:builder`],
      ["auth", "can-i", "create", "configmaps", "-n", ns],
      ["auth", "can-i", "delete", "namespaces", ns],
      ["create", "configmap", "c", "-n", ns, "--from-literal=k=v"],
    ];
    for (const step of steps) {
      const [seen, reference] = await both(...step);
      expect(seen, step.join(" ")).toBe(reference);
    }
    for (const step of [["get", "namespace", ns], ["get", "configmap", "c", "-n", ns], ["get", "deployment", "web", "-n", ns], ["get", "clusterrolebinding", `readers${suffix}`], ["get", "clusterrole", `reader${suffix}`]]) {
      const [seen, reference] = await both(...step, "-o", "json");
      expect(normalise(JSON.parse(seen)), step.join(" ")).toEqual(normalise(JSON.parse(reference)));
    }
    expect([...bodyTypes]).toContain("application/vnd.kubernetes.protobuf");
    // What the apiserver holds for the tenant: its upstream names, the tenant label, mapped subjects.
    const namespace = JSON.parse(await direct("get", "namespace", prefix + ns, "-o", "json")) as { metadata: { labels: Record<string, string> } };
    expect(namespace.metadata.labels["tenancy.wharf.dev/tenant"]).toBe(tenant);
    const deployment = JSON.parse(await direct("get", "deployment", "web", "-n", prefix + ns, "-o", "json")) as { spec: { template: { metadata: { labels: Record<string, string> } } } };
    expect(deployment.spec.template.metadata.labels["tenancy.wharf.dev/tenant"]).toBe(tenant);
    const binding = JSON.parse(await direct("get", "clusterrolebinding", `${prefix}readers${suffix}`, "-o", "json")) as { subjects: unknown[]; roleRef: { name: string } };
    expect(binding.roleRef.name).toBe(`${prefix}reader${suffix}`);
    expect(binding.subjects).toEqual([
      { kind: "User", apiGroup: "rbac.authorization.k8s.io", name: `wharf:tenant:${tenant}:alice` },
      { kind: "Group", apiGroup: "rbac.authorization.k8s.io", name: `wharf:tenant:${tenant}:devs` },
    ]);
    const rolebinding = JSON.parse(await direct("get", "rolebinding", "builders", "-n", prefix + ns, "-o", "json")) as { subjects: unknown[]; roleRef: { name: string } };
    expect(rolebinding.subjects).toEqual([{ kind: "ServiceAccount", name: "builder", namespace: prefix + ns }]);
    expect(rolebinding.roleRef.name).toBe(`${prefix}reader${suffix}`);
  });
});
