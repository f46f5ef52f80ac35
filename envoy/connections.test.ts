// Connections through the gateway (real Envoy, real kube-apiserver): a
// client too slow with its headers is cut off; and connection upgrades:
// what `kubectl exec`, `attach`, `cp` and `port-forward` send, over
// WebSocket and SPDY/3.1, must reach the apiserver and get its own answer,
// and a policy that denies the subresource must deny the upgrade. There is
// no kubelet here, so no session can start; the apiserver's answer for a
// pod it cannot connect to (a missing pod, a pod with no node) is the proof
// that the upgrade request reached it, and a WebSocket watch (which the
// apiserver itself serves) is the proof that a 101 goes through.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { connect } from "node:tls";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { encodeGatewayConfig, type GatewayConfigInit } from "../filters/src/gateway/harness.js";
import { wasmPath } from "@wharf/filters";
import {
  createClusterPki,
  httpsGet,
  waitFor,
  issueCertificate,
  kubectlOn,
  makeWorkDir,
  readWebSocketFrame,
  removeWorkDir,
  startGatewayEnvoy,
  startKubeApiserver,
  toolPath,
  upgradeRequest,
  writeKubeconfig,
  type ClusterPki,
  type GatewayEnvoy,
  type KeyPair,
  type KubeApiserver,
  type UpgradeProtocol,
  type UpgradeResponse,
} from "@wharf/testkit";

const run = promisify(execFile);
const lockedMessage = "exec, attach and port-forward are off in locked";

const gatewayConfig: GatewayConfigInit = {
  policies: [
    {
      name: "no-sessions-in-locked",
      rules: [{ namespaces: ["locked"], resources: ["pods/exec", "pods/attach", "pods/portforward"] }],
      action: { target: { case: "deny", value: { message: lockedMessage } } },
    },
    { name: "sessions-to-b", rules: [{ namespaces: ["to-b"] }], action: { target: { case: "upstream", value: "pool-b" } } },
  ],
  defaultAction: { target: { case: "upstream", value: "pool-a" } },
};

let dir: string;
let pki: ClusterPki;
let apiserver: KubeApiserver;
let envoy: GatewayEnvoy;
let alice: KeyPair;
let bob: KeyPair;
let gatewayKubeconfig: string;

beforeAll(async () => {
  dir = await makeWorkDir("upgrades");
  pki = await createClusterPki(dir);
  apiserver = await startKubeApiserver({ etcdServers: [inject("referenceEtcd").endpoint], pki, extraArgs: ["--etcd-prefix=/upgrades-test"] });
  const serving = await issueCertificate(dir, pki.ca, { name: "envoy", commonName: "envoy", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], usage: "server" });
  alice = await issueCertificate(dir, pki.ca, { name: "alice", commonName: "alice", organizations: ["system:masters"], usage: "client" });
  bob = await issueCertificate(dir, pki.ca, { name: "bob", commonName: "bob", usage: "client" });
  envoy = await startGatewayEnvoy({ pki, serving, wasmFile: wasmPath("gateway"), gatewayConfig: encodeGatewayConfig(gatewayConfig), poolA: [apiserver.url], poolB: [apiserver.url] });
  gatewayKubeconfig = await writeKubeconfig(join(dir, "gateway.kubeconfig"), envoy.url, pki.ca.certFile, alice);
  const admin = kubectlOn(apiserver.kubeconfig);
  for (const namespace of ["locked", "to-b"]) await admin("create", "namespace", namespace);
  // No scheduler and no kubelet: these pods stay Pending with no node, which
  // kubectl accepts for exec and attach and the apiserver then refuses.
  // (No controller manager either: the service account admission wants a default one made by hand.)
  for (const namespace of ["default", "locked"]) {
    await admin("-n", namespace, "create", "serviceaccount", "default");
    await admin("-n", namespace, "run", "pending", "--image=registry.invalid/none", "--restart=Never");
  }
  await waitHealthy();
}, 180_000);

afterAll(async () => {
  await envoy?.stop();
  await apiserver?.stop();
  if (dir) await removeWorkDir(dir);
});

