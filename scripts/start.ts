// `npm start`: runs the stack on this machine, in the foreground, until Ctrl-C.
// For now that is Envoy with the minimal bootstrap and the hello filter; the
// brain, kube-apiservers and the control plane join as their issues land.
import { join } from "node:path";
import { wasmPath } from "@wharf/filters";
import { renderTemplate, repoRoot, startEnvoy } from "@wharf/testkit";

function portFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined) return fallback;
  const port = Number(raw);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) {
    throw new Error(`${name}=${raw} is not a TCP port`);
  }
  return port;
}

const adminPort = portFromEnv("WHARF_ENVOY_ADMIN_PORT", 9901);
const listenPort = portFromEnv("WHARF_ENVOY_PORT", 10000);
const bootstrap = await renderTemplate(join(repoRoot, "envoy", "minimal.yaml"), {
  ADMIN_PORT: adminPort,
  LISTEN_PORT: listenPort,
  WASM_PATH: wasmPath("hello"),
});
const envoy = await startEnvoy({ bootstrap, adminPort });

console.log(`wharf is up (loopback only):
  envoy listener  http://127.0.0.1:${listenPort}/
  envoy admin     ${envoy.adminUrl}/ready
  envoy log       ${envoy.process.logFile}
Ctrl-C stops it.`);

let stopping = false;
async function shutdown(): Promise<void> {
  if (stopping) return;
  stopping = true;
  await envoy.stop();
  process.exit(0);
}
process.on("SIGINT", () => void shutdown());
process.on("SIGTERM", () => void shutdown());
const code = await envoy.process.exited;
if (!stopping) {
  console.error(`envoy exited (code ${code}); last log lines:\n${envoy.process.logTail()}`);
  process.exit(1);
}
