// The gateway filter's decisions, on the compiled module in the test host.
import { createHash, X509Certificate } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { LogLevel, ProxyWasmHost } from "../test-host/host.js";
import { SharedData } from "../test-host/shared-data.js";
import { wasmPath } from "../index.js";
import { clientCertificate, gatewayHost, request, type GatewayConfigInit } from "./harness.js";

// Verified client certificates, as Envoy forwards them to the filter.
let aliceCert: { clientCert: string };
let botCert: { clientCert: string };
let adminRootCert: { clientCert: string };
let bobCert: { clientCert: string };

beforeAll(async () => {
  const cert = async (subject: string) => ({ clientCert: await clientCertificate({ subject }) });
  [aliceCert, botCert, adminRootCert, bobCert] = await Promise.all([
    cert("/O=devs/O=ops/CN=alice"),
    cert("/O=system:serviceaccounts/CN=system:serviceaccount:ci:builder"),
    cert("/CN=admin-root"),
    cert("/CN=bob"),
  ]);
});

const routing: GatewayConfigInit = {
  policies: [
    { name: "no-secrets-for-devs", rules: [{ resources: ["secrets"], userGroups: ["devs"] }], action: { target: { case: "deny", value: { message: "devs may not read secrets here" } } } },
    { name: "watches", rules: [{ verbs: ["watch"] }], action: { target: { case: "upstream", value: "watch-pool" } } },
    { name: "ci-bots", rules: [{ serviceAccounts: ["ci/*"] }], action: { target: { case: "upstream", value: "batch-pool" } } },
    { name: "logs", rules: [{ resources: ["*/log"] }], action: { target: { case: "upstream", value: "log-pool" } } },
    { name: "not-kube-system", rules: [{ namespaces: ["-kube-system", "-kube-public"], verbs: ["list"] }], action: { target: { case: "upstream", value: "tenant-pool" } } },
    { name: "admins", rules: [{ users: ["admin-*"] }], action: { target: { case: "upstream", value: "admin-pool" } } },
    { name: "health", rules: [{ nonResourceUrls: ["/healthz", "/readyz*"] }], action: { target: { case: "upstream", value: "health-pool" } } },
  ],
  defaultAction: { target: { case: "upstream", value: "main" } },
};

describe("dispatch policies", () => {
  it("routes by verb, resource, namespace, user, group, service account and URL; first match wins", async () => {
    const host = await gatewayHost(routing, { ...aliceCert });
    const pool = (method: string, path: string) => {
      const { stream } = request(host, method, path);
      const chosen = stream.header("x-wharf-upstream");
      stream.finish();
      return chosen;
    };
    expect(pool("GET", "/api/v1/namespaces/a/pods?watch=true")).toBe("watch-pool");
    expect(pool("GET", "/api/v1/namespaces/a/pods/p/log")).toBe("log-pool");
    expect(pool("GET", "/api/v1/namespaces/a/pods")).toBe("tenant-pool");
    expect(pool("GET", "/api/v1/namespaces/kube-system/pods")).toBe("main");
    expect(pool("GET", "/readyz?verbose")).toBe("health-pool");
    expect(pool("GET", "/healthz/etcd")).toBe("main");
    expect(pool("POST", "/api/v1/namespaces/a/pods")).toBe("main");

    const bot = await gatewayHost(routing, { ...botCert });
    const { stream } = request(bot, "POST", "/api/v1/namespaces/a/configmaps");
    expect(stream.header("x-wharf-upstream")).toBe("batch-pool");
    const admin = await gatewayHost(routing, adminRootCert);
    expect(request(admin, "POST", "/api/v1/namespaces/a/configmaps").stream.header("x-wharf-upstream")).toBe("admin-pool");
  });

  it("replaces a routing header the client sent", async () => {
    const host = await gatewayHost(routing, { ...aliceCert });
    const { stream } = request(host, "POST", "/api/v1/namespaces/a/pods", [["x-wharf-upstream", "admin-pool"]]);
    expect(stream.requestHeaders.filter(([name]) => name === "x-wharf-upstream")).toEqual([["x-wharf-upstream", "main"]]);
  });

  it("denies with 403 and a Kubernetes Status body", async () => {
    const host = await gatewayHost(routing, { ...aliceCert });
    const { stream, status } = request(host, "GET", "/api/v1/namespaces/a/secrets/s");
    expect(status).toBe(1);
    expect(stream.localResponse?.status).toBe(403);
    expect(stream.localResponse?.headers).toContainEqual(["content-type", "application/json"]);
    expect(JSON.parse(stream.localResponse!.body)).toEqual({
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: "devs may not read secrets here",
      reason: "Forbidden",
      code: 403,
    });
  });

  it("passes an unmatched request to the route table when there is no default", async () => {
    const host = await gatewayHost({ policies: [{ name: "only-watches", rules: [{ verbs: ["watch"] }], action: { target: { case: "upstream", value: "w" } } }] }, aliceCert);
    const { stream, status } = request(host, "GET", "/api/v1/pods");
    expect(status).toBe(0);
    expect(stream.header("x-wharf-upstream")).toBeUndefined();
    expect(stream.localResponse).toBeUndefined();
  });
});

