// The response side against the real kube-apiserver: responses for objects
// created with prefixed upstream names (as the request side creates them:
// wt-T- names, the tenant label, mapped users) go through the filter, and
// must equal what the apiserver answers for the same objects created with
// the tenant's own names (the reference), after normalising what differs
// between any two objects (uid, resourceVersion, timestamps).
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { request } from "node:https";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { seededRandom } from "@wharf/testkit";
import type { ProxyWasmHost } from "../test-host/host.js";
import { builtInGroups, tenantEntry, tenantHost } from "./request-harness.js";
import { runResponse, splitAt } from "./response-harness.js";

const kube = inject("kube");
const suffix = randomBytes(3).toString("hex");
const tenant = `r${suffix}`;
const prefix = `wt-${tenant}-`;
const label = "tenancy.wharf.dev/tenant";
const ns = `dev${suffix}`;
const group = `shop${suffix}.example.com`;
const manager = "wharf-response-test";

interface Answer {
  status: number;
  contentType: string;
  body: Buffer;
  headers: Record<string, string | string[] | undefined>;
}

type HeaderMap = Record<string, string | string[]>;

function call(method: string, path: string, body?: unknown, headers: HeaderMap = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = request(
      `${kube.url}${path}`,
      {
        method,
        ca: readFileSync(kube.caFile),
        cert: readFileSync(kube.admin.certFile),
        key: readFileSync(kube.admin.keyFile),
        headers: { accept: "application/json", ...(payload ? { "content-type": "application/json" } : {}), ...headers },
        timeout: 20_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, contentType: String(res.headers["content-type"] ?? ""), body: Buffer.concat(chunks), headers: res.headers }));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on("error", reject);
    req.end(payload);
  });
}

const mustAs = (method: string, path: string, body: unknown, headers: HeaderMap) => must(method, path, body, headers);

async function must(method: string, path: string, body?: unknown, headers: HeaderMap = {}): Promise<Answer> {
  const answer = await call(method, path, body, headers);
  if (answer.status >= 300) throw new Error(`${method} ${path}: ${answer.status} ${answer.body.toString()}`);
  return answer;
}

let host: ProxyWasmHost;
const random = seededRandom(0x12);

/**
 * The upstream answer as the tenant receives it through the filter: whole,
 * and split at every offset (the bytes must not change), then in random chunks.
 */
function viaFilter(tenantPath: string, answer: Answer, method = "GET", requestBody?: unknown): { text: string; failed: boolean } {
  const through = (chunks: Uint8Array[]) =>
    runResponse(host, {
      tenant,
      method,
      path: tenantPath,
      requestBody: requestBody === undefined ? undefined : JSON.stringify(requestBody),
      status: String(answer.status),
      contentType: answer.contentType,
      chunks,
    });
  const whole = through([answer.body]);
  const step = Math.max(1, Math.ceil(answer.body.length / 3000));
  for (let offset = 1; offset < answer.body.length; offset += step) {
    const split = through(splitAt(answer.body, [offset]));
    if (Buffer.compare(split.bytes, whole.bytes) !== 0 || (split.local === undefined) !== (whole.local === undefined)) {
      throw new Error(`${tenantPath}: a split at ${offset} of ${answer.body.length} changed the output:\n${split.text}\n--- whole:\n${whole.text}\n--- upstream:\n${answer.body.toString()}`);
    }
  }
  const cuts = Array.from({ length: 1 + Math.floor(random() * 12) }, () => Math.floor(random() * answer.body.length));
  const run = through(splitAt(answer.body, cuts));
  expect(Buffer.compare(run.bytes, whole.bytes), `${tenantPath} in chunks cut at ${cuts.join(",")}`).toBe(0);
  return { text: run.text, failed: run.local !== undefined };
}

const volatile = new Set(["uid", "resourceVersion", "creationTimestamp", "time", "lastTransitionTime", "firstTimestamp", "lastTimestamp", "eventTime", "continue", "storageVersionHash"]);

/**
 * The apiserver orders managedFields by their (whole-second) times, which are
 * volatile: two entries made in the same second or in two can come in either
 * order, on the reference as through the filter.
 */
