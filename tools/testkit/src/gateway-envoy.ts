import { readFile } from "node:fs/promises";
import type { JsonObject } from "@bufbuild/protobuf";
import { gatewayResources, staticBootstrap } from "@wharf/control-plane/resources";
import type { ClusterPki } from "./cluster-pki.js";
import { startEnvoy, type Envoy } from "./envoy.js";
import { freePort } from "./ports.js";
import type { KeyPair } from "./pki.js";

export interface GatewayEnvoyOptions {
  pki: ClusterPki;
  /** Envoy's own serving certificate, signed by pki.ca. */
  serving: KeyPair;
  wasmFile: string;
  /** Encoded wharf.gateway.v1.GatewayConfig. */
  gatewayConfig: Uint8Array;
  /** kube-apiserver URLs of each pool; pool-a takes what the filter sends nowhere else. */
  poolA: string[];
  poolB: string[];
  /** The name each pool's apiservers must present (default: the endpoint's host, 127.0.0.1). */
  serverNames?: { "pool-a"?: string; "pool-b"?: string };
  listenPort?: number;
  adminPort?: number;
  /** More CAs (PEM) the listener trusts for client certificates besides pki.ca, e.g. tenant CAs. */
  extraClientCas?: string[];
  /** Edits the bootstrap before Envoy starts (e.g. a variant without the filter). */
  transform?: (bootstrap: JsonObject) => JsonObject;
}

export interface GatewayEnvoy extends Envoy {
  /** https://127.0.0.1:PORT, the gateway listener. */
  url: string;
}

function pool(name: string, urls: string[], serverName: string | undefined) {
  return { name, endpoints: urls.map((url) => ({ host: "127.0.0.1", port: Number(new URL(url).port) })), ...(serverName ? { serverName } : {}) };
}

/**
 * Starts Envoy with the gateway the control plane would push for these
 * apiservers (its resource builder, as one static bootstrap), in front of
 * kube-apiservers of one PKI.
 */
export async function startGatewayEnvoy(options: GatewayEnvoyOptions): Promise<GatewayEnvoy> {
  const adminPort = options.adminPort ?? (await freePort());
  const listenPort = options.listenPort ?? (await freePort());
  const pem = (file: string) => readFile(file, "utf8");
  const resources = gatewayResources({
    listenPort,
    servingCert: await pem(options.serving.certFile),
    servingKey: await pem(options.serving.keyFile),
    clientCa: [await pem(options.pki.ca.certFile), ...(options.extraClientCas ?? [])].join("\n"),
    upstreamCa: await pem(options.pki.ca.certFile),
    frontProxyCert: await pem(options.pki.frontProxyClient.certFile),
    frontProxyKey: await pem(options.pki.frontProxyClient.keyFile),
    wasmModule: await readFile(options.wasmFile),
    gatewayConfig: options.gatewayConfig,
    pools: [pool("pool-a", options.poolA, options.serverNames?.["pool-a"]), pool("pool-b", options.poolB, options.serverNames?.["pool-b"])],
    defaultPool: "pool-a",
  });
  const bootstrap = staticBootstrap(resources, adminPort);
  const envoy = await startEnvoy({ bootstrap: JSON.stringify(options.transform ? options.transform(bootstrap) : bootstrap), adminPort });
  return { ...envoy, url: `https://127.0.0.1:${listenPort}` };
}