describe("identity", () => {
  const identityHeaders = (stream: { requestHeaders: Array<[string, string]> }) =>
    stream.requestHeaders.filter(([name]) => name.startsWith("x-remote-") || name.startsWith("impersonate-"));

  it("forwards the certificate's user, groups and credential id in front-proxy headers and strips client-sent ones", async () => {
    const host = await gatewayHost(routing, aliceCert);
    const { stream } = request(host, "GET", "/api/v1/pods", [
      ["x-remote-user", "root"],
      ["x-remote-group", "system:masters"],
      ["x-remote-uid", "0"],
      ["x-remote-extra-scopes", "all"],
    ]);
    const fingerprint = createHash("sha256").update(new X509Certificate(aliceCert.clientCert).raw).digest("hex");
    expect(identityHeaders(stream)).toEqual([
      ["x-remote-user", "alice"],
      ["x-remote-group", "devs"],
      ["x-remote-group", "ops"],
      ["x-remote-group", "system:authenticated"],
      ["x-remote-extra-authentication.kubernetes.io%2fcredential-id", `X509SHA256=${fingerprint}`],
    ]);
  });

  it("forwards Impersonate-* for everyone: the apiserver authorizes them against the forwarded user", async () => {
    const host = await gatewayHost(routing, aliceCert);
    const { stream } = request(host, "GET", "/api/v1/pods", [
      ["impersonate-user", "bob"],
      ["impersonate-group", "system:masters"],
      ["impersonate-uid", "u-1"],
      ["impersonate-extra-scopes", "a"],
      ["x-remote-user", "root"],
    ]);
    expect(identityHeaders(stream).filter(([name]) => name.startsWith("impersonate-"))).toEqual([
      ["impersonate-user", "bob"],
      ["impersonate-group", "system:masters"],
      ["impersonate-uid", "u-1"],
      ["impersonate-extra-scopes", "a"],
    ]);
    expect(stream.header("x-remote-user")).toBe("alice");
  });

  it("answers 401 to a caller without a certificate or token, forwarding nothing", async () => {
    const host = await gatewayHost({ ...routing, annotateRequests: true });
    const { stream, status } = request(host, "GET", "/api/v1/pods", [["x-remote-user", "root"]]);
    expect(status).toBe(1);
    expect(stream.localResponse?.status).toBe(401);
    expect(JSON.parse(stream.localResponse!.body)).toMatchObject({ kind: "Status", reason: "Unauthorized", code: 401 });
  });
});

