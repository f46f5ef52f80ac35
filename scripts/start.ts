// `npm start`: the stack on this machine, in the foreground, until Ctrl-C:
//
//   kubectl ─TLS─▶ Envoy (gateway filter) ──▶ kube-apiserver ×N ──▶ brain (RocksDB)
//                    └── xDS ◀── wharf control-plane (.wharf/wharf.yaml)
//
// With --postgres the store is three brains on one PostgreSQL (a replica
// set: one leader, two followers), and every apiserver lists all three.
//
// Everything listens on 127.0.0.1 only. State lives in .wharf/ (git-ignored):
// brain's (or etcd's) data, the cluster PKI, the control plane's config and
// admin token, logs, and a kubeconfig that goes through Envoy. A second start
// reuses all of it.
//
//   npm start -- [--apiservers N] [--etcd | --postgres] [--verbose]
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, rename, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { parseArgs } from "node:util";
import { create, toJsonString, type MessageInitShape } from "@bufbuild/protobuf";
import { LocalStackSchema, StackComponentSchema } from "@wharf/proto/wharf/admin/v1/stack_pb.js";
import {
  issueCertificate,
  loadOrCreateClusterPki,
  renderXdsBootstrap,
  repoRoot,
  startBrainProcess,
  startEnvoy,
  startKubeApiserver,
  startProcess,
  startPostgres,
  startReferenceEtcd,
  waitUntilReady,
  writeKubeconfig,
} from "@wharf/testkit";
import { NodeCa, writeCredentials } from "@wharf/control-plane/credentials";
import { StackConsole } from "./stack/console.js";
import { grantTokenReviews, defaultReviewer, upstreamKubeconfig } from "./stack/cluster-rbac.js";
import { configuredReviewer, ensureStackConfig } from "./stack/sample-config.js";
import { Supervised, type Started, type SupervisorEvents } from "./stack/supervisor.js";

const usage = `Usage: npm start -- [--apiservers N] [--etcd | --postgres] [--verbose]
  --apiservers N  how many kube-apiservers behind the gateway (default 2, at most 9)
  --etcd          store the cluster in the reference etcd instead of brain (for comparison)
  --postgres      store it in three brains sharing one PostgreSQL (a replica set) instead of one on RocksDB
  --verbose       also print info-level lines of kube-apiserver and Envoy (always in .wharf/logs/)
Ports: WHARF_BRAIN_PORT (2379; etcd too), WHARF_BRAIN_METRICS_PORT (2381; with --postgres brain N
listens on both +10·(N-1)), WHARF_POSTGRES_PORT (15432), WHARF_APISERVER_PORT (6443, then +1 per
apiserver), WHARF_GATEWAY_PORT (7443), WHARF_ENVOY_ADMIN_PORT (9901), WHARF_XDS_PORT (18000),
WHARF_ADMIN_PORT (18001). State: WHARF_STATE_DIR (.wharf).
`;

function portFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined) return fallback;
  const port = Number(raw);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new Error(`${name}=${raw} is not a TCP port`);
  return port;
}

function parseFlags(): { apiservers: number; etcd: boolean; postgres: boolean; verbose: boolean } {
  try {
    const { values } = parseArgs({
      options: {
        apiservers: { type: "string", default: "2" },
        etcd: { type: "boolean" },
        postgres: { type: "boolean" },
        verbose: { type: "boolean" },
        help: { type: "boolean" },
      },
    });
    if (values.help) {
      process.stdout.write(usage);
      process.exit(0);
    }
    const apiservers = Number(values.apiservers);
    if (!Number.isInteger(apiservers) || apiservers < 1 || apiservers > 9) throw new Error(`--apiservers ${values.apiservers}: want 1 to 9`);
    if (values.etcd && values.postgres) throw new Error("--etcd and --postgres: choose one store");
    return { apiservers, etcd: values.etcd ?? false, postgres: values.postgres ?? false, verbose: values.verbose ?? false };
  } catch (error) {
    process.stderr.write(`npm start: ${(error as Error).message}\n${usage}`);
    process.exit(2);
  }
}

