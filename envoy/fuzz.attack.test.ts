// attack: ten thousand random and mutated requests through real Envoy with
// the gateway filter, in front of the shared kube-apiserver: client
// certificates, a real service-account token and bad ones, spoofed identity
// headers, huge inputs, clients that cancel mid-request. Envoy must keep
// serving (no wasm trap), the apiserver must never see a client's identity
// claim (checked with SelfSubjectReviews sent among the fuzz), every
// flow-control slot comes back and the filter's linear memory stays flat.
// A second Envoy's TokenReviews go to a server that never answers: clients
// that give up while their review is pending leave nothing behind.
// WHARF_FUZZ_SEED=<n> replays a run.
import { createServer, type Server, type Socket } from "node:net";
import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type OutgoingHttpHeaders } from "node:http2";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { wasmPath } from "@wharf/filters";
import { issueCertificate, kubectlOn, makeWorkDir, removeWorkDir, startGatewayEnvoy, waitFor, type ClusterPki, type GatewayEnvoy, type KeyPair } from "@wharf/testkit";
import { fuzzConfig, fuzzSeed, perUserInflight, RequestFuzzer, seededRandom, spoofMarker, type FuzzRequest } from "../filters/src/gateway/fuzz.js";
import { encodeGatewayConfig } from "../filters/src/gateway/harness.js";

const seed = fuzzSeed();
const total = Number(process.env.WHARF_ENVOY_FUZZ_REQUESTS ?? 10_000);
const inFlight = 8;
const reviewer = "wharf:fuzz-gateway";

let dir: string;
let pki: ClusterPki;
let envoy: GatewayEnvoy;
let alice: KeyPair;
let token: string;
let namespace: string;
const kube = inject("kube");
const admin = kubectlOn(kube.kubeconfig);

type Caller = "alice" | "admin" | "anonymous";
const expectedUser: Record<Exclude<Caller, "anonymous">, string> = { alice: "alice", admin: "wharf-admin" };

beforeAll(async () => {
  dir = await makeWorkDir("envoy-fuzz");
  pki = kube.pki;
  namespace = `fuzz-${seed}`;
  await admin("create", "namespace", namespace);
  await admin("create", "serviceaccount", "fuzz-robot", "-n", namespace);
  await admin("create", "clusterrolebinding", `wharf-fuzz-token-reviews-${seed}`, "--clusterrole=system:auth-delegator", `--user=${reviewer}`);
  token = (await admin("create", "token", "fuzz-robot", "-n", namespace)).trim();
  alice = await issueCertificate(dir, pki.ca, { name: "alice", commonName: "alice", organizations: ["devs"], usage: "client" });
  const serving = await issueCertificate(dir, pki.ca, { name: "envoy", commonName: "envoy", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], usage: "server" });
  envoy = await startGatewayEnvoy({
    pki,
    serving,
    wasmFile: wasmPath("gateway"),
    gatewayConfig: encodeGatewayConfig({ ...fuzzConfig, tokenReview: { ...fuzzConfig.tokenReview, authority: "localhost", reviewer } }),
    poolA: [kube.url],
    poolB: [kube.url],
  });
  await waitFor(async () => (await (await fetch(`${envoy.adminUrl}/clusters`)).text()).split("\n").filter((line) => /^pool-[ab]::/.test(line) && line.endsWith("::health_flags::healthy")).length === 2, 30_000, "Envoy's health checks to see the apiserver in both pools");
}, 120_000);

afterAll(async () => {
  await envoy?.stop();
  await admin("delete", "clusterrolebinding", `wharf-fuzz-token-reviews-${seed}`, "--ignore-not-found").catch(() => undefined);
  await admin("delete", "namespace", namespace, "--wait=false", "--ignore-not-found").catch(() => undefined);
  if (dir) await removeWorkDir(dir);
});

/** One HTTP/2 connection per caller, made again if Envoy closed it (e.g. after a protocol error the fuzz provoked). */
class Sessions {
  private readonly open = new Map<Caller, ClientHttp2Session>();
  constructor(private readonly url: string) {}