describe("attack: forwarded client certificates", () => {
  it("takes the last CN as the user and every O, multi-valued RDNs included, byte for byte", async () => {
    const clientCert = await clientCertificate({ subject: "/CN=first/O= a,b /CN=x\\,O=system:masters+O=c=d", multiValueRdn: true });
    const { stream } = request(await gatewayHost(routing, { clientCert }), "GET", "/api/v1/pods");
    expect(stream.header("x-remote-user")).toBe("x,O=system:masters");
    expect(stream.requestHeaders.filter(([name]) => name === "x-remote-group").map(([, value]) => value)).toEqual([" a,b ", "c=d", "system:authenticated"]);
  });

  it("refuses a certificate whose extended key usage excludes client authentication", async () => {
    const clientCert = await clientCertificate({ subject: "/CN=web", usage: "server" });
    const { stream } = request(await gatewayHost(routing, { clientCert }), "GET", "/api/v1/pods");
    expect(stream.localResponse?.status).toBe(401);
    expect(JSON.parse(stream.localResponse!.body).message).toContain("not for client authentication");
  });

  it("refuses a certificate without a common name, and names with control characters", async () => {
    for (const subject of ["/O=devs", "/CN=a\nb", "/O=x\ry/CN=c"]) {
      const clientCert = await clientCertificate({ subject });
      const { stream } = request(await gatewayHost(routing, { clientCert }), "GET", "/api/v1/pods");
      expect(stream.localResponse?.status, JSON.stringify(subject)).toBe(401);
      expect(stream.header("x-remote-user")).toBeUndefined();
    }
  });

  it("refuses forwarding it cannot read: two certificates, a broken PEM, no Cert field", async () => {
    const pem = aliceCert.clientCert;
    const values = [
      `Hash=00;Cert="${encodeURIComponent(pem)}",Hash=01;Cert="${encodeURIComponent(pem)}"`,
      `Hash=00;Cert="${encodeURIComponent(pem.replace(/[A-Za-z]{8}\n/, "!!!!!!!!\n"))}"`,
      `Hash=00;Cert="${encodeURIComponent(pem.slice(0, 200))}"`,
      `Hash=00;Subject="CN=root"`,
      `Hash=00;Cert="%ZZ"`,
    ];
    const host = await gatewayHost(routing);
    for (const value of values) {
      const { stream } = request(host, "GET", "/api/v1/pods", [["x-forwarded-client-cert", value]]);
      expect(stream.localResponse?.status, value.slice(0, 80)).toBe(401);
    }
  });

  it("survives random bytes in place of a certificate", async () => {
    const host = await gatewayHost(routing);
    const der = new X509Certificate(aliceCert.clientCert).raw;
    let seed = 11;
    const random = () => (seed = (seed * 48271) % 0x7fffffff) / 0x7fffffff;
    for (let i = 0; i < 300; i++) {
      const mutated = Buffer.from(der);
      for (let k = 0; k < 1 + Math.floor(random() * 4); k++) mutated[Math.floor(random() * mutated.length)] = Math.floor(random() * 256);
      const pem = `-----BEGIN CERTIFICATE-----\n${mutated.toString("base64")}\n-----END CERTIFICATE-----\n`;
      const { stream } = request(host, "GET", "/api/v1/pods", [["x-forwarded-client-cert", `Hash=00;Cert="${encodeURIComponent(pem)}"`]]);
      stream.finish();
    }
    expect(host.logs.filter((entry) => entry.level >= LogLevel.Critical)).toEqual([]);
  });
});

