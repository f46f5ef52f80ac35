// The request side against the real kube-apiserver: a tenant's workflow
// (namespace, ConfigMaps, a Deployment, patches of every kind, server-side
// apply, RBAC, a CRD and its custom resource, access reviews, paging with
// continue tokens, errors) goes through the compiled filter — request mapped,
// sent upstream, response mapped back — and every answer must equal what the
// apiserver gives for the same request made directly on a plain namespace
// with the tenant's own names (the reference), after normalising what
// differs between any two objects (uid, resourceVersion, timestamps).
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { request } from "node:https";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { waitFor } from "@wharf/testkit";
import type { Headers, ProxyWasmHost } from "../test-host/host.js";
import { builtInGroups, tenantEntry, tenantHost } from "./request-harness.js";

const kube = inject("kube");
const suffix = randomBytes(3).toString("hex");
const tenant = `q${suffix}`;
const prefix = `wt-${tenant}-`;
const ns = `dev${suffix}`;
const group = `shop${suffix}.example.com`;
const manager = "wharf-request-test";
/**
 * The mapped request goes upstream as the tenant's mapped identity, as the
 * gateway forwards it (system:masters standing in for the RBAC the control
 * plane grants): once another test file has installed the admission policy
 * wharf-tenancy on the shared apiserver, it refuses wt- names to anyone else.
 */
const asTenant = { "impersonate-user": `wharf:tenant:${tenant}:admin`, "impersonate-group": [`wharf:tenant:${tenant}`, "system:masters"] };

interface Answer {
  status: number;
  contentType: string;
  body: Buffer;
}