function byManager(entries: unknown[]): unknown[] {
  const key = (entry: unknown) => JSON.stringify(entry);
  return [...entries].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

/** uid, resourceVersion and timestamps blanked; resource versions inside messages too. */
function normalise(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(normalise);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map(([key, inner]) => [
        key,
        volatile.has(key) && inner !== null ? "<volatile>" : key === "managedFields" && Array.isArray(inner) ? byManager(inner.map(normalise)) : normalise(inner),
      ]),
    );
  }
  // Table Age and Created At cells ("5s", "2m3s", an RFC 3339 time) depend on when each object was created.
  if (typeof value === "string") {
    if (/^(\d+[smhdy])+$/.test(value) || /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(value)) return "<time>";
    return value.replace(/\d{3,}/g, "<n>");
  }
  return value;
}

function parseAll(text: string): unknown[] {
  return text
    .split("\n")
    .filter((line) => line.trim().length > 0)
    .map((line) => normalise(JSON.parse(line)));
}

/** Compares the tenant's view (through the filter) with the reference answer. */
async function expectSame(tenantPath: string, upstreamPath: string, referencePath: string, headers: HeaderMap = {}, method = "GET", body?: unknown, referenceBody?: unknown) {
  const upstream = await call(method, upstreamPath, body, headers);
  const reference = await call(method, referencePath, referenceBody ?? body, headers);
  expect(upstream.status, upstream.body.toString()).toBe(reference.status);
  const seen = viaFilter(tenantPath, upstream);
  expect(seen.failed, seen.text).toBe(false);
  expect(seen.text).not.toContain(prefix);
  expect(parseAll(seen.text)).toEqual(parseAll(reference.body.toString()));
  return seen.text;
}

const crd = (name: string, crdGroup: string) => ({
  apiVersion: "apiextensions.k8s.io/v1",
  kind: "CustomResourceDefinition",
  metadata: { name, labels: crdGroup.startsWith(prefix) ? { [label]: tenant } : {} },
  spec: {
    group: crdGroup,
    names: { plural: "widgets", singular: "widget", kind: "Widget", listKind: "WidgetList" },
    scope: "Namespaced",
    versions: [{ name: "v1", served: true, storage: true, schema: { openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true } } }],
  },
});

const tenantLabels = { [label]: tenant };
/**
 * Upstream objects are written as the tenant's mapped identity, as the
 * gateway forwards it (with system:masters standing in for the RBAC the
 * control plane grants): the admission policy wharf-tenancy, once another
 * test file installed it, refuses wt- names to anyone else.
 */
const asTenant: HeaderMap = { "impersonate-user": `wharf:tenant:${tenant}:admin`, "impersonate-group": [`wharf:tenant:${tenant}`, "system:masters"] };
const both = (upstream: boolean) => ({
  ns: upstream ? prefix + ns : ns,
  labels: (extra: Record<string, string> = {}) => (upstream ? { ...extra, ...tenantLabels } : extra),
  cluster: (name: string) => (upstream ? prefix + name : name),
  user: (name: string) => (upstream ? `wharf:tenant:${tenant}:${name}` : name),
  group: upstream ? prefix + group : group,
});