describe("flow control", () => {
  const limited = (schema: NonNullable<GatewayConfigInit["flowControlSchemas"]>[number]): GatewayConfigInit => ({
    flowControlSchemas: [schema],
    defaultAction: { target: { case: "upstream", value: "main" }, flowControl: schema.name },
  });

  it("enforces QPS and burst with 429, Retry-After and a Status body, and refills over time", async () => {
    let now = 1_000_000_000n;
    const host = await gatewayHost(limited({ name: "slow", qps: 2, burst: 3 }), { ...aliceCert, now: () => now });
    const statuses = Array.from({ length: 5 }, () => {
      const { stream } = request(host, "GET", "/api/v1/pods");
      stream.finish();
      return stream.localResponse?.status ?? 200;
    });
    expect(statuses).toEqual([200, 200, 200, 429, 429]);
    const { stream } = request(host, "GET", "/api/v1/pods");
    expect(stream.localResponse?.headers).toContainEqual(["retry-after", "1"]);
    expect(JSON.parse(stream.localResponse!.body)).toMatchObject({ reason: "TooManyRequests", code: 429, details: { retryAfterSeconds: 1 } });
    now += 1_000_000_000n; // one second: two tokens back
    const after = [0, 1, 2].map(() => request(host, "GET", "/api/v1/pods").stream.localResponse?.status ?? 200);
    expect(after).toEqual([200, 200, 429]);
  });

  it("limits in-flight requests and frees the slot when a request finishes", async () => {
    const host = await gatewayHost(limited({ name: "narrow", maxInflight: 2 }), { ...aliceCert });
    const first = request(host, "GET", "/api/v1/pods").stream;
    const second = request(host, "GET", "/api/v1/pods").stream;
    expect(request(host, "GET", "/api/v1/pods").stream.localResponse?.status).toBe(429);
    first.finish();
    expect(request(host, "GET", "/api/v1/pods").stream.localResponse).toBeUndefined();
    second.finish();
  });

  it("counts watches apart from in-flight requests", async () => {
    const host = await gatewayHost(limited({ name: "watchy", maxInflight: 1, maxWatches: 2 }), { ...aliceCert });
    const watches = [1, 2].map(() => request(host, "GET", "/api/v1/pods?watch=true").stream);
    expect(watches.map((w) => w.localResponse)).toEqual([undefined, undefined]);
    expect(request(host, "GET", "/api/v1/pods?watch=true").stream.localResponse?.status).toBe(429);
    // Long-running watches do not use up the in-flight limit.
    expect(request(host, "GET", "/api/v1/pods").stream.localResponse).toBeUndefined();
    expect(host.logs.filter((entry) => entry.level >= LogLevel.Error)).toEqual([]);
  });

  it("gives every user a bucket of their own in a per-user schema", async () => {
    const shared = new SharedData();
    const config = limited({ name: "per-user", qps: 0.001, burst: 1, perUser: true });
    const alice = await gatewayHost(config, { ...aliceCert, sharedData: shared });
    const bob = await gatewayHost(config, { ...bobCert, sharedData: shared });
    expect(request(alice, "GET", "/api/v1/pods").stream.localResponse).toBeUndefined();
    expect(request(alice, "GET", "/api/v1/pods").stream.localResponse?.status).toBe(429);
    expect(request(bob, "GET", "/api/v1/pods").stream.localResponse).toBeUndefined();
  });

  it("holds one limit across workers (VMs sharing shared data)", async () => {
    const shared = new SharedData();
    const config = limited({ name: "global", qps: 0.001, burst: 4 });
    const workers = await Promise.all([1, 2].map(() => gatewayHost(config, { ...aliceCert, sharedData: shared })));
    const admitted = Array.from({ length: 8 }, (_, i) => request(workers[i % 2]!, "GET", "/api/v1/pods").stream.localResponse === undefined);
    expect(admitted.filter(Boolean).length).toBe(4);
  });

  it("never limits an exempt schema", async () => {
    const host = await gatewayHost(limited({ name: "exempt", exempt: true, qps: 0.001, burst: 1, maxInflight: 1 }), aliceCert);
    const results = Array.from({ length: 5 }, () => request(host, "GET", "/api/v1/pods").stream.localResponse);
    expect(results.every((r) => r === undefined)).toBe(true);
  });
});