/** Until Envoy's health checks have seen the apiserver in every cluster, HTTP/2 and HTTP/1.1 twins alike. */
async function waitHealthy(): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const clusters = await (await fetch(`${envoy.adminUrl}/clusters`)).text();
    const healthy = clusters.split("\n").filter((line) => line.endsWith("::health_flags::healthy")).length;
    if (healthy === 4) return;
    if (Date.now() > deadline) throw new Error(`Envoy's health checks never saw 4 healthy hosts:\n${clusters}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

async function upstreamRequests(cluster: string): Promise<number> {
  const stats = await (await fetch(`${envoy.adminUrl}/stats?filter=^cluster\\.${cluster.replaceAll("/", "\\/")}\\.upstream_rq_total$`)).text();
  const match = /: (\d+)/.exec(stats);
  if (!match) throw new Error(`no upstream_rq_total for cluster ${cluster}:\n${stats}`);
  return Number(match[1]);
}

const websocket: UpgradeProtocol = { kind: "websocket", subprotocols: ["v5.channel.k8s.io", "v4.channel.k8s.io"] };
const portForwardWebsocket: UpgradeProtocol = { kind: "websocket", subprotocols: ["v4.channel.k8s.io", "portforward.k8s.io"] };
const spdy: UpgradeProtocol = { kind: "spdy", streamProtocols: ["v4.channel.k8s.io", "v3.channel.k8s.io"] };
const portForwardSpdy: UpgradeProtocol = { kind: "spdy", streamProtocols: ["portforward.k8s.io"] };

// What kubectl sends for each session: method, query and upgrade protocol.
const sessions: Array<{ what: string; subresource: string; method: string; query: string; protocol: UpgradeProtocol }> = [
  { what: "exec over WebSocket", subresource: "exec", method: "GET", query: "command=true&stdin=true&stdout=true&stderr=true", protocol: websocket },
  { what: "exec over SPDY/3.1", subresource: "exec", method: "POST", query: "command=true&stdout=true&stderr=true", protocol: spdy },
  { what: "attach over WebSocket", subresource: "attach", method: "GET", query: "stdout=true&stderr=true", protocol: websocket },
  { what: "attach over SPDY/3.1", subresource: "attach", method: "POST", query: "stdout=true", protocol: spdy },
  { what: "port-forward over WebSocket", subresource: "portforward", method: "GET", query: "ports=80", protocol: portForwardWebsocket },
  { what: "port-forward over SPDY/3.1", subresource: "portforward", method: "POST", query: "ports=80", protocol: portForwardSpdy },
];

function statusOf(response: UpgradeResponse): { status: number; reason?: string; message?: string } {
  const body = JSON.parse(response.body) as { reason?: string; message?: string };
  return { status: response.status, reason: body.reason, message: body.message };
}

const direct = (path: string, method: string, protocol: UpgradeProtocol, client: KeyPair = alice, headers?: Record<string, string>) =>
  upgradeRequest(`${apiserver.url}${path}`, pki.ca.certFile, protocol, { client, headers }, method);
const through = (path: string, method: string, protocol: UpgradeProtocol, client: KeyPair = alice, headers?: Record<string, string>) =>
  upgradeRequest(`${envoy.url}${path}`, pki.ca.certFile, protocol, { client, headers }, method);

describe("connection upgrades through the gateway", () => {
  for (const session of sessions) {
    it(`${session.what} reaches the apiserver over HTTP/1.1 and gets its own answer`, async () => {
      for (const [namespace, pool] of [["default", "pool-a"], ["to-b", "pool-b"]] as const) {
        const path = `/api/v1/namespaces/${namespace}/pods/missing/${session.subresource}?${session.query}`;
        const reference = statusOf(await direct(path, session.method, session.protocol));
        expect(reference).toMatchObject({ status: 404, reason: "NotFound" });
        const before = await upstreamRequests(`${pool}/upgrade`);
        const response = await through(path, session.method, session.protocol);
        expect(statusOf(response)).toEqual(reference);
        expect(response.headers["x-wharf-served-by"]).toBe(pool);
        // The upgrade went by the pool's HTTP/1.1 twin, not its HTTP/2 cluster.
        expect(await upstreamRequests(`${pool}/upgrade`)).toBe(before + 1);
      }
    });
  }

  it("a WebSocket watch is switched (101) and streams the apiserver's events", async () => {
    await kubectlOn(gatewayKubeconfig)("create", "configmap", "seen-by-websocket", "--from-literal=k=v");
    // The apiserver's WebSocket handshake (golang.org/x/net/websocket) wants an Origin.
    const path = "/api/v1/namespaces/default/configmaps?watch=true&fieldSelector=metadata.name%3Dseen-by-websocket";
    const response = await through(path, "GET", { kind: "websocket", subprotocols: ["base64.binary.k8s.io"] }, alice, { origin: envoy.url });
    try {
      expect(response.status, response.body).toBe(101);
      expect(response.headers["sec-websocket-protocol"]).toBe("base64.binary.k8s.io");
      const frame = await readWebSocketFrame(response.socket!, response.head);
      const event = JSON.parse(frame.payload.toString("utf8")) as { type: string; object: { metadata: { name: string } } };
      expect(event).toMatchObject({ type: "ADDED", object: { metadata: { name: "seen-by-websocket" } } });
    } finally {
      response.socket?.destroy();
    }
  });

  for (const [mode, env] of [
    ["WebSocket", {}],
    ["SPDY/3.1", { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: "false" }],
  ] as const) {
    it(`kubectl exec, attach and cp (${mode}) get the apiserver's own refusal for a pod with no node`, async () => {
      const kubectl = (kubeconfig: string, ...args: string[]) =>
        run(toolPath("kubectl"), ["--kubeconfig", kubeconfig, ...args], { env: { ...process.env, ...env } }).then(
          () => "succeeded",
          (error: { stderr: string }) => error.stderr.trim(),
        );
      for (const args of [
        ["exec", "pending", "--", "true"],
        ["attach", "pending"],
        ["cp", join(dir, "gateway.kubeconfig"), "pending:/tmp/copied"],
      ]) {
        const reference = await kubectl(apiserver.kubeconfig, ...args);
        expect(reference, args.join(" ")).toMatch(/does not have a host assigned/);
        expect(await kubectl(gatewayKubeconfig, ...args), args.join(" ")).toBe(reference);
      }
    });
  }

  for (const session of sessions) {
    it(`a policy that denies pods/${session.subresource} denies ${session.what} before anything is upgraded`, async () => {
      const before = await upstreamRequests("pool-a/upgrade");
      const response = await through(`/api/v1/namespaces/locked/pods/pending/${session.subresource}?${session.query}`, session.method, session.protocol);
      expect(statusOf(response)).toEqual({ status: 403, reason: "Forbidden", message: lockedMessage });
      expect(response.socket).toBeUndefined();
      expect(await upstreamRequests("pool-a/upgrade")).toBe(before);
    });
  }

  it("kubectl exec in a namespace the policy locks prints the policy's message", async () => {
    const failure = await kubectlOn(gatewayKubeconfig)("-n", "locked", "exec", "pending", "--", "true").catch((error: Error) => error.message);
    expect(failure).toContain(lockedMessage);
  });
});

