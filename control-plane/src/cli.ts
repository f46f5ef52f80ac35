#!/usr/bin/env node
// The `wharf` command.
import { readFile, watch } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { ConfigError, loadConfigText } from "./config/load-config.js";
import { gatewayResources } from "./resources/gateway-resources.js";
import { SnapshotCache } from "./xds/cache.js";
import { Snapshot } from "./xds/snapshot.js";
import { startXdsServer } from "./xds/xds-server.js";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const defaultWasm = join(repo, "filters", "build", "gateway.wasm");

const usage = `Usage:
  wharf control-plane --config FILE [--xds-listen HOST:PORT] [--wasm PATH]
      Serves Envoy sidecars over ADS (SotW and delta) from a YAML config;
      every valid change to FILE is pushed live, an invalid one is refused.
      --xds-listen defaults to 127.0.0.1:18000; --wasm to filters/build/gateway.wasm.
  wharf envoy bootstrap --node NAME [--xds HOST:PORT] [--admin-port N] [--delta]
      Prints the sidecar's bootstrap (envoy/xds-bootstrap.yaml) for NAME.
  wharf config validate -f FILE
      Checks a config file the way the control plane would.
`;

function log(level: string, msg: string, fields: Record<string, unknown> = {}): void {
  process.stderr.write(JSON.stringify({ ts: new Date().toISOString(), level, msg, ...fields }) + "\n");
}

function fail(message: string): never {
  process.stderr.write(`wharf: ${message}\n`);
  process.exit(1);
}

async function load(file: string, wasmFile: string) {
  return loadConfigText(await readFile(file, "utf8"), { baseDir: dirname(resolve(file)), wasmFile });
}

async function controlPlane(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { config: { type: "string" }, "xds-listen": { type: "string" }, wasm: { type: "string" } } });
  if (!values.config) fail("control-plane needs --config FILE");
  const file = resolve(values.config);
  const wasmFile = resolve(values.wasm ?? defaultWasm);
  const [host = "127.0.0.1", port = "18000"] = (values["xds-listen"] ?? "127.0.0.1:18000").split(/:(?=\d+$)/);
  const cache = new SnapshotCache();
  let version = 0;
  const apply = async (): Promise<boolean> => {
    try {
      const { deployment } = await load(file, wasmFile);
      const snapshot = Snapshot.build(String(++version), gatewayResources(deployment));
      cache.setDefault(snapshot);
      log("info", "config applied", { file, version: snapshot.version });
      return true;
    } catch (error) {
      log("error", "config refused; the last good one stays live", { file, error: (error as Error).message });
      return false;
    }
  };
  if (!(await apply())) process.exit(1);
  const server = await startXdsServer(cache, Number(port), host);
  log("info", "control plane serving ADS", { address: server.address });
  const stop = () => void server.stop().then(() => process.exit(0));
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  // Editors replace files as often as they write them: watch the directory.
  let pending: NodeJS.Timeout | undefined;
  for await (const event of watch(dirname(file))) {
    if (event.filename !== null && resolve(dirname(file), event.filename) !== file) continue;
    clearTimeout(pending);
    pending = setTimeout(() => void apply(), 50);
  }
}

async function envoyBootstrap(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { node: { type: "string" }, xds: { type: "string" }, "admin-port": { type: "string" }, delta: { type: "boolean" }, cluster: { type: "string" } },
  });
  if (!values.node) fail("envoy bootstrap needs --node NAME");
  const [host = "127.0.0.1", port = "18000"] = (values.xds ?? "127.0.0.1:18000").split(/:(?=\d+$)/);
  const template = await readFile(join(repo, "envoy", "xds-bootstrap.yaml"), "utf8");
  const values_: Record<string, string> = {
    NODE_ID: values.node,
    NODE_CLUSTER: values.cluster ?? "wharf-gateway",
    ADMIN_PORT: values["admin-port"] ?? "9901",
    XDS_HOST: host,
    XDS_PORT: port,
    XDS_API_TYPE: values.delta ? "DELTA_GRPC" : "GRPC",
  };
  process.stdout.write(template.replace(/\$\{([A-Z_]+)\}/g, (_, name: string) => values_[name] ?? fail(`template placeholder ${name} has no value`)));
}

async function validate(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { file: { type: "string", short: "f" } } });
  if (!values.file) fail("config validate needs -f FILE");
  try {
    await load(values.file, defaultWasm);
    process.stdout.write(`${values.file}: valid\n`);
  } catch (error) {
    fail(error instanceof ConfigError ? `${values.file}: ${error.message}` : (error as Error).message);
  }
}

const [command, sub, ...rest] = process.argv.slice(2);
if (command === "control-plane") await controlPlane(process.argv.slice(3));
else if (command === "envoy" && sub === "bootstrap") await envoyBootstrap(rest);
else if (command === "config" && sub === "validate") await validate(rest);
else {
  process.stdout.write(usage);
  if (command !== undefined && command !== "--help" && command !== "help") process.exit(2);
}