describe("metrics", () => {
  it("counts requests by policy, verb and resource, responses by code and rejections by reason", async () => {
    const host = await gatewayHost(routing, { ...aliceCert });
    request(host, "GET", "/api/v1/namespaces/a/pods/p/log").stream.sendResponseHeaders([[":status", "200"]]);
    request(host, "GET", "/api/v1/namespaces/a/secrets/s");
    expect(host.metric("wharf_gateway.requests.policy.logs.verb.get.resource.pods/log")).toBe(1n);
    expect(host.metric("wharf_gateway.responses.code.200")).toBe(1n);
    expect(host.metric("wharf_gateway.rejections.reason.denied")).toBe(1n);
  });
});

describe("flow-control gauges", () => {
  it("are refreshed on the root context's tick, not per request", async () => {
    const host = await gatewayHost(
      { flowControlSchemas: [{ name: "shared", maxInflight: 10, maxWatches: 10 }], defaultAction: { target: { case: "upstream", value: "main" }, flowControl: "shared" } },
      { ...aliceCert },
    );
    expect(host.tickPeriodMs).toBe(1000);
    const open = [request(host, "GET", "/api/v1/pods").stream, request(host, "GET", "/api/v1/pods?watch=true").stream];
    expect(host.metric("wharf_gateway.inflight.schema.shared")).toBeUndefined();
    host.tick();
    expect(host.metric("wharf_gateway.inflight.schema.shared")).toBe(1n);
    expect(host.metric("wharf_gateway.watches.schema.shared")).toBe(1n);
    for (const stream of open) stream.finish();
    host.tick();
    expect(host.metric("wharf_gateway.inflight.schema.shared")).toBe(0n);
  });
});

describe("bad input", () => {
  it("refuses malformed configuration bytes with a log line", async () => {
    const host = await ProxyWasmHost.load(wasmPath("gateway"), { pluginConfiguration: Uint8Array.of(0x0a, 0xff, 0xff, 0xff) });
    expect(host.start()).toBe(false);
    expect(host.logs.some((entry) => entry.level === LogLevel.Error && entry.message.includes("configuration refused"))).toBe(true);
  });

  it("refuses a policy naming a flow-control schema that does not exist", async () => {
    const host = await ProxyWasmHost.load(wasmPath("gateway"), {
      pluginConfiguration: (await import("./harness.js")).encodeGatewayConfig({
        policies: [{ name: "p", rules: [{}], action: { flowControl: "nope" } }],
      }),
    });
    expect(host.start()).toBe(false);
    expect(host.logs.map((entry) => entry.message).join("\n")).toContain('policies[0].action.flow_control: no schema named "nope"');
  });

  it("answers a request without a usable path with 400", async () => {
    const host = await gatewayHost(routing);
    expect(request(host, "OPTIONS", "*").stream.localResponse?.status).toBe(400);
  });

  it("survives random paths, methods and headers without trapping", async () => {
    const host = await gatewayHost({ ...routing, annotateRequests: true, flowControlSchemas: [{ name: "f", maxInflight: 1000 }] }, { ...aliceCert });
    let seed = 7;
    const random = () => (seed = (seed * 48271) % 0x7fffffff) / 0x7fffffff;
    const alphabet = "/?=&%+:.-_aZ09\u00e9\u{1F600}\0,;* ";
    const text = (max: number) => Array.from({ length: Math.floor(random() * max) }, () => alphabet[Math.floor(random() * alphabet.length)]).join("");
    const methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "BREW", ""];
    for (let i = 0; i < 2000; i++) {
      const path = (random() < 0.8 ? "/" : "") + ["api/v1/", "apis/apps/v1/", "api/", "", "apis/"][Math.floor(random() * 5)] + text(80);
      const headers: Array<[string, string]> = Array.from({ length: Math.floor(random() * 4) }, () => [`x-${text(10)}`.replace(/[^a-z0-9-]/g, "a"), text(200)]);
      const { stream } = request(host, methods[Math.floor(random() * methods.length)]!, path, headers);
      stream.sendResponseHeaders([[":status", "200"]]);
      stream.finish();
    }
    expect(host.logs.filter((entry) => entry.level >= LogLevel.Critical)).toEqual([]);
  });
});