describe("attack: upgrades", () => {
  it("an upgrade Envoy was not told of is never switched and never reaches an apiserver as an upgrade", async () => {
    const upstream = async () => [await upstreamRequests("pool-a/upgrade"), await upstreamRequests("pool-a")] as const;
    for (const upgrade of ["websocket2", "TLS/1.0", "spdy/3", "connect-udp"]) {
      const before = await upstream();
      const response = await through("/api/v1/namespaces/default/pods", "GET", { kind: "other", upgrade });
      response.socket?.destroy();
      // Envoy answers these itself (403, or 404 for a CONNECT-UDP path).
      expect(response.status, upgrade).toBeGreaterThanOrEqual(400);
      expect(await upstream(), upgrade).toEqual(before);
    }
    // h2c: Envoy drops that Upgrade header and serves a plain request (which the filter classified like any).
    const before = await upstream();
    const h2c = await through("/api/v1/namespaces/default/pods", "GET", { kind: "other", upgrade: "h2c" });
    expect(h2c.socket).toBeUndefined();
    expect(h2c.status).toBe(200);
    expect(await upstream()).toEqual([before[0], before[1] + 1]);
  });

  it("a denied exec stays denied whatever the Upgrade header's case or the subprotocol list", async () => {
    for (const protocol of [
      { kind: "other", upgrade: "WebSocket" },
      { kind: "other", upgrade: "spdy/3.1" },
      { kind: "websocket", subprotocols: ["v5.channel.k8s.io", "base64.channel.k8s.io", "channel.k8s.io"] },
    ] satisfies UpgradeProtocol[]) {
      const response = await through("/api/v1/namespaces/locked/pods/pending/exec?command=sh&stdin=true", "GET", protocol);
      expect(statusOf(response), JSON.stringify(protocol)).toEqual({ status: 403, reason: "Forbidden", message: lockedMessage });
    }
  });

  it("identity headers on an upgrade are not believed: bob's WebSocket watch of secrets stays bob's", async () => {
    const spoofed = { "x-remote-user": "alice", "x-remote-group": "system:masters", "impersonate-user": "alice" };
    const path = "/api/v1/namespaces/default/secrets?watch=true";
    const protocol: UpgradeProtocol = { kind: "websocket", subprotocols: ["base64.binary.k8s.io"] };
    const reference = await direct(path, "GET", protocol, bob, spoofed);
    expect(reference.status).toBe(403);
    const response = await through(path, "GET", protocol, bob, spoofed);
    response.socket?.destroy();
    expect(response.status).toBe(403);
    expect(JSON.parse(response.body)).toMatchObject({ reason: "Forbidden" });
    expect((JSON.parse(response.body) as { message: string }).message).toContain('User "bob"');
  });
});

