// The tenant filter's response transducer on the compiled module: what a
// tenant reads back, and that chunking never changes it.
import { beforeAll, describe, expect, it } from "vitest";
import { seededRandom } from "@wharf/testkit";
import type { ProxyWasmHost } from "../test-host/host.js";
import { responseHost, runResponse, splitAt, utf8, type ResponseInput } from "./response-harness.js";

let host: ProxyWasmHost;
beforeAll(async () => {
  host = await responseHost();
});

const label = "tenancy.wharf.dev/tenant";

function rewrite(body: string | object, input: Partial<ResponseInput> = {}) {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  return runResponse(host, { ...input, chunks: [utf8(text)] });
}

function configMap(namespace: string, name: string, tenant = "acme", extra: Record<string, unknown> = {}) {
  return {
    metadata: {
      name,
      namespace,
      uid: "u-" + name,
      resourceVersion: "12",
      creationTimestamp: "2026-12-02T08:00:00Z",
      labels: { app: "web", [label]: tenant },
      managedFields: [
        {
          manager: "kubectl-create",
          operation: "Update",
          apiVersion: "v1",
          time: "2026-12-02T08:00:00Z",
          fieldsType: "FieldsV1",
          fieldsV1: { "f:data": { ".": {}, "f:k": {} }, "f:metadata": { "f:labels": { ".": {}, "f:app": {}, [`f:${label}`]: {} } } },
        },
        {
          manager: "wharf-control-plane",
          operation: "Update",
          apiVersion: "v1",
          time: "2026-12-02T08:00:00Z",
          fieldsType: "FieldsV1",
          fieldsV1: { "f:metadata": { "f:labels": { [`f:${label}`]: {} } } },
        },
      ],
    },
    data: { k: "v", apiVersion: "wt-acme-left.alone/v1" },
    ...extra,
  };
}

describe("objects and lists", () => {
  it("unmaps an object's namespace, drops the tenant label and the label's managed fields", () => {
    const run = rewrite({ kind: "ConfigMap", apiVersion: "v1", ...configMap("wt-acme-dev", "web") });
    expect(run.local).toBeUndefined();
    const object = JSON.parse(run.text);
    expect(object.metadata.namespace).toBe("dev");
    expect(object.metadata.labels).toEqual({ app: "web" });
    expect(object.metadata.managedFields).toEqual([
      {
        manager: "kubectl-create",
        operation: "Update",
        apiVersion: "v1",
        time: "2026-12-02T08:00:00Z",
        fieldsType: "FieldsV1",
        fieldsV1: { "f:data": { ".": {}, "f:k": {} }, "f:metadata": { "f:labels": { ".": {}, "f:app": {} } } },
      },
    ]);
    // ConfigMap data is the tenant's own: untouched.
    expect(object.data).toEqual({ k: "v", apiVersion: "wt-acme-left.alone/v1" });
    expect(run.headers.find(([name]) => name === "content-length")).toBeUndefined();
  });

  it("unmaps cluster-scoped names, custom resources' apiVersions and CRD names and groups", () => {
    const ns = JSON.parse(rewrite({ kind: "Namespace", apiVersion: "v1", metadata: { name: "wt-acme-dev", labels: { [label]: "acme" } }, spec: {} }).text);
    expect(ns.metadata).toEqual({ name: "dev" });
    const cr = JSON.parse(
      rewrite({
        apiVersion: "wt-acme-example.com/v1",
        kind: "Widget",
        metadata: { name: "w", namespace: "wt-acme-dev", ownerReferences: [{ apiVersion: "wt-acme-example.com/v1", kind: "Gadget", name: "g", uid: "1" }] },
        spec: { target: { apiVersion: "apps/v1", kind: "Deployment" }, other: { apiVersion: "wt-acme-example.com/v2" } },
      }).text,
    );
    expect(cr.apiVersion).toBe("example.com/v1");
    expect(cr.metadata.ownerReferences[0].apiVersion).toBe("example.com/v1");
    expect(cr.spec.other.apiVersion).toBe("example.com/v2");
    const crd = JSON.parse(
      rewrite(
        {
          kind: "CustomResourceDefinition",
          apiVersion: "apiextensions.k8s.io/v1",
          metadata: { name: "widgets.wt-acme-example.com" },
          spec: { group: "wt-acme-example.com", names: { plural: "widgets", kind: "Widget" }, scope: "Namespaced", versions: [{ name: "v1" }] },
        },
        { path: "/apis/apiextensions.k8s.io/v1/customresourcedefinitions" },
      ).text,
    );
    expect(crd.metadata.name).toBe("widgets.example.com");
    expect(crd.spec.group).toBe("example.com");
  });

  it("unmaps Endpoints' and EndpointSlices' targetRef namespaces", () => {
    const slice = JSON.parse(
      rewrite({
        kind: "EndpointSlice",
        apiVersion: "discovery.k8s.io/v1",
        metadata: { name: "web-x", namespace: "wt-acme-dev" },
        addressType: "IPv4",
        endpoints: [
          { addresses: ["10.0.0.1"], targetRef: { kind: "Pod", namespace: "wt-acme-dev", name: "web-1", uid: "1" } },
          { addresses: ["10.0.0.2"], targetRef: { kind: "Pod", namespace: "elsewhere", name: "x", uid: "2" } },
        ],
      }).text,
    );
    expect(slice.endpoints.map((e: { targetRef: { namespace: string } }) => e.targetRef.namespace)).toEqual(["dev", "elsewhere"]);
  });

  it("drops list items of other tenants and of host namespaces, keeps commas right, seals the continue token", () => {
    const list = {
      kind: "ConfigMapList",
      apiVersion: "v1",
      metadata: { resourceVersion: "99", continue: "upstream-token" },
      items: [
        configMap("wt-other-dev", "a", "other"),
        configMap("wt-acme-dev", "b"),
        configMap("kube-system", "c"),
        configMap("wt-acme-dev", "d", "other"),
        configMap("wt-acme-prod", "e"),
        configMap("wt-acmex-dev", "f"),
      ],
    };
    const run = rewrite(list);
    const parsed = JSON.parse(run.text);
    expect(parsed.items.map((item: { metadata: { namespace: string; name: string } }) => `${item.metadata.namespace}/${item.metadata.name}`)).toEqual(["dev/b", "prod/e"]);
    expect(parsed.metadata.continue).toMatch(/^wt1/);
    expect(parsed.metadata.continue).not.toContain("upstream");
    expect(run.text).not.toContain("other");
    expect(run.text).not.toContain("wt-acme-dev");
  });

  it("fails closed when a single object is not the tenant's (it cannot be left out)", () => {
    const run = rewrite({ kind: "ConfigMap", apiVersion: "v1", ...configMap("wt-other-dev", "x", "other") });
    expect(run.local?.status).toBe(500);
    expect(run.text).not.toContain("wt-other");
  });
});

