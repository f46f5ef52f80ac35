// Flow control leased per worker: the limits hold across workers while the
// usual request touches no shared data (no host call, no compare-and-swap).
import { beforeAll, describe, expect, it } from "vitest";
import type { StreamHandle } from "../test-host/host.js";
import { SharedData } from "../test-host/shared-data.js";
import { clientCertificate, gatewayHost, request, type GatewayConfigInit } from "./harness.js";

let alice: { clientCert: string };
beforeAll(async () => {
  alice = { clientCert: await clientCertificate({ subject: "/O=devs/CN=alice" }) };
});
const limited = (schema: NonNullable<GatewayConfigInit["flowControlSchemas"]>[number]): GatewayConfigInit => ({
  flowControlSchemas: [schema],
  defaultAction: { target: { case: "upstream", value: "main" }, flowControl: schema.name },
});

describe("flow control leased per worker", () => {
  it("never admits more than a large in-flight limit across workers, and gives idle slots back on the tick", async () => {
    const shared = new SharedData();
    const config = limited({ name: "wide", maxInflight: 64 });
    const workers = await Promise.all([1, 2].map(() => gatewayHost(config, { ...alice, sharedData: shared })));
    const open: StreamHandle[][] = [[], []];
    const refused: number[] = [];
    for (let i = 0; i < 80; i++) {
      const { stream } = request(workers[i % 2]!, "GET", "/api/v1/pods");
      if (stream.localResponse) refused.push(stream.localResponse.status);
      else open[i % 2]!.push(stream);
    }
    expect(open[0]!.length + open[1]!.length).toBe(64);
    expect(refused).toEqual(Array(16).fill(429));
    // The first worker's requests end: the second can use those slots, all but the two chunks (of 4)
    // the first may keep idle at once, and those too after the tick.
    for (const stream of open[0]!) stream.finish();
    const admittedNow = Array.from({ length: 32 }, () => request(workers[1]!, "GET", "/api/v1/pods").stream).filter((stream) => stream.localResponse === undefined);
    expect(admittedNow.length).toBeGreaterThanOrEqual(32 - 2 * 4);
    expect(admittedNow.length).toBeLessThan(32);
    for (const worker of workers) worker.tick();
    const rest = Array.from({ length: 32 - admittedNow.length }, () => request(workers[1]!, "GET", "/api/v1/pods").stream);
    expect(rest.map((stream) => stream.localResponse?.status ?? 200)).toEqual(rest.map(() => 200));
    expect(request(workers[1]!, "GET", "/api/v1/pods").stream.localResponse?.status).toBe(429);
    for (const stream of [...open[1]!, ...admittedNow, ...rest]) stream.finish();
    // A worker's gauge counts the others' idle slots until they have ticked too.
    for (const worker of [...workers, ...workers]) worker.tick();
    expect(workers.map((worker) => worker.metric("wharf_gateway.inflight.schema.wide"))).toEqual([0n, 0n]);
  });

  it("takes a large bucket's tokens in batches: the rate across workers stays within its burst", async () => {
    const shared = new SharedData();
    const config = limited({ name: "fast", qps: 0.001, burst: 64 });
    const workers = await Promise.all([1, 2].map(() => gatewayHost(config, { ...alice, sharedData: shared, now: () => 1_000_000_000n })));
    const admitted = Array.from({ length: 100 }, (_, i) => request(workers[i % 2]!, "GET", "/api/v1/pods").stream).filter((stream) => {
      stream.finish();
      return stream.localResponse === undefined;
    });
    expect(admitted.length).toBe(64);
  });

  it("costs no shared-data access for a request its worker's lease covers", async () => {
    const host = await gatewayHost(limited({ name: "wide", qps: 10_000, burst: 10_000, maxInflight: 10_000, perUser: true }), alice);
    request(host, "GET", "/api/v1/pods").stream.finish(); // takes the lease
    let sharedDataCalls = 0;
    const shared = (host as unknown as { sharedData: SharedData }).sharedData;
    const get = shared.get.bind(shared);
    const set = shared.set.bind(shared);
    shared.get = (key) => (sharedDataCalls++, get(key));
    shared.set = (key, value, cas) => (sharedDataCalls++, set(key, value, cas));
    for (let i = 0; i < 50; i++) request(host, "GET", "/api/v1/pods").stream.finish();
    expect(sharedDataCalls).toBe(0);
  });
});
