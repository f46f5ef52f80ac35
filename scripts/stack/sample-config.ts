// The control plane's config for the local stack: written once from a
// sample, then the user's to edit. Only the apiserver addresses follow the
// stack (`--apiservers N`), so edits to rules and limits survive restarts.
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { isMap, isSeq, parseDocument, stringify } from "yaml";

export interface SampleConfigOptions {
  pkiDir: string;
  /** Where Envoy writes the access log (access.log). */
  logDir: string;
  gatewayPort: number;
  /** host:port of every kube-apiserver of the stack. */
  servers: string[];
  /** The control plane's own kubeconfig upstream, for tenancy (see upstreamKubeconfig in start.ts). */
  tenancyKubeconfig: string;
}

function sampleConfig({ pkiDir, logDir, gatewayPort, servers, tenancyKubeconfig }: SampleConfigOptions): string {
  return `# wharf control-plane config (docs/config.md). Edit and save: changes are live.
# npm start keeps the pools' server lists in step with --apiservers.
${stringify({
  listener: {
    port: gatewayPort,
    cert_file: join(pkiDir, "gateway.crt"),
    key_file: join(pkiDir, "gateway.key"),
    client_ca_file: join(pkiDir, "cluster-ca.crt"),
  },
  upstream_cluster: {
    pools: poolServers(servers).map(([name, members]) => ({ name, servers: members })),
    default_pool: "main",
    ca_file: join(pkiDir, "cluster-ca.crt"),
    client_cert_file: join(pkiDir, "front-proxy-client.crt"),
    client_key_file: join(pkiDir, "front-proxy-client.key"),
    token_review: { cluster: "main", authority: "localhost" },
    access_log: { path: join(logDir, "access.log") },
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
  tenancy: tenancySection(tenancyKubeconfig),
})}`;
}

// Tenants' kubeconfigs get the listener's address and its client CA (which
// signed the gateway's certificate); `wharf tenant create` adds tenants below.
const tenancySection = (kubeconfig: string) => ({ kubeconfig });

/** `main` balances over every apiserver; `watches` keeps long requests on the last one. */
function poolServers(servers: string[]): Array<[string, string[]]> {
  return [
    ["main", servers],
    ["watches", servers.slice(-1)],
  ];
}

/**
 * Writes the sample if there is no config yet, else points its pools at
 * `servers`. The sample is one `upstream_cluster`; a config the user turned
 * into `upstream_clusters` names its own servers and is left as it is.
 */
export async function ensureStackConfig(file: string, options: SampleConfigOptions): Promise<void> {
  if (!existsSync(file)) {
    await writeFile(file, sampleConfig(options));
    return;
  }
  const document = parseDocument(await readFile(file, "utf8"));
  const pools = document.getIn(["upstream_cluster", "pools"]);
  if (!isSeq(pools)) return;
  const plain = document.toJS() as { upstream_cluster: { pools: Array<{ name?: unknown; servers?: unknown }> } };
  let changed = false;
  // A config from before tenancy gets it (tenants are then one command away).
  if (!document.has("tenancy") && !document.has("upstream_clusters")) {
    document.set("tenancy", tenancySection(options.tenancyKubeconfig));
    changed = true;
  }
  for (const [name, members] of poolServers(options.servers)) {
    const pool = pools.items.find((item) => isMap(item) && item.get("name") === name);
    if (!isMap(pool)) continue;
    const current = plain.upstream_cluster.pools.find((item) => item.name === name)?.servers;
    if (JSON.stringify(current) === JSON.stringify(members)) continue;
    pool.set("servers", members);
    changed = true;
  }
  if (changed) await writeFile(file, document.toString());
}

/** The user the gateway sends TokenReviews as, per the config (default wharf:gateway). */
export async function configuredReviewer(file: string, fallback: string): Promise<string> {
  const reviewer = parseDocument(await readFile(file, "utf8")).getIn(["upstream_cluster", "token_review", "reviewer"]);
  return typeof reviewer === "string" && reviewer !== "" ? reviewer : fallback;
}
