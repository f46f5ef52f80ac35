// The gateway's resources with tenants: the listener trusts every tenant CA
// beside the cluster's client CA, the gateway filter's config names each
// tenant's issuer and revoked serials, and the tenant filter sits right
// after the gateway filter with its own config. Envoy itself validates it.
import { readFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fromBinary } from "@bufbuild/protobuf";
import { GatewayConfigSchema } from "@wharf/proto/wharf/gateway/v1/gateway_pb.js";
import { TenantFilterConfigSchema } from "@wharf/proto/wharf/tenant/v1/tenant_pb.js";
import { wasmPath } from "@wharf/filters";
import { createCertificateAuthority, makeWorkDir, removeWorkDir } from "@wharf/testkit";
import { gatewayResources, type TenancyDeployment } from "./gateway-resources.js";
import { gatewayFixture, type GatewayFixture } from "./gateway.fixture.js";

let fixture: GatewayFixture;
let dir: string;
let tenantCas: string[];

beforeAll(async () => {
  fixture = await gatewayFixture("tenancy-resources");
  dir = await makeWorkDir("tenancy-resources-cas");
  tenantCas = await Promise.all(["a", "b"].map(async (name) => readFile((await createCertificateAuthority(dir, name)).certFile, "utf8")));
});
afterAll(async () => {
  await fixture?.remove();
  await removeWorkDir(dir);
});

interface Json {
  [key: string]: unknown;
}

function tenancy(filterModule?: Uint8Array): TenancyDeployment {
  return {
    tenants: [
      { name: "acme", sharedViews: ["nodes"], caCert: tenantCas[0]!, issuerSha256: "aa".repeat(32), revokedSerials: ["0102"], continueKey: new Uint8Array(32).fill(1) },
      { name: "globex", sharedViews: [], caCert: tenantCas[1]!, issuerSha256: "bb".repeat(32), revokedSerials: [], continueKey: new Uint8Array(32).fill(2) },
    ],
    hostGroups: ["", "apps"],
    ...(filterModule ? { filterModule } : {}),
  };
}

async function withTenancy(filterModule?: Uint8Array) {
  const plain = await fixture.resourcesFor([{ name: "main", endpoints: [{ host: "127.0.0.1", port: 6443 }] }]);
  const clientCa = ((plain.secret as Json[]).find((secret) => secret.name === "client-ca") as { validation_context: { trusted_ca: { inline_string: string } } }).validation_context.trusted_ca.inline_string;
  // The fixture's deployment, rebuilt with tenancy (same certificates and module).
  const serving = (plain.secret as Json[]).find((secret) => secret.name === "gateway-serving") as { tls_certificate: { certificate_chain: { inline_string: string }; private_key: { inline_string: string } } };
  const wasmModule = await readFile(wasmPath("gateway"));
  return gatewayResources({
    listenPort: 7443,
    servingCert: serving.tls_certificate.certificate_chain.inline_string,
    servingKey: serving.tls_certificate.private_key.inline_string,
    clientCa,
    upstreamCa: clientCa,
    frontProxyCert: serving.tls_certificate.certificate_chain.inline_string,
    frontProxyKey: serving.tls_certificate.private_key.inline_string,
    wasmModule,
    gatewayConfig: new Uint8Array(),
    pools: [{ name: "main", endpoints: [{ host: "127.0.0.1", port: 6443 }] }],
    defaultPool: "main",
    tenancy: tenancy(filterModule),
  });
}

function httpFilters(resources: Awaited<ReturnType<typeof withTenancy>>): string[] {
  const listener = resources.listener![0] as { filter_chains: Array<{ filters: Array<{ typed_config: { http_filters: Array<{ name: string }> } }> }> };
  return listener.filter_chains[0]!.filters[0]!.typed_config.http_filters.map((filter) => filter.name);
}

function extensionConfig(resources: Awaited<ReturnType<typeof withTenancy>>, name: string): Uint8Array {
  const extension = (resources.extension as Json[]).find((entry) => entry.name === name) as { typed_config: { config: { configuration: { value: string } } } } | undefined;
  if (!extension) throw new Error(`no extension ${name}`);
  return Buffer.from(extension.typed_config.config.configuration.value, "base64");
}

describe("gateway resources with tenants", () => {
  it("trust the cluster client CA and every tenant CA on the listener", async () => {
    const resources = await withTenancy();
    const bundle = ((resources.secret as Json[]).find((secret) => secret.name === "client-ca") as { validation_context: { trusted_ca: { inline_string: string } } }).validation_context.trusted_ca.inline_string;
    expect(bundle.match(/-----BEGIN CERTIFICATE-----/g)).toHaveLength(3);
    for (const ca of tenantCas) expect(bundle).toContain(ca.trim());
  });

  it("give the gateway filter each tenant's issuer hash and revoked serials, and the tenant header", async () => {
    const config = fromBinary(GatewayConfigSchema, extensionConfig(await withTenancy(), "wharf.gateway"));
    expect(config.tenants.map((tenant) => [tenant.name, tenant.issuerSha256, tenant.revokedSerials])).toEqual([
      ["acme", "aa".repeat(32), ["0102"]],
      ["globex", "bb".repeat(32), []],
    ]);
    expect(config.tenantHeader).toBe("x-wharf-tenant");
  });

  it("chain the tenant filter right after the gateway filter, with its config, when its module is there", async () => {
    const resources = await withTenancy(await readFile(wasmPath("hello")));
    expect(httpFilters(resources)).toEqual(["wharf.gateway", "wharf.tenant", "envoy.filters.http.router"]);
    const config = fromBinary(TenantFilterConfigSchema, extensionConfig(resources, "wharf.tenant"));
    expect(config.tenants.map((tenant) => [tenant.name, tenant.sharedViews, Buffer.from(tenant.continueKey).toString("hex")])).toEqual([
      ["acme", ["nodes"], "01".repeat(32)],
      ["globex", [], "02".repeat(32)],
    ]);
    expect(config.hostGroups).toEqual(["", "apps"]);
    expect(config.tenantHeader).toBe("x-wharf-tenant");
    // The apiserver never sees the tenant header.
    const route = (resources.route as Array<{ virtual_hosts: Array<{ request_headers_to_remove: string[] }> }>)[0]!;
    expect(route.virtual_hosts[0]!.request_headers_to_remove).toContain("x-wharf-tenant");
    expect(await fixture.validate(resources)).toMatch(/configuration .* OK/);
  });

  it("leave the chain as it was without the tenant filter's module", async () => {
    const resources = await withTenancy();
    expect(httpFilters(resources)).toEqual(["wharf.gateway", "envoy.filters.http.router"]);
    expect((resources.extension as Json[]).map((entry) => entry.name)).toEqual(["wharf.gateway"]);
    expect(await fixture.validate(resources)).toMatch(/configuration .* OK/);
  });
});
