import { join } from "node:path";
import { startEnvoy, type Envoy } from "./envoy.js";
import type { LineSink } from "./process.js";
import { freePort } from "./ports.js";
import { renderTemplate } from "./template.js";
import { repoRoot } from "./tools.js";

export interface XdsEnvoyOptions {
  /** Must equal the node name in the credentials' certificate. */
  nodeId: string;
  /** host:port of the control plane's ADS server. */
  xdsAddress: string;
  /** Holds ca.crt, node.crt, node.key (what `wharf envoy credentials` writes). */
  credentialsDir: string;
  apiType?: "GRPC" | "DELTA_GRPC";
  /** The name Envoy checks in the control plane's certificate; default localhost. */
  xdsServerName?: string;
  adminPort?: number;
  echo?: LineSink;
}

/** envoy/xds-bootstrap.yaml, filled in. */
export async function renderXdsBootstrap(options: XdsEnvoyOptions & { adminPort: number }): Promise<string> {
  const [host, port] = options.xdsAddress.split(/:(?=\d+$)/);
  return renderTemplate(join(repoRoot, "envoy", "xds-bootstrap.yaml"), {
    NODE_ID: options.nodeId,
    NODE_CLUSTER: "wharf",
    ADMIN_PORT: options.adminPort,
    XDS_HOST: host!,
    XDS_PORT: port!,
    XDS_API_TYPE: options.apiType ?? "GRPC",
    XDS_SERVER_NAME: options.xdsServerName ?? "localhost",
    XDS_CREDENTIALS_DIR: options.credentialsDir,
  });
}

/** Starts Envoy from the xDS bootstrap alone: everything else comes from the control plane. */
export async function startXdsEnvoy(options: XdsEnvoyOptions): Promise<Envoy> {
  const adminPort = options.adminPort ?? (await freePort());
  return startEnvoy({ bootstrap: await renderXdsBootstrap({ ...options, adminPort }), adminPort, echo: options.echo });
}
