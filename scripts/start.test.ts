// End to end, as a user meets wharf: start the stack, use the printed
// kubeconfig, lose an apiserver, change the config live, stop with Ctrl-C.
//
// The test runs `node --import tsx scripts/start.ts`, the command `npm start`
// runs once setup and build are done; `npm test` has just done both, and
// building again here would rewrite dist/ under the test files running
// beside this one.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { chmod, readFile, rm, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseDocument } from "yaml";
import { StatusRequestSchema, type StatusResponse } from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import { etcdServices, freePort, freePortRange, httpsGet, kubectlOn, makeWorkDir, rawEtcdClient, repoRoot, toolPath, upgradeRequest, waitFor } from "@wharf/testkit";

const run = promisify(execFile);

interface StackFile {
  adminUrl: string;
  components: Array<{ name: string; address: string; pid: number }>;
}

/** Whether nothing listens on the port any more (a connection is refused). */
function nothingListens(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("error", () => resolve(true));
  });
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("npm start", () => {
  let state: string;
  let stack: ChildProcess;
  let output = "";
  let exited: Promise<number | null>;
  let kubeconfig: string;
  let gatewayPort: number;
  let envoyAdmin: string;
  let caFile: string;
  const admin = { certFile: "", keyFile: "" };
  let issuedToken = "";

  const kubectl = (...args: string[]) => kubectlOn(kubeconfig)(...args);
  const readStack = async () => JSON.parse(await readFile(join(state, "stack.json"), "utf8")) as StackFile;
  const pidOf = async (name: string) => (await readStack()).components.find((component) => component.name === name)!.pid;
  const wharfStatus = () =>
    run(process.execPath, [join(repoRoot, "control-plane", "dist", "cli.js"), "status", "--stack", join(state, "stack.json")]).then(
      ({ stdout }) => ({ code: 0, stdout }),
      (error: { code: number; stdout: string }) => ({ code: error.code, stdout: error.stdout }),
    );
  const throughGateway = (path: string) => httpsGet(`https://127.0.0.1:${gatewayPort}${path}`, caFile, admin);

  beforeAll(async () => {
    state = await makeWorkDir("npm-start");
    gatewayPort = await freePort();
    const envoyAdminPort = await freePort();
    envoyAdmin = `http://127.0.0.1:${envoyAdminPort}`;
    const env = {
      ...process.env,
      WHARF_STATE_DIR: state,
      WHARF_BRAIN_PORT: String(await freePort()),
      WHARF_BRAIN_METRICS_PORT: String(await freePort()),
      WHARF_APISERVER_PORT: String(await freePortRange(2)),
      WHARF_GATEWAY_PORT: String(gatewayPort),
      WHARF_ENVOY_ADMIN_PORT: String(envoyAdminPort),
      WHARF_XDS_PORT: String(await freePort()),
      WHARF_ADMIN_PORT: String(await freePort()),
      NO_COLOR: "1",
    };
    // Its own process group, so the test can do what Ctrl-C does: signal all of it.
    stack = spawn(process.execPath, ["--import", "tsx", join(repoRoot, "scripts", "start.ts"), "--apiservers", "2"], {
      cwd: repoRoot,
      env,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    stack.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    stack.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    exited = new Promise((resolve) => stack.on("exit", (code) => resolve(code)));
    const deadline = Date.now() + 150_000;
    while (!/│ ready\./.test(output)) {
      if (stack.exitCode !== null) throw new Error(`npm start exited (${stack.exitCode}):\n${output}`);
      if (Date.now() > deadline) throw new Error(`npm start not ready after 150 s:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    kubeconfig = /kubeconfig\s+(\S+)/.exec(output)![1]!;
    if (!kubeconfig.startsWith("/")) kubeconfig = join(repoRoot, kubeconfig);
    caFile = join(state, "pki", "cluster-ca.crt");
    admin.certFile = join(state, "pki", "admin.crt");
    admin.keyFile = join(state, "pki", "admin.key");
  }, 180_000);

  afterAll(async () => {
    if (stack.exitCode === null && stack.pid !== undefined) {
      process.kill(-stack.pid, "SIGKILL");
      for (const { pid } of (await readStack().catch(() => ({ components: [] }))).components) {
        if (isRunning(pid)) process.kill(pid, "SIGKILL");
      }
    }
    await rm(state, { recursive: true, force: true });
  });

  it("prints a kubeconfig whose server is Envoy, and kubectl works through it", async () => {
    expect(await readFile(kubeconfig, "utf8")).toContain(`server: https://127.0.0.1:${gatewayPort}`);
    expect(output).toContain(`${envoyAdmin}`);
    await kubectl("create", "namespace", "e2e");
    await kubectl("-n", "e2e", "create", "configmap", "first", "--from-literal=a=1");
    const list = JSON.parse(await kubectl("-n", "e2e", "get", "configmaps", "-o", "json")) as { items: Array<{ metadata: { name: string } }> };
    expect(list.items.map((item) => item.metadata.name)).toContain("first");

    const watch = spawn(toolPath("kubectl"), ["-n", "e2e", "get", "configmaps", "--watch", "--output-watch-events"], {
      env: { ...process.env, KUBECONFIG: kubeconfig },
    });
    let events = "";
    watch.stdout.on("data", (chunk: Buffer) => (events += chunk.toString()));
    try {
      await waitFor(async () => /ADDED\s+first\s/.test(events), 20_000, () => `the watch to list first (saw: ${events})`, 250);
      await kubectl("-n", "e2e", "create", "configmap", "second", "--from-literal=b=2");
      await kubectl("-n", "e2e", "delete", "configmap", "first");
      await waitFor(
        async () => /ADDED\s+second\s/.test(events) && /DELETED\s+first\s/.test(events),
        20_000,
        () => `the watch to see second added and first deleted (saw: ${events})`,
        250,
      );
    } finally {
      watch.kill();
    }
    expect(await kubectl("-n", "e2e", "get", "configmaps", "-o", "name")).not.toContain("configmap/first");
  });

  it("takes a service account's bearer token out of the box: the gateway may send its TokenReviews", async () => {
    await kubectl("-n", "e2e", "create", "serviceaccount", "robot");
    const token = (await kubectl("-n", "e2e", "create", "token", "robot")).trim();
    issuedToken = token;
    const withToken = (value: string) =>
      kubectlOn("/dev/null")(`--server=https://127.0.0.1:${gatewayPort}`, `--certificate-authority=${caFile}`, `--token=${value}`, "auth", "whoami", "-o", "json");
    const review = JSON.parse(await withToken(token)) as { status: { userInfo: { username: string; groups: string[] } } };
    expect(review.status.userInfo.username).toBe("system:serviceaccount:e2e:robot");
    expect(review.status.userInfo.groups).toContain("system:serviceaccounts:e2e");
    // A token the apiserver does not know is refused as it would refuse it, not with 503.
    await expect(withToken(token.slice(0, -4) + "AAAA")).rejects.toThrow(/Unauthorized/);
  });

  it("writes one JSON access-log line per request, with what the filter decided and no credential", async () => {
    const file = join(state, "logs", "access.log");
    // Credentials where a careless log would copy them: a query string, a
    // WebSocket bearer subprotocol, an Authorization header with a client certificate.
    const marker = "c3VwZXItc2VjcmV0LXRva2Vu";
    await httpsGet(`https://127.0.0.1:${gatewayPort}/api/v1/namespaces/e2e/secrets?access_token=${marker}`, caFile, admin);
    const upgraded = await upgradeRequest(`https://127.0.0.1:${gatewayPort}/api/v1/namespaces/e2e/configmaps?watch=true`, caFile, { kind: "websocket", subprotocols: [`base64url.bearer.authorization.k8s.io.${marker}`] }, { client: admin, headers: { authorization: `Bearer ${marker}` } });
    upgraded.socket?.destroy();
    type Line = Record<string, string | number | null>;
    let lines: Line[] = [];
    const read = async () => (lines = (await readFile(file, "utf8")).trim().split("\n").map((line) => JSON.parse(line) as Line));
    const find = (want: Line) => lines.find((line) => Object.entries(want).every(([key, value]) => line[key] === value));
    const wanted: Line[] = [
      { user: "wharf-admin", method: "GET", path: "/api/v1/namespaces/e2e/configmaps", verb: "list", api_group: null, resource: "configmaps", namespace: "e2e", name: null, policy: "everyone", pool: "main", status: 200, refused: null },
      { user: "wharf-admin", method: "POST", path: "/api/v1/namespaces/e2e/configmaps", verb: "create", resource: "configmaps", namespace: "e2e", status: 201 },
      { user: "wharf-admin", method: "DELETE", path: "/api/v1/namespaces/e2e/configmaps/first", verb: "delete", resource: "configmaps", namespace: "e2e", name: "first", status: 200 },
      { user: "wharf-admin", verb: "watch", resource: "configmaps", namespace: "e2e", policy: "watches", pool: "watches" },
      { user: "wharf-admin", method: "POST", path: "/api/v1/namespaces/e2e/serviceaccounts/robot/token", verb: "create", resource: "serviceaccounts", subresource: "token", name: "robot", status: 201 },
      { user: "system:serviceaccount:e2e:robot", method: "POST", api_group: "authentication.k8s.io", resource: "selfsubjectreviews", verb: "create", status: 201 },
      // The made-up token: refused by the gateway itself, never forwarded.
      { user: null, status: 401, refused: "Unauthorized", details: "wharf_gateway_unauthorized", apiserver: null, audit_id: null },
      { user: "wharf-admin", method: "GET", path: "/api/v1/namespaces/e2e/secrets", verb: "list", resource: "secrets", status: 200 },
    ];
    await waitFor(async () => (await read(), wanted.every((want) => find(want) !== undefined)), 10_000, () => `access-log lines ${JSON.stringify(wanted.filter((want) => !find(want)))} in:\n${lines.map((line) => JSON.stringify(line)).join("\n")}`, 250);
    const list = find(wanted[0]!)!;
    expect(String(list.groups).split(",")).toContain("system:masters");
    expect(list.apiserver).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(list.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(list.cluster).toBe("default");
    expect(typeof list.duration_ms).toBe("number");
    expect(list.bytes_sent).toBeGreaterThan(0);
    expect(find({ user: "system:serviceaccount:e2e:robot" })!.groups).toContain("system:serviceaccounts:e2e");
    // Never a credential: not the token (nor its signature-less part), no certificate, no Authorization.
    const text = await readFile(file, "utf8");
    expect(issuedToken.length).toBeGreaterThan(100);
    expect(text).not.toContain(issuedToken.split(".")[1]!);
    expect(text).not.toContain(issuedToken.slice(-20));
    expect(text).not.toMatch(/BEGIN CERTIFICATE|Bearer|authorization/i);
    expect(text).not.toContain(marker);
    // One line per request: the create of "second" happened once.
    expect(lines.filter((line) => line.method === "POST" && line.path === "/api/v1/namespaces/e2e/configmaps").length).toBe(2);
  });

  it("wharf status shows every part healthy and the sidecar's accepted config", async () => {
    const { code, stdout } = await wharfStatus();
    expect(code, stdout).toBe(0);
    for (const name of ["brain", "kube-apiserver-1", "kube-apiserver-2", "control-plane", "envoy"]) {
      expect(stdout).toMatch(new RegExp(`^${name}\\s+\\S+.*\\s+healthy$`, "m"));
    }
    expect(stdout).toMatch(/^local-gateway\s+gateway\s+yes\s+.*listener=/m);
  });

  it("prints how to make a tenant, and the printed command makes one whose kubeconfig reaches the gateway", async () => {
    const printed = /\.tools\/bin\/wharf (tenant create demo -o demo\.kubeconfig --stack \S+)\s/.exec(output);
    expect(printed, output).not.toBeNull();
    const tenantKubeconfig = join(state, "demo.kubeconfig");
    const args = printed![1]!.split(" ").map((arg) => (arg === "demo.kubeconfig" ? tenantKubeconfig : arg));
    const cli = join(repoRoot, "control-plane", "dist", "cli.js");
    await run(process.execPath, [cli, ...args], { cwd: repoRoot });
    const text = await readFile(tenantKubeconfig, "utf8");
    expect(text).toContain(`server: https://127.0.0.1:${gatewayPort}`);
    expect(text).toContain("current-context: demo");
    const version = JSON.parse(await kubectlOn(tenantKubeconfig)("get", "--raw", "/version")) as { gitVersion: string };
    expect(version.gitVersion).toMatch(/^v1\./);
    const { stdout } = await run(process.execPath, [cli, "tenant", "list", "--stack", join(state, "stack.json")], { cwd: repoRoot });
    expect(stdout).toMatch(/^demo\tcreated \S+\tshared -\tcertificates admin:1$/m);
  });

  it("keeps answering through Envoy when a kube-apiserver dies, and brings it back", async () => {
    const victim = await pidOf("kube-apiserver-1");
    process.kill(victim, "SIGKILL");
    const failures: string[] = [];
    for (let i = 0; i < 20; i++) {
      const response = await throughGateway("/api/v1/namespaces/e2e/configmaps");
      if (response.status !== 200) failures.push(`${response.status} ${response.body.slice(0, 120)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(failures).toEqual([]);
    await waitFor(
      async () => (await pidOf("kube-apiserver-1")) !== victim && (await wharfStatus()).code === 0,
      90_000,
      () => `kube-apiserver-1 to come back; npm start printed:\n${output.slice(-3000)}`,
      250,
    );
    expect(output).toMatch(/kube-apiserver-1 exited .*starting it again/);
  });

  it("takes a new route and a new rate limit from wharf.yaml live, without restarting Envoy", async () => {
    const envoyPid = await pidOf("envoy");
    const configFile = join(state, "wharf.yaml");
    const document = parseDocument(await readFile(configFile, "utf8"));
    const servers = (document.getIn(["upstream_cluster", "pools", 0, "servers"]) as { toJSON(): string[] }).toJSON();
    document.addIn(["upstream_cluster", "pools"], { name: "e2e", servers: [servers[1]] });
    document.addIn(["upstream_cluster", "flow_control_schemas"], { name: "e2e-slow", qps: 1, burst: 2, max_inflight: 10 });
    const policies = document.getIn(["upstream_cluster", "dispatch_policies"]) as { items: unknown[] };
    policies.items.unshift(
      document.createNode({ name: "e2e-configmaps", rules: [{ namespaces: ["e2e"], resources: ["configmaps"] }], action: { upstream: "e2e", flow_control: "e2e-slow" } }),
    );
    await writeFile(configFile, document.toString());

    const routedToE2e = async () => {
      const stats = await (await fetch(`${envoyAdmin}/stats?filter=^cluster\\.e2e\\.upstream_rq_total$`)).text();
      return Number(/: (\d+)/.exec(stats)?.[1] ?? 0);
    };
    // The new pool receives the namespace's requests once Envoy has the config.
    await waitFor(
      async () => {
        await throughGateway("/api/v1/namespaces/e2e/configmaps");
        return (await routedToE2e()) > 0;
      },
      15_000,
      () => `a request to reach the new pool; npm start printed:\n${output.slice(-3000)}`,
      250,
    );
    // A burst past qps 1 / burst 2 is refused with Kubernetes' 429 Status.
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await throughGateway("/api/v1/namespaces/e2e/configmaps")).status);
    expect(statuses).toContain(429);
    expect(statuses).toContain(200);
    const limited = await throughGateway("/api/v1/namespaces/e2e/configmaps");
    if (limited.status === 429) expect(JSON.parse(limited.body)).toMatchObject({ kind: "Status", code: 429 });
    // Other requests keep their old route and limit.
    expect((await throughGateway("/api/v1/namespaces/default/configmaps")).status).toBe(200);
    expect(await pidOf("envoy")).toBe(envoyPid);
    expect(isRunning(envoyPid)).toBe(true);
  });

  it("stops every process on Ctrl-C", async () => {
    const { components } = await readStack();
    expect(components.length).toBe(5);
    process.kill(-stack.pid!, "SIGINT");
    const code = await Promise.race([exited, new Promise((resolve) => setTimeout(() => resolve("timeout"), 60_000))]);
    expect(code, output.slice(-2000)).toBe(0);
    expect(output).toMatch(/│ stopped/);
    for (const { name, pid } of components) expect(isRunning(pid), `${name} (pid ${pid}) still running`).toBe(false);
    const ports = components.flatMap(({ address }) => /:(\d+)$/.exec(address)?.[1] ?? []).map(Number);
    for (const port of ports) expect(await nothingListens(port), `port ${port} still open`).toBe(true);
  });
});

describe("npm start -- --postgres", () => {
  let state: string;
  let output = "";
  let base: number;
  let postgresPort: number;
  let gatewayPort: number;
  let env: NodeJS.ProcessEnv;
  let stack: { child: ChildProcess; exited: Promise<number | null> } | undefined;

  const readStack = async () => JSON.parse(await readFile(join(state, "stack.json"), "utf8")) as StackFile;
  const brainEndpoints = () => [0, 10, 20].map((offset) => `http://127.0.0.1:${base + offset}`);
  const kubectl = (...args: string[]) => kubectlOn(join(state, "kubeconfig"))(...args);
  /** PostgreSQL is not in stack.json (it has no health URL): its data dir names its pid while it runs. */
  const postmasterPid = async () => Number((await readFile(join(state, "postgres", "postmaster.pid"), "utf8").catch(() => "")).split("\n")[0] || 0);

  /** Starts the stack as `npm start -- --postgres` does and waits until it says it is ready. */
  async function startStack(): Promise<void> {
    output = "";
    const child = spawn(process.execPath, ["--import", "tsx", join(repoRoot, "scripts", "start.ts"), "--postgres", "--apiservers", "1"], {
      cwd: repoRoot,
      env,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    stack = { child, exited: new Promise((resolve) => child.on("exit", (code) => resolve(code))) };
    const deadline = Date.now() + 150_000;
    while (!/│ ready\./.test(output)) {
      if (child.exitCode !== null) throw new Error(`npm start -- --postgres exited (${child.exitCode}):\n${output}`);
      if (Date.now() > deadline) throw new Error(`npm start -- --postgres not ready after 150 s:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  /** Ctrl-C: every process of the stack, PostgreSQL included, is gone and its port closed. */
  async function stopStack(): Promise<void> {
    const { components } = await readStack();
    const postgresPid = await postmasterPid();
    expect(postgresPid, "PostgreSQL's postmaster.pid").toBeGreaterThan(0);
    process.kill(-stack!.child.pid!, "SIGINT");
    const code = await Promise.race([stack!.exited, new Promise((resolve) => setTimeout(() => resolve("timeout"), 60_000))]);
    expect(code, output.slice(-2000)).toBe(0);
    for (const { name, pid } of components) expect(isRunning(pid), `${name} (pid ${pid}) still running`).toBe(false);
    expect(isRunning(postgresPid), "postgres still running").toBe(false);
    for (const port of [postgresPort, base, base + 10, base + 20]) expect(await nothingListens(port), `port ${port} still open`).toBe(true);
    stack = undefined;
  }

  beforeAll(async () => {
    state = await makeWorkDir("npm-start-postgres");
    // As root PostgreSQL runs as the postgres user, which must reach .wharf/postgres (mkdtemp makes 0700 dirs).
    await chmod(state, 0o755);
    // brain N listens on the base ports + 10·(N-1): 23 ports from `base` cover every brain's client and metrics
    // port, and PostgreSQL's (below the ephemeral range, where no outgoing connection takes one meanwhile).
    base = await freePortRange(23);
    postgresPort = base + 5;
    gatewayPort = await freePort();
    env = {
      ...process.env,
      WHARF_STATE_DIR: state,
      WHARF_BRAIN_PORT: String(base),
      WHARF_BRAIN_METRICS_PORT: String(base + 2),
      WHARF_POSTGRES_PORT: String(postgresPort),
      WHARF_APISERVER_PORT: String(await freePortRange(1)),
      WHARF_GATEWAY_PORT: String(gatewayPort),
      WHARF_ENVOY_ADMIN_PORT: String(await freePort()),
      WHARF_XDS_PORT: String(await freePort()),
      WHARF_ADMIN_PORT: String(await freePort()),
      NO_COLOR: "1",
    };
    await startStack();
  }, 180_000);

  afterAll(async () => {
    if (stack && stack.child.exitCode === null && stack.child.pid !== undefined) {
      process.kill(-stack.child.pid, "SIGKILL");
      for (const { pid } of (await readStack().catch(() => ({ components: [] }))).components) {
        if (isRunning(pid)) process.kill(pid, "SIGKILL");
      }
    }
    const pid = await postmasterPid();
    if (pid > 0 && isRunning(pid)) process.kill(pid, "SIGKILL");
    await rm(state, { recursive: true, force: true });
  });

  it("stores the cluster in three brains on one PostgreSQL, one of them the leader, and the apiserver lists all three", async () => {
    for (const [i, endpoint] of brainEndpoints().entries()) expect(output).toMatch(new RegExp(`brain-${i + 1}\\s+${endpoint}\\s`));
    expect(output).toContain(`postgres://postgres@127.0.0.1:${postgresPort}/postgres`);
    await kubectl("create", "namespace", "kept");
    await kubectl("-n", "kept", "create", "configmap", "across-restarts", "--from-literal=a=1");

    const { stdout } = await run(process.execPath, [join(repoRoot, "control-plane", "dist", "cli.js"), "status", "--stack", join(state, "stack.json")]);
    for (const name of ["brain-1", "brain-2", "brain-3", "kube-apiserver-1", "control-plane", "envoy"]) {
      expect(stdout).toMatch(new RegExp(`^${name}\\s+\\S+.*\\s+healthy$`, "m"));
    }
    const apiserver = (await readStack()).components.find((component) => component.name === "kube-apiserver-1")!;
    const args = (await readFile(`/proc/${apiserver.pid}/cmdline`, "utf8")).split("\0");
    expect(args).toContain(`--etcd-servers=${brainEndpoints().join(",")}`);

    const statuses = await Promise.all(
      brainEndpoints().map(async (endpoint) => {
        const client = rawEtcdClient(endpoint);
        try {
          return (await client.call(etcdServices.Maintenance, "Status", StatusRequestSchema, {})) as unknown as StatusResponse;
        } finally {
          client.close();
        }
      }),
    );
    const leaders = new Set(statuses.map((status) => status.leader));
    expect(leaders.size, "every brain names the same leader").toBe(1);
    expect(statuses.filter((status) => status.header!.memberId === statuses[0]!.leader).length, "the leader is one of the three").toBe(1);
  });

  it("stops everything on Ctrl-C, PostgreSQL included, and a second start serves the cluster kept in PostgreSQL", async () => {
    await stopStack();
    await startStack();
    expect(await kubectl("-n", "kept", "get", "configmap", "across-restarts", "-o", "jsonpath={.data.a}")).toBe("1");
    await stopStack();
  }, 240_000);
});