describe("Status, Table, discovery, identities", () => {
  it("scrubs Status messages and details", () => {
    const run = rewrite({
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: 'namespaces "wt-acme-dev" is forbidden: User "wharf:tenant:acme:alice" cannot get resource "namespaces" in API group "" in the namespace "wt-acme-dev"',
      reason: "Forbidden",
      details: { name: "wt-acme-dev", group: "wt-acme-example.com", kind: "namespaces" },
      code: 403,
    });
    const status = JSON.parse(run.text);
    expect(status.message).toBe('namespaces "dev" is forbidden: User "alice" cannot get resource "namespaces" in API group "" in the namespace "dev"');
    expect(status.details).toEqual({ name: "dev", group: "example.com", kind: "namespaces" });
  });

  it("rewrites Table rows: cells scrubbed, rows of other tenants dropped", () => {
    const row = (ns: string, name: string, tenant: string) => ({
      cells: [name, "wharf:tenant:acme:alice", 3, "5m"],
      object: { kind: "PartialObjectMetadata", apiVersion: "meta.k8s.io/v1", metadata: { name, namespace: ns, labels: { [label]: tenant } } },
    });
    const table = {
      kind: "Table",
      apiVersion: "meta.k8s.io/v1",
      metadata: { resourceVersion: "5" },
      columnDefinitions: [{ name: "Name", type: "string", format: "name", description: "", priority: 0 }],
      rows: [row("wt-other-dev", "a", "other"), row("wt-acme-dev", "b", "acme"), row("wt-acme-x", "c", "acme"), row("default", "d", "acme")],
    };
    const parsed = JSON.parse(rewrite(table).text);
    expect(parsed.rows.map((r: { cells: unknown[] }) => r.cells)).toEqual([
      ["b", "alice", 3, "5m"],
      ["c", "alice", 3, "5m"],
    ]);
    expect(parsed.rows[1].object.metadata).toEqual({ name: "c", namespace: "x" });
  });

  it("unmaps CRD names in a Table of CRDs", () => {
    const table = {
      kind: "Table",
      apiVersion: "meta.k8s.io/v1",
      metadata: {},
      columnDefinitions: [],
      rows: [
        { cells: ["widgets.wt-acme-example.com"], object: { kind: "PartialObjectMetadata", apiVersion: "meta.k8s.io/v1", metadata: { name: "widgets.wt-acme-example.com" } } },
        { cells: ["gadgets.wt-other-example.com"], object: { kind: "PartialObjectMetadata", apiVersion: "meta.k8s.io/v1", metadata: { name: "gadgets.wt-other-example.com" } } },
      ],
    };
    const parsed = JSON.parse(rewrite(table, { path: "/apis/apiextensions.k8s.io/v1/customresourcedefinitions" }).text);
    expect(parsed.rows).toEqual([
      { cells: ["widgets.example.com"], object: { kind: "PartialObjectMetadata", apiVersion: "meta.k8s.io/v1", metadata: { name: "widgets.example.com" } } },
    ]);
  });

  it("lists host groups and the tenant's own in /apis, nothing else", () => {
    const group = (name: string) => ({ name, versions: [{ groupVersion: `${name}/v1`, version: "v1" }], preferredVersion: { groupVersion: `${name}/v1`, version: "v1" } });
    const parsed = JSON.parse(
      rewrite({ kind: "APIGroupList", apiVersion: "v1", groups: [group("wt-other-a.io"), group("apps"), group("wt-acme-a.io"), group("host-only.io"), group("wt-acme-b.io")] }).text,
    );
    expect(parsed.groups).toEqual([group("apps"), group("a.io"), group("b.io")]);
    const resources = JSON.parse(rewrite({ kind: "APIResourceList", apiVersion: "v1", groupVersion: "wt-acme-a.io/v1", resources: [{ name: "widgets", kind: "Widget" }] }).text);
    expect(resources.groupVersion).toBe("a.io/v1");
  });

  it("answers whoami with the tenant's own user and groups", () => {
    const parsed = JSON.parse(
      rewrite({
        kind: "SelfSubjectReview",
        apiVersion: "authentication.k8s.io/v1",
        metadata: { creationTimestamp: null },
        status: { userInfo: { username: "wharf:tenant:acme:alice", groups: ["wharf:tenant:acme", "wharf:tenant:acme:devs", "system:authenticated"] } },
      }).text,
    );
    expect(parsed.status.userInfo).toEqual({ username: "alice", groups: ["devs", "system:authenticated"] });
  });

  it("maps RBAC bindings back and drops subjects outside the tenant", () => {
    const parsed = JSON.parse(
      rewrite({
        kind: "ClusterRoleBinding",
        apiVersion: "rbac.authorization.k8s.io/v1",
        metadata: { name: "wt-acme-readers", labels: { [label]: "acme" } },
        subjects: [
          { kind: "User", apiGroup: "rbac.authorization.k8s.io", name: "wharf:tenant:acme:alice" },
          { kind: "Group", apiGroup: "rbac.authorization.k8s.io", name: "wharf:tenant:other:devs" },
          { kind: "ServiceAccount", name: "builder", namespace: "wt-acme-ci" },
        ],
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "wt-acme-reader" },
      }).text,
    );
    expect(parsed.metadata.name).toBe("readers");
    expect(parsed.subjects).toEqual([
      { kind: "User", apiGroup: "rbac.authorization.k8s.io", name: "alice" },
      { kind: "ServiceAccount", name: "builder", namespace: "ci" },
    ]);
    expect(parsed.roleRef.name).toBe("reader");
  });
});