describe("attack: slow clients", () => {
  it("a client trickling its request headers is cut off after request_headers_timeout (10 s), with a 408", async () => {
    const stat = async () => {
      const text = await (await fetch(`${envoy.adminUrl}/stats?filter=^http\\.gateway\\.downstream_rq_header_timeout$`)).text();
      return Number(/: (\d+)/.exec(text)?.[1] ?? "NaN");
    };
    const before = await stat();
    const { port } = new URL(envoy.url);
    const socket = connect({ host: "127.0.0.1", port: Number(port), servername: "localhost", ca: readFileSync(pki.ca.certFile), cert: readFileSync(alice.certFile), key: readFileSync(alice.keyFile), ALPNProtocols: ["http/1.1"] });
    let received = "";
    socket.on("data", (chunk: Buffer) => (received += chunk.toString()));
    const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
    socket.on("error", () => undefined);
    await new Promise<void>((resolve, reject) => socket.once("secureConnect", resolve).once("error", reject));
    const started = Date.now();
    socket.write("GET /api/v1/namespaces HTTP/1.1\r\nHost: localhost\r\n");
    // Progress does not extend the deadline: a header line every half second.
    let line = 0;
    const trickle = setInterval(() => socket.writable && socket.write(`x-slow-${line++}: a\r\n`), 500);
    try {
      await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error(`still open after 20 s; received: ${received}`)), 20_000))]);
    } finally {
      clearInterval(trickle);
      socket.destroy();
    }
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(9_500);
    expect(elapsed).toBeLessThan(15_000);
    expect(received).toMatch(/^HTTP\/1\.1 408 /);
    expect(line).toBeGreaterThan(15);
    expect(await stat()).toBe(before + 1);
  }, 30_000);
});