  get(caller: Caller): ClientHttp2Session {
    const existing = this.open.get(caller);
    if (existing && !existing.closed && !existing.destroyed) return existing;
    const client = caller === "alice" ? alice : caller === "admin" ? pki.admin : undefined;
    const session = connect(this.url, {
      ca: readFileSync(pki.ca.certFile),
      ...(client ? { cert: readFileSync(client.certFile), key: readFileSync(client.keyFile) } : {}),
      maxHeaderListPairs: 512,
      maxSendHeaderBlockLength: 256 * 1024,
    });
    session.on("error", () => undefined);
    // After a GOAWAY (Envoy's answer to some protocol errors the fuzz makes) the session takes no new streams.
    session.on("goaway", () => this.open.delete(caller));
    session.on("close", () => {
      if (this.open.get(caller) === session) this.open.delete(caller);
    });
    this.open.set(caller, session);
    return session;
  }

  close(): void {
    for (const session of this.open.values()) session.close();
  }
}

/** A loaded machine's apiserver can take seconds; no request waits longer for its response headers. */
const responseTimeoutMs = 20_000;

interface Answer {
  status: number;
  body: string;
}

/** HTTP/2 forbids these; node refuses to send them, Envoy would refuse them. */
const connectionHeaders = new Set(["connection", "upgrade", "keep-alive", "proxy-connection", "transfer-encoding", "te", "host"]);

/** Headers node sends once only (it refuses a second value). */
const singleValue = new Set(["authorization", "content-type", "user-agent", "accept", "cookie", "x-forwarded-for"]);

/**
 * Sends one request; undefined when node refuses to send it or the stream
 * ends without a response (Envoy resets it, or `cancelAfterMs` passed: a
 * client going away mid-request). A response still streaming `bodyMs` after
 * its headers (a watch) is cancelled, a client going away mid-response.
 */
function send(session: ClientHttp2Session, request: FuzzRequest, body?: string, cancelAfterMs?: number, bodyMs = 300): Promise<Answer | undefined> {
  // What HTTP/2 can carry at all (Envoy's codec closes the whole connection on anything else, before
  // any filter): a token for a method, visible ASCII for a path, no NUL/CR/LF or edge whitespace in values.
  const method = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(request.method) ? request.method : "GET";
  const path = request.path.replace(/[^\x21-\x7e]/gu, (c) => [...Buffer.from(c, "utf8")].map((byte) => `%${byte.toString(16).toUpperCase().padStart(2, "0")}`).join(""));
  const headers: OutgoingHttpHeaders = { ":method": method, ":path": path.startsWith("/") || path === "*" ? path : `/${path}` };
  for (const [rawName, rawValue] of request.headers) {
    const name = rawName.toLowerCase();
    if (connectionHeaders.has(name)) continue;
    // node sends header values as Latin-1 and refuses anything beyond it.
    const value = rawValue.replace(/[\0\r\n]|[^\0-\xff]/gu, "?").trim();
    const previous = headers[name];
    if (previous !== undefined && singleValue.has(name)) continue;
    headers[name] = previous === undefined ? value : [...(Array.isArray(previous) ? previous : [String(previous)]), value];
  }
  return new Promise((resolve) => {
    let stream: ClientHttp2Stream;
    try {
      stream = session.request(headers, { endStream: body === undefined });
    } catch {
      resolve(undefined);
      return;
    }
    let status = 0;
    let text = "";
    let settled = false;
    const timers: NodeJS.Timeout[] = [];
    const finish = () => {
      if (settled) return;
      settled = true;
      for (const timer of timers) clearTimeout(timer);
      resolve(status === 0 ? undefined : { status, body: text });
    };
    const giveUp = () => {
      stream.close(constants.NGHTTP2_CANCEL);
      // A stream that never got going (its session failed) may never emit close.
      timers.push(setTimeout(() => (stream.destroy(), finish()), 1000));
    };
    timers.push(setTimeout(giveUp, responseTimeoutMs));
    if (cancelAfterMs !== undefined) timers.push(setTimeout(giveUp, cancelAfterMs));
    stream.on("response", (responseHeaders) => {
      status = Number(responseHeaders[":status"]);
      timers.push(setTimeout(giveUp, bodyMs));
    });
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => {
      if (text.length < 4096) text += chunk;
    });
    stream.on("close", finish);
    stream.on("error", () => undefined);
    if (body !== undefined) stream.end(body);
  });
}