describe("watch streams", () => {
  const event = (type: string, object: object) => JSON.stringify({ type, object }) + "\n";
  const stream = [
    event("ADDED", { kind: "ConfigMap", apiVersion: "v1", ...configMap("wt-acme-dev", "a") }),
    event("ADDED", { kind: "ConfigMap", apiVersion: "v1", ...configMap("wt-other-dev", "b", "other") }),
    event("BOOKMARK", { kind: "ConfigMap", apiVersion: "v1", metadata: { resourceVersion: "77", annotations: { "k8s.io/initial-events-end": "true" } } }),
    event("MODIFIED", { kind: "ConfigMap", apiVersion: "v1", ...configMap("wt-acme-dev", "a") }),
    event("ERROR", { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message: "too old resource version in wt-acme-dev", reason: "Expired", code: 410 }),
  ].join("");

  it("rewrites each event, drops another tenant's, keeps BOOKMARK and ERROR", () => {
    const run = rewrite(stream, { path: "/api/v1/namespaces/dev/configmaps?watch=true" });
    const events = run.text
      .split("\n")
      .filter((line) => line.trim().length > 0)
      .map((line) => JSON.parse(line));
    expect(events.map((e) => e.type)).toEqual(["ADDED", "BOOKMARK", "MODIFIED", "ERROR"]);
    expect(events[0].object.metadata.namespace).toBe("dev");
    expect(events[1].object.metadata.resourceVersion).toBe("77");
    expect(events[3].object.message).toBe("too old resource version in dev");
    expect(run.text).not.toContain("other");
  });
});

