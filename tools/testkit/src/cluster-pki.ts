import { existsSync } from "node:fs";
import { join } from "node:path";
import { createCertificateAuthority, createSigningKey, issueCertificate, type KeyPair } from "./pki.js";

/**
 * Everything kube-apiserver needs to serve TLS and authenticate callers, and
 * what the gateway later needs to stand in front of it:
 * - `ca` signs the serving certificate and client certificates (--client-ca-file);
 * - `frontProxyCa` signs the front-proxy client certificate that a trusted
 *   proxy presents together with X-Remote-User/X-Remote-Group headers;
 * - `admin` is a client in group system:masters, for kubeconfigs and checks.
 */
export interface ClusterPki {
  dir: string;
  ca: KeyPair;
  apiserver: KeyPair;
  admin: KeyPair;
  frontProxyCa: KeyPair;
  frontProxyClient: KeyPair;
  serviceAccount: { privateKeyFile: string; publicKeyFile: string };
}

export const frontProxyClientName = "front-proxy-client";

export async function createClusterPki(dir: string): Promise<ClusterPki> {
  const ca = await createCertificateAuthority(dir, "cluster-ca");
  const frontProxyCa = await createCertificateAuthority(dir, "front-proxy-ca");
  const [apiserver, admin, frontProxyClient, serviceAccount] = await Promise.all([
    issueCertificate(dir, ca, {
      name: "apiserver",
      commonName: "kube-apiserver",
      dnsNames: ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"],
      ipAddresses: ["127.0.0.1"],
      usage: "server",
    }),
    issueCertificate(dir, ca, {
      name: "admin",
      commonName: "wharf-admin",
      organizations: ["system:masters"],
      usage: "client",
    }),
    issueCertificate(dir, frontProxyCa, {
      name: frontProxyClientName,
      commonName: frontProxyClientName,
      usage: "client",
    }),
    createSigningKey(dir, "service-account"),
  ]);
  return { dir, ca, apiserver, admin, frontProxyCa, frontProxyClient, serviceAccount };
}

/** The PKI in `dir` if one was made there before, else a new one. */
export async function loadOrCreateClusterPki(dir: string): Promise<ClusterPki> {
  const pair = (name: string): KeyPair => ({ certFile: join(dir, `${name}.crt`), keyFile: join(dir, `${name}.key`) });
  const complete = ["cluster-ca", "front-proxy-ca", "apiserver", "admin", frontProxyClientName].every((name) => existsSync(pair(name).certFile));
  if (!complete || !existsSync(join(dir, "service-account.pub"))) return createClusterPki(dir);
  return {
    dir,
    ca: pair("cluster-ca"),
    apiserver: pair("apiserver"),
    admin: pair("admin"),
    frontProxyCa: pair("front-proxy-ca"),
    frontProxyClient: pair(frontProxyClientName),
    serviceAccount: { privateKeyFile: join(dir, "service-account.key"), publicKeyFile: join(dir, "service-account.pub") },
  };
}