const flags = parseFlags();
const state = process.env.WHARF_STATE_DIR ?? join(repoRoot, ".wharf");
const firstApiserverPort = portFromEnv("WHARF_APISERVER_PORT", 6443);
const ports = {
  store: portFromEnv("WHARF_BRAIN_PORT", 2379),
  storeMetrics: portFromEnv("WHARF_BRAIN_METRICS_PORT", 2381),
  postgres: portFromEnv("WHARF_POSTGRES_PORT", 15432),
  apiservers: Array.from({ length: flags.apiservers }, (_, i) => firstApiserverPort + i),
  gateway: portFromEnv("WHARF_GATEWAY_PORT", 7443),
  envoyAdmin: portFromEnv("WHARF_ENVOY_ADMIN_PORT", 9901),
  xds: portFromEnv("WHARF_XDS_PORT", 18000),
  admin: portFromEnv("WHARF_ADMIN_PORT", 18001),
};
const storeName = flags.etcd ? "etcd" : "brain";
/** With --postgres: brain-1..3, each on the base ports + 10·(N-1). */
const replicas = flags.postgres
  ? [0, 1, 2].map((i) => ({ name: `brain-${i + 1}`, port: ports.store + 10 * i, metricsPort: ports.storeMetrics + 10 * i }))
  : [];
const storeNames = flags.postgres ? ["postgres", ...replicas.map((replica) => replica.name)] : [storeName];
const apiserverNames = ports.apiservers.map((_, i) => `kube-apiserver-${i + 1}`);
const logDir = join(state, "logs");
await mkdir(logDir, { recursive: true });
const out = new StackConsole(logDir, [...storeNames, ...apiserverNames, "control-plane", "envoy"], flags.verbose);

type ComponentInit = MessageInitShape<typeof StackComponentSchema>;
/** Every supervised part, in start order, with how `wharf status` reaches it (PostgreSQL has no HTTP health URL: not listed). */
const parts: Array<{ supervised: Supervised; component?: ComponentInit }> = [];
let stopping = false;
async function shutdown(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    out.phase(undefined);
    out.say("stopping …");
    for (const { supervised } of [...parts].reverse()) await supervised.stop().catch(() => undefined);
    out.say("stopped");
    out.close();
  }
  process.exit(code);
}
process.on("SIGINT", () => void shutdown(0));
process.on("SIGTERM", () => void shutdown(0));

const stackFile = join(state, "stack.json");
const tokenFile = join(state, "admin-token");
const adminUrl = `http://127.0.0.1:${ports.admin}`;

/** .wharf/stack.json: what `wharf status` probes. Rewritten after every (re)start, one write at a time. */
let stackFileWritten = Promise.resolve();
function writeStackFile(): Promise<void> {
  stackFileWritten = stackFileWritten.then(writeStackFileNow, writeStackFileNow);
  return stackFileWritten;
}

async function writeStackFileNow(): Promise<void> {
  const stack = create(LocalStackSchema, {
    adminUrl,
    adminTokenFile: tokenFile,
    components: parts.flatMap(({ supervised, component }) =>
      component ? [create(StackComponentSchema, { ...component, pid: supervised.current?.process.child.pid ?? 0 })] : [],
    ),
  });
  await writeFile(`${stackFile}.tmp`, toJsonString(LocalStackSchema, stack, { prettySpaces: 2 }) + "\n");
  await rename(`${stackFile}.tmp`, stackFile);
}

const events: SupervisorEvents = {
  say: (text) => out.say(text),
  started: () => void writeStackFile().catch((error: Error) => out.say(`could not write ${stackFile}: ${error.message}`)),
  gaveUp: (name) => {
    out.say(`${name} keeps failing; stopping the stack (logs in ${logDir})`);
    void shutdown(1);
  },
};

function supervise(name: string, component: ComponentInit | undefined, launch: () => Promise<Started>): Supervised {
  const supervised = new Supervised(name, launch, events);
  parts.push({ supervised, component: component && { ...component, logFile: join(logDir, `${name}.log`) } });
  return supervised;
}