describe("chunk boundaries", () => {
  const body = utf8(
    JSON.stringify({
      kind: "ConfigMapList",
      apiVersion: "v1",
      metadata: { resourceVersion: "9", continue: "tok" },
      items: [
        configMap("wt-acme-dev", "ünïcødé-ä", "acme", { data: { "k\"ey": 'va\\lue "quoted" \u0001 ✓ 😀', "<html>": "&" } }),
        configMap("wt-other-dev", "x", "other"),
        { ...configMap("wt-acme-dev", "esc\"aped"), metadata: { ...configMap("wt-acme-dev", "e").metadata, annotations: { note: "wt-acme-dev \\ \" 😀" } } },
      ],
    }),
  );

  it("gives the same bytes when the response is split at every offset", () => {
    const whole = runResponse(host, { chunks: [body] });
    expect(whole.local).toBeUndefined();
    expect(JSON.parse(whole.text).items).toHaveLength(2);
    for (let offset = 1; offset < body.length; offset++) {
      const split = runResponse(host, { chunks: splitAt(body, [offset]) });
      if (Buffer.compare(split.bytes, whole.bytes) !== 0) throw new Error(`split at ${offset} changed the output:\n${split.text}\n${whole.text}`);
    }
  });

  it("gives the same bytes under random chunkings, down to one byte per chunk", () => {
    const whole = runResponse(host, { chunks: [body] });
    const random = seededRandom(1212);
    for (let round = 0; round < 200; round++) {
      const cuts = Array.from({ length: 1 + Math.floor(random() * 40) }, () => Math.floor(random() * body.length));
      const split = runResponse(host, { chunks: splitAt(body, cuts) });
      expect(Buffer.compare(split.bytes, whole.bytes), `seed 1212 round ${round}`).toBe(0);
    }
    const bytewise = runResponse(host, { chunks: Array.from(body, (_, i) => body.subarray(i, i + 1)) });
    expect(Buffer.compare(bytewise.bytes, whole.bytes)).toBe(0);
  });
});

