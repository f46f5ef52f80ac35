// A tenant user's kubeconfig: the gateway as server, the CA of the gateway's
// serving certificate, and the user's short-lived certificate and key
// embedded (one file to hand over, nothing that points back into the
// control plane's state directory). Cluster, user and context are named
// after the tenant, so merging the kubeconfigs of several tenants works.
import { stringify } from "yaml";

export interface TenantKubeconfigInput {
  tenant: string;
  user: string;
  /** https://host:port of the gateway. */
  server: string;
  /** PEM: the CA of the gateway's serving certificate. */
  serverCa: string;
  /** PEM. */
  cert: string;
  key: string;
}

const base64 = (text: string) => Buffer.from(text).toString("base64");

export function tenantKubeconfig(input: TenantKubeconfigInput): string {
  const name = input.tenant;
  const userName = `${input.tenant}-${input.user}`;
  return stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name, cluster: { server: input.server, "certificate-authority-data": base64(input.serverCa) } }],
    users: [{ name: userName, user: { "client-certificate-data": base64(input.cert), "client-key-data": base64(input.key) } }],
    contexts: [{ name, context: { cluster: name, user: userName } }],
    "current-context": name,
  });
}
