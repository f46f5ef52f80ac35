import { join } from "node:path";
import type { ClusterPki } from "./cluster-pki.js";
import { startEnvoy, type Envoy } from "./envoy.js";
import { freePort } from "./ports.js";
import type { KeyPair } from "./pki.js";
import { renderTemplate } from "./template.js";
import { repoRoot } from "./tools.js";

export interface GatewayEnvoyOptions {
  pki: ClusterPki;
  /** Envoy's own serving certificate, signed by pki.ca. */
  serving: KeyPair;
  wasmFile: string;
  /** Encoded wharf.gateway.v1.GatewayConfig. */
  gatewayConfig: Uint8Array;
  /** kube-apiserver URLs of each pool. */
  poolA: string[];
  poolB: string[];
  listenPort?: number;
  adminPort?: number;
  /** Edits the rendered bootstrap (e.g. a variant without the filter). */
  transform?: (bootstrap: string) => string;
}

export interface GatewayEnvoy extends Envoy {
  /** https://127.0.0.1:PORT, the gateway listener. */
  url: string;
}

function endpoints(urls: string[]): string {
  const entries = urls.map((url) => `{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${new URL(url).port} } } } }`);
  return `[${entries.join(", ")}]`;
}

/** Renders envoy/gateway.yaml for kube-apiservers of one PKI and starts Envoy. */
export async function startGatewayEnvoy(options: GatewayEnvoyOptions): Promise<GatewayEnvoy> {
  const adminPort = options.adminPort ?? (await freePort());
  const listenPort = options.listenPort ?? (await freePort());
  const rendered = await renderTemplate(join(repoRoot, "envoy", "gateway.yaml"), {
    ADMIN_PORT: adminPort,
    LISTEN_PORT: listenPort,
    SERVING_CERT: options.serving.certFile,
    SERVING_KEY: options.serving.keyFile,
    CLIENT_CA: options.pki.ca.certFile,
    UPSTREAM_CA: options.pki.ca.certFile,
    FRONT_PROXY_CERT: options.pki.frontProxyClient.certFile,
    FRONT_PROXY_KEY: options.pki.frontProxyClient.keyFile,
    WASM_PATH: options.wasmFile,
    GATEWAY_CONFIG: Buffer.from(options.gatewayConfig).toString("base64"),
    POOL_A_ENDPOINTS: endpoints(options.poolA),
    POOL_B_ENDPOINTS: endpoints(options.poolB),
  });
  const bootstrap = options.transform ? options.transform(rendered) : rendered;
  const envoy = await startEnvoy({ bootstrap, adminPort });
  return { ...envoy, url: `https://127.0.0.1:${listenPort}` };
}
