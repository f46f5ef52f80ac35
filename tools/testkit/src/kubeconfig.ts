import { writeFile } from "node:fs/promises";
import { stringify } from "yaml";
import type { KeyPair } from "./pki.js";

/** Writes a kubeconfig with one cluster, one client-certificate user, one context. */
export async function writeKubeconfig(
  path: string,
  server: string,
  caFile: string,
  user: KeyPair,
  name = "wharf",
): Promise<string> {
  const config = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name, cluster: { server, "certificate-authority": caFile } }],
    users: [{ name, user: { "client-certificate": user.certFile, "client-key": user.keyFile } }],
    contexts: [{ name, context: { cluster: name, user: name } }],
    "current-context": name,
  };
  await writeFile(path, stringify(config), { mode: 0o600 });
  return path;
}
