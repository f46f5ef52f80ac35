// attack: a million random and mutated requests through the compiled filter
// on the test host (two workers sharing shared data, as Envoy runs them):
// methods, paths, query strings, identity and impersonation headers, bearer
// tokens, forwarded client certificates (and mangled ones), huge inputs, TokenReview answers that are
// garbage, late or never useful, streams that end while their review is
// pending. The filter must never trap, never forward a client's identity
// claim, answer every refusal with a Status body, give back every
// flow-control slot, and keep its memory flat.
// WHARF_FUZZ_SEED=<n> replays a run; WHARF_FUZZ_REQUESTS=<n> changes its size.
import { beforeAll, describe, expect, it } from "vitest";
import { type HttpCall, type ProxyWasmHost, type StreamHandle } from "../test-host/host.js";
import { SharedData } from "../test-host/shared-data.js";
import { fuzzConfig, fuzzSeed, knownTokens, perUserInflight, RequestFuzzer, seededRandom, spoofMarker, type FuzzRequest } from "./fuzz.js";
import { certificateAuthority, clientCertificate, forwardedClientCert, gatewayHost, serialOf, type GatewayConfigInit } from "./harness.js";

const total = Number(process.env.WHARF_FUZZ_REQUESTS ?? 1_000_000);
const seed = fuzzSeed();

/**
 * Verified client certificates as Envoy forwards them: groups with and
 * without impersonation rights; host names claiming a tenant's; tenant
 * "fuzz"'s users (one revoked) and a deleted tenant's.
 */
let forwardedCerts: string[] = [];
let tenants: GatewayConfigInit["tenants"] = [];
/** Forwarded exactly so (not mutated), these must be refused with 401: revoked, a deleted tenant's, a host name claiming a tenant's. */
const mustRefuse = new Set<string>();
beforeAll(async () => {
  const subjects = ["/O=devs/O=ops/CN=alice", "/O=system:masters/CN=admin-root", "/O=system:serviceaccounts/CN=system:serviceaccount:ci:builder", "/CN= padded ", "/O=a,b/CN=x\\,y", "/O=wharf:tenant:fuzz:system:masters/CN=eve"];
  const [fuzzCa, goneCa] = await Promise.all(["fuzz", "gone"].map((name) => certificateAuthority(`/CN=wharf tenant ${name} CA 0123456789abcdef/O=wharf.dev`)));
  const pems = await Promise.all([
    ...subjects.map((subject) => clientCertificate({ subject })),
    clientCertificate({ ca: fuzzCa!, subject: "/O=system:masters/O=devs/CN=admin" }),
    clientCertificate({ ca: fuzzCa!, subject: "/CN=revoked" }),
    clientCertificate({ ca: goneCa!, subject: "/O=system:masters/CN=admin" }),
  ]);
  forwardedCerts = pems.map(forwardedClientCert);
  for (const index of [subjects.length - 1, subjects.length + 1, subjects.length + 2]) mustRefuse.add(forwardedCerts[index]!);
  tenants = [{ name: "fuzz", issuerSha256: fuzzCa!.issuerSha256, revokedSerials: [serialOf(pems[subjects.length + 1]!)] }];
});

const refusals = new Set([400, 401, 403, 429, 503]);

function robotUser(token: string): string {
  return `system:serviceaccount:fuzz:${token}`;
}

