// `npm run bench:control-plane`: how long a configuration change takes from
// the control plane to an Envoy's acknowledgement, for growing numbers of
// pools (clusters, endpoints, routes) and dispatch policies, over SotW and
// delta ADS, against a real Envoy. Writes bench/results/control-plane.*.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { wasmPath } from "@wharf/filters";
import {
  createClusterPki,
  freePort,
  issueCertificate,
  makeWorkDir,
  removeWorkDir,
  startXdsEnvoy,
  type Envoy,
} from "@wharf/testkit";
import { encodeGatewayConfig } from "../filters/src/gateway/harness.js";
import { gatewayResources, type SingleClusterDeployment } from "../control-plane/src/resources/gateway-resources.js";
import { startControlPlane } from "../control-plane/src/control-plane.js";
import { writeCredentials } from "../control-plane/src/credentials/node-ca.js";
import { Snapshot, pushOrder } from "../control-plane/src/xds/snapshot.js";
import { writeResults, type Row } from "./report.js";

const sizes = [
  { pools: 10, policies: 100 },
  { pools: 100, policies: 1000 },
  { pools: 500, policies: 3000 },
];
const rounds = 5;

const dir = await makeWorkDir("bench-xds");
const pki = await createClusterPki(dir);
const serving = await issueCertificate(dir, pki.ca, { name: "envoy", commonName: "envoy", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], usage: "server" });
const pem = (file: string) => readFileSync(file, "utf8");
const controlPlane = await startControlPlane({ stateDir: join(dir, "control-plane"), xds: { host: "127.0.0.1", port: 0 } });
const rows: Row[] = [];

function deployment(pools: number, policies: number, marker: number): SingleClusterDeployment {
  const names = Array.from({ length: pools }, (_, i) => `pool-${i}`);
  return {
    listenPort: 0,
    servingCert: pem(serving.certFile),
    servingKey: pem(serving.keyFile),
    clientCa: pem(pki.ca.certFile),
    upstreamCa: pem(pki.ca.certFile),
    frontProxyCert: pem(pki.frontProxyClient.certFile),
    frontProxyKey: pem(pki.frontProxyClient.keyFile),
    wasmModule: readFileSync(wasmPath("gateway")),
    gatewayConfig: encodeGatewayConfig({
      policies: Array.from({ length: policies }, (_, i) => ({
        name: `policy-${i}-${marker}`,
        rules: [{ namespaces: [`tenant-${i}`], verbs: ["get", "list", "watch"] }],
        action: { target: { case: "upstream" as const, value: names[i % pools]! } },
      })),
      defaultAction: { target: { case: "upstream", value: names[0]! } },
    }),
    // Port 1: nothing listens; health checks fail quietly, which is fine here.
    pools: names.map((name) => ({ name, endpoints: [{ host: "127.0.0.1", port: 1 }] })),
    defaultPool: names[0]!,
  };
}

async function waitForAck(nodeId: string, version: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const node = controlPlane.cache.nodeStatus(nodeId);
    if (node && pushOrder.every((kind) => node.acked[kind] === version)) return;
    if (node?.lastNack?.version === version) throw new Error(`NACK: ${node.lastNack.message}`);
    if (Date.now() > deadline) throw new Error(`no ACK of version ${version}: ${JSON.stringify(node)}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

let envoy: Envoy | undefined;
try {
  for (const apiType of ["GRPC", "DELTA_GRPC"] as const) {
    const nodeId = `bench-${apiType.toLowerCase().replace("_", "-")}`;
    let version = 0;
    const listenPort = await freePort();
    const set = (pools: number, policies: number) => {
      const snapshot = Snapshot.build(String(++version), gatewayResources({ ...deployment(pools, policies, version), listenPort }));
      controlPlane.cache.setNodeSnapshot(nodeId, snapshot);
      return snapshot.version;
    };
    set(1, 1);
    const credentialsDir = join(dir, `credentials-${nodeId}`);
    await writeCredentials(credentialsDir, controlPlane.ca.issueNode({ name: nodeId, role: "gateway" }));
    envoy = await startXdsEnvoy({ nodeId, xdsAddress: controlPlane.xdsAddress, credentialsDir, apiType });
    await waitForAck(nodeId, String(version));
    for (const { pools, policies } of sizes) {
      set(pools, policies); // first push of this size: not timed (Envoy creates clusters)
      await waitForAck(nodeId, String(version));
      const times: number[] = [];
      for (let round = 0; round < rounds; round++) {
        const started = performance.now();
        const pushed = set(pools, policies); // new policy names: the filter config (ECDS) changes
        await waitForAck(nodeId, pushed);
        times.push(performance.now() - started);
      }
      times.sort((a, b) => a - b);
      const label = `${pools} pools, ${policies} policies`;
      rows.push({ workload: label, target: apiType === "GRPC" ? "sotw" : "delta", opsPerSecond: 1000 / times[Math.floor(rounds / 2)]!, p50Ms: times[Math.floor(rounds / 2)]!, p99Ms: times[rounds - 1]!, rssMb: 0 });
      console.error(`${apiType} ${label}: median ${times[Math.floor(rounds / 2)]!.toFixed(1)} ms, max ${times[rounds - 1]!.toFixed(1)} ms`);
    }
    await envoy.stop();
    envoy = undefined;
  }
} finally {
  await envoy?.stop();
  await controlPlane.stop();
  await removeWorkDir(dir);
}

const table = [
  "| size | ADS variant | push → ACK median ms | max ms |",
  "|---|---|---:|---:|",
  ...rows.map((row) => `| ${row.workload} | ${row.target} | ${row.p50Ms.toFixed(1)} | ${row.p99Ms.toFixed(1)} |`),
].join("\n");
writeResults(
  "control-plane",
  rows,
  { rounds },
  "Control plane: configuration change → Envoy ACK",
  `${rounds} changes per size (each a new gateway-filter config; pools = clusters + endpoint sets + routes), timed from building the snapshot to Envoy acknowledging every resource kind.`,
  table,
);
console.log(table);
