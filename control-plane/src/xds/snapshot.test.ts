// The snapshot's consistency check follows typed references (EDS, RDS,
// ECDS, SDS) wherever they sit in a resource, typed Anys included, and
// nothing that only looks like one.
import { describe, expect, it } from "vitest";
import type { JsonValue } from "@bufbuild/protobuf";
import { clientSidecarResources } from "../resources/client-sidecar-resources.js";
import { gatewayResources } from "../resources/gateway-resources.js";
import { Snapshot, SnapshotError, type ResourceSet } from "./snapshot.js";

const pem = "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n";
const gateway = (): ResourceSet =>
  gatewayResources({
    listenPort: 7443,
    servingCert: pem,
    servingKey: pem,
    clientCa: pem,
    upstreamCa: pem,
    frontProxyCert: pem,
    frontProxyKey: pem,
    wasmModule: new Uint8Array([0, 97, 115, 109]),
    gatewayConfig: new Uint8Array(),
    pools: [{ name: "main", endpoints: [{ host: "127.0.0.1", port: 6443 }] }],
    defaultPool: "main",
  });
const sidecar = (): ResourceSet =>
  clientSidecarResources({ listenPort: 8001, gateways: [{ host: "127.0.0.1", port: 7443 }], gatewayServerName: "localhost", gatewayCa: pem, readRetries: 2 });

function without(set: ResourceSet, kind: keyof ResourceSet, name: string): ResourceSet {
  return { ...set, [kind]: (set[kind] ?? []).filter((resource) => (resource as { name?: string; cluster_name?: string }).name !== name && (resource as { cluster_name?: string }).cluster_name !== name) };
}

describe("snapshot consistency", () => {
  it("accepts each role's complete resource set", () => {
    expect(Snapshot.build("1", gateway()).get("secret").map((secret) => secret.name).sort()).toEqual(["client-ca", "front-proxy-client", "gateway-serving", "upstream-ca"]);
    expect(Snapshot.build("1", sidecar()).get("secret").map((secret) => secret.name)).toEqual(["gateway-ca"]);
  });

  it.each([
    ["an EDS cluster without its endpoints", "endpoint", "main", /cluster main refers to endpoint main/],
    ["a listener without its route configuration (RDS)", "route", "kube-apiserver", /listener kube-apiserver refers to route kube-apiserver/],
    ["a listener without its filter's config (ECDS)", "extension", "wharf.gateway", /listener kube-apiserver refers to extension wharf\.gateway/],
    ["a listener's TLS context without its serving secret (SDS)", "secret", "gateway-serving", /listener kube-apiserver refers to secret gateway-serving/],
    ["a cluster's TLS context without its client certificate (SDS)", "secret", "front-proxy-client", /cluster main refers to secret front-proxy-client/],
  ] as const)("refuses %s", (_, kind, name, message) => {
    expect(() => Snapshot.build("1", without(gateway(), kind, name))).toThrow(SnapshotError);
    expect(() => Snapshot.build("1", without(gateway(), kind, name))).toThrow(message);
  });

  it("finds a reference inside a combined validation context of the client sidecar's cluster", () => {
    expect(() => Snapshot.build("1", without(sidecar(), "secret", "gateway-ca"))).toThrow(/cluster gateway refers to secret gateway-ca/);
  });

  it("does not take text that looks like a reference for one", () => {
    const set = gateway();
    // Free-form cluster metadata whose JSON reads exactly like an RDS and an SDS reference.
    (set.cluster![0] as Record<string, JsonValue>).metadata = {
      filter_metadata: { "example.notes": { route_config_name: "nowhere", tls: { name: "missing", sds_config: {} } } },
    };
    expect(JSON.stringify(set)).toContain('"route_config_name":"nowhere"');
    expect(JSON.stringify(set)).toContain('"name":"missing","sds_config"');
    expect(() => Snapshot.build("1", set)).not.toThrow();
  });
});