/** A stat's value; Envoy may put a prefix before the filter's own names (wasmcustom.). */
async function stat(envoyAdmin: string, name: string): Promise<number> {
  const escaped = name.replace(/\./g, "\\.");
  const text = await (await fetch(`${envoyAdmin}/stats?filter=${encodeURIComponent(`${escaped}$`)}`)).text();
  const match = new RegExp(`^(?:\\S*\\.)?${escaped}: (\\d+)$`, "m").exec(text);
  return match ? Number(match[1]) : 0;
}

/** Waits until every VM has ticked again (both ticks every second), so the tick-refreshed stats are current. */
async function afterTicks(envoyAdmin: string): Promise<void> {
  const ticks = await stat(envoyAdmin, "wharf_gateway.ticks");
  await waitFor(async () => (await stat(envoyAdmin, "wharf_gateway.ticks")) >= ticks + 4, 10_000, "the filter's VMs to tick twice more");
}

const selfSubjectReview = JSON.stringify({ apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" });

/** Who the apiserver thinks the caller is, with spoofed front-proxy headers sent along. */
async function whoami(sessions: Sessions, caller: Caller, bearer: string | undefined): Promise<{ username: string; groups: string[] } | number | undefined> {
  const headers: Array<[string, string]> = [
    ["content-type", "application/json"],
    ["x-remote-user", `${spoofMarker}-root`],
    ["x-remote-group", `${spoofMarker}-masters`],
    ["x-remote-extra-scopes", `${spoofMarker}-all`],
  ];
  if (bearer) headers.push(["authorization", `Bearer ${bearer}`]);
  const answer = await send(sessions.get(caller), { method: "POST", path: "/apis/authentication.k8s.io/v1/selfsubjectreviews", headers }, selfSubjectReview, undefined, 2000);
  if (answer === undefined) return undefined;
  if (answer.status !== 201) return answer.status;
  return (JSON.parse(answer.body) as { status: { userInfo: { username: string; groups?: string[] } } }).status.userInfo as { username: string; groups: string[] };
}

describe("attack: fuzzing the gateway filter in real Envoy", () => {
  it(`serves ${total} random and mutated requests: no trap, no spoofed identity, slots given back, memory flat`, { timeout: 600_000 }, async () => {
    const fuzz = new RequestFuzzer(seededRandom(seed));
    const sessions = new Sessions(envoy.url);
    const callers: Caller[] = ["alice", "admin", "anonymous"];
    const context = `seed ${seed} (replay: WHARF_FUZZ_SEED=${seed})`;
    try {
      // Warm-up with the largest inputs Envoy lets through, many at once on fresh connections (so both
      // workers get them), so each VM's linear memory reaches its peak before the baseline.
      const big = (unit: string) => unit.repeat(Math.ceil(58_000 / unit.length)).slice(0, 58_000);
      const bigRequests: FuzzRequest[] = [
        { method: "GET", path: `/api/v1/namespaces/a/configmaps?fieldSelector=${big("metadata.name=x,")}`, headers: [] },
        { method: "GET", path: `/api/v1/namespaces/${big("%61")}/pods`, headers: [] },
        { method: "GET", path: "/api/v1/pods", headers: [["authorization", `Bearer ${big("t")}`]] },
        { method: "GET", path: "/api/v1/pods", headers: Array.from({ length: 56 }, (_, i) => [`x-remote-extra-k${i}`, `${spoofMarker}${big("v").slice(0, 1000)}`] as [string, string]) },
      ];
      const warmups = callers.flatMap((caller) => Array.from({ length: 4 }, () => new Sessions(envoy.url)).map((fresh) => [caller, fresh] as const));
      for (let round = 0; round < 2; round++) {
        await Promise.all(warmups.flatMap(([caller, fresh]) => bigRequests.map((request) => send(fresh.get(caller), request, undefined, undefined, 2000))));
      }
      for (const [, fresh] of warmups) fresh.close();
      await afterTicks(envoy.adminUrl);
      const memoryStat = "wasm_memory_pages";
      const pagesAfterWarmup = await stat(envoy.adminUrl, `wharf_gateway.${memoryStat}`);
      const allocatedBefore = await stat(envoy.adminUrl, "server.memory_allocated");

      let answered = 0;
      let unsendable = 0;
      const statuses = new Map<number, number>();
      const identityProblems: string[] = [];
      let next = 0;
      await Promise.all(
        Array.from({ length: inFlight }, async () => {
          while (answered < total && next++ < total * 3) {
            const caller = fuzz.pick(callers);
            if (fuzz.chance(0.03)) {
              // Among the fuzz: who does the apiserver think this caller is?
              const bearer = caller === "anonymous" && fuzz.chance(0.7) ? token : undefined;
              const user = await whoami(sessions, caller, bearer);
              if (typeof user === "object") {
                const expected = caller === "anonymous" ? (bearer ? `system:serviceaccount:${namespace}:fuzz-robot` : undefined) : expectedUser[caller];
                if ((expected !== undefined && user.username !== expected) || JSON.stringify(user).includes(spoofMarker)) {
                  identityProblems.push(`${caller}${bearer ? " with the robot's token" : ""} was taken for ${JSON.stringify(user)}`);
                }
              }
              continue;
            }
            const request = fuzz.request();
            // Half the "known" tokens become the robot's real one: the TokenReview really authenticates it.
            for (const header of request.headers) if (header[0] === "authorization" && header[1].includes("good-") && fuzz.chance(0.5)) header[1] = `Bearer ${token}`;
            const answer = await send(sessions.get(caller), request, undefined, fuzz.chance(0.03) ? fuzz.int(20) : undefined);
            if (answer === undefined) {
              unsendable++;
              continue;
            }
            answered++;
            statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
          }
        }),
      );
      console.log(`envoy fuzz (seed ${seed}): ${answered} answered, ${unsendable} refused by node or reset; statuses ${JSON.stringify(Object.fromEntries(statuses))}`);
      expect(answered, context).toBeGreaterThanOrEqual(total);
      expect(identityProblems, context).toEqual([]);

      // No wasm failure: Envoy logged none, and the filter still decides.
      expect(envoy.process.logTail(100_000).split("\n").filter((line) => /\[critical\]|Uncaught|RuntimeError|wasm.*failed|abort: /.test(line)), context).toEqual([]);
      // Every flow-control slot came back: the shared schema's gauges reach zero, and the robot gets its whole in-flight allowance.
      await waitFor(
        async () => (await stat(envoy.adminUrl, "wharf_gateway.inflight.schema.shared")) === 0 && (await stat(envoy.adminUrl, "wharf_gateway.watches.schema.shared")) === 0,
        10_000,
        () => `the shared schema gauges to return to zero (${context})`,
      );
      // Only now: until the streams the fuzz abandoned are done, their slots are in use and a 429 is right.
      for (const caller of ["alice", "admin"] as const) {
        const user = await whoami(sessions, caller, undefined);
        expect(typeof user === "object" ? user.username : user, context).toBe(expectedUser[caller]);
      }
      const robot = await Promise.all(
        Array.from({ length: perUserInflight }, () => send(sessions.get("anonymous"), { method: "GET", path: `/api/v1/namespaces/${namespace}/serviceaccounts`, headers: [["authorization", `Bearer ${token}`]] }, undefined, undefined, 2000)),
      );
      // Admitted by the filter, refused by the apiserver's RBAC (the robot may list nothing): a leaked slot would make one a 429.
      expect(robot.map((answer) => `${answer?.status} ${/cannot list resource/.test(answer?.body ?? "")}`), context).toEqual(Array(perUserInflight).fill("403 true"));
      // Linear memory: not a page more than after the warm-up.
      await afterTicks(envoy.adminUrl);
      expect(await stat(envoy.adminUrl, `wharf_gateway.${memoryStat}`), context).toBe(pagesAfterWarmup);
      console.log(`envoy fuzz: filter linear memory ${pagesAfterWarmup * 64} KiB over both workers; Envoy heap ${(allocatedBefore / 2 ** 20).toFixed(1)} → ${((await stat(envoy.adminUrl, "server.memory_allocated")) / 2 ** 20).toFixed(1)} MiB`);
    } finally {
      sessions.close();
    }
  });
});

describe("attack: clients that leave while their TokenReview is pending", () => {
  let blackHole: Server;
  let held: Socket[] = [];
  let stalled: GatewayEnvoy;

  beforeAll(async () => {
    // Accepts connections and never answers: every review through it stays pending until its timeout.
    blackHole = createServer((socket) => void held.push(socket.on("error", () => undefined)));
    await new Promise<void>((resolve) => blackHole.listen(0, "127.0.0.1", resolve));
    const port = (blackHole.address() as { port: number }).port;
    const serving = await issueCertificate(dir, pki.ca, { name: "envoy-stalled", commonName: "envoy", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], usage: "server" });
    stalled = await startGatewayEnvoy({
      pki,
      serving,
      wasmFile: wasmPath("gateway"),
      gatewayConfig: encodeGatewayConfig({ ...fuzzConfig, tokenReview: { cluster: "pool-b", authority: "localhost", reviewer, timeoutMs: 3000, reviewsPerSecondPerSource: 1e6, reviewBurstPerSource: 100_000 } }),
      poolA: [kube.url],
      poolB: [`https://127.0.0.1:${port}`],
    });
  }, 60_000);

  afterAll(async () => {
    await stalled?.stop();
    for (const socket of held) socket.destroy();
    held = [];
    blackHole?.close();
  });

  it("releases every pending review and slot, round after round", async () => {
    const sessions = new Sessions(stalled.url);
    try {
      const baseline = await send(sessions.get("admin"), { method: "GET", path: `/api/v1/namespaces/${namespace}/serviceaccounts`, headers: [] }, undefined, undefined, 2000);
      expect(baseline?.status).toBe(200);
      const pending = "cluster.pool-b.upstream_rq_pending_active";
      const active = "cluster.pool-b.upstream_rq_active";
      const clients = 200;
      for (const round of [1, 2]) {
        // Each client sends a token and gives up after 100 ms, long before the review's 3 s timeout.
        const gaveUp = Promise.all(
          Array.from({ length: clients }, (_, i) =>
            send(sessions.get("anonymous"), { method: "GET", path: "/api/v1/pods", headers: [["authorization", `Bearer pending-${seed}-${round}-${i}`]] }, undefined, 100),
          ),
        );
        await waitFor(async () => (await stat(stalled.adminUrl, pending)) + (await stat(stalled.adminUrl, active)) > 0, 10_000, "the reviews to be pending in Envoy");
        expect((await gaveUp).every((answer) => answer === undefined)).toBe(true);
        await waitFor(async () => (await stat(stalled.adminUrl, "http.gateway.downstream_rq_active")) === 0, 10_000, "Envoy to drop the cancelled streams");
        // Envoy ends each review at its timeout; nothing of them is left after.
        await waitFor(async () => (await stat(stalled.adminUrl, pending)) === 0 && (await stat(stalled.adminUrl, active)) === 0, 20_000, "the pending reviews to be released");
        await waitFor(async () => (await stat(stalled.adminUrl, "wharf_gateway.inflight.schema.shared")) === 0, 10_000, "the in-flight gauge to return to zero");
      }
      // And the gateway still serves.
      const after = await send(sessions.get("admin"), { method: "GET", path: `/api/v1/namespaces/${namespace}/serviceaccounts`, headers: [] }, undefined, undefined, 2000);
      expect(after?.status).toBe(200);
    } finally {
      sessions.close();
    }
  });
});