describe("attack: a filter that traps", () => {
  it("fails the trapping request closed; Envoy reloads the VM for the next requests, policy intact, and counts it", async () => {
    const trapPath = "/trap-for-test";
    const serving = await issueCertificate(dir, pki.ca, { name: "envoy-trap", commonName: "envoy", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], usage: "server" });
    const trapping = await startGatewayEnvoy({
      pki,
      serving,
      wasmFile: wasmPath("gateway"),
      gatewayConfig: encodeGatewayConfig({ ...gatewayConfig, testTrapPath: trapPath }),
      poolA: [apiserver.url],
      poolB: [apiserver.url],
    });
    const get = (path: string) => httpsGet(`${trapping.url}${path}`, pki.ca.certFile, alice);
    const stat = async (name: string) => {
      const text = await (await fetch(`${trapping.adminUrl}/stats?filter=^${name.replaceAll(".", "\\.")}$`)).text();
      return Number(/: (\d+)/.exec(text)?.[1] ?? "NaN");
    };
    try {
      await waitFor(async () => (await get("/api/v1/namespaces/default/configmaps")).status === 200, 30_000, "the trapping gateway to serve");
      const reloadsBefore = await stat("wasm.wharf.gateway.vm_reload_success");
      const upstreamBefore = await stat("cluster.pool-a.upstream_rq_total");
      expect(reloadsBefore).toBe(0);
      const trapped = await get(trapPath);
      expect(trapped.status).toBe(503);
      // Until the reload (after Envoy's backoff), requests fail closed: none passes unfiltered.
      const seen: number[] = [];
      await waitFor(async () => {
        const status = (await get("/api/v1/namespaces/locked/pods/pending/exec?command=true")).status;
        seen.push(status);
        return status === 403;
      }, 10_000, () => `the reloaded filter to deny by policy again (saw ${seen.join(", ")})`);
      expect(seen.every((status) => status === 503 || status === 403), seen.join(", ")).toBe(true);
      expect(await stat("cluster.pool-a.upstream_rq_total")).toBe(upstreamBefore);
      expect((await get("/api/v1/namespaces/default/configmaps")).status).toBe(200);
      expect(await stat("wasm.wharf.gateway.vm_reload_success")).toBe(1);
      expect(await stat("wasm.wharf.gateway.vm_reload_failure")).toBe(0);
    } finally {
      await trapping.stop();
    }
  }, 60_000);
});

describe("attack: stat names from hostile requests", () => {
  it("2,000 requests for random paths, resources, verbs and names add no stat named after them", async () => {
    const { request, Agent } = await import("node:https");
    const agent = new Agent({ keepAlive: true, maxSockets: 16, ca: readFileSync(pki.ca.certFile), cert: readFileSync(alice.certFile), key: readFileSync(alice.keyFile) });
    const allStats = async () => (await (await fetch(`${envoy.adminUrl}/stats`)).text()).trim().split("\n").map((line) => line.slice(0, line.lastIndexOf(":")));
    const word = () => `z${Math.random().toString(36).slice(2, 10)}`;
    const methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "PROPFIND", "BREW", "M-SEARCH"];
    const shapes = [
      () => `/api/v1/${word()}`,
      () => `/api/v1/namespaces/${word()}/${word()}/${word()}`,
      () => `/api/v1/namespaces/default/pods/${word()}/${word()}`,
      () => `/apis/${word()}.example.com/v1/${word()}`,
      () => `/apis/${word()}/${word()}/namespaces/${word()}/${word()}?watch=true`,
      () => `/${word()}/${word()}`,
    ];
    const send = (method: string, path: string) =>
      new Promise<number>((resolve) => {
        const req = request(`${envoy.url}${path}`, { method, agent, timeout: 5000 }, (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
        });
        req.on("error", () => resolve(0));
        req.on("timeout", () => req.destroy());
        req.end();
      });
    const sent: string[] = [];
    const burst = async (count: number) => {
      for (let done = 0; done < count; done += 20) {
        await Promise.all(
          Array.from({ length: 20 }, () => {
            const path = shapes[Math.floor(Math.random() * shapes.length)]!();
            sent.push(path);
            return send(methods[Math.floor(Math.random() * methods.length)]!, path);
          }),
        );
      }
    };
    try {
      // A first burst reaches the fixed labels ("other", the status codes the apiserver answers these with).
      await burst(200);
      const before = new Set(await allStats());
      await burst(2_000);
      const after = await allStats();
      const added = after.filter((name) => !before.has(name));
      expect(added.length, added.join("\n")).toBeLessThanOrEqual(10);
      const words = new Set(sent.flatMap((path) => path.match(/z[0-9a-z]{4,}/g) ?? []));
      expect(words.size).toBeGreaterThan(4_000);
      const named = after.filter((name) => (name.match(/z[0-9a-z]{4,}/g) ?? []).some((part) => words.has(part)));
      expect(named).toEqual([]);
    } finally {
      agent.destroy();
    }
  }, 120_000);
});
