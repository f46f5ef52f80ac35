// attack: inputs sized to make parsing quadratic. Envoy lets request headers
// reach 60 KiB, so a client can send a 60 KiB fieldSelector, labelSelector,
// path or bearer token; the filter's time must grow linearly with the size.
// Timing on a shared machine is noisy, so each case compares the fastest of
// several runs at 6 KiB and at 60 KiB: linear work gives a ratio near 10,
// quadratic work near 100. The bound (30) leaves room for noise and is far
// below quadratic.
import { beforeAll, describe, expect, it } from "vitest";
import type { ProxyWasmHost } from "../test-host/host.js";
import { clientCertificate, gatewayHost, request, type GatewayConfigInit } from "./harness.js";

const small = 6 * 1024;
const large = 60 * 1024;
const maxRatio = 30;

const config: GatewayConfigInit = {
  policies: [{ name: "critical", rules: [{ resources: ["configmaps"], resourceNames: ["critical"] }], action: { target: { case: "deny", value: { message: "no" } } } }],
  defaultAction: { target: { case: "upstream", value: "pool-a" } },
  // Every timed request needs its review: the per-source review limit is out of the way here.
  tokenReview: { cluster: "pool-a", authority: "kubernetes.default", reviewer: "wharf:gateway", reviewsPerSecondPerSource: 1e9, reviewBurstPerSource: 1_000_000 },
};

let clientCert: string;
beforeAll(async () => {
  clientCert = await clientCertificate({ subject: "/O=devs/CN=alice" });
});

/** `unit` repeated to `size` characters. */
function filled(unit: string, size: number): string {
  return unit.repeat(Math.ceil(size / unit.length)).slice(0, size);
}

/** The fastest of a few runs, in ms: the least disturbed by other load. */
function fastest(run: () => void): number {
  let best = Infinity;
  for (let i = 0; i < 15; i++) {
    const started = performance.now();
    run();
    best = Math.min(best, performance.now() - started);
  }
  return best;
}

function send(host: ProxyWasmHost, path: string, headers: Array<[string, string]> = []): void {
  const { stream } = request(host, "GET", path, headers);
  stream.finish();
}

/** Times `make(size)` sent through the filter at both sizes; returns [ms at 60 KiB, ratio]. */
async function scaling(make: (size: number) => { path: string; headers?: Array<[string, string]> }, withCert: boolean): Promise<[number, number]> {
  // Without a client certificate a bearer token is reviewed (a request body is built from it); with one the request is parsed.
  const host = await gatewayHost(config, withCert ? { clientCert } : {});
  const at = (size: number) => {
    const { path, headers } = make(size);
    return fastest(() => send(host, path, headers));
  };
  at(small); // warm-up: compilation, memory growth
  at(large);
  const [smallMs, largeMs] = [at(small), at(large)];
  return [largeMs, largeMs / Math.max(smallMs, 0.01)];
}

describe("attack: hostile input sizes are parsed in linear time", () => {
  const cases: Array<[string, (size: number) => { path: string; headers?: Array<[string, string]> }]> = [
    ["a fieldSelector of many terms", (size) => ({ path: `/api/v1/namespaces/a/configmaps?fieldSelector=${filled("metadata.name=critical,", size)}` })],
    ["a fieldSelector of escaped commas", (size) => ({ path: `/api/v1/namespaces/a/configmaps?fieldSelector=metadata.name=${filled("\\,", size)}` })],
    ["a fieldSelector of one long value", (size) => ({ path: `/api/v1/namespaces/a/configmaps?fieldSelector=metadata.name=${filled("a", size)}` })],
    ["a labelSelector", (size) => ({ path: `/api/v1/namespaces/a/configmaps?labelSelector=${filled("app in (a,b),", size)}` })],
    ["a path of many segments", (size) => ({ path: `/api/v1/namespaces/a/configmaps/${filled("x/", size)}` })],
    ["a path of percent escapes", (size) => ({ path: `/api/v1/namespaces/${filled("%61", size)}/pods` })],
    ["a query of many parameters", (size) => ({ path: `/api/v1/pods?${filled("watch=1&", size)}` })],
    ["a bearer token (sent on in a TokenReview)", (size) => ({ path: "/api/v1/pods", headers: [["authorization", `Bearer ${filled("t\"\\", size)}`]] })],
    ["many identity headers", (size) => ({ path: "/api/v1/pods", headers: Array.from({ length: Math.floor(size / 1024) }, (_, i) => [`x-remote-extra-k${i}`, filled("v", 1000)] as [string, string]) })],
  ];
  for (const [name, make] of cases) {
    it(`handles ${name} in time linear in its size`, async () => {
      const [largeMs, ratio] = await scaling(make, !name.startsWith("a bearer token"));
      expect(ratio, `60 KiB took ${largeMs.toFixed(2)} ms, ${ratio.toFixed(1)}× the 6 KiB time`).toBeLessThan(maxRatio);
      expect(largeMs).toBeLessThan(50);
    });
  }

  it("reads a 60 KiB TokenReview answer in time linear in its size", async () => {
    const host = await gatewayHost(config);
    const answer = (size: number) =>
      // About 0.75 × size bytes of JSON: under the 64 KiB the filter reads at most.
      JSON.stringify({ status: { authenticated: true, user: { username: `u${filled("\u00e9\\\"", size / 4)}`, groups: [filled("g", size / 4)] } } });
    let token = 0;
    const review = (body: string) =>
      fastest(() => {
        const stream = host.stream();
        // A new token each time: a cached one would need no review.
        stream.sendRequestHeaders([[":method", "GET"], [":path", "/api/v1/pods"], ["authorization", `Bearer t${token++}`]]);
        host.respondToCall(host.calls.pop()!, [[":status", "201"]], body);
        expect(stream.continued).toEqual([0]);
        stream.finish();
      });
    review(answer(small));
    review(answer(large));
    const smallMs = review(answer(small));
    const largeMs = review(answer(large));
    expect(largeMs / Math.max(smallMs, 0.01), `60 KiB took ${largeMs.toFixed(2)} ms`).toBeLessThan(maxRatio);
    expect(largeMs).toBeLessThan(50);
  });

  it("does not read a TokenReview answer over 64 KiB: the token is not verified (503), and nothing is cached", async () => {
    const host = await gatewayHost(config);
    const ask = () => {
      const stream = host.stream();
      stream.sendRequestHeaders([[":method", "GET"], [":path", "/api/v1/pods"], ["authorization", "Bearer huge-answer"]]);
      return stream;
    };
    const stream = ask();
    host.respondToCall(host.calls.pop()!, [[":status", "201"]], JSON.stringify({ status: { authenticated: true, user: { username: filled("u", 70 * 1024) } } }));
    expect(stream.localResponse?.status).toBe(503);
    ask();
    expect(host.calls).toHaveLength(1);
  });
});