try {
  out.phase("preparing certificates and config");
  const pkiDir = join(state, "pki");
  await mkdir(pkiDir, { recursive: true });
  const pki = await loadOrCreateClusterPki(pkiDir);
  if (!existsSync(join(pkiDir, "gateway.crt"))) {
    await issueCertificate(pkiDir, pki.ca, { name: "gateway", commonName: "wharf-gateway", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], usage: "server" });
  }
  const configFile = join(state, "wharf.yaml");
  const controlPlaneState = join(state, "control-plane");
  const tenancyKubeconfig = join(pkiDir, "control-plane-upstream.kubeconfig");
  await ensureStackConfig(configFile, { pkiDir, logDir, gatewayPort: ports.gateway, servers: ports.apiservers.map((port) => `127.0.0.1:${port}`), tenancyKubeconfig });
  if (!existsSync(tokenFile)) await writeFile(tokenFile, randomBytes(24).toString("hex") + "\n", { mode: 0o600 });

  const storeEndpoint = `http://127.0.0.1:${ports.store}`;
  /** What the apiservers list as their etcd servers. */
  let storeEndpoints = [storeEndpoint];
  if (flags.postgres) {
    // PostgreSQL keeps its data in .wharf/postgres; the brains' data dirs are local copies, reloaded from it at every start.
    const postgresUrl = `postgres://postgres@127.0.0.1:${ports.postgres}/postgres?sslmode=disable`;
    const postgres = supervise("postgres", undefined, async () => {
      const server = await startPostgres({ dataDir: join(state, "postgres"), port: ports.postgres, echo: out.sink("postgres") });
      return { process: server.process, stop: () => server.stop() };
    });
    out.phase("starting PostgreSQL");
    await postgres.start();
    const brains = replicas.map(({ name, port, metricsPort }) =>
      supervise(name, { name, address: `http://127.0.0.1:${port}`, healthUrl: `http://127.0.0.1:${metricsPort}/healthz` }, async () => {
        const brain = await startBrainProcess({
          dataDir: join(state, name),
          port,
          metricsPort,
          echo: out.sink(name),
          extraArgs: ["--storage", "postgres", "--postgres-url", postgresUrl, "--name", name],
        });
        return { process: brain.process, stop: () => brain.stop({ keepData: true }) };
      }),
    );
    out.phase("starting 3 brains on PostgreSQL");
    // Together: one of them has to be elected leader.
    await Promise.all(brains.map((part) => part.start()));
    storeEndpoints = replicas.map(({ port }) => `http://127.0.0.1:${port}`);
  } else {
    const store = flags.etcd
      ? supervise("etcd", { name: "etcd", address: storeEndpoint, healthUrl: `${storeEndpoint}/health` }, async () =>
          startReferenceEtcd({ dataDir: join(state, "etcd"), port: ports.store, echo: out.sink("etcd") }))
      : supervise(
          "brain",
          { name: "brain", address: storeEndpoint, healthUrl: `http://127.0.0.1:${ports.storeMetrics}/healthz` },
          async () => {
            const brain = await startBrainProcess({ dataDir: join(state, "brain"), port: ports.store, metricsPort: ports.storeMetrics, echo: out.sink("brain") });
            return { process: brain.process, stop: () => brain.stop({ keepData: true }) };
          },
        );
    out.phase(`starting ${storeName}`);
    await store.start();
  }

  const apiservers = ports.apiservers.map((port, i) => {
    const name = apiserverNames[i]!;
    const url = `https://127.0.0.1:${port}`;
    return supervise(
      name,
      { name, address: url, healthUrl: `${url}/readyz`, healthyBody: "ok", caFile: pki.ca.certFile, clientCertFile: pki.admin.certFile, clientKeyFile: pki.admin.keyFile },
      () => startKubeApiserver({ etcdServers: storeEndpoints, pki, port, echo: out.sink(name) }),
    );
  });
  out.phase(`starting ${apiservers.length} kube-apiserver${apiservers.length > 1 ? "s" : ""} on ${flags.postgres ? "the brains" : storeName}`);
  await Promise.all(apiservers.map((part) => part.start()));
  out.phase("granting the gateway its TokenReviews");
  const adminKubeconfig = await writeKubeconfig(join(pkiDir, "admin-direct.kubeconfig"), `https://127.0.0.1:${ports.apiservers[0]}`, pki.ca.certFile, pki.admin);
  await grantTokenReviews(adminKubeconfig, await configuredReviewer(configFile, defaultReviewer), pkiDir);
  out.phase("granting the control plane its tenancy rights");
  await upstreamKubeconfig(adminKubeconfig, pki, `https://127.0.0.1:${ports.apiservers[0]}`, tenancyKubeconfig);

  const controlPlane = supervise("control-plane", { name: "control-plane", address: `xDS 127.0.0.1:${ports.xds}`, healthUrl: `${adminUrl}/healthz` }, async () => {
    const process = startProcess({
      name: "wharf control-plane",
      command: globalThis.process.execPath,
      args: [
        join(repoRoot, "control-plane", "dist", "cli.js"),
        "control-plane",
        "--config", configFile,
        "--state-dir", controlPlaneState,
        "--xds-listen", `127.0.0.1:${ports.xds}`,
        "--admin-token-file", tokenFile,
        "--admin-listen", `127.0.0.1:${ports.admin}`,
      ],
      logFile: join(logDir, "control-plane.process.log"),
      echo: out.sink("control-plane"),
    });
    await waitUntilReady(process, async () => (await fetch(`${adminUrl}/healthz`)).ok, 30_000);
    return { process, stop: () => process.stop() };
  });
  out.phase("starting the control plane");
  await controlPlane.start();

  const gatewayUrl = `https://127.0.0.1:${ports.gateway}`;
  // The gateway's xDS credentials, from the node CA the control plane made
  // in its state directory: they are what makes it the gateway.
  const gatewayCredentials = join(state, "envoy-gateway");
  await writeCredentials(gatewayCredentials, (await NodeCa.load(controlPlaneState)).issueNode({ name: "local-gateway", role: "gateway" }));
  const bootstrap = await renderXdsBootstrap({
    nodeId: "local-gateway",
    adminPort: ports.envoyAdmin,
    xdsAddress: `127.0.0.1:${ports.xds}`,
    credentialsDir: gatewayCredentials,
  });
  const envoyAdmin = `http://127.0.0.1:${ports.envoyAdmin}`;
  const envoy = supervise("envoy", { name: "envoy", address: gatewayUrl, healthUrl: `${envoyAdmin}/ready`, healthyBody: "LIVE" }, () =>
    startEnvoy({ bootstrap, adminPort: ports.envoyAdmin, echo: out.sink("envoy") }),
  );
  out.phase("starting Envoy (configured over xDS)");
  await envoy.start();
  out.phase(undefined);

  const kubeconfig = await writeKubeconfig(join(state, "kubeconfig"), gatewayUrl, pki.ca.certFile, pki.admin);
  const here = (path: string) => (path.startsWith(process.cwd()) ? relative(process.cwd(), path) || "." : path);
  const defaultStack = stackFile === join(process.cwd(), ".wharf", "stack.json");
  const statusCommand = defaultStack ? ".tools/bin/wharf status" : `.tools/bin/wharf status --stack ${here(stackFile)}`;
  const stackFlag = defaultStack ? "" : ` --stack ${here(stackFile)}`;
  const tenantCommand = `.tools/bin/wharf tenant create demo -o demo.kubeconfig${stackFlag}`;
  out.say(`ready. Everything listens on 127.0.0.1; state in ${here(state)}, logs in ${here(logDir)}.
  kubeconfig        ${here(kubeconfig)}   (server: ${gatewayUrl}, Envoy + the wharf gateway filter)
${
    flags.postgres
      ? replicas
          .map(({ name, port, metricsPort }) => `  ${name.padEnd(17)} http://127.0.0.1:${port}   metrics http://127.0.0.1:${metricsPort}/metrics`)
          .concat(`  ${"postgres".padEnd(17)} postgres://postgres@127.0.0.1:${ports.postgres}/postgres   (data in ${here(join(state, "postgres"))})`)
          .join("\n")
      : `  ${storeName.padEnd(17)} ${storeEndpoint}   ${flags.etcd ? "" : `metrics http://127.0.0.1:${ports.storeMetrics}/metrics`}`
  }
  kube-apiservers   ${ports.apiservers.map((port) => `https://127.0.0.1:${port}`).join("  ")}
  control plane     xDS 127.0.0.1:${ports.xds}, admin API ${adminUrl} (token: ${here(tokenFile)}), metrics ${adminUrl}/metrics
  Envoy admin       ${envoyAdmin}   (stats ${envoyAdmin}/stats/prometheus)
Try:
  KUBECONFIG=${here(kubeconfig)} .tools/bin/kubectl get --raw /version         # answered through Envoy
  ${statusCommand.padEnd(76)} # every part's health, what Envoy accepted
  edit ${here(configFile)}, e.g. qps: 1 under per-user, and run kubectl again   # live, Envoy keeps running
Tenants (virtual clusters on this one; docs/tenancy.md):
  ${tenantCommand.padEnd(76)} # a tenant, and its admin's kubeconfig (8h)
  ${"KUBECONFIG=demo.kubeconfig .tools/bin/kubectl get ns".padEnd(76)} # its own world, through the gateway
  ${`.tools/bin/wharf tenant kubeconfig demo --user ann --ttl 1h -o ann.kubeconfig${stackFlag}`.padEnd(76)} # more users; revoke, delete, list: wharf --help
Ctrl-C stops everything; data and certificates stay for the next start.`);
  await writeStackFile();
} catch (error) {
  out.say(`wharf failed to start: ${(error as Error).message}`);
  await shutdown(1);
}