describe("hostile and huge input", () => {
  it("passes deep nesting it does not read, and fails closed on deep nesting it must read", () => {
    const deep = "[".repeat(20000) + "]".repeat(20000);
    const ok = rewrite(`{"apiVersion":"wt-acme-x.io/v1","kind":"Deep","metadata":{"name":"d","namespace":"wt-acme-dev"},"spec":{"n":${deep}}}`);
    expect(ok.local).toBeUndefined();
    expect(ok.text).toBe(`{"apiVersion":"x.io/v1","kind":"Deep","metadata":{"name":"d","namespace":"dev"},"spec":{"n":${deep}}}`);
    // Inside metadata, what the rewrite never reads is copied, however deep.
    const nested = '{"a":'.repeat(400) + "1" + "}".repeat(400);
    const unread = rewrite(`{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"d","namespace":"wt-acme-dev","annotations":${nested}}}`);
    expect(unread.text).toBe(`{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"d","namespace":"dev","annotations":${nested}}}`);
    // What it must read (managed fields, down to the tenant label) is refused past the depth limit, not overflowed.
    const fields = '{"f:metadata":'.repeat(400) + `{"f:labels":{"f:${label}":{}}}` + "}".repeat(400);
    const bad = rewrite(`{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"d","namespace":"wt-acme-dev","managedFields":[{"apiVersion":"v1","fieldsV1":${fields}}]}}`);
    expect(bad.local?.status).toBe(500);
  });

  it("streams a 32 MiB string with flat memory", () => {
    const size = 32 << 20;
    const head = utf8('{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"big","namespace":"wt-acme-dev"},"data":{"blob":"');
    const tail = utf8('"}}');
    const chunkSize = 64 << 10;
    const filler = new Uint8Array(chunkSize).fill(0x61);
    const chunks = [head, ...Array.from({ length: size / chunkSize }, () => filler), tail];
    const stream = host.stream();
    stream.sendRequestHeaders([[":method", "GET"], [":path", "/api/v1/namespaces/dev/configmaps/big"], ["x-wharf-tenant", "acme"]]);
    stream.sendResponseHeaders([[":status", "200"], ["content-type", "application/json"]], false);
    let delivered = 0;
    let afterFirstQuarter = 0;
    chunks.forEach((chunk, index) => {
      expect(stream.sendResponseBody(chunk, index === chunks.length - 1)).toBe(0);
      delivered += stream.bodyBytes("response").length;
      if (index === Math.floor(chunks.length / 4)) afterFirstQuarter = host.memoryBytes;
    });
    expect(stream.localResponse).toBeUndefined();
    stream.finish();
    expect(delivered).toBe(head.length - "wt-acme-".length + size + tail.length);
    // Three more quarters (24 MiB) go through without the module growing.
    expect(host.memoryBytes).toBe(afterFirstQuarter);
  });

  it("fails closed on a list item whose metadata would have to be held beyond the cap", () => {
    const huge = "x".repeat(4 << 20);
    const body = utf8(JSON.stringify({ kind: "ConfigMapList", apiVersion: "v1", metadata: {}, items: [{ metadata: { name: "a", namespace: "wt-acme-dev", annotations: { huge } } }] }));
    // Whole or in 64 KiB chunks: the cap holds the same way.
    expect(runResponse(host, { chunks: [body] }).local?.status).toBe(500);
    expect(runResponse(host, { chunks: splitAt(body, Array.from({ length: 80 }, (_, i) => i * 65536)) }).local?.status).toBe(500);
    const spec = utf8(JSON.stringify({ kind: "ConfigMapList", apiVersion: "v1", metadata: {}, items: [{ metadata: { name: "a", namespace: "wt-acme-dev" }, data: { huge } }] }));
    // A big payload after the verdict is not held: it streams.
    expect(runResponse(host, { chunks: splitAt(spec, Array.from({ length: 80 }, (_, i) => i * 65536)) }).local).toBeUndefined();
  });

  it("keeps memory flat over a long watch stream", () => {
    const lines = (from: number, count: number) =>
      Array.from({ length: count }, (_, i) =>
        utf8(JSON.stringify({ type: "MODIFIED", object: { kind: "ConfigMap", apiVersion: "v1", ...configMap(i % 3 === 0 ? "wt-other-dev" : "wt-acme-dev", `cm-${from + i}`, i % 3 === 0 ? "other" : "acme") } }) + "\n"),
      );
    const stream = host.stream();
    stream.sendRequestHeaders([[":method", "GET"], [":path", "/api/v1/configmaps?watch=true"], ["x-wharf-tenant", "acme"]]);
    stream.sendResponseHeaders([[":status", "200"], ["content-type", "application/json"]], false);
    let delivered = 0;
    const feed = (chunks: Uint8Array[]) => {
      for (const chunk of chunks) {
        expect(stream.sendResponseBody(chunk, false)).toBe(0);
        delivered += stream.bodyBytes("response").length;
      }
    };
    feed(lines(0, 2000));
    const warm = host.memoryBytes;
    for (let round = 1; round <= 25; round++) feed(lines(round * 2000, 2000));
    expect(host.memoryBytes).toBe(warm);
    expect(delivered).toBeGreaterThan(0);
    expect(stream.localResponse).toBeUndefined();
    stream.finish();
  });
});

describe("what cannot be rewritten is refused", () => {
  it("refuses protobuf, gzip and unknown media types before any byte goes out", () => {
    for (const [contentType, extra] of [
      ["application/vnd.kubernetes.protobuf", []],
      ["application/json", [["content-encoding", "gzip"]]],
      ["application/yaml", []],
    ] as Array<[string, Array<[string, string]>]>) {
      const run = runResponse(host, { contentType, extraHeaders: extra, chunks: [utf8("k8s\u0000...")] });
      expect(run.local?.status, contentType).toBe(502);
      expect(JSON.parse(run.local!.body).kind).toBe("Status");
      expect(run.bytes.length).toBe(0);
    }
  });

  it("refuses aggregated discovery, whatever its content type says", () => {
    const body = { kind: "APIGroupDiscoveryList", apiVersion: "apidiscovery.k8s.io/v2", metadata: {}, items: [{ metadata: { name: "wt-other-a.io" }, versions: [] }] };
    const labelled = rewrite(body, { contentType: "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList" });
    expect(labelled.local?.status).toBe(502);
    expect(labelled.bytes.length).toBe(0);
    const plain = rewrite(body);
    expect(plain.local?.status).toBe(500);
    expect(plain.text).not.toContain("wt-other");
  });

  it("fails closed on malformed or truncated JSON", () => {
    expect(rewrite('{"kind":"ConfigMap","metadata":{"name":"x"').local?.status).toBe(500);
    expect(rewrite('{"kind":"ConfigMap",,}').local?.status).toBe(500);
    expect(rewrite("<html>").local?.status).toBe(500);
  });
});