beforeAll(async () => {
  host = await tenantHost({ tenants: [tenantEntry(tenant), tenantEntry("other")], hostGroups: builtInGroups });
  for (const upstream of [true, false]) {
    const n = both(upstream);
    const fm = `?fieldManager=${manager}`;
    const must = (method: string, path: string, body?: unknown) => mustAs(method, path, body, upstream ? asTenant : {});
    await must("POST", `/api/v1/namespaces${fm}`, { metadata: { name: n.ns, labels: n.labels() } });
    for (const name of ["alpha", "beta", "gamma"]) {
      await must("POST", `/api/v1/namespaces/${n.ns}/configmaps${fm}`, { metadata: { name, labels: n.labels({ app: "web" }) }, data: { k: name } });
    }
    await must("POST", `/apis/rbac.authorization.k8s.io/v1/clusterroles${fm}`, {
      metadata: { name: n.cluster(`reader${suffix}`), labels: n.labels() },
      rules: [{ apiGroups: ["", n.group], resources: ["configmaps", "widgets"], verbs: ["get", "list"] }],
    });
    await must("POST", `/apis/rbac.authorization.k8s.io/v1/clusterrolebindings${fm}`, {
      metadata: { name: n.cluster(`readers${suffix}`), labels: n.labels() },
      subjects: [
        { kind: "User", apiGroup: "rbac.authorization.k8s.io", name: n.user("alice") },
        { kind: "Group", apiGroup: "rbac.authorization.k8s.io", name: n.user("devs") },
      ],
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: n.cluster(`reader${suffix}`) },
    });
    await must("POST", `/api/v1/namespaces/${n.ns}/events${fm}`, {
      metadata: { name: "alpha.1", labels: n.labels() },
      involvedObject: { kind: "ConfigMap", apiVersion: "v1", namespace: n.ns, name: "alpha" },
      reason: "Tested",
      message: "checked",
      type: "Normal",
      firstTimestamp: "2026-12-02T08:00:00Z",
      lastTimestamp: "2026-12-02T08:00:00Z",
      count: 1,
      source: { component: "wharf-test" },
    });
    await must("POST", `/apis/apiextensions.k8s.io/v1/customresourcedefinitions${fm}`, crd(`widgets.${n.group}`, n.group));
  }
  for (const upstream of [true, false]) {
    const n = both(upstream);
    await waitForEstablished(`widgets.${n.group}`);
    await mustAs("POST", `/apis/${n.group}/v1/namespaces/${n.ns}/widgets?fieldManager=${manager}`, {
      apiVersion: `${n.group}/v1`,
      kind: "Widget",
      metadata: { name: "w1", labels: n.labels() },
      spec: { size: 3, ref: { apiVersion: `${n.group}/v1`, kind: "Widget", name: "w0" } },
    }, upstream ? asTenant : {});
  }
}, 120_000);

