// The one validator for the control plane's configuration. YAML (or any
// JSON-shaped source) in; a checked GatewayDeployment out, or a ConfigError
// naming the field. Nothing is pushed unless this returns.
import { readFile } from "node:fs/promises";
import { isAbsolute, resolve } from "node:path";
import { create, fromJson, toBinary, type JsonValue } from "@bufbuild/protobuf";
import { ConfigSchema, type Config } from "@wharf/proto/wharf/config/v1/config_pb.js";
import { GatewayConfigSchema } from "@wharf/proto/wharf/gateway/v1/gateway_pb.js";
import { parse } from "yaml";
import type { GatewayDeployment, UpstreamPool } from "../resources/gateway-resources.js";

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
}

export async function loadConfigText(text: string, options: LoadOptions): Promise<{ config: Config; deployment: GatewayDeployment }> {
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
  return { config, deployment: await toDeployment(config, options) };
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
  const upstream = config.upstreamCluster;
  if (!upstream) throw new ConfigError("upstream_cluster", "required");
  if (upstream.pools.length === 0) throw new ConfigError("upstream_cluster.pools", "at least one pool is required");
  const poolNames = uniqueNames("upstream_cluster.pools", upstream.pools.map((pool) => pool.name));
  const pools: UpstreamPool[] = upstream.pools.map((pool, index) => {
    if (pool.servers.length === 0) throw new ConfigError(`upstream_cluster.pools[${index}].servers`, "at least one server is required");
    return {
      name: pool.name,
      endpoints: pool.servers.map((server, at) => {
        const match = /^([^:\s]+|\[[0-9a-f:]+\]):(\d{1,5})$/i.exec(server);
        const port = Number(match?.[2]);
        if (!match || port < 1 || port > 65535) throw new ConfigError(`upstream_cluster.pools[${index}].servers[${at}]`, `"${server}" is not host:port`);
        return { host: match[1]!.replace(/^\[|\]$/g, ""), port };
      }),
    };
  });
  if (!poolNames.has(upstream.defaultPool)) throw new ConfigError("upstream_cluster.default_pool", `names no pool ("${upstream.defaultPool}")`);
  const schemaNames = uniqueNames("upstream_cluster.flow_control_schemas", upstream.flowControlSchemas.map((schema) => schema.name));
  uniqueNames("upstream_cluster.dispatch_policies", upstream.dispatchPolicies.map((policy) => policy.name));
  upstream.dispatchPolicies.forEach((policy, index) => {
    const field = `upstream_cluster.dispatch_policies[${index}]`;
    if (policy.rules.length === 0) throw new ConfigError(`${field}.rules`, "at least one rule is required");
    const target = policy.action?.target;
    if (target?.case === "upstream" && !poolNames.has(target.value)) throw new ConfigError(`${field}.action.upstream`, `names no pool ("${target.value}")`);
    const schema = policy.action?.flowControl ?? "";
    if (schema !== "" && !schemaNames.has(schema)) throw new ConfigError(`${field}.action.flow_control`, `names no flow-control schema ("${schema}")`);
  });
  upstream.flowControlSchemas.forEach((schema, index) => {
    if (!(schema.qps >= 0)) throw new ConfigError(`upstream_cluster.flow_control_schemas[${index}].qps`, "must be >= 0");
  });
  if (upstream.tokenReview && !poolNames.has(upstream.tokenReview.cluster)) {
    throw new ConfigError("upstream_cluster.token_review.cluster", `names no pool ("${upstream.tokenReview.cluster}")`);
  }

  const gatewayConfig = toBinary(
    GatewayConfigSchema,
    create(GatewayConfigSchema, {
      policies: upstream.dispatchPolicies,
      flowControlSchemas: upstream.flowControlSchemas,
      defaultAction: { target: { case: "upstream", value: upstream.defaultPool } },
      tokenReview: upstream.tokenReview,
    }),
  );
  return {
    listenAddress: listener.address || "127.0.0.1",
    listenPort: listener.port || 7443,
    servingCert: await readPem("listener.cert_file", listener.certFile, options.baseDir),
    servingKey: await readPem("listener.key_file", listener.keyFile, options.baseDir),
    clientCa: await readPem("listener.client_ca_file", listener.clientCaFile, options.baseDir),
    upstreamCa: await readPem("upstream_cluster.ca_file", upstream.caFile, options.baseDir),
    frontProxyCert: await readPem("upstream_cluster.client_cert_file", upstream.clientCertFile, options.baseDir),
    frontProxyKey: await readPem("upstream_cluster.client_key_file", upstream.clientKeyFile, options.baseDir),
    wasmModule: await readWasm(options.wasmFile),
    gatewayConfig,
    pools,
    defaultPool: upstream.defaultPool,
  };
}
