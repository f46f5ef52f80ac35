// The one validator for the control plane's configuration. YAML (or any
// JSON-shaped source) in; a checked GatewayDeployment out, or a ConfigError
// naming the field. Nothing is pushed unless this returns.
import { X509Certificate } from "node:crypto";
import { existsSync } from "node:fs";
import { access, readFile } from "node:fs/promises";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { create, fromJson, toBinary, type JsonValue } from "@bufbuild/protobuf";
import { ConfigSchema, type AccessLog, type ClientSidecar, type Config, type Tenancy, type UpstreamCluster } from "@wharf/proto/wharf/config/v1/config_pb.js";
import { GatewayConfigSchema } from "@wharf/proto/wharf/gateway/v1/gateway_pb.js";
import { parse } from "yaml";
import type { ClientSidecarDeployment } from "../resources/client-sidecar-resources.js";
import { accessLogFields, type AccessLogDeployment } from "../resources/access-log.js";
import { envoyClusterName, type GatewayDeployment, type UpstreamClusterDeployment, type UpstreamPool } from "../resources/gateway-resources.js";
import { tenantNameError } from "../tenancy/naming.js";
import { shareableViews } from "../tenancy/upstream.js";

export class ConfigError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
    this.name = "ConfigError";
  }
}

export interface LoadOptions {
  /** Relative file paths in the config resolve against this directory. */
  baseDir: string;
  /** The gateway filter's .wasm, read here and shipped to Envoy inline. */
  wasmFile: string;
  /**
   * The tenant filter's .wasm (default: tenant.wasm beside wasmFile), read
   * when the config has tenancy. Missing: tenants' requests pass the
   * gateway filter alone (identity mapped, nothing rewritten).
   */
  tenantWasmFile?: string;
}

/** The config's tenancy, checked: what the control plane needs besides each tenant's state. */
export interface TenancyConfig {
  /** Absolute path: the control plane's own upstream kubeconfig. */
  kubeconfig: string;
  /** The gateway URL written into tenant kubeconfigs. */
  server: string;
  /** PEM: the CA of the gateway's serving certificate, written into tenant kubeconfigs. */
  serverCa: string;
  tenants: Array<{ name: string; sharedViews: string[] }>;
  /** The tenant filter; undefined when it is not built. */
  filterModule?: Uint8Array;
}

/** A checked config: each role's part, ready for its resource builder. */
export interface LoadedConfig {
  config: Config;
  /** The gateway role. */
  deployment: GatewayDeployment;
  /** The client-sidecar role; undefined when the config has none. */
  clientSidecar?: ClientSidecarDeployment;
  /** Undefined when the config has no tenancy. */
  tenancy?: TenancyConfig;
}