function call(method: string, path: string, body: string | undefined, headers: Record<string, string | string[]>): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${kube.url}${path}`,
      { method, ca: readFileSync(kube.caFile), cert: readFileSync(kube.admin.certFile), key: readFileSync(kube.admin.keyFile), headers, timeout: 20_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, contentType: String(res.headers["content-type"] ?? ""), body: Buffer.concat(chunks) }));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on("error", reject);
    req.end(body);
  });
}

let host: ProxyWasmHost;

/** The tenant's request through the filter: mapped, sent to the apiserver, its answer mapped back. */
async function viaTenant(method: string, path: string, body: string | undefined, headers: Record<string, string>): Promise<Answer> {
  const stream = host.stream();
  const sent: Headers = [[":method", method], [":path", path], [":authority", "kubernetes"], ...Object.entries(headers), ["x-wharf-tenant", tenant]];
  stream.sendRequestHeaders(sent, body === undefined);
  if (body !== undefined && stream.localResponse === undefined) stream.sendRequestBody(body, true);
  const refused = stream.localResponse;
  if (refused !== undefined) {
    stream.finish();
    return { status: refused.status, contentType: "application/json", body: Buffer.from(refused.body) };
  }
  const upstreamHeaders = Object.fromEntries(stream.requestHeaders.filter(([name]) => !name.startsWith(":")));
  const upstreamBody = body === undefined ? undefined : stream.body("request");
  const answer = await call(method, stream.header(":path")!, upstreamBody, { ...upstreamHeaders, ...asTenant });
  stream.sendResponseHeaders([[":status", String(answer.status)], ["content-type", answer.contentType]], answer.body.length === 0);
  let out = Buffer.alloc(0);
  if (answer.body.length > 0 && stream.localResponse === undefined) {
    stream.sendResponseBody(answer.body, true);
    out = Buffer.from(stream.bodyBytes("response"));
  }
  const failed = stream.localResponse;
  stream.finish();
  if (failed !== undefined) throw new Error(`the response side refused ${method} ${path}: ${failed.body}`);
  return { status: answer.status, contentType: answer.contentType, body: out };
}

const volatile = new Set(["uid", "resourceVersion", "creationTimestamp", "time", "lastTransitionTime", "generation", "continue", "remainingItemCount"]);

function normalise(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(normalise);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, volatile.has(key) && inner !== null ? "<volatile>" : normalise(inner)]));
  }
  if (typeof value === "string") return value.replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ/g, "<time>").replace(/resourceVersion[^,"]*\d+/g, "<rv>");
  return value;
}

/** The same request as the tenant (through the filter) and directly on the plain namespace; both answers, checked equal. */
async function same(method: string, path: string, body?: unknown, contentType = "application/json", extra: Record<string, string> = {}): Promise<unknown> {
  const text = body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
  const headers: Record<string, string> = { accept: "application/json", ...extra, ...(text === undefined ? {} : { "content-type": contentType }) };
  const tenantAnswer = await viaTenant(method, path, text, headers);
  const reference = await call(method, path, text, headers);
  const seen = tenantAnswer.body.toString();
  expect(tenantAnswer.status, `${method} ${path}: ${seen}`).toBe(reference.status);
  expect(seen).not.toContain(prefix);
  expect(seen).not.toContain("tenancy.wharf.dev");
  const parsed = seen.length === 0 ? null : normalise(JSON.parse(seen));
  expect(parsed, `${method} ${path}`).toEqual(reference.body.length === 0 ? null : normalise(JSON.parse(reference.body.toString())));
  return JSON.parse(seen.length === 0 ? "null" : seen);
}

/** What the apiserver stores for the tenant (admin's view of the prefixed object). */
async function upstreamObject(path: string): Promise<Record<string, unknown>> {
  const answer = await call("GET", path, undefined, { accept: "application/json" });
  expect(answer.status, answer.body.toString()).toBe(200);
  return JSON.parse(answer.body.toString()) as Record<string, unknown>;
}

beforeAll(async () => {
  host = await tenantHost({ tenants: [tenantEntry(tenant), tenantEntry("other")], hostGroups: builtInGroups });
});

afterAll(async () => {
  const headers = { accept: "application/json" };
  for (const name of [ns, prefix + ns]) await call("DELETE", `/api/v1/namespaces/${name}`, undefined, headers);
  for (const name of [`reader${suffix}`, prefix + `reader${suffix}`]) await call("DELETE", `/apis/rbac.authorization.k8s.io/v1/clusterroles/${name}`, undefined, headers);
  for (const name of [`readers${suffix}`, prefix + `readers${suffix}`]) await call("DELETE", `/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/${name}`, undefined, headers);
  for (const name of [`widgets.${group}`, `widgets.${prefix}${group}`]) await call("DELETE", `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`, undefined, headers);
});

describe("a tenant's requests through the filter equal the apiserver's answers on a plain namespace", () => {
  const fm = `fieldManager=${manager}`;

  it("namespace and ConfigMaps: create, get, conflicts, selectors, all-namespace lists, not-found errors", async () => {
    await same("POST", `/api/v1/namespaces?${fm}`, { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } });
    // The namespace carries the tenant label upstream (set by the filter, hidden from the tenant).
    const stored = await upstreamObject(`/api/v1/namespaces/${prefix}${ns}`);
    expect((stored.metadata as { labels: Record<string, string> }).labels).toMatchObject({ "tenancy.wharf.dev/tenant": tenant, "kubernetes.io/metadata.name": prefix + ns });
    // Unusual but valid JSON: spacing, escapes, key order, an exact big number in an annotation's text.
    const odd = `{ "apiVersion" : "v1", "kind":"ConfigMap" ,"metadata":{"name":"odd","labels":{"app":"web"},"annotations":{"n":"12345678901234567890","\\u0041":"\\ud83d\\ude00"}},\n"data":{"k":"v"} }`;
    await same("POST", `/api/v1/namespaces/${ns}/configmaps?${fm}`, odd);
    for (const name of ["alpha", "beta", "gamma"]) await same("POST", `/api/v1/namespaces/${ns}/configmaps?${fm}`, { metadata: { name, labels: { app: name === "gamma" ? "db" : "web" } }, data: { k: name } });
    await same("POST", `/api/v1/namespaces/${ns}/configmaps?${fm}`, { metadata: { name: "alpha" } });
    await same("GET", `/api/v1/namespaces/${ns}/configmaps/odd`);
    await same("GET", `/api/v1/namespaces/${ns}/configmaps?labelSelector=app%3Dweb`);
    await same("GET", `/api/v1/configmaps?fieldSelector=metadata.namespace%3D${ns}&labelSelector=app%3Dweb`);
    await same("GET", `/api/v1/namespaces?fieldSelector=metadata.name%3D${ns}`);
    await same("GET", `/api/v1/namespaces/${ns}/configmaps/missing`);
    await same("POST", `/api/v1/namespaces/nope${suffix}/configmaps?${fm}`, { metadata: { name: "x" } });
    await same("DELETE", `/api/v1/namespaces/${ns}/configmaps/beta`);
  });

  it("patches: merge, strategic merge, JSON patch and server-side apply end in the same objects", async () => {
    await same("PATCH", `/api/v1/namespaces/${ns}/configmaps/alpha?${fm}`, { metadata: { labels: { tier: "front" } }, data: { extra: "1" } }, "application/merge-patch+json");
    await same("PATCH", `/api/v1/namespaces/${ns}/configmaps/alpha?${fm}`, { metadata: { labels: { app: null } } }, "application/strategic-merge-patch+json");
    await same("PATCH", `/api/v1/namespaces/${ns}/configmaps/alpha?${fm}`, [{ op: "add", path: "/metadata/labels/added", value: "yes" }, { op: "test", path: "/metadata/namespace", value: ns }, { op: "replace", path: "/data/k", value: "patched" }], "application/json-patch+json");
    await same("PATCH", `/api/v1/namespaces/${ns}/configmaps/applied?fieldManager=applier&force=true`, { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "applied", namespace: ns, labels: { via: "ssa" } }, data: { a: "1" } }, "application/apply-patch+yaml");
    await same("PATCH", `/api/v1/namespaces/${ns}/configmaps/applied?fieldManager=applier`, { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "applied", namespace: ns }, data: { a: "2" } }, "application/apply-patch+yaml");
    // A failed JSON patch test is the apiserver's refusal, the same for both.
    await same("PATCH", `/api/v1/namespaces/${ns}/configmaps/alpha`, [{ op: "test", path: "/metadata/namespace", value: "elsewhere" }], "application/json-patch+json");
    const stored = await upstreamObject(`/api/v1/namespaces/${prefix}${ns}/configmaps/applied`);
    expect((stored.metadata as { labels: Record<string, string> }).labels).toEqual({ "tenancy.wharf.dev/tenant": tenant });
  });

  it("a Deployment, its pod template labelled upstream, scaled through the scale subresource", async () => {
    const deployment = {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "web", labels: { app: "web" } },
      spec: { replicas: 1, selector: { matchLabels: { app: "web" } }, template: { metadata: { labels: { app: "web" } }, spec: { containers: [{ name: "c", image: "registry.invalid/web:1" }] } } },
    };
    await same("POST", `/apis/apps/v1/namespaces/${ns}/deployments?${fm}`, deployment);
    await same("PATCH", `/apis/apps/v1/namespaces/${ns}/deployments/web/scale?${fm}`, { spec: { replicas: 3 } }, "application/merge-patch+json");
    await same("GET", `/apis/apps/v1/namespaces/${ns}/deployments/web`);
    const stored = await upstreamObject(`/apis/apps/v1/namespaces/${prefix}${ns}/deployments/web`);
    const template = (stored.spec as { template: { metadata: { labels: Record<string, string> } } }).template;
    expect(template.metadata.labels).toEqual({ app: "web", "tenancy.wharf.dev/tenant": tenant });
  });

  it("RBAC: a ClusterRole and a binding whose subjects and roleRef stay inside the tenant", async () => {
    await same("POST", `/apis/rbac.authorization.k8s.io/v1/clusterroles?${fm}`, { metadata: { name: `reader${suffix}` }, rules: [{ apiGroups: ["", group], resources: ["configmaps", "widgets"], verbs: ["get", "list"] }] });
    await same("POST", `/apis/rbac.authorization.k8s.io/v1/clusterrolebindings?${fm}`, {
      metadata: { name: `readers${suffix}` },
      subjects: [
        { kind: "User", apiGroup: "rbac.authorization.k8s.io", name: "alice" },
        { kind: "Group", apiGroup: "rbac.authorization.k8s.io", name: "devs" },
      ],
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: `reader${suffix}` },
    });
    await same("GET", `/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/readers${suffix}`);
    const stored = await upstreamObject(`/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/${prefix}readers${suffix}`);
    expect(stored.subjects).toEqual([
      { kind: "User", apiGroup: "rbac.authorization.k8s.io", name: `wharf:tenant:${tenant}:alice` },
      { kind: "Group", apiGroup: "rbac.authorization.k8s.io", name: `wharf:tenant:${tenant}:devs` },
    ]);
    expect(stored.roleRef).toEqual({ apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: `${prefix}reader${suffix}` });
    // A service account is bound in its namespace (the admission policy refuses it in a ClusterRoleBinding).
    await same("POST", `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings?${fm}`, {
      metadata: { name: "builders" },
      subjects: [{ kind: "ServiceAccount", name: "builder", namespace: ns }],
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: `reader${suffix}` },
    });
    const bound = await upstreamObject(`/apis/rbac.authorization.k8s.io/v1/namespaces/${prefix}${ns}/rolebindings/builders`);
    expect(bound.subjects).toEqual([{ kind: "ServiceAccount", name: "builder", namespace: prefix + ns }]);
    expect(bound.roleRef).toEqual({ apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: `${prefix}reader${suffix}` });
    await same("POST", `/apis/authorization.k8s.io/v1/subjectaccessreviews`, { spec: { user: "alice", resourceAttributes: { namespace: ns, verb: "list", resource: "configmaps" } } });
    await same("POST", `/apis/authorization.k8s.io/v1/selfsubjectaccessreviews`, { spec: { resourceAttributes: { namespace: ns, verb: "create", resource: "configmaps" } } });
    await same("POST", `/apis/authorization.k8s.io/v1/namespaces/${ns}/localsubjectaccessreviews`, { metadata: { namespace: ns }, spec: { user: "system:serviceaccount:" + ns + ":builder", resourceAttributes: { namespace: ns, verb: "get", resource: "configmaps" } } });
    // An event about the tenant's ConfigMap, listed by its involved object.
    await same("POST", `/api/v1/namespaces/${ns}/events?${fm}`, {
      metadata: { name: "alpha.1" },
      involvedObject: { kind: "ConfigMap", apiVersion: "v1", namespace: ns, name: "alpha" },
      reason: "Tested",
      message: "checked",
      type: "Normal",
      firstTimestamp: "2026-12-02T08:00:00Z",
      lastTimestamp: "2026-12-02T08:00:00Z",
      count: 1,
      source: { component: "wharf-test" },
    });
    await same("GET", `/api/v1/namespaces/${ns}/events?fieldSelector=involvedObject.namespace%3D${ns}%2CinvolvedObject.name%3Dalpha`);
  });

  it("a CRD and its custom resource, with exact numbers in the spec", async () => {
    const crd = {
      apiVersion: "apiextensions.k8s.io/v1",
      kind: "CustomResourceDefinition",
      metadata: { name: `widgets.${group}` },
      spec: {
        group,
        names: { plural: "widgets", singular: "widget", kind: "Widget", listKind: "WidgetList" },
        scope: "Namespaced",
        versions: [{ name: "v1", served: true, storage: true, schema: { openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true } } }],
      },
    };
    await same("POST", `/apis/apiextensions.k8s.io/v1/customresourcedefinitions?${fm}`, crd);
    for (const name of [`widgets.${group}`, `widgets.${prefix}${group}`]) {
      await waitFor(async () => (await call("GET", `/apis/${name.slice("widgets.".length)}/v1`, undefined, { accept: "application/json" })).status === 200, 30_000, `CRD ${name} served`);
    }
    const widget = `{"apiVersion":"${group}/v1","kind":"Widget","metadata":{"name":"w1"},"spec":{"size":3,"ratio":0.25,"big":9007199254740993,"ref":{"apiVersion":"${group}/v1","kind":"Widget","name":"w0"}}}`;
    await same("POST", `/apis/${group}/v1/namespaces/${ns}/widgets?${fm}`, widget);
    await same("GET", `/apis/${group}/v1/namespaces/${ns}/widgets/w1`);
    await same("GET", `/apis/${group}/v1/widgets?fieldSelector=metadata.namespace%3D${ns}`);
  });

  it("paging with limit and continue gives the same pages, with tokens the tenant cannot read", async () => {
    const pages: string[][] = [];
    const references: string[][] = [];
    let tenantToken = "";
    let referenceToken = "";
    for (let page = 0; page < 10; page++) {
      const query = (token: string) => `/api/v1/namespaces/${ns}/configmaps?limit=2${token ? `&continue=${encodeURIComponent(token)}` : ""}`;
      const seen = await viaTenant("GET", query(tenantToken), undefined, { accept: "application/json" });
      const reference = await call("GET", query(referenceToken), undefined, { accept: "application/json" });
      const seenList = JSON.parse(seen.body.toString()) as { metadata: { continue?: string }; items: Array<{ metadata: { name: string } }> };
      const referenceList = JSON.parse(reference.body.toString()) as typeof seenList;
      pages.push(seenList.items.map((item) => item.metadata.name));
      references.push(referenceList.items.map((item) => item.metadata.name));
      tenantToken = seenList.metadata.continue ?? "";
      referenceToken = referenceList.metadata.continue ?? "";
      if (tenantToken) expect(Buffer.from(tenantToken, "base64").toString("latin1")).not.toContain(prefix);
      if (!tenantToken && !referenceToken) break;
    }
    expect(pages).toEqual(references);
    expect(pages.length).toBeGreaterThan(1);
  });
});
