#!/usr/bin/env node
// The `wharf` command.
import { existsSync } from "node:fs";
import { chmod, readFile, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { stringify as stringifyYaml } from "yaml";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AdminService } from "@wharf/proto/wharf/admin/v1/admin_pb.js";
import { startControlPlane } from "./control-plane.js";
import { CredentialError, NodeCa, checkNodeIdentity, writeCredentials } from "./credentials/node-ca.js";
import { gatewayResources, staticBootstrap } from "./resources/index.js";
import { probeStack, readStackFile } from "./stack-health.js";
import { statusJson, statusText } from "./status-report.js";
import { ConfigError, loadConfigText } from "./config/load-config.js";
import { parseRef } from "./kube-source.js";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const defaultWasm = join(repo, "filters", "build", "gateway.wasm");
const defaultStackFile = join(".wharf", "stack.json");
const defaultStateDir = join(".wharf", "control-plane");

const usage = `Usage:
  wharf control-plane (--config FILE | --kube-resource NAMESPACE/NAME [--kubeconfig FILE])
                      [--xds-listen HOST:PORT] [--wasm PATH]
                      [--admin-token-file FILE [--admin-listen HOST:PORT]]
      Serves Envoy sidecars over ADS (SotW and delta) from a YAML config file
      or a GatewayConfig custom resource (deploy/crds/); every valid change is
      pushed live, an invalid one is refused and the last good one stays.
      --xds-listen defaults to 127.0.0.1:18000; --wasm to filters/build/gateway.wasm.
      With a token file, also serves the admin API (default 127.0.0.1:18001).
  wharf status [--admin URL --token-file FILE | --stack FILE] [--json]
      Connected Envoys, the versions each accepted, the last refusal; with a
      stack file (default .wharf/stack.json, written by \`npm start\`), also
      the health of every process of the stack. Exits 1 if anything is down.
  wharf config apply -f FILE [--admin URL] --token-file FILE
      Validates FILE and makes it the served config (and the config file).
  wharf envoy ca [--state-dir DIR]
      Creates the node CA in DIR (default .wharf/control-plane) unless it is
      there: what the control plane does on its first start, for setting up
      a cluster before it runs.
  wharf envoy credentials --role gateway|client-sidecar --node NAME --out DIR [--state-dir DIR]
      Issues a node's xDS credentials from the control plane's node CA (in
      --state-dir, default .wharf/control-plane): DIR/ca.crt, DIR/node.crt,
      DIR/node.key. The certificate fixes the node's role and name; the
      control plane serves each node by it alone.
  wharf envoy bootstrap --node NAME [--xds HOST:PORT] [--xds-server-name NAME] [--credentials DIR]
                        [--admin-port N] [--delta] [--configmap NAME]
      Prints an Envoy bootstrap (envoy/xds-bootstrap.yaml) for NAME that
      presents the credentials in DIR (default /etc/wharf/xds) to the
      control plane, or a ConfigMap NAME holding it (key bootstrap.yaml).
  wharf envoy static -f FILE [--admin-port N] [--wasm PATH]
      Prints a complete static Envoy config for the gateway FILE describes
      (certificates and the filter module inline): the same resources the
      control plane would push, for an Envoy without a control plane.
  wharf config validate -f FILE
      Checks a config file the way the control plane would.
  wharf tenant create NAME [--shared-view RESOURCE]... [-o FILE]
  wharf tenant delete NAME
  wharf tenant list
  wharf tenant kubeconfig NAME [--user U] [--group G]... [--ttl DURATION] [-o FILE]
  wharf tenant revoke NAME --user U
      Tenants (docs/tenancy.md) through the admin API (--admin URL --token-file
      FILE, or --stack FILE; default: the stack \`npm start\` runs). create sets the tenant up
      and prints its first kubeconfig (user admin, group system:masters, 8h);
      kubeconfig issues one for a user (default admin; --ttl e.g. 30m, 8h,
      at most 720h; issuing again renews); revoke refuses every certificate
      the user holds, at once; delete removes its credentials, then exactly
      its objects upstream. Kubeconfigs go to stdout, or to -o FILE (0600).
`;

function log(level: "info" | "warn" | "error", msg: string, fields: Record<string, unknown> = {}): void {
  process.stderr.write(JSON.stringify({ ts: new Date().toISOString(), level, msg, ...fields }) + "\n");
}

