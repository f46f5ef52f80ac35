// `npm start`: the stack on this machine, in the foreground, until Ctrl-C:
//
//   kubectl ─TLS─▶ Envoy (gateway filter) ──▶ kube-apiserver ×2 ──▶ brain (RocksDB)
//                    └── xDS ◀── wharf control-plane (.wharf/wharf.yaml)
//
// Everything listens on 127.0.0.1 only. State lives in .wharf/ (git-ignored):
// brain's data, the cluster PKI, the control plane's config and admin token,
// and a kubeconfig that goes through Envoy. A second start reuses all of it.
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { stringify } from "yaml";
import {
  issueCertificate,
  loadOrCreateClusterPki,
  renderTemplate,
  repoRoot,
  startBrainProcess,
  startEnvoy,
  startKubeApiserver,
  startProcess,
  waitUntilReady,
  writeKubeconfig,
  type RunningProcess,
} from "@wharf/testkit";

function portFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined) return fallback;
  const port = Number(raw);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new Error(`${name}=${raw} is not a TCP port`);
  return port;
}

const state = process.env.WHARF_STATE_DIR ?? join(repoRoot, ".wharf");
const ports = {
  brain: portFromEnv("WHARF_BRAIN_PORT", 2379),
  apiservers: [portFromEnv("WHARF_APISERVER_PORT", 6443), portFromEnv("WHARF_APISERVER_PORT", 6443) + 1],
  gateway: portFromEnv("WHARF_GATEWAY_PORT", 7443),
  envoyAdmin: portFromEnv("WHARF_ENVOY_ADMIN_PORT", 9901),
  xds: portFromEnv("WHARF_XDS_PORT", 18000),
  admin: portFromEnv("WHARF_ADMIN_PORT", 18001),
};

const running: Array<{ stop(): Promise<void> }> = [];
let stopping = false;
async function shutdown(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    for (const part of running.reverse()) await part.stop().catch(() => undefined);
  }
  process.exit(code);
}
process.on("SIGINT", () => void shutdown(0));
process.on("SIGTERM", () => void shutdown(0));

/** A sample config for the two apiservers; written once, then the user's to edit. */
function sampleConfig(pki: string): string {
  const servers = ports.apiservers.map((port) => `127.0.0.1:${port}`);
  return `# wharf control-plane config (docs/config.md). Edit and save: changes are live.\n${stringify({
    listener: {
      port: ports.gateway,
      cert_file: join(pki, "gateway.crt"),
      key_file: join(pki, "gateway.key"),
      client_ca_file: join(pki, "cluster-ca.crt"),
    },
    upstream_cluster: {
      pools: [
        { name: "main", servers },
        { name: "watches", servers: [servers[1]] },
      ],
      default_pool: "main",
      ca_file: join(pki, "cluster-ca.crt"),
      client_cert_file: join(pki, "front-proxy-client.crt"),
      client_key_file: join(pki, "front-proxy-client.key"),
      token_review: { cluster: "main", authority: "localhost" },
      flow_control_schemas: [
        { name: "per-user", qps: 200, burst: 400, max_inflight: 400, max_watches: 2000, per_user: true },
        { name: "system", exempt: true },
      ],
      dispatch_policies: [
        { name: "controllers", rules: [{ service_accounts: ["kube-system/*"] }], action: { upstream: "main", flow_control: "system" } },
        { name: "watches", rules: [{ verbs: ["watch"] }], action: { upstream: "watches", flow_control: "per-user" } },
        { name: "everyone", rules: [{ users: ["*"] }], action: { upstream: "main", flow_control: "per-user" } },
      ],
    },
  })}`;
}

try {
  const pkiDir = join(state, "pki");
  await mkdir(pkiDir, { recursive: true });
  const pki = await loadOrCreateClusterPki(pkiDir);
  if (!existsSync(join(pkiDir, "gateway.crt"))) {
    await issueCertificate(pkiDir, pki.ca, { name: "gateway", commonName: "wharf-gateway", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], usage: "server" });
  }
  const configFile = join(state, "wharf.yaml");
  if (!existsSync(configFile)) await writeFile(configFile, sampleConfig(pkiDir));
  const tokenFile = join(state, "admin-token");
  if (!existsSync(tokenFile)) await writeFile(tokenFile, randomBytes(24).toString("hex") + "\n", { mode: 0o600 });

  const brain = await startBrainProcess({ dataDir: join(state, "brain"), port: ports.brain });
  running.push({ stop: () => brain.stop({ keepData: true }) });
  const apiservers = await Promise.all(ports.apiservers.map((port) => startKubeApiserver({ etcdServers: [brain.endpoint], pki, port })));
  running.push(...apiservers);

  const controlPlane: RunningProcess = startProcess({
    name: "wharf control-plane",
    command: process.execPath,
    args: [
      join(repoRoot, "control-plane", "dist", "cli.js"),
      "control-plane",
      "--config", configFile,
      "--xds-listen", `127.0.0.1:${ports.xds}`,
      "--admin-token-file", tokenFile,
      "--admin-listen", `127.0.0.1:${ports.admin}`,
    ],
    logFile: join(state, "control-plane.log"),
  });
  running.push(controlPlane);
  await waitUntilReady(controlPlane, async () => controlPlane.logTail(20).includes("admin API serving"), 30_000);

  const envoy = await startEnvoy({
    bootstrap: await renderTemplate(join(repoRoot, "envoy", "xds-bootstrap.yaml"), {
      NODE_ID: "local-sidecar",
      NODE_CLUSTER: "wharf-gateway",
      ADMIN_PORT: ports.envoyAdmin,
      XDS_HOST: "127.0.0.1",
      XDS_PORT: ports.xds,
      XDS_API_TYPE: "GRPC",
    }),
    adminPort: ports.envoyAdmin,
  });
  running.push(envoy);

  const gatewayUrl = `https://127.0.0.1:${ports.gateway}`;
  const kubeconfig = await writeKubeconfig(join(state, "kubeconfig"), gatewayUrl, pki.ca.certFile, pki.admin);
  console.log(`wharf is up (loopback only; state in ${state}):
  brain             ${brain.endpoint}   metrics ${brain.metricsUrl}/metrics
  kube-apiservers   ${apiservers.map((server) => server.url).join("  ")}   (on brain)
  control plane     xDS 127.0.0.1:${ports.xds}, admin http://127.0.0.1:${ports.admin} (token in ${tokenFile})
  gateway           ${gatewayUrl}   (Envoy + wharf gateway filter; admin ${envoy.adminUrl})

Try:
  export KUBECONFIG=${kubeconfig}
  .tools/bin/kubectl get ns
  node control-plane/dist/cli.js status --admin http://127.0.0.1:${ports.admin} --token-file ${tokenFile}
  edit ${configFile} (rules, limits, pools): Envoy takes it live
Ctrl-C stops everything; data and certificates stay for the next start.`);

  const exited = await Promise.race([
    brain.process.exited.then(() => "brain"),
    ...apiservers.map((server) => server.process.exited.then(() => "kube-apiserver")),
    controlPlane.exited.then(() => "control plane"),
    envoy.process.exited.then(() => "envoy"),
  ]);
  if (!stopping) {
    console.error(`${exited} exited unexpectedly; stopping the rest.`);
    await shutdown(1);
  }
} catch (error) {
  console.error(`wharf failed to start: ${(error as Error).message}`);
  await shutdown(1);
}
