// What a request costs the filter's host: every host call crosses the VM
// boundary in Envoy. bench/gateway.ts prints the same count for its load.
import { describe, expect, it } from "vitest";
import { clientCertificate, gatewayHost, hostCallsPerRequest, type GatewayConfigInit } from "./harness.js";

/** bench/gateway.ts's configuration: a per-user schema on every request. */
const benchConfig: GatewayConfigInit = {
  flowControlSchemas: [{ name: "per-user", qps: 100_000, burst: 100_000, maxInflight: 10_000, maxWatches: 10_000, perUser: true }],
  policies: [{ name: "watches", rules: [{ verbs: ["watch"] }], action: { target: { case: "upstream", value: "pool-b" }, flowControl: "per-user" } }],
  defaultAction: { target: { case: "upstream", value: "pool-a" }, flowControl: "per-user" },
};

describe("host calls per request", () => {
  it("a certificate-authenticated get admitted by a per-user schema costs 9", async () => {
    const host = await gatewayHost(benchConfig, { clientCert: await clientCertificate({ subject: "/O=system:masters/CN=bench" }) });
    // Request: the header map, the identity headers, the request count and the route; response: its
    // status and count. Flow control runs on the worker's lease: no host call (it took 5 before, 15 in all).
    expect(hostCallsPerRequest(host, "GET", "/api/v1/namespaces/bench/configmaps/cm-7", [["user-agent", "bench"], ["accept", "application/json"]])).toBe(9);
  });
});