/** What the apiserver (or Envoy, on a timeout) might answer a TokenReview with. */
function reviewAnswer(fuzz: RequestFuzzer, call: HttpCall): { headers: Array<[string, string]>; body: string } {
  const token = (JSON.parse(new TextDecoder().decode(call.body)) as { spec: { token: string } }).spec.token;
  const roll = fuzz.random();
  if (roll < 0.75) {
    const status = knownTokens.includes(token)
      ? { authenticated: true, user: { username: robotUser(token), uid: "u-1", groups: ["system:serviceaccounts", "system:authenticated"], extra: { "authentication.kubernetes.io/pod-name": ["p"] } } }
      : { authenticated: false, error: "invalid bearer token" };
    return { headers: [[":status", "201"]], body: JSON.stringify({ kind: "TokenReview", apiVersion: "authentication.k8s.io/v1", status }) };
  }
  if (roll < 0.8) return { headers: [], body: "" }; // Envoy's answer to a timeout or reset: no headers
  if (roll < 0.85) return { headers: [[":status", fuzz.pick(["500", "503", "403", "", "20x"])]], body: fuzz.text(50) };
  const bodies = [
    () => fuzz.text(200),
    () => "[".repeat(1 + fuzz.int(50_000)),
    () => `{"status":${"{\"a\":".repeat(100)}1${"}".repeat(100)}}`,
    () => JSON.stringify({ status: { authenticated: true, user: { username: "", groups: ["g"] } } }),
    () => JSON.stringify({ status: { authenticated: "true", user: { username: "x" } } }),
    () => JSON.stringify({ status: { authenticated: true, user: { username: robotUser(token), groups: "not-a-list" } } }),
    () => `{"status":{"authenticated":true,"user":{"username":"${"\\u00e9".repeat(1 + fuzz.int(20_000))}"}}}`,
    () => `{"status":{"authenticated":true,"user":{"username":"${"a".repeat(1 + fuzz.int(60_000))}","groups":["${"\\\\".repeat(5000)}"]}}}`,
  ];
  return { headers: [[":status", "201"]], body: fuzz.pick(bodies)() };
}

interface Pending {
  worker: ProxyWasmHost;
  call: HttpCall;
  stream: StreamHandle;
  request: FuzzRequest;
}