async function waitForEstablished(name: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const answer = await call("GET", `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`);
    const conditions = (JSON.parse(answer.body.toString()).status?.conditions ?? []) as Array<{ type: string; status: string }>;
    if (conditions.some((c) => c.type === "Established" && c.status === "True")) {
      // Discovery follows establishment a moment later.
      const discovery = await call("GET", `/apis/${name.substring(name.indexOf(".") + 1)}/v1`);
      if (discovery.status === 200) return;
    }
    if (Date.now() > deadline) throw new Error(`CRD ${name} was not established in 30 s`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

afterAll(async () => {
  for (const upstream of [true, false]) {
    const n = both(upstream);
    const as = upstream ? asTenant : {};
    await call("DELETE", `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.${n.group}`, undefined, as);
    await call("DELETE", `/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/${n.cluster(`readers${suffix}`)}`, undefined, as);
    await call("DELETE", `/apis/rbac.authorization.k8s.io/v1/clusterroles/${n.cluster(`reader${suffix}`)}`, undefined, as);
    await call("DELETE", `/api/v1/namespaces/${n.ns}`, undefined, as);
  }
});

const up = both(true);

describe("the tenant's view equals the apiserver's answer for unprefixed objects", () => {
  it("objects: a ConfigMap, a Namespace, a custom resource, a CRD, RBAC, an Event", async () => {
    await expectSame(`/api/v1/namespaces/${ns}/configmaps/alpha`, `/api/v1/namespaces/${up.ns}/configmaps/alpha`, `/api/v1/namespaces/${ns}/configmaps/alpha`);
    await expectSame(`/api/v1/namespaces/${ns}`, `/api/v1/namespaces/${up.ns}`, `/api/v1/namespaces/${ns}`);
    await expectSame(`/apis/${group}/v1/namespaces/${ns}/widgets/w1`, `/apis/${up.group}/v1/namespaces/${up.ns}/widgets/w1`, `/apis/${group}/v1/namespaces/${ns}/widgets/w1`);
    await expectSame(
      `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.${group}`,
      `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.${up.group}`,
      `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.${group}`,
    );
    for (const kind of [`clusterroles/reader${suffix}`, `clusterrolebindings/readers${suffix}`]) {
      await expectSame(`/apis/rbac.authorization.k8s.io/v1/${kind}`, `/apis/rbac.authorization.k8s.io/v1/${kind.replace("/", "/" + prefix)}`, `/apis/rbac.authorization.k8s.io/v1/${kind}`);
    }
    await expectSame(`/api/v1/namespaces/${ns}/events/alpha.1`, `/api/v1/namespaces/${up.ns}/events/alpha.1`, `/api/v1/namespaces/${ns}/events/alpha.1`);
  });

  it("lists, paged with limit and continue (the tenant's token is sealed)", async () => {
    const text = await expectSame(`/api/v1/namespaces/${ns}/configmaps?limit=2`, `/api/v1/namespaces/${up.ns}/configmaps?limit=2`, `/api/v1/namespaces/${ns}/configmaps?limit=2`);
    const token = JSON.parse(text).metadata.continue as string;
    expect(token).toMatch(/^wt1/);
    await expectSame(`/apis/${group}/v1/widgets`, `/apis/${up.group}/v1/widgets?labelSelector=${encodeURIComponent(`${label}=${tenant}`)}`, `/apis/${group}/v1/widgets`);
  });

  it("Tables (kubectl get asks for as=Table), with and without the objects", async () => {
    const table = { accept: "application/json;as=Table;v=v1;g=meta.k8s.io,application/json" };
    await expectSame(`/api/v1/namespaces/${ns}/configmaps`, `/api/v1/namespaces/${up.ns}/configmaps`, `/api/v1/namespaces/${ns}/configmaps`, table);
    await expectSame(`/api/v1/namespaces/${ns}`, `/api/v1/namespaces/${up.ns}`, `/api/v1/namespaces/${ns}`, table);
    await expectSame(
      `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.${group}`,
      `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.${up.group}`,
      `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.${group}`,
      table,
    );
    await expectSame(
      `/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/readers${suffix}?includeObject=Object`,
      `/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/${prefix}readers${suffix}?includeObject=Object`,
      `/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/readers${suffix}?includeObject=Object`,
      table,
    );
  });

  it("watch streams: initial events and the BOOKMARK that ends them, as objects and as Tables", async () => {
    const watch = "watch=true&timeoutSeconds=1&allowWatchBookmarks=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan";
    await expectSame(`/api/v1/namespaces/${ns}/configmaps?${watch}`, `/api/v1/namespaces/${up.ns}/configmaps?${watch}`, `/api/v1/namespaces/${ns}/configmaps?${watch}`);
    const tableWatch = { accept: "application/json;as=Table;v=v1;g=meta.k8s.io,application/json" };
    await expectSame(`/api/v1/namespaces/${ns}/configmaps?${watch}`, `/api/v1/namespaces/${up.ns}/configmaps?${watch}`, `/api/v1/namespaces/${ns}/configmaps?${watch}`, tableWatch);
  });

  it("watch streams: ADDED, MODIFIED and DELETED as they happen", async () => {
    const watched = async (upstream: boolean) => {
      const n = both(upstream);
      const list = JSON.parse((await must("GET", `/api/v1/namespaces/${n.ns}/configmaps`)).body.toString()) as { metadata: { resourceVersion: string } };
      // The watch starts at the list's revision, so every change below is in it however late it connects.
      const watch = call("GET", `/api/v1/namespaces/${n.ns}/configmaps?watch=true&timeoutSeconds=2&resourceVersion=${list.metadata.resourceVersion}`);
      const fm = `fieldManager=${manager}`;
      const as = upstream ? asTenant : {};
      await must("POST", `/api/v1/namespaces/${n.ns}/configmaps?${fm}`, { metadata: { name: "delta", labels: n.labels({ app: "db" }) }, data: { k: "1" } }, as);
      await must("PATCH", `/api/v1/namespaces/${n.ns}/configmaps/delta?${fm}`, { data: { k: "2" } }, { ...as, "content-type": "application/merge-patch+json" });
      await must("DELETE", `/api/v1/namespaces/${n.ns}/configmaps/delta`, undefined, as);
      return watch;
    };
    const [upstream, reference] = await Promise.all([watched(true), watched(false)]);
    const seen = viaFilter(`/api/v1/namespaces/${ns}/configmaps?watch=true`, upstream);
    expect(seen.failed).toBe(false);
    expect(seen.text).not.toContain(prefix);
    const events = parseAll(seen.text) as Array<{ type: string }>;
    expect(events.map((event) => event.type)).toEqual(["ADDED", "MODIFIED", "DELETED"]);
    expect(events).toEqual(parseAll(reference.body.toString()));
  });

  it("Status errors: not found, forbidden, already exists", async () => {
    const nope = `nope${suffix}`;
    await expectSame(`/api/v1/namespaces/${nope}`, `/api/v1/namespaces/${prefix}${nope}`, `/api/v1/namespaces/${nope}`);
    await expectSame(`/apis/${group}/v1/namespaces/${ns}/widgets/${nope}`, `/apis/${up.group}/v1/namespaces/${up.ns}/widgets/${nope}`, `/apis/${group}/v1/namespaces/${ns}/widgets/${nope}`);
    await expectSame(`/api/v1/namespaces/${ns}/secrets`, `/api/v1/namespaces/${up.ns}/secrets`, `/api/v1/namespaces/${ns}/secrets`, {}, "GET");
    const asAlice = (upstream: boolean) => ({ "impersonate-user": both(upstream).user("alice") });
    const forbidden = await call("GET", `/api/v1/namespaces/${up.ns}/secrets`, undefined, asAlice(true));
    const reference = await call("GET", `/api/v1/namespaces/${ns}/secrets`, undefined, asAlice(false));
    expect(forbidden.status).toBe(403);
    expect(parseAll(viaFilter(`/api/v1/namespaces/${ns}/secrets`, forbidden).text)).toEqual(parseAll(reference.body.toString()));
    const exists = await call("POST", `/api/v1/namespaces/${up.ns}/configmaps`, { metadata: { name: "alpha" } });
    const existsReference = await call("POST", `/api/v1/namespaces/${ns}/configmaps`, { metadata: { name: "alpha" } });
    expect(exists.status).toBe(409);
    expect(parseAll(viaFilter(`/api/v1/namespaces/${ns}/configmaps`, exists, "POST", { metadata: { name: "alpha" } }).text)).toEqual(parseAll(existsReference.body.toString()));
  });

  it("whoami: SelfSubjectReview of a tenant user", async () => {
    const review = { apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" };
    const upstream = await call("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", review, {
      "impersonate-user": `wharf:tenant:${tenant}:alice`,
      "impersonate-group": `wharf:tenant:${tenant}`,
    });
    const reference = await call("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", review, { "impersonate-user": "alice" });
    expect(upstream.status).toBe(201);
    expect(parseAll(viaFilter("/apis/authentication.k8s.io/v1/selfsubjectreviews", upstream, "POST", review).text)).toEqual(parseAll(reference.body.toString()));
  });

  it("discovery: /apis lists host groups and the tenant's own; its group's resource list", async () => {
    const upstream = await must("GET", "/apis");
    const reference = JSON.parse((await must("GET", "/apis")).body.toString()) as { groups: Array<{ name: string }> };
    const seen = viaFilter("/apis", upstream);
    expect(seen.failed).toBe(false);
    const groups = (JSON.parse(seen.text) as { groups: Array<{ name: string }> }).groups;
    const byName = (list: Array<{ name: string }>) => [...list].sort((a, b) => a.name.localeCompare(b.name));
    // The reference: the host's built-in groups and the unprefixed twin of the tenant's group.
    expect(byName(groups)).toEqual(byName(reference.groups.filter((g) => builtInGroups.includes(g.name) || g.name === group)));
    expect(seen.text).not.toContain("wharf.dev");
    await expectSame(`/apis/${group}/v1`, `/apis/${up.group}/v1`, `/apis/${group}/v1`);
  });
});

// kubectl apply (client-side validation) and kubectl explain read /openapi/v3.
describe("/openapi/v3: the tenant's index and its own groups' documents", () => {
  const otherGroup = `wt-other-${group}`;
  const asOther: HeaderMap = { "impersonate-user": "wharf:tenant:other:admin", "impersonate-group": ["wharf:tenant:other", "system:masters"] };
  const otherCrd = { ...crd(`widgets.${otherGroup}`, otherGroup), metadata: { name: `widgets.${otherGroup}`, labels: { [label]: "other" } } };

  beforeAll(async () => {
    await mustAs("POST", `/apis/apiextensions.k8s.io/v1/customresourcedefinitions?fieldManager=${manager}`, otherCrd, asOther);
    await waitForEstablished(`widgets.${otherGroup}`);
  }, 60_000);
  afterAll(async () => {
    await call("DELETE", `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.${otherGroup}`, undefined, asOther);
  });

  it("the index keeps host groups, lists the tenant's own group under its name (same document and hash), and drops other tenants' and host CRDs' groups", async () => {
    type Index = { paths: Record<string, { serverRelativeURL: string }> };
    // The index follows a new CRD a moment after it is established.
    let upstream: Answer | undefined;
    const deadline = Date.now() + 30_000;
    for (;;) {
      upstream = await must("GET", "/openapi/v3");
      const keys = Object.keys((JSON.parse(upstream.body.toString()) as Index).paths);
      if ([up.group, group, otherGroup].every((g) => keys.includes(`apis/${g}/v1`))) break;
      if (Date.now() > deadline) throw new Error(`/openapi/v3 did not list the test groups in 30 s: ${keys.join(" ")}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const upstreamPaths = (JSON.parse(upstream.body.toString()) as Index).paths;
    const seen = viaFilter("/openapi/v3", upstream);
    expect(seen.failed, seen.text).toBe(false);
    const paths = (JSON.parse(seen.text) as Index).paths;
    // Host groups as they are.
    for (const key of ["api/v1", "apis/apps/v1", "apis/apiextensions.k8s.io/v1"]) expect(paths[key], key).toEqual(upstreamPaths[key]);
    // The tenant's group: the upstream entry of wt-T-<group>, unmapped (not the host CRD of the same name).
    const own = upstreamPaths[`apis/${up.group}/v1`]?.serverRelativeURL ?? "";
    expect(own).toMatch(/\?hash=/);
    expect(paths[`apis/${group}/v1`]).toEqual({ serverRelativeURL: own.replace(up.group, group) });
    expect(paths[`apis/${group}/v1`]).not.toEqual(upstreamPaths[`apis/${group}/v1`]);
    // Nothing of other tenants (or of this one under its upstream name), no other group.
    expect(seen.text).not.toContain("wt-");
    for (const key of Object.keys(paths)) {
      const g = key.split("/")[1] ?? "";
      expect(key.startsWith("api/") || key === "api" || builtInGroups.includes(g) || g === group, key).toBe(true);
    }
  });

  it("a document of the tenant's group equals the apiserver's for the same CRD under the tenant's name", async () => {
    const index = JSON.parse((await must("GET", "/openapi/v3")).body.toString()) as { paths: Record<string, { serverRelativeURL: string }> };
    const url = index.paths[`apis/${up.group}/v1`]?.serverRelativeURL ?? "";
    expect(url).toMatch(/\?hash=/);
    const hash = url.substring(url.indexOf("?"));
    const text = await expectSame(`/openapi/v3/apis/${group}/v1${hash}`, `/openapi/v3/apis/${up.group}/v1${hash}`, `/openapi/v3/apis/${group}/v1`);
    // A stale hash: the apiserver redirects to the current one, at the tenant's path.
    const stale = await call("GET", `/openapi/v3/apis/${up.group}/v1?hash=0`);
    const redirect = runResponse(host, { tenant, path: `/openapi/v3/apis/${group}/v1?hash=0`, status: String(stale.status), contentType: stale.contentType, extraHeaders: [["location", String(stale.headers.location)]], chunks: [stale.body] });
    expect(stale.status).toBe(301);
    expect(redirect.headers.find(([name]) => name === "location")?.[1]).toBe(`/openapi/v3/apis/${group}/v1${hash}`);
    // What kubectl reads: the group-version-kind and the schema name.
    expect(text).toContain(`"group":"${group}"`);
    expect(text).toContain(group.split(".").reverse().join(".") + ".v1.Widget");
  });
});
