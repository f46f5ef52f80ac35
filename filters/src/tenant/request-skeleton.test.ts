// The tenant filter's entry: its configuration is checked field by field,
// host requests pass untouched, and a tenant's request loses the tenant header.
import { describe, expect, it } from "vitest";
import { builtInGroups, configure, send, statusOf, tenantEntry, tenantHost } from "./request-harness.js";

describe("tenant filter configuration", () => {
  it("accepts tenants with 32-byte keys and host groups", async () => {
    const result = await configure({ tenants: [tenantEntry("acme"), tenantEntry("b2", ["nodes", "storageclasses.storage.k8s.io"])], hostGroups: builtInGroups });
    expect(result.accepted, result.error).toBe(true);
  });

  const refused: Array<[string, Parameters<typeof configure>[0], string]> = [
    ["a tenant name with '-'", { tenants: [tenantEntry("ac-me")] }, "tenants[0].name"],
    ["an upper-case tenant name", { tenants: [tenantEntry("Acme")] }, "tenants[0].name"],
    ["a 13-character tenant name", { tenants: [tenantEntry("abcdefghijklm")] }, "tenants[0].name"],
    ["a tenant name starting with a digit", { tenants: [tenantEntry("1a")] }, "tenants[0].name"],
    ["an empty tenant name", { tenants: [tenantEntry("")] }, "tenants[0].name"],
    ["a tenant twice", { tenants: [tenantEntry("a"), tenantEntry("a")] }, "tenants[1].name"],
    ["a short continue key", { tenants: [{ ...tenantEntry("a"), continueKey: new Uint8Array(16) }] }, "tenants[0].continue_key"],
    ["no continue key", { tenants: [{ name: "a" }] }, "tenants[0].continue_key"],
    ["a shared view with a slash", { tenants: [tenantEntry("a", ["pods/log"])] }, "tenants[0].shared_views[0]"],
    ["a wildcard shared view", { tenants: [tenantEntry("a", ["*"])] }, "tenants[0].shared_views[0]"],
    ["a shared view of a kind tenants own", { tenants: [tenantEntry("a", ["nodes", "namespaces"])] }, "tenants[0].shared_views[1]"],
    ["a shared view of CRDs", { tenants: [tenantEntry("a", ["customresourcedefinitions.apiextensions.k8s.io"])] }, "tenants[0].shared_views[0]"],
    ["a host group named wt-*", { tenants: [], hostGroups: ["wt-a-example.com"] }, "host_groups"],
    ["a tenant header with upper case", { tenants: [], tenantHeader: "X-Tenant" }, "tenant_header"],
  ];
  for (const [what, config, field] of refused) {
    it(`refuses ${what}, naming ${field}`, async () => {
      const result = await configure(config);
      expect(result.accepted).toBe(false);
      expect(result.error).toContain(field);
    });
  }

  it("refuses bytes that are not a TenantFilterConfig", async () => {
    const { ProxyWasmHost } = await import("../test-host/host.js");
    const { wasmPath } = await import("../index.js");
    const host = await ProxyWasmHost.load(wasmPath("tenant"), { pluginConfiguration: new Uint8Array([0x0a, 0xff, 0xff, 0x01]) });
    expect(host.start()).toBe(false);
    expect(host.logs.map((entry) => entry.message).join("\n")).toContain("wharf.tenant.v1.TenantFilterConfig");
  });
});

describe("tenant filter entry", () => {
  it("passes a host identity's request untouched, headers and body", async () => {
    const host = await tenantHost({ tenants: [tenantEntry("acme")], hostGroups: builtInGroups });
    const headers: Array<[string, string]> = [["accept", "application/vnd.kubernetes.protobuf"], ["accept-encoding", "gzip"], ["content-type", "application/json"]];
    const body = '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","namespace":"default"}}';
    const { stream, status } = send(host, "POST", "/api/v1/namespaces/default/configmaps?fieldManager=kubectl", undefined, headers, body);
    expect(status).toBe(0);
    expect(stream.localResponse).toBeUndefined();
    expect(stream.requestHeaders).toEqual([[":method", "POST"], [":path", "/api/v1/namespaces/default/configmaps?fieldManager=kubectl"], [":authority", "kube"], [":scheme", "https"], ...headers]);
    expect(stream.body("request")).toBe(body);
    stream.finish();
  });

  it("removes the tenant header before upstream", async () => {
    const host = await tenantHost({ tenants: [tenantEntry("acme")], hostGroups: builtInGroups });
    const { stream } = send(host, "GET", "/version", "acme");
    expect(stream.localResponse).toBeUndefined();
    expect(stream.header("x-wharf-tenant")).toBeUndefined();
    stream.finish();
  });

  it("answers 403 for a tenant it does not serve, and for a doubled header", async () => {
    const host = await tenantHost({ tenants: [tenantEntry("acme")], hostGroups: builtInGroups });
    for (const tenant of ["other", "acme,acme", "", "ACME"]) {
      const { stream, status } = send(host, "GET", "/api/v1/namespaces", tenant);
      expect(status).toBe(1);
      expect(statusOf(stream)).toMatchObject({ code: 403, reason: "Forbidden" });
      stream.finish();
    }
  });

  it("honours a configured tenant header name", async () => {
    const host = await tenantHost({ tenants: [tenantEntry("acme")], hostGroups: builtInGroups, tenantHeader: "x-t" });
    const stream = host.stream();
    stream.sendRequestHeaders([[":method", "GET"], [":path", "/version"], ["x-t", "acme"], ["x-wharf-tenant", "acme"]]);
    expect(stream.header("x-t")).toBeUndefined();
    // Not the configured header: it means nothing to this filter.
    expect(stream.header("x-wharf-tenant")).toBe("acme");
    stream.finish();
  });
});