describe("bearer tokens", () => {
  const withReview: GatewayConfigInit = {
    ...routing,
    tokenReview: { cluster: "pool-a", authority: "kubernetes.default", reviewer: "wharf:gateway", successTtlSeconds: 60, failureTtlSeconds: 10 },
  };
  const reviewAnswer = (authenticated: boolean) =>
    JSON.stringify({
      kind: "TokenReview",
      apiVersion: "authentication.k8s.io/v1",
      spec: { token: 'tricky "username":"admin"' },
      status: authenticated
        ? { authenticated: true, user: { username: "system:serviceaccount:ci:robot", groups: ["system:serviceaccounts", "system:authenticated"] } }
        : { authenticated: false, error: "invalid bearer token" },
    });

  it("verifies a token with a TokenReview, forwards its user and caches the answer", async () => {
    const host = await gatewayHost(withReview);
    const { stream, status } = request(host, "POST", "/api/v1/namespaces/a/configmaps", [["authorization", "Bearer good-token"]]);
    expect(status).toBe(1);
    expect(host.calls).toHaveLength(1);
    const call = host.calls[0]!;
    expect(call.upstream).toBe("pool-a");
    expect(call.headers).toEqual(expect.arrayContaining([[":method", "POST"], [":path", "/apis/authentication.k8s.io/v1/tokenreviews"], [":authority", "kubernetes.default"], ["x-remote-user", "wharf:gateway"]]));
    expect(JSON.parse(new TextDecoder().decode(call.body))).toEqual({ apiVersion: "authentication.k8s.io/v1", kind: "TokenReview", spec: { token: "good-token" } });
    host.respondToCall(call, [[":status", "201"]], reviewAnswer(true));
    expect(stream.continued).toEqual([0]);
    expect(stream.header("x-remote-user")).toBe("system:serviceaccount:ci:robot");
    expect(stream.header("authorization")).toBeUndefined();
    expect(stream.header("x-wharf-upstream")).toBe("batch-pool");
    // The second request with the same token is answered from the cache.
    const again = request(host, "GET", "/api/v1/pods", [["authorization", "Bearer good-token"]]);
    expect(again.status).toBe(0);
    expect(host.calls).toHaveLength(1);
  });

  it("answers 401 for a token the apiserver rejects, and remembers it", async () => {
    const host = await gatewayHost(withReview);
    const { stream } = request(host, "GET", "/api/v1/pods", [["authorization", "Bearer bad-token"]]);
    host.respondToCall(host.calls[0]!, [[":status", "201"]], reviewAnswer(false));
    expect(stream.localResponse?.status).toBe(401);
    expect(JSON.parse(stream.localResponse!.body)).toMatchObject({ reason: "Unauthorized", code: 401 });
    expect(request(host, "GET", "/api/v1/pods", [["authorization", "Bearer bad-token"]]).stream.localResponse?.status).toBe(401);
    expect(host.calls).toHaveLength(1);
  });

  it("answers 503 and caches nothing when the review itself fails", async () => {
    const host = await gatewayHost(withReview);
    const { stream } = request(host, "GET", "/api/v1/pods", [["authorization", "Bearer some-token"]]);
    host.respondToCall(host.calls[0]!, [[":status", "500"]], "oops");
    expect(stream.localResponse?.status).toBe(503);
    request(host, "GET", "/api/v1/pods", [["authorization", "Bearer some-token"]]);
    expect(host.calls).toHaveLength(2);
  });

  it("prefers the client certificate: no review for a caller that has one", async () => {
    const host = await gatewayHost(withReview, { ...aliceCert });
    const { status } = request(host, "GET", "/api/v1/pods", [["authorization", "Bearer whatever"]]);
    expect(status).toBe(0);
    expect(host.calls).toHaveLength(0);
  });
});