function fail(message: string): never {
  process.stderr.write(`wharf: ${message}\n`);
  process.exit(1);
}

function hostPort(value: string, fallbackPort: string): [string, number] {
  const [host = "127.0.0.1", port = fallbackPort] = value.split(/:(?=\d+$)/);
  return [host, Number(port)];
}

async function readToken(file: string | undefined): Promise<string> {
  if (!file) fail("the admin API needs --admin-token-file FILE (a secret of at least 16 characters)");
  return (await readFile(file, "utf8")).trim();
}

async function controlPlane(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: "string" },
      "xds-listen": { type: "string" },
      "xds-server-name": { type: "string", multiple: true },
      "state-dir": { type: "string" },
      wasm: { type: "string" },
      "admin-listen": { type: "string" },
      "admin-token-file": { type: "string" },
      "kube-resource": { type: "string" },
      kubeconfig: { type: "string" },
    },
  });
  if (!values.config === !values["kube-resource"]) fail("control-plane needs one of --config FILE or --kube-resource NAMESPACE/NAME");
  const [xdsHost, xdsPort] = hostPort(values["xds-listen"] ?? "127.0.0.1:18000", "18000");
  const [adminHost, adminPort] = hostPort(values["admin-listen"] ?? "127.0.0.1:18001", "18001");
  let running;
  try {
    running = await startControlPlane({
      stateDir: resolve(values["state-dir"] ?? defaultStateDir),
      xds: { host: xdsHost, port: xdsPort },
      xdsServerNames: values["xds-server-name"]?.flatMap((names) => names.split(",")),
      config: values["kube-resource"]
        ? { kubeResource: parseRef(values["kube-resource"]), kubeconfig: values.kubeconfig }
        : { file: values.config! },
      wasmFile: resolve(values.wasm ?? defaultWasm),
      admin: values["admin-token-file"] ? { token: await readToken(values["admin-token-file"]), host: adminHost, port: adminPort } : undefined,
      log,
    });
  } catch (error) {
    fail(values.config ? `${values.config}: ${(error as Error).message}` : (error as Error).message);
  }
  const stop = () => void running.stop().then(() => process.exit(0));
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  await running.watching;
}

function adminClient(values: { admin?: string; "token-file"?: string }, token: string) {
  const transport = createConnectTransport({
    baseUrl: values.admin ?? "http://127.0.0.1:18001",
    httpVersion: "1.1",
    interceptors: [
      (next) => (request) => {
        request.header.set("authorization", `Bearer ${token}`);
        return next(request);
      },
    ],
  });
  return createClient(AdminService, transport);
}

/** The admin client for a command given --admin/--token-file, or the stack `npm start` runs (--stack, default .wharf/stack.json). */
async function stackAdminClient(values: { admin?: string; "token-file"?: string; stack?: string }) {
  const stackFile = values.stack ?? (values.admin === undefined && existsSync(defaultStackFile) ? defaultStackFile : undefined);
  const stack = stackFile === undefined ? undefined : await readStackFile(stackFile).catch((error: Error) => fail(`${stackFile}: ${error.message}`));
  const admin = values.admin ?? (stack?.adminUrl || undefined);
  return adminClient({ admin }, await readToken(values["token-file"] ?? (stack?.adminTokenFile || undefined)));
}

/** "90s", "30m", "8h", "1h30m" → seconds. */
function parseDuration(text: string): number {
  const match = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(text);
  if (!match || text === "") fail(`--ttl ${text}: want a duration such as 30m, 8h or 1h30m`);
  return Number(match[1] ?? 0) * 3600 + Number(match[2] ?? 0) * 60 + Number(match[3] ?? 0);
}

async function writeKubeconfigOut(file: string | undefined, kubeconfig: string): Promise<void> {
  if (file === undefined) {
    process.stdout.write(kubeconfig);
    return;
  }
  await writeFile(file, kubeconfig, { mode: 0o600 });
  await chmod(file, 0o600);
}

