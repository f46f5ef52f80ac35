// The upgrade twins (upgrades.ts) in the resources the control plane builds:
// each pool's HTTP/1.1 twin keeps everything that protects the upstream
// connection (the client certificate, the SAN and SNI checks, one context
// per server name) and only changes the protocol; Envoy's own validation
// accepts the result. Behaviour against a real apiserver: envoy/upgrades.test.ts.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JsonObject } from "@bufbuild/protobuf";
import { gatewayFixture, type GatewayFixture } from "./gateway.fixture.js";

let fixture: GatewayFixture;

beforeAll(async () => {
  fixture = await gatewayFixture("upgrade-twins");
});

afterAll(async () => {
  await fixture?.remove();
});

function resources() {
  return fixture.resourcesFor([
    { name: "main", endpoints: [{ host: "10.0.0.1", port: 6443 }, { host: "10.0.0.2", port: 6443 }] },
    { name: "named", endpoints: [{ host: "10.0.0.3", port: 6443 }], serverName: "kube.internal" },
  ]);
}

/** The cluster with the TLS contexts' ALPN and health checks' codec taken out: what must be equal between a pool and its twin. */
function withoutProtocol(cluster: JsonObject): JsonObject {
  const copy = structuredClone(cluster);
  delete copy.name;
  delete copy.typed_extension_protocol_options;
  const text = JSON.stringify(copy).replace(/"alpn_protocols":\[[^\]]*\]/g, '"alpn_protocols":[]').replace(/"codec_client_type":"HTTP[12]"/g, '"codec_client_type":""').replace(/,?"host":"kube-apiserver"/g, "");
  return JSON.parse(text) as JsonObject;
}

describe("upgrade twins", () => {
  it("each pool has an HTTP/1.1 twin that differs only in protocol", async () => {
    const built = await resources();
    const clusters = built.cluster as JsonObject[];
    for (const pool of ["main", "named"]) {
      const own = clusters.find((cluster) => cluster.name === pool)!;
      const twin = clusters.find((cluster) => cluster.name === `${pool}/upgrade`)!;
      expect(twin, pool).toBeDefined();
      expect(withoutProtocol(twin)).toEqual(withoutProtocol(own));
      expect(JSON.stringify(own)).not.toContain("http/1.1");
      const alpn = [...JSON.stringify(twin).matchAll(/"alpn_protocols":(\[[^\]]*\])/g)].map((match) => match[1]);
      expect(alpn.length).toBeGreaterThan(0);
      for (const protocols of alpn) expect(protocols).toBe('["http/1.1"]');
      expect(twin.typed_extension_protocol_options).toMatchObject({
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": { explicit_http_config: { http_protocol_options: {} } },
      });
      const endpoints = built.endpoint as JsonObject[];
      const { cluster_name: _own, ...ownEndpoints } = endpoints.find((entry) => entry.cluster_name === pool)!;
      const { cluster_name: _twin, ...twinEndpoints } = endpoints.find((entry) => entry.cluster_name === `${pool}/upgrade`)!;
      expect(twinEndpoints).toEqual(ownEndpoints);
    }
    // Two servers, two TLS contexts: the twin keeps one per server too.
    const mainTwin = clusters.find((cluster) => cluster.name === "main/upgrade")!;
    expect((mainTwin.transport_socket_matches as unknown[]).length).toBe(2);
  });

  it("routes only upgrade requests to the twins, before the pools' own routes", async () => {
    const route = (await resources()).route![0] as { virtual_hosts: Array<{ routes: Array<{ match: { headers: Array<{ name: string }> }; route: { cluster: string } }> }> };
    const routes = route.virtual_hosts[0]!.routes;
    for (const pool of ["main", "named"]) {
      const first = routes.findIndex((entry) => entry.route.cluster === pool || entry.route.cluster === `${pool}/upgrade`);
      expect(routes[first]!.route.cluster).toBe(`${pool}/upgrade`);
      for (const entry of routes.filter((candidate) => candidate.route.cluster === `${pool}/upgrade`)) {
        expect(entry.match.headers.map((header) => header.name)).toContain("upgrade");
      }
    }
  });

  it("Envoy accepts the resources", async () => {
    expect(await fixture.validate(await resources())).toMatch(/configuration '.*' OK/);
  });
});