describe("attack: fuzzing the gateway filter on the test host", () => {
  it(`survives ${total} random and mutated requests: no trap, no spoofed identity, slots given back, memory flat`, { timeout: 600_000 }, async () => {
    let now = 1_000_000_000n;
    const sharedData = new SharedData();
    const workers = await Promise.all([true, false].map((annotateRequests) => gatewayHost({ ...fuzzConfig, tenants, annotateRequests }, { sharedData, now: () => now })));
    const fuzz = new RequestFuzzer(seededRandom(seed));
    const open: StreamHandle[] = [];
    const pending: Pending[] = [];
    let current: FuzzRequest | undefined;
    let index = 0;
    const fail = (message: string): never => {
      const shown = JSON.stringify(current, (_key, value: unknown) => (typeof value === "string" && value.length > 300 ? `${value.slice(0, 300)}…(${value.length})` : value));
      throw new Error(`${message}\n  request #${index}: ${shown}\n  replay: WHARF_FUZZ_SEED=${seed} WHARF_FUZZ_REQUESTS=${index + 1}`);
    };

    /** What reached the apiserver: no client-sent identity claim or pool choice may be in it. */
    const checkForwarded = (stream: StreamHandle) => {
      for (const [name, value] of stream.requestHeaders) {
        if (value.includes(spoofMarker)) fail(`forwarded a client's claim: ${name}: ${value.slice(0, 80)}`);
        if (name === "x-wharf-upstream" && value !== "pool-a" && value !== "pool-b") fail(`forwarded to pool ${value}`);
      }
      // Tenant names travel only with the tenant header, and only tenant fuzz's, for a certificate of its CA.
      const tenantHeaders = stream.requestHeaders.filter(([name]) => name === "x-wharf-tenant");
      const names = stream.requestHeaders.filter(([name]) => name === "x-remote-user" || name === "x-remote-group").map(([, value]) => value);
      if (tenantHeaders.length === 0) {
        if (names.some((value) => value.startsWith("wharf:tenant:"))) fail(`forwarded a tenant name without the tenant header: ${names.join(", ")}`);
      } else {
        if (tenantHeaders.length > 1 || tenantHeaders[0]![1] !== "fuzz") fail(`forwarded tenant header ${JSON.stringify(tenantHeaders)}`);
        if (names.some((value) => value !== "system:authenticated" && !value.startsWith("wharf:tenant:fuzz"))) fail(`a tenant identity with a host name: ${names.join(", ")}`);
      }
    };
    const checkRefusal = (stream: StreamHandle) => {
      const response = stream.localResponse!;
      if (!refusals.has(response.status)) fail(`answered ${response.status}`);
      let body: { kind?: string; code?: number };
      try {
        body = JSON.parse(response.body) as typeof body;
      } catch {
        return fail(`answered ${response.status} with a body that is not JSON: ${response.body.slice(0, 200)}`);
      }
      if (body.kind !== "Status" || body.code !== response.status) fail(`answered ${response.status} with ${response.body.slice(0, 200)}`);
    };
    const respond = (stream: StreamHandle) => {
      stream.sendResponseHeaders([[":status", fuzz.pick(["200", "201", "404", "403", "500", "101", "", "abc"])]]);
    };
    const finished = new WeakSet<StreamHandle>();
    const finish = (stream: StreamHandle) => {
      if (finished.has(stream)) return;
      finished.add(stream);
      stream.finish();
    };
    /** Ends the stream now or keeps it open (a watch, a slow response) to end later. */
    const finishOrKeep = (stream: StreamHandle, keepChance: number) => {
      if (fuzz.chance(keepChance)) open.push(stream);
      else finish(stream);
    };
    const finishSome = (keep: number) => {
      while (open.length > keep) finish(open.splice(fuzz.int(open.length), 1)[0]!);
    };
    /** The review's answer; a stream still there continues or is refused. */
    const answer = (entry: Pending) => {
      const { headers, body } = reviewAnswer(fuzz, entry.call);
      entry.worker.respondToCall(entry.call, headers, body);
      const stream = entry.stream;
      if (finished.has(stream)) return;
      if (stream.localResponse) {
        checkRefusal(stream);
        finish(stream);
      } else if (stream.continued.length > 0) {
        checkForwarded(stream);
        respond(stream);
        finishOrKeep(stream, 0.1);
      } else {
        fail("neither continued nor refused after its TokenReview answer");
      }
    };
    const guarded = (step: () => void) => {
      try {
        step();
      } catch (error) {
        if (error instanceof Error && error.message.includes("replay: WHARF_FUZZ_SEED")) throw error;
        const logs = workers.flatMap((worker) => worker.logs.filter((entry) => entry.level >= 4).map((entry) => entry.message));
        fail(`the filter trapped or failed: ${String(error)}\n  filter logs: ${logs.slice(-3).join(" | ")}`);
      }
    };

    // Warm-up: the largest inputs first, many streams of them open at once, so each VM's linear memory
    // reaches its peak early; the baseline is taken after a fifth of the run.
    const big = (unit: string) => unit.repeat(Math.ceil(58_000 / unit.length)).slice(0, 58_000);
    for (const worker of workers) {
      guarded(() => {
        const streams = [
          `/api/v1/namespaces/a/configmaps?fieldSelector=${big("metadata.name=x\\,")}`,
          `/api/v1/namespaces/a/configmaps?labelSelector=${big("a in (b),")}`,
          `/api/v1/namespaces/${big("%61")}/pods`,
          `/${big("a/")}`,
        ].flatMap((path) =>
          Array.from({ length: 8 }, (_, i) => {
            const stream = worker.stream();
            // Half with a certificate (their paths are parsed), half with a huge token (reviewed).
            const caller: Array<[string, string]> = i % 2 === 0 ? [["x-forwarded-client-cert", forwardedCerts[0]!]] : [["authorization", `Bearer ${big("t")}`]];
            stream.sendRequestHeaders([[":method", "GET"], [":path", path], ...caller]);
            return stream;
          }),
        );
        for (const call of worker.calls.splice(0)) worker.respondToCall(call, [[":status", "201"]], `{"status":{"authenticated":true,"user":{"username":"${big("\\u00e9")}"}}}`);
        for (const stream of streams) stream.finish();
      });
    }
    const warmup = Math.floor(total / 5);
    let memoryAfterWarmup = 0;
    const started = performance.now();
    for (index = 0; index < total; index++) {
      if (index === warmup) memoryAfterWarmup = workers.map((worker) => worker.memoryBytes).reduce((a, b) => a + b, 0);
      now += BigInt(fuzz.int(3_000_000)); // up to 3 ms between requests: buckets refill, cache entries expire
      const worker = workers[fuzz.int(workers.length)]!;
      current = fuzz.request();
      const request = current;
      const forwardedCert = fuzz.forwardedCert(forwardedCerts);
      guarded(() => {
        const stream = worker.stream();
        const callsBefore = worker.calls.length;
        const status = stream.sendRequestHeaders([
          [":method", request.method],
          [":path", request.path],
          [":authority", "kube"],
          [":scheme", "https"],
          ...(forwardedCert === undefined ? [] : ([["x-forwarded-client-cert", forwardedCert]] as Array<[string, string]>)),
          ...request.headers,
        ]);
        // 400 only for a request without a path, refused before anyone's identity is read.
        if (forwardedCert !== undefined && mustRefuse.has(forwardedCert) && stream.localResponse?.status !== 401 && stream.localResponse?.status !== 400) {
          fail(`a revoked, deleted tenant's or tenant-name-claiming certificate was not refused (${stream.localResponse?.status ?? "forwarded"})`);
        }
        if (stream.localResponse) {
          checkRefusal(stream);
          finish(stream);
        } else if (worker.calls.length > callsBefore) {
          if (status !== 1) fail("continued while its TokenReview is pending");
          const entry = { worker, call: worker.calls[worker.calls.length - 1]!, stream, request };
          worker.calls.length = 0;
          const roll = fuzz.random();
          if (roll < 0.8) {
            answer(entry);
          } else {
            // The client may go away while its review is pending; the answer (or Envoy's timeout) comes later.
            if (roll < 0.9) finish(stream);
            pending.push(entry);
          }
        } else {
          if (status !== 0) fail(`stopped (${status}) without a reply or a review`);
          checkForwarded(stream);
          if (fuzz.chance(0.9)) respond(stream);
          finishOrKeep(stream, 0.05);
        }
        if (pending.length > 40) answer(pending.splice(fuzz.int(pending.length), 1)[0]!);
        finishSome(30);
        if (index % 1000 === 0) for (const each of workers) each.tick();
      });
    }
    index = total;
    current = undefined;
    guarded(() => {
      for (const entry of pending) answer(entry);
      finishSome(0);
      for (const worker of workers) worker.tick();
    });
    const seconds = (performance.now() - started) / 1000;
    console.log(`fuzz (seed ${seed}): ${total} requests in ${seconds.toFixed(1)} s on the test host`);

    const context = `seed ${seed} (replay: WHARF_FUZZ_SEED=${seed})`;
    expect(workers.flatMap((worker) => worker.logs.filter((entry) => entry.level >= 5)), context).toEqual([]);
    // Every admitted request gave its slot back.
    for (const worker of workers) {
      expect(worker.metric("wharf_gateway.inflight.schema.shared"), context).toBe(0n);
      expect(worker.metric("wharf_gateway.watches.schema.shared"), context).toBe(0n);
    }
    now += 3_600_000_000_000n; // an hour on: every bucket is full again, every cache entry expired
    for (const token of knownTokens) {
      now += 10_000_000_000n; // ten seconds: the per-source TokenReview limit has refilled
      const worker = workers[0]!;
      const streams = Array.from({ length: perUserInflight }, () => {
        const stream = worker.stream();
        stream.sendRequestHeaders([[":method", "GET"], [":path", "/api/v1/pods"], ["authorization", `Bearer ${token}`]]);
        const call = worker.calls.pop();
        if (call) worker.respondToCall(call, [[":status", "201"]], JSON.stringify({ status: { authenticated: true, user: { username: robotUser(token), groups: [] } } }));
        return stream;
      });
      // A slot an earlier request kept would make one of these 429.
      expect(streams.map((stream) => (stream.localResponse ? `${stream.localResponse.status} ${stream.localResponse.body}` : 200)), `${token}, ${context}`).toEqual(Array(perUserInflight).fill(200));
      for (const stream of streams) stream.finish();
    }
    // Linear memory only grows: after the warm-up it must not have. The filter's own counter says the same.
    const memory = workers.map((worker) => worker.memoryBytes).reduce((a, b) => a + b, 0);
    expect(memory, context).toBe(memoryAfterWarmup);
    for (const worker of workers) expect(Number(worker.metric("wharf_gateway.wasm_memory_pages")) * 65536, context).toBe(worker.memoryBytes);
  });
});
