import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createClusterPki, frontProxyClientName, type ClusterPki } from "./cluster-pki.js";
import { httpsGet } from "./https.js";
import { writeKubeconfig } from "./kubeconfig.js";
import { freePort } from "./ports.js";
import { startProcess, waitUntilReady, type LineSink, type RunningProcess } from "./process.js";
import { toolPath } from "./tools.js";
import { makeWorkDir, removeWorkDir } from "./workdir.js";

export interface KubeApiserver {
  /** https://127.0.0.1:PORT */
  url: string;
  pki: ClusterPki;
  /** An admin (system:masters) kubeconfig pointing straight at this apiserver. */
  kubeconfig: string;
  process: RunningProcess;
  /** With `auditLog`: the JSON-lines audit log (one event per stage, level Metadata). */
  auditLogFile?: string;
  stop(): Promise<void>;
}

export interface KubeApiserverOptions {
  /** etcd endpoints (reference etcd or brain), comma-free list. */
  etcdServers: string[];
  /** Reuse a PKI so several apiservers share one CA (a pool behind the gateway). */
  pki?: ClusterPki;
  extraArgs?: string[];
  /** Each output line, besides the log file (`npm start` prints them). */
  echo?: LineSink;
  /** A fixed port, to restart an apiserver where its clients expect it. */
  port?: number;
  /**
   * Write an audit log of every request at level Metadata (verb, objectRef,
   * user): the apiserver's own classification of each request, to compare
   * the gateway's with. Blocking mode, so an event is on disk before the
   * response is sent.
   */
  auditLog?: boolean;
}

const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: Metadata
`;

async function auditArgs(workDir: string): Promise<{ args: string[]; file: string }> {
  const policyFile = join(workDir, "audit-policy.yaml");
  await writeFile(policyFile, auditPolicy);
  const file = join(workDir, "audit.log");
  return {
    file,
    args: [`--audit-policy-file=${policyFile}`, `--audit-log-path=${file}`, "--audit-log-format=json", "--audit-log-mode=blocking", "--audit-log-maxsize=0"],
  };
}

export async function startKubeApiserver(options: KubeApiserverOptions): Promise<KubeApiserver> {
  const workDir = await makeWorkDir("kube-apiserver");
  const pki = options.pki ?? (await createClusterPki(workDir));
  const port = options.port ?? (await freePort());
  const url = `https://127.0.0.1:${port}`;
  const audit = options.auditLog ? await auditArgs(workDir) : undefined;
  const process = startProcess({
    name: "kube-apiserver",
    command: toolPath("kube-apiserver"),
    args: [
      `--etcd-servers=${options.etcdServers.join(",")}`,
      "--bind-address=127.0.0.1",
      "--advertise-address=127.0.0.1",
      `--secure-port=${port}`,
      `--cert-dir=${join(workDir, "certs")}`,
      `--tls-cert-file=${pki.apiserver.certFile}`,
      `--tls-private-key-file=${pki.apiserver.keyFile}`,
      `--client-ca-file=${pki.ca.certFile}`,
      // The front-proxy scheme: a client presenting a certificate from this CA
      // with an allowed name may assert the user in X-Remote-* headers.
      `--requestheader-client-ca-file=${pki.frontProxyCa.certFile}`,
      `--requestheader-allowed-names=${frontProxyClientName}`,
      "--requestheader-username-headers=X-Remote-User",
      "--requestheader-uid-headers=X-Remote-Uid",
      "--requestheader-group-headers=X-Remote-Group",
      "--requestheader-extra-headers-prefix=X-Remote-Extra-",
      `--proxy-client-cert-file=${pki.frontProxyClient.certFile}`,
      `--proxy-client-key-file=${pki.frontProxyClient.keyFile}`,
      `--service-account-issuer=https://kubernetes.default.svc`,
      `--service-account-key-file=${pki.serviceAccount.publicKeyFile}`,
      `--service-account-signing-key-file=${pki.serviceAccount.privateKeyFile}`,
      // A range is required; nothing is routed to it on this machine.
      "--service-cluster-ip-range=10.96.0.0/16",
      "--authorization-mode=RBAC",
      "--enable-priority-and-fairness=true",
      // The advertised address is loopback, which the kubernetes Service's
      // endpoints may not hold: reconciling them only logs an error every 10 s.
      "--endpoint-reconciler-type=none",
      // Identity leases are named after the host name, so apiservers sharing
      // a store on one machine would fight over one lease (the proxy between
      // apiserver versions needs identities, so it goes too).
      "--feature-gates=APIServerIdentity=false,UnknownVersionInteroperabilityProxy=false",
      "--v=1",
      ...(audit?.args ?? []),
      ...(options.extraArgs ?? []),
    ],
    logFile: join(workDir, "kube-apiserver.log"),
    echo: options.echo,
  });
  await waitUntilReady(
    process,
    async () => (await httpsGet(`${url}/readyz`, pki.ca.certFile, pki.admin)).body === "ok",
    90_000,
  );
  const kubeconfig = await writeKubeconfig(join(workDir, "admin.kubeconfig"), url, pki.ca.certFile, pki.admin);
  return {
    url,
    pki,
    kubeconfig,
    process,
    auditLogFile: audit?.file,
    async stop() {
      await process.stop();
      await removeWorkDir(workDir);
    },
  };
}