async function tenant(sub: string | undefined, args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      admin: { type: "string" },
      "token-file": { type: "string" },
      stack: { type: "string" },
      "shared-view": { type: "string", multiple: true },
      user: { type: "string" },
      group: { type: "string", multiple: true },
      ttl: { type: "string" },
      output: { type: "string", short: "o" },
    },
  });
  const name = positionals[0];
  if (sub !== "list" && (name === undefined || positionals.length !== 1)) fail(`tenant ${sub ?? ""} needs one tenant NAME`);
  const client = await stackAdminClient(values);
  const refused = (error: Error) => fail(error.message);
  if (sub === "create") {
    const response = await client.createTenant({ name: name!, sharedViews: values["shared-view"] ?? [] }).catch(refused);
    await writeKubeconfigOut(values.output, response.kubeconfig);
    process.stderr.write(`tenant ${name} created${values.output ? `; kubeconfig for its admin in ${values.output}` : ""}\n`);
  } else if (sub === "delete") {
    const response = await client.deleteTenant({ name: name! }).catch(refused);
    const removed = Object.entries(response.deleted).map(([resource, count]) => `${count} ${resource}`);
    process.stdout.write(`tenant ${name} deleted${removed.length > 0 ? ` (removed upstream: ${removed.join(", ")})` : ""}\n`);
  } else if (sub === "list") {
    const response = await client.listTenants({}).catch(refused);
    for (const entry of response.tenants) {
      const certificates = Object.entries(entry.activeCertificates).map(([user, count]) => `${user}:${count}`).join(",") || "-";
      process.stdout.write(`${entry.name}\tcreated ${entry.createdAt}\tshared ${entry.sharedViews.join(",") || "-"}\tcertificates ${certificates}\n`);
    }
  } else if (sub === "kubeconfig") {
    const response = await client
      .issueTenantKubeconfig({ tenant: name!, user: values.user ?? "", groups: values.group ?? [], ttlSeconds: values.ttl === undefined ? 0 : parseDuration(values.ttl) })
      .catch(refused);
    await writeKubeconfigOut(values.output, response.kubeconfig);
    process.stderr.write(`expires ${response.expiresAt}\n`);
  } else if (sub === "revoke") {
    if (!values.user) fail("tenant revoke needs --user U");
    const response = await client.revokeTenantUser({ tenant: name!, user: values.user }).catch(refused);
    process.stdout.write(`revoked ${response.revokedCertificates} certificate(s) of ${values.user} in tenant ${name}\n`);
  } else {
    fail(`tenant ${sub ?? ""}: want create, delete, list, kubeconfig or revoke`);
  }
}

async function status(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { admin: { type: "string" }, "token-file": { type: "string" }, json: { type: "boolean" }, stack: { type: "string" } },
  });
  // In a checkout where `npm start` runs, its stack file says where everything is.
  const stackFile = values.stack ?? (values.admin === undefined && existsSync(defaultStackFile) ? defaultStackFile : undefined);
  const stack = stackFile === undefined ? undefined : await readStackFile(stackFile).catch((error: Error) => fail(`${stackFile}: ${error.message}`));
  const admin = values.admin ?? (stack?.adminUrl || undefined);
  const client = adminClient({ admin }, await readToken(values["token-file"] ?? (stack?.adminTokenFile || undefined)));
  const [health, response] = await Promise.all([
    stack === undefined ? undefined : probeStack(stack),
    client.getStatus({}).catch((error: Error) => error),
  ]);
  if (values.json) {
    process.stdout.write(statusJson(health, response));
  } else {
    if (response instanceof Error) process.stderr.write(`wharf: control plane admin API: ${response.message}\n`);
    process.stdout.write(statusText(health, response instanceof Error ? undefined : response));
  }
  const healthy = (health ?? []).every((probe) => probe.healthy) && !(response instanceof Error);
  if (!healthy) process.exitCode = 1;
}

async function apply(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { file: { type: "string", short: "f" }, admin: { type: "string" }, "token-file": { type: "string" } } });
  if (!values.file) fail("config apply needs -f FILE");
  const client = adminClient(values, await readToken(values["token-file"]));
  const response = await client.applyConfig({ yaml: await readFile(values.file, "utf8") }).catch((error: Error) => fail(error.message));
  process.stdout.write(`applied as version ${response.version}\n`);
}

