// `npm start`: the stack on this machine, in the foreground, until Ctrl-C:
//   brain (etcd v3 on RocksDB) ← kube-apiserver ← Envoy with the gateway filter ← kubectl
// Everything listens on 127.0.0.1 only. State lives in .wharf/ (git-ignored):
// brain's data, the cluster PKI, and a kubeconfig that goes through Envoy.
// The control plane (xDS) replaces the static Envoy config when it lands.
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { wasmPath } from "@wharf/filters";
import {
  issueCertificate,
  loadOrCreateClusterPki,
  repoRoot,
  startBrainProcess,
  startGatewayEnvoy,
  startKubeApiserver,
  writeKubeconfig,
  type Brain,
  type KubeApiserver,
} from "@wharf/testkit";
import { encodeGatewayConfig } from "../filters/src/gateway/harness.js";

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
  apiserver: portFromEnv("WHARF_APISERVER_PORT", 6443),
  gateway: portFromEnv("WHARF_GATEWAY_PORT", 7443),
  envoyAdmin: portFromEnv("WHARF_ENVOY_ADMIN_PORT", 9901),
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

try {
  await mkdir(join(state, "pki"), { recursive: true });
  const pki = await loadOrCreateClusterPki(join(state, "pki"));

  const brain: Brain = await startBrainProcess({ dataDir: join(state, "brain"), port: ports.brain });
  running.push({ stop: () => brain.stop({ keepData: true }) });

  const kube: KubeApiserver = await startKubeApiserver({ etcdServers: [brain.endpoint], pki, port: ports.apiserver });
  running.push(kube);

  const serving = await issueCertificate(join(state, "pki"), pki.ca, {
    name: "gateway",
    commonName: "wharf-gateway",
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1"],
    usage: "server",
  });
  const envoy = await startGatewayEnvoy({
    pki,
    serving,
    wasmFile: wasmPath("gateway"),
    // Until the control plane lands: everything to the one apiserver, every
    // user limited separately, bearer tokens verified by TokenReview.
    gatewayConfig: encodeGatewayConfig({
      flowControlSchemas: [{ name: "per-user", qps: 200, burst: 400, maxInflight: 400, maxWatches: 2000, perUser: true }],
      defaultAction: { target: { case: "upstream", value: "pool-a" }, flowControl: "per-user" },
      tokenReview: { cluster: "pool-a", authority: "localhost" },
    }),
    poolA: [kube.url],
    poolB: [kube.url],
    listenPort: ports.gateway,
    adminPort: ports.envoyAdmin,
  });
  running.push(envoy);

  const gatewayUrl = envoy.url;
  const kubeconfig = await writeKubeconfig(join(state, "kubeconfig"), gatewayUrl, pki.ca.certFile, pki.admin);
  const direct = await writeKubeconfig(join(state, "direct.kubeconfig"), kube.url, pki.ca.certFile, pki.admin);

  console.log(`wharf is up (loopback only; state in ${state}):
  brain           ${brain.endpoint}   metrics ${brain.metricsUrl}/metrics
  kube-apiserver  ${kube.url}   (on brain)
  gateway         ${gatewayUrl}   (Envoy + wharf gateway filter; admin ${envoy.adminUrl})

  export KUBECONFIG=${kubeconfig}
  .tools/bin/kubectl get --raw /readyz        # through Envoy and the gateway filter
  (${direct} talks to kube-apiserver directly.)
Ctrl-C stops everything; brain's data stays in ${join(state, "brain")}.`);

  const exited = await Promise.race([
    brain.process.exited.then(() => "brain"),
    kube.process.exited.then(() => "kube-apiserver"),
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