describe("attack: bearer tokens", () => {
  const review = (overrides: Record<string, unknown> = {}): GatewayConfigInit => ({
    ...routing,
    tokenReview: { cluster: "pool-a", successTtlSeconds: 60, failureTtlSeconds: 10, ...overrides },
  });
  const answer = (user: Record<string, unknown> | null) =>
    JSON.stringify({ kind: "TokenReview", apiVersion: "authentication.k8s.io/v1", status: user ? { authenticated: true, user } : { authenticated: false } });
  const identityOf = (stream: { requestHeaders: Array<[string, string]> }) => stream.requestHeaders.filter(([name]) => name.startsWith("x-remote-"));
  /** A JWT-shaped token (unsigned: the filter only reads exp to shorten its cache). */
  const jwt = (claims: Record<string, unknown>) => `${Buffer.from('{"alg":"RS256"}').toString("base64url")}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.c2ln`;

  it("never lets a name reshape a cache entry: a newline in a username does not become a group on a cache hit", async () => {
    const host = await gatewayHost(review());
    const first = request(host, "GET", "/api/v1/pods", [["authorization", "Bearer newline-token"]]).stream;
    host.respondToCall(host.calls[0]!, [[":status", "201"]], answer({ username: "robot\nsystem:masters", groups: ["system:authenticated"] }));
    expect(first.localResponse?.status).toBe(401);
    const again = request(host, "GET", "/api/v1/pods", [["authorization", "Bearer newline-token"]]).stream;
    expect(host.calls).toHaveLength(1);
    expect(again.localResponse?.status).toBe(401);
    expect(identityOf(again)).toEqual([]);
  });

  it("forwards uid and extra, and a cache hit forwards exactly what the review did, whatever the names hold", async () => {
    const host = await gatewayHost(review());
    const user = {
      username: 'a"b,c;d\\e é 🙂 ',
      uid: "u-1 ",
      groups: ["g,1", " g2", "system:authenticated"],
      extra: { "authentication.kubernetes.io/credential-id": ["JTI=abc"], "Scopes/Odd Key%": ["x", "y,z"] },
    };
    const first = request(host, "GET", "/api/v1/pods", [["authorization", "Bearer rich-token"]]).stream;
    host.respondToCall(host.calls[0]!, [[":status", "201"]], answer(user));
    expect(identityOf(first)).toEqual([
      ["x-remote-user", user.username],
      ["x-remote-uid", "u-1 "],
      ["x-remote-group", "g,1"],
      ["x-remote-group", " g2"],
      ["x-remote-group", "system:authenticated"],
      ["x-remote-extra-authentication.kubernetes.io%2fcredential-id", "JTI=abc"],
      // Upper case and every byte outside [a-z0-9._-] escaped: the apiserver lower-cases, then unescapes.
      ["x-remote-extra-%53copes%2f%4fdd%20%4bey%25", "x"],
      ["x-remote-extra-%53copes%2f%4fdd%20%4bey%25", "y,z"],
    ]);
    const cached = request(host, "GET", "/api/v1/pods", [["authorization", "Bearer rich-token"]]).stream;
    expect(host.calls).toHaveLength(1);
    expect(identityOf(cached)).toEqual(identityOf(first));
  });

  it("trusts a verified token no longer than its own exp, and caches an expired one not at all", async () => {
    let now = 1_000_000_000_000_000_000n;
    const seconds = (n: number) => BigInt(n) * 1_000_000_000n;
    const host = await gatewayHost(review({ successTtlSeconds: 600 }), { now: () => now });
    const token = jwt({ sub: "x", exp: Number(now / seconds(1)) + 5 });
    const ask = (bearer: string) => request(host, "GET", "/api/v1/pods", [["authorization", `Bearer ${bearer}`]]).stream;
    ask(token);
    host.respondToCall(host.calls[0]!, [[":status", "201"]], answer({ username: "short-lived", groups: ["system:authenticated"] }));
    now += seconds(4);
    expect(ask(token).header("x-remote-user")).toBe("short-lived");
    expect(host.calls).toHaveLength(1);
    now += seconds(2); // past exp, long before the TTL
    ask(token);
    expect(host.calls).toHaveLength(2);

    const expired = jwt({ exp: Number(now / seconds(1)) - 1 });
    ask(expired);
    host.respondToCall(host.calls[2]!, [[":status", "201"]], answer({ username: "stale", groups: ["system:authenticated"] }));
    ask(expired);
    expect(host.calls).toHaveLength(4);
  });

  it("keeps at most cache_size entries, and never hands one token's identity to another", async () => {
    const shared = new SharedData();
    const host = await gatewayHost(review({ cacheSize: 16, reviewsPerSecondPerSource: 1e6, reviewBurstPerSource: 1e6 }), { sharedData: shared });
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 200; i++) {
        const before = host.calls.length;
        const { stream } = request(host, "GET", "/api/v1/pods", [["authorization", `Bearer token-${i}`]]);
        if (host.calls.length > before) host.respondToCall(host.calls.at(-1)!, [[":status", "201"]], answer({ username: `user-${i}`, groups: ["system:authenticated"] }));
        expect(stream.header("x-remote-user")).toBe(`user-${i}`);
        stream.finish();
      }
    }
    expect(shared.keys().filter((key) => key.startsWith("wharf/token/")).length).toBeLessThanOrEqual(16);
    // Evicted entries were reviewed again rather than served from another token's slot.
    expect(host.calls.length).toBeGreaterThan(200);
    expect(shared.keys().some((key) => key.includes("token-"))).toBe(false);
  });

  it("limits reviews per source address; cached tokens and other sources are unaffected", async () => {
    let now = 5_000_000_000n;
    const shared = new SharedData();
    const config = review({ reviewsPerSecondPerSource: 1, reviewBurstPerSource: 3 });
    const attacker = await gatewayHost(config, { sharedData: shared, now: () => now, properties: { "source.address": "10.0.0.66:40000" } });
    const other = await gatewayHost(config, { sharedData: shared, now: () => now, properties: { "source.address": "10.0.0.7:40001" } });
    const good = request(attacker, "GET", "/api/v1/pods", [["authorization", "Bearer known"]]).stream;
    attacker.respondToCall(attacker.calls[0]!, [[":status", "201"]], answer({ username: "known", groups: ["system:authenticated"] }));
    expect(good.header("x-remote-user")).toBe("known");
    const flood = Array.from({ length: 50 }, (_, i) => request(attacker, "GET", "/api/v1/pods", [["authorization", `Bearer junk-${i}`]]).stream);
    expect(attacker.calls).toHaveLength(3);
    const refused = flood.filter((stream) => stream.localResponse?.status === 429);
    expect(refused).toHaveLength(48);
    expect(refused[0]!.localResponse!.headers).toContainEqual(["retry-after", "1"]);
    expect(JSON.parse(refused[0]!.localResponse!.body)).toMatchObject({ kind: "Status", reason: "TooManyRequests", code: 429 });
    // The same source port changes nothing: the bucket is per address.
    const samePort = await gatewayHost(config, { sharedData: shared, now: () => now, properties: { "source.address": "10.0.0.66:40002" } });
    expect(request(samePort, "GET", "/api/v1/pods", [["authorization", "Bearer junk-x"]]).stream.localResponse?.status).toBe(429);
    expect(request(attacker, "GET", "/api/v1/pods", [["authorization", "Bearer known"]]).stream.header("x-remote-user")).toBe("known");
    request(other, "GET", "/api/v1/pods", [["authorization", "Bearer fresh"]]);
    expect(other.calls).toHaveLength(1);
    now += 1_000_000_000n;
    request(attacker, "GET", "/api/v1/pods", [["authorization", "Bearer junk-later"]]);
    expect(attacker.calls).toHaveLength(4);
  });
});