export async function loadConfigText(text: string, options: LoadOptions): Promise<LoadedConfig> {
  let json: unknown;
  try {
    json = parse(text);
  } catch (error) {
    throw new ConfigError("(file)", `not valid YAML: ${(error as Error).message}`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) throw new ConfigError("(file)", "must be a mapping");
  let config: Config;
  try {
    config = fromJson(ConfigSchema, json as JsonValue, { ignoreUnknownFields: false });
  } catch (error) {
    // protobuf-es names the offending key or value in its message.
    throw new ConfigError("(config)", (error as Error).message.replace(/^cannot decode message wharf\.config\.v1\.Config from JSON: /, ""));
  }
  const deployment = await toDeployment(config, options);
  const tenancy = await toTenancy(config, deployment, options);
  const clientSidecar = config.clientSidecar && (await toClientSidecar(config.clientSidecar, options));
  return { config, deployment, clientSidecar, tenancy };
}

async function readPem(field: string, file: string, baseDir: string): Promise<string> {
  if (file === "") throw new ConfigError(field, "required");
  const path = isAbsolute(file) ? file : resolve(baseDir, file);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new ConfigError(field, `cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  if (!text.includes("-----BEGIN ")) throw new ConfigError(field, `${path} is not a PEM file`);
  return text;
}

async function readWasm(file: string): Promise<Uint8Array> {
  try {
    return await readFile(file);
  } catch (error) {
    throw new ConfigError("--wasm", `cannot read the gateway filter module ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}

function uniqueNames(field: string, names: string[]): Set<string> {
  const seen = new Set<string>();
  names.forEach((name, index) => {
    if (name === "") throw new ConfigError(`${field}[${index}].name`, "required");
    if (seen.has(name)) throw new ConfigError(`${field}[${index}].name`, `duplicate name "${name}"`);
    seen.add(name);
  });
  return seen;
}

async function toDeployment(config: Config, options: LoadOptions): Promise<GatewayDeployment> {
  const listener = config.listener;
  if (!listener) throw new ConfigError("listener", "required");
  const single = config.upstreamCluster;
  const several = config.upstreamClusters;
  if (single && several.length > 0) throw new ConfigError("upstream_clusters", "set upstream_cluster (one cluster on every hostname) or upstream_clusters, not both");
  if (!single && several.length === 0) throw new ConfigError("upstream_cluster", "required (or upstream_clusters)");
  let clusters: UpstreamClusterDeployment[];
  if (single) {
    for (const [field, value] of perClusterOnly(single)) {
      if (value) throw new ConfigError(`upstream_cluster.${field}`, "only in upstream_clusters; upstream_cluster serves every hostname with the listener's certificate and client CA");
    }
    const tls = { certFile: "listener.cert_file", keyFile: "listener.key_file", clientCaFile: "listener.client_ca_file" };
    clusters = [await toCluster(single, "upstream_cluster", "", [], tls, listener, options)];
  } else {
    for (const [field, value] of [["cert_file", listener.certFile], ["key_file", listener.keyFile], ["client_ca_file", listener.clientCaFile]] as const) {
      if (value) throw new ConfigError(`listener.${field}`, "only with upstream_cluster; each of upstream_clusters names its own");
    }
    uniqueNames("upstream_clusters", several.map((cluster) => cluster.name));
    const servedBy = new Map<string, number>();
    clusters = [];
    // One after another, so the first error in the file is the one reported.
    for (const [index, cluster] of several.entries()) {
      const field = `upstream_clusters[${index}]`;
      if (!clusterName.test(cluster.name)) throw new ConfigError(`${field}.name`, `"${cluster.name}" is not lowercase letters, digits and '-' (at most 63)`);
      if (cluster.hostnames.length === 0) throw new ConfigError(`${field}.hostnames`, "at least one hostname is required");
      cluster.hostnames.forEach((hostname, at) => {
        if (!isHostname(hostname)) throw new ConfigError(`${field}.hostnames[${at}]`, `"${hostname}" is not a lowercase DNS name or *.name`);
        const other = servedBy.get(hostname);
        if (other !== undefined) throw new ConfigError(`${field}.hostnames[${at}]`, `"${hostname}" is already served by upstream_clusters[${other}] ("${several[other]!.name}")`);
        servedBy.set(hostname, index);
      });
      const tls = { certFile: `${field}.cert_file`, keyFile: `${field}.key_file`, clientCaFile: `${field}.client_ca_file` };
      clusters.push(await toCluster(cluster, field, cluster.name, cluster.hostnames, tls, cluster, options));
    }
  }
  return {
    listenAddress: listener.address || "127.0.0.1",
    listenPort: listener.port || 7443,
    wasmModule: await readWasm(options.wasmFile),
    clusters,
  };
}

const clusterName = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const label = "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?";
const hostnamePattern = new RegExp(`^(\\*\\.)?(${label}\\.)*${label}$`);

// Lowercase only: Envoy matches the SNI without regard to case, so two
// spellings of one name in two clusters would be one name that the
// duplicate check could not see.
function isHostname(name: string): boolean {
  return name.length <= 253 && hostnamePattern.test(name);
}

function perClusterOnly(cluster: UpstreamCluster): Array<[string, boolean]> {
  return [
    ["name", cluster.name !== ""],
    ["hostnames", cluster.hostnames.length > 0],
    ["cert_file", cluster.certFile !== ""],
    ["key_file", cluster.keyFile !== ""],
    ["client_ca_file", cluster.clientCaFile !== ""],
  ];
}

function toAccessLog(log: AccessLog | undefined, field: string, baseDir: string): AccessLogDeployment | undefined {
  if (!log) return undefined;
  if (log.path === "") throw new ConfigError(`${field}.path`, "required");
  log.fields.forEach((name, index) => {
    if (!Object.hasOwn(accessLogFields, name)) throw new ConfigError(`${field}.fields[${index}]`, `"${name}" is not a field (${Object.keys(accessLogFields).join(", ")})`);
  });
  const percent = log.samplePercent === 0 ? 100 : log.samplePercent;
  if (!(percent > 0 && percent <= 100)) throw new ConfigError(`${field}.sample_percent`, `must be above 0 and at most 100 (got ${log.samplePercent})`);
  return { path: isAbsolute(log.path) ? log.path : resolve(baseDir, log.path), fields: [...new Set(log.fields)], samplePercent: percent };
}

/** One cluster, checked; `field` is where it sits in the config, for errors. */
async function toCluster(
  upstream: UpstreamCluster,
  field: string,
  name: string,
  hostnames: string[],
  tlsFields: { certFile: string; keyFile: string; clientCaFile: string },
  tls: { certFile: string; keyFile: string; clientCaFile: string },
  options: LoadOptions,
): Promise<UpstreamClusterDeployment> {
  if (upstream.pools.length === 0) throw new ConfigError(`${field}.pools`, "at least one pool is required");
  const poolNames = uniqueNames(`${field}.pools`, upstream.pools.map((pool) => pool.name));
  const pools: UpstreamPool[] = upstream.pools.map((pool, index) => {
    if (pool.servers.length === 0) throw new ConfigError(`${field}.pools[${index}].servers`, "at least one server is required");
    return {
      name: pool.name,
      endpoints: pool.servers.map((server, at) => {
        const match = /^([^:\s]+|\[[0-9a-f:]+\]):(\d{1,5})$/i.exec(server);
        const port = Number(match?.[2]);
        if (!match || port < 1 || port > 65535) throw new ConfigError(`${field}.pools[${index}].servers[${at}]`, `"${server}" is not host:port`);
        return { host: match[1]!.replace(/^\[|\]$/g, ""), port };
      }),
      ...(pool.serverName ? { serverName: pool.serverName } : {}),
    };
  });
  if (!poolNames.has(upstream.defaultPool)) throw new ConfigError(`${field}.default_pool`, `names no pool ("${upstream.defaultPool}")`);
  const schemaNames = uniqueNames(`${field}.flow_control_schemas`, upstream.flowControlSchemas.map((schema) => schema.name));
  uniqueNames(`${field}.dispatch_policies`, upstream.dispatchPolicies.map((policy) => policy.name));
  upstream.dispatchPolicies.forEach((policy, index) => {
    const at = `${field}.dispatch_policies[${index}]`;
    if (policy.rules.length === 0) throw new ConfigError(`${at}.rules`, "at least one rule is required");
    const target = policy.action?.target;
    if (target?.case === "upstream" && !poolNames.has(target.value)) throw new ConfigError(`${at}.action.upstream`, `names no pool ("${target.value}")`);
    const schema = policy.action?.flowControl ?? "";
    if (schema !== "" && !schemaNames.has(schema)) throw new ConfigError(`${at}.action.flow_control`, `names no flow-control schema ("${schema}")`);
  });
  upstream.flowControlSchemas.forEach((schema, index) => {
    if (!(schema.qps >= 0)) throw new ConfigError(`${field}.flow_control_schemas[${index}].qps`, "must be >= 0");
  });
  const accessLog = toAccessLog(upstream.accessLog, `${field}.access_log`, options.baseDir);
  const review = upstream.tokenReview;
  if (review && !poolNames.has(review.cluster)) throw new ConfigError(`${field}.token_review.cluster`, `names no pool ("${review.cluster}")`);

  const gatewayConfig = toBinary(
    GatewayConfigSchema,
    create(GatewayConfigSchema, {
      policies: upstream.dispatchPolicies,
      flowControlSchemas: upstream.flowControlSchemas,
      defaultAction: { target: { case: "upstream", value: upstream.defaultPool } },
      // The filter calls an Envoy cluster; pools of named clusters are prefixed.
      tokenReview: review && { ...review, cluster: envoyClusterName({ name }, review.cluster) },
      accessLog: accessLog !== undefined,
    }),
  );
  return {
    name,
    hostnames,
    ...(accessLog ? { accessLog } : {}),
    servingCert: await readPem(tlsFields.certFile, tls.certFile, options.baseDir),
    servingKey: await readPem(tlsFields.keyFile, tls.keyFile, options.baseDir),
    clientCa: await readPem(tlsFields.clientCaFile, tls.clientCaFile, options.baseDir),
    upstreamCa: await readPem(`${field}.ca_file`, upstream.caFile, options.baseDir),
    frontProxyCert: await readPem(`${field}.client_cert_file`, upstream.clientCertFile, options.baseDir),
    frontProxyKey: await readPem(`${field}.client_key_file`, upstream.clientKeyFile, options.baseDir),
    gatewayConfig,
    pools,
    defaultPool: upstream.defaultPool,
  };
}

const dnsName = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

function hostPortOf(field: string, value: string): { host: string; port: number } {
  const match = /^([^:\s]+|\[[0-9a-f:]+\]):(\d{1,5})$/i.exec(value);
  const port = Number(match?.[2]);
  if (!match || port < 1 || port > 65535) throw new ConfigError(field, `"${value}" is not host:port`);
  return { host: match[1]!.replace(/^\[|\]$/g, ""), port };
}

async function toClientSidecar(sidecar: ClientSidecar, options: LoadOptions): Promise<ClientSidecarDeployment> {
  if (sidecar.gateways.length === 0) throw new ConfigError("client_sidecar.gateways", "at least one gateway endpoint (host:port) is required");
  const gateways = sidecar.gateways.map((gateway, index) => hostPortOf(`client_sidecar.gateways[${index}]`, gateway));
  if (sidecar.gatewayServerName === "") throw new ConfigError("client_sidecar.gateway_server_name", "required: the DNS name the gateway's certificate carries");
  if (!dnsName.test(sidecar.gatewayServerName)) throw new ConfigError("client_sidecar.gateway_server_name", `"${sidecar.gatewayServerName}" is not a DNS name`);
  if (sidecar.port > 65535) throw new ConfigError("client_sidecar.port", `${sidecar.port} is not a TCP port`);
  const gatewayCa = await readPem("client_sidecar.gateway_ca_file", sidecar.gatewayCaFile, options.baseDir);
  // This role must never be sent a key: refuse a file that holds one.
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(gatewayCa)) throw new ConfigError("client_sidecar.gateway_ca_file", "holds a private key; give the CA certificate alone");
  const limit = sidecar.localLimit;
  if (limit && limit.requestsPerSecond === 0) throw new ConfigError("client_sidecar.local_limit.requests_per_second", "must be > 0 (leave local_limit out for no limit)");
  return {
    listenPort: sidecar.port || 8001,
    gateways,
    gatewayServerName: sidecar.gatewayServerName,
    gatewayCa,
    readRetries: sidecar.readRetries ?? 2,
    localLimit: limit && { requestsPerSecond: limit.requestsPerSecond, burst: limit.burst || limit.requestsPerSecond },
  };
}

/** The CA certificates in a PEM bundle. */
function certificatesIn(pem: string): X509Certificate[] {
  return (pem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? []).map((block) => new X509Certificate(block));
}

function signedBy(leafPem: string, bundle: string): boolean {
  const [leaf] = certificatesIn(leafPem);
  return leaf !== undefined && certificatesIn(bundle).some((ca) => leaf.checkIssued(ca) && leaf.verify(ca.publicKey));
}

const wildcardAddresses = new Set(["0.0.0.0", "::", "[::]"]);

async function toTenancy(config: Config, deployment: GatewayDeployment, options: LoadOptions): Promise<TenancyConfig | undefined> {
  const tenancy: Tenancy | undefined = config.tenancy;
  if (!tenancy) {
    if (config.tenants.length > 0) throw new ConfigError("tenancy.kubeconfig", "required with tenants: the control plane's kubeconfig for setting tenants up upstream");
    return undefined;
  }
  if (config.upstreamClusters.length > 0) throw new ConfigError("tenancy", "only with upstream_cluster (tenants share one upstream cluster)");
  if (tenancy.kubeconfig === "") throw new ConfigError("tenancy.kubeconfig", "required: the control plane's kubeconfig for setting tenants up upstream");
  const kubeconfig = isAbsolute(tenancy.kubeconfig) ? tenancy.kubeconfig : resolve(options.baseDir, tenancy.kubeconfig);
  await access(kubeconfig).catch((error: NodeJS.ErrnoException) => {
    throw new ConfigError("tenancy.kubeconfig", `cannot read ${kubeconfig}: ${error.code ?? error.message}`);
  });
  const seen = new Set<string>();
  const tenants = config.tenants.map((tenant, index) => {
    const field = `tenants[${index}]`;
    const nameError = tenantNameError(tenant.name);
    if (nameError !== undefined) throw new ConfigError(`${field}.name`, nameError);
    if (seen.has(tenant.name)) throw new ConfigError(`${field}.name`, `duplicate name "${tenant.name}"`);
    seen.add(tenant.name);
    const views = new Set<string>();
    tenant.sharedViews.forEach((view, at) => {
      if (!shareableViews.has(view)) throw new ConfigError(`${field}.shared_views[${at}]`, `"${view}" cannot be shared (one of ${[...shareableViews.keys()].join(", ")})`);
      if (views.has(view)) throw new ConfigError(`${field}.shared_views[${at}]`, `"${view}" is listed twice`);
      views.add(view);
    });
    return { name: tenant.name, sharedViews: [...views] };
  });
  const cluster = deployment.clusters[0]!;
  let server = tenancy.server;
  if (server === "") {
    const address = deployment.listenAddress ?? "127.0.0.1";
    if (wildcardAddresses.has(address)) throw new ConfigError("tenancy.server", `required when the listener listens on ${address}: the URL tenants' kubeconfigs reach the gateway at`);
    server = `https://${address.includes(":") ? `[${address}]` : address}:${deployment.listenPort}`;
  } else {
    let url: URL | undefined;
    try {
      url = new URL(server);
    } catch {
      url = undefined;
    }
    if (url?.protocol !== "https:" || url.pathname !== "/" || url.search !== "" || url.username !== "") throw new ConfigError("tenancy.server", `"${server}" is not an https://host[:port] URL`);
    server = url.origin;
  }
  let serverCa: string;
  if (tenancy.serverCaFile !== "") {
    serverCa = await readPem("tenancy.server_ca_file", tenancy.serverCaFile, options.baseDir);
    if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(serverCa)) throw new ConfigError("tenancy.server_ca_file", "holds a private key; give the CA certificate alone");
  } else {
    // Tenants' kubeconfigs must trust whatever signed the serving
    // certificate; the client CA is only the right default when it did.
    if (!signedBy(cluster.servingCert, cluster.clientCa)) {
      throw new ConfigError("tenancy.server_ca_file", "required: listener.cert_file is not signed by listener.client_ca_file, so name the CA that signed it (tenant kubeconfigs trust it)");
    }
    serverCa = certificatesIn(cluster.clientCa).map((ca) => ca.toString()).join("");
  }
  const tenantWasmFile = options.tenantWasmFile ?? join(dirname(options.wasmFile), "tenant.wasm");
  const filterModule = existsSync(tenantWasmFile) ? await readFile(tenantWasmFile) : undefined;
  return { kubeconfig, server, serverCa, tenants, ...(filterModule ? { filterModule } : {}) };
}