async function envoyBootstrap(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      node: { type: "string" },
      xds: { type: "string" },
      "admin-port": { type: "string" },
      delta: { type: "boolean" },
      cluster: { type: "string" },
      "xds-server-name": { type: "string" },
      credentials: { type: "string" },
      configmap: { type: "string" },
    },
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
    XDS_SERVER_NAME: values["xds-server-name"] ?? "wharf-control-plane.wharf-system.svc",
    XDS_CREDENTIALS_DIR: values.credentials ?? "/etc/wharf/xds",
  };
  const bootstrap = template.replace(/\$\{([A-Z_]+)\}/g, (_, name: string) => values_[name] ?? fail(`template placeholder ${name} has no value`));
  if (values.configmap === undefined) {
    process.stdout.write(bootstrap);
    return;
  }
  // deploy/*/bootstrap-configmap.yaml are this output; a test keeps them equal.
  const configMap = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: values.configmap }, data: { "bootstrap.yaml": bootstrap } };
  process.stdout.write(`# Generated by: wharf envoy bootstrap ${args.join(" ")}\n${stringifyYaml(configMap, { blockQuote: "literal", lineWidth: 0 })}`);
}

async function envoyCa(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { "state-dir": { type: "string" } } });
  const dir = resolve(values["state-dir"] ?? defaultStateDir);
  await NodeCa.loadOrCreate(dir);
  process.stdout.write(`node CA: ${join(dir, "node-ca.crt")}, ${join(dir, "node-ca.key")} (keep the key secret)\n`);
}

async function envoyCredentials(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { role: { type: "string" }, node: { type: "string" }, out: { type: "string" }, "state-dir": { type: "string" } } });
  if (!values.role || !values.node || !values.out) fail("envoy credentials needs --role gateway|client-sidecar --node NAME --out DIR");
  try {
    const identity = checkNodeIdentity(values.node, values.role);
    const ca = await NodeCa.load(resolve(values["state-dir"] ?? defaultStateDir));
    const files = await writeCredentials(values.out, ca.issueNode(identity));
    process.stdout.write(`${identity.role} node ${identity.name}: ${files.caFile}, ${files.certFile}, ${files.keyFile}\n`);
  } catch (error) {
    if (error instanceof CredentialError) fail(error.message);
    throw error;
  }
}

/** Loads a config file the way the control plane would, or exits naming what is wrong. */
async function loadConfigFile(file: string, wasmFile = defaultWasm) {
  try {
    return await loadConfigText(await readFile(file, "utf8"), { baseDir: dirname(resolve(file)), wasmFile });
  } catch (error) {
    fail(error instanceof ConfigError ? `${file}: ${error.message}` : (error as Error).message);
  }
}

async function validate(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { file: { type: "string", short: "f" } } });
  if (!values.file) fail("config validate needs -f FILE");
  await loadConfigFile(values.file);
  process.stdout.write(`${values.file}: valid\n`);
}

async function envoyStatic(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { file: { type: "string", short: "f" }, "admin-port": { type: "string" }, wasm: { type: "string" } } });
  if (!values.file) fail("envoy static needs -f FILE");
  const { deployment } = await loadConfigFile(values.file, values.wasm);
  const adminPort = Number(values["admin-port"] ?? "9901");
  if (!Number.isInteger(adminPort) || adminPort <= 0 || adminPort > 65535) fail(`--admin-port ${values["admin-port"]}: not a TCP port`);
  process.stdout.write(stringifyYaml(staticBootstrap(gatewayResources(deployment), adminPort), { lineWidth: 0 }));
}

const [command, sub, ...rest] = process.argv.slice(2);
if (command === "control-plane") await controlPlane(process.argv.slice(3));
else if (command === "envoy" && sub === "bootstrap") await envoyBootstrap(rest);
else if (command === "envoy" && sub === "static") await envoyStatic(rest);
else if (command === "envoy" && sub === "credentials") await envoyCredentials(rest);
else if (command === "envoy" && sub === "ca") await envoyCa(rest);
else if (command === "config" && sub === "validate") await validate(rest);
else if (command === "config" && sub === "apply") await apply(rest);
else if (command === "status") await status(process.argv.slice(3));
else if (command === "tenant") await tenant(sub, rest);
else {
  process.stdout.write(usage);
  if (command !== undefined && command !== "--help" && command !== "help") process.exit(2);
}
