// Upstream TLS names per pool and per endpoint, in the resources the control
// plane builds, checked by Envoy's own config validation (the behaviour
// against real apiservers is in envoy/gateway-identity.attack.test.ts).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { gatewayFixture, type GatewayFixture } from "./gateway.fixture.js";
import type { UpstreamPool } from "./index.js";

let fixture: GatewayFixture;

beforeAll(async () => {
  fixture = await gatewayFixture("upstream-tls");
});

afterAll(async () => {
  await fixture?.remove();
});

const resourcesFor = (pools: UpstreamPool[]) => fixture.resourcesFor(pools);

interface TlsContext {
  typed_config: { sni?: string; common_tls_context: { combined_validation_context: { default_validation_context: { match_typed_subject_alt_names: unknown[] } } } };
}

const sanOf = (context: TlsContext) => context.typed_config.common_tls_context.combined_validation_context.default_validation_context.match_typed_subject_alt_names;

describe("upstream TLS names", () => {
  it("checks a pool's server_name as a DNS SAN and sends it as SNI; an IP host as an IP SAN without SNI", async () => {
    const resources = await resourcesFor([
      { name: "by-name", endpoints: [{ host: "10.0.0.1", port: 6443 }], serverName: "kube.internal" },
      { name: "by-ip", endpoints: [{ host: "10.0.0.2", port: 6443 }] },
    ]);
    // By name: each pool's cluster is followed by its upgrade twin (upgrades.ts).
    const clusters = resources.cluster as unknown as Array<{ name: string; transport_socket: TlsContext }>;
    const [byName, byIp] = ["by-name", "by-ip"].map((name) => clusters.find((cluster) => cluster.name === name));
    expect(byName!.transport_socket.typed_config.sni).toBe("kube.internal");
    expect(sanOf(byName!.transport_socket)).toEqual([{ san_type: "DNS", matcher: { exact: "kube.internal" } }]);
    expect(byIp!.transport_socket.typed_config.sni).toBeUndefined();
    expect(sanOf(byIp!.transport_socket)).toEqual([{ san_type: "IP_ADDRESS", matcher: { exact: "10.0.0.2" } }]);
  });

  it("gives each apiserver of a pool its own name when their hosts differ, and Envoy accepts the result", async () => {
    const resources = await resourcesFor([{ name: "main", endpoints: [{ host: "10.0.0.1", port: 6443 }, { host: "10.0.0.2", port: 6443 }, { host: "::1", port: 6443 }] }]);
    const [cluster] = resources.cluster as unknown as Array<{ transport_socket_matches: Array<{ match: { server: string }; transport_socket: TlsContext }> }>;
    expect(cluster!.transport_socket_matches.map((entry) => [entry.match.server, sanOf(entry.transport_socket)])).toEqual([
      ["10.0.0.1", [{ san_type: "IP_ADDRESS", matcher: { exact: "10.0.0.1" } }]],
      ["10.0.0.2", [{ san_type: "IP_ADDRESS", matcher: { exact: "10.0.0.2" } }]],
      ["::1", [{ san_type: "IP_ADDRESS", matcher: { exact: "::1" } }]],
    ]);
    const [endpoints] = resources.endpoint as unknown as Array<{ endpoints: Array<{ lb_endpoints: Array<{ metadata: unknown }> }> }>;
    expect(endpoints!.endpoints[0]!.lb_endpoints.map((entry) => entry.metadata)).toEqual(
      ["10.0.0.1", "10.0.0.2", "::1"].map((server) => ({ filter_metadata: { "envoy.transport_socket_match": { server } } })),
    );
    expect(await fixture.validate(resources)).toMatch(/configuration '.*' OK/);
  });
});
