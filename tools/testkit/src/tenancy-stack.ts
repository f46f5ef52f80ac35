// The whole tenancy stack for tests and bench:tenancy, started in one call:
//
//   kubectl (tenant cert) ─TLS─▶ gateway Envoy (gateway filter → tenant filter) ─front-proxy─▶ kube-apiserver
//                                  └── xDS ◀── `wharf control-plane` (config with tenancy, admin API)
//
// The control plane runs as its own process, the way it is deployed; tenants
// are created, issued kubeconfigs, revoked and deleted through its admin API
// (the same calls `wharf tenant ...` makes).
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AdminService } from "@wharf/proto/wharf/admin/v1/admin_pb.js";
import { parseAllDocuments, stringify } from "yaml";
import { createClusterPki, type ClusterPki } from "./cluster-pki.js";
import { startEnvoy, type Envoy } from "./envoy.js";
import { httpsGet } from "./https.js";
import { writeKubeconfig } from "./kubeconfig.js";
import { kubectlOn } from "./kubectl.js";
import { startKubeApiserver, type KubeApiserver } from "./kube-apiserver.js";
import { issueCertificate, type KeyPair } from "./pki.js";
import { freePort } from "./ports.js";
import { startProcess, waitUntilReady, type LineSink, type RunningProcess } from "./process.js";
import { repoRoot } from "./tools.js";
import { waitFor } from "./wait.js";
import { makeWorkDir, removeWorkDir } from "./workdir.js";
import { renderXdsBootstrap } from "./xds-envoy.js";

const run = promisify(execFile);
const wharfCli = join(repoRoot, "control-plane", "dist", "cli.js");

/** An apiserver someone else runs (global setup's): reused, never stopped here. */
export interface ExistingKube {
  url: string;
  kubeconfig: string;
  pki: ClusterPki;
}

export interface TenancyStackOptions {
  /**
   * Reuse this apiserver (a test file passes `inject("kube")`). Without it,
   * a dedicated one starts on `etcdServers`, with its own etcd prefix.
   */
  kube?: ExistingKube;
  etcdServers?: string[];
  /** Tenants in the config file at start (default none: tests create them through the admin API). */
  tenants?: Array<{ name: string; shared_views?: string[] }>;
  echo?: LineSink;
  /** Extra arguments for a dedicated apiserver. */
  apiserverArgs?: string[];
}

export interface TenancyStack {
  dir: string;
  /** The upstream apiserver: admin kubeconfig straight to it (the prefixed truth). */
  kube: ExistingKube;
  /** Runs kubectl as the cluster admin straight against the apiserver. */
  adminKubectl: (...args: string[]) => Promise<string>;
  /** https://127.0.0.1:PORT of the gateway listener. */
  gatewayUrl: string;
  envoy: Envoy;
  controlPlane: RunningProcess;
  /** http://127.0.0.1:PORT of the control plane's admin API, and the file holding its token. */
  adminUrl: string;
  adminTokenFile: string;
  admin: Client<typeof AdminService>;
  /** The config file the control plane serves. */
  configFile: string;
  /** The user the control plane acts as upstream (its kubeconfig's identity). */
  controlPlaneUser: string;
  /** A host identity (not a tenant's) through the gateway: system:masters, issued by the cluster CA. */
  hostAdmin: KeyPair;
  /** Creates a tenant; resolves with a kubeconfig file for its admin. */
  createTenant(name: string, sharedViews?: string[]): Promise<string>;
  /** A kubeconfig file for `user` of `tenant` (issuing again renews). */
  tenantKubeconfig(tenant: string, user?: string, groups?: string[], ttlSeconds?: number): Promise<string>;
  revokeUser(tenant: string, user: string): Promise<number>;
  deleteTenant(name: string): Promise<Record<string, number>>;
  /** Runs `wharf ARGS --admin URL --token-file FILE`; resolves with stdout. */
  wharf(...args: string[]): Promise<string>;
  stop(): Promise<void>;
}

/**
 * The identity the control plane uses upstream: deploy/tenancy-rbac.yaml
 * names it (least privilege); the file's ClusterRoleBinding's User subject
 * gets a client certificate from the cluster CA.
 */
async function controlPlaneIdentity(dir: string, kube: ExistingKube, adminKubectl: (...args: string[]) => Promise<string>): Promise<{ user: string; kubeconfig: string }> {
  const rbacFile = join(repoRoot, "deploy", "tenancy-rbac.yaml");
  if (!existsSync(rbacFile)) throw new Error(`${rbacFile} is missing: the control plane's least-privilege identity upstream is not defined`);
  const documents = parseAllDocuments(await readFile(rbacFile, "utf8")).map((document) => document.toJS() as { kind?: string; subjects?: Array<{ kind: string; name: string }> });
  const user = documents.flatMap((document) => (document?.kind === "ClusterRoleBinding" ? (document.subjects ?? []) : [])).find((subject) => subject.kind === "User")?.name;
  if (!user) throw new Error(`${rbacFile}: no ClusterRoleBinding with a User subject (the control plane's identity)`);
  // server-side apply: idempotent when several stacks share one apiserver.
  await adminKubectl("apply", "--server-side", "--force-conflicts", "-f", rbacFile);
  const pair = await issueCertificate(dir, { certFile: kube.pki.ca.certFile, keyFile: kube.pki.ca.keyFile }, { name: "wharf-control-plane", commonName: user, usage: "client" });
  return { user, kubeconfig: await writeKubeconfig(join(dir, "control-plane.kubeconfig"), kube.url, kube.pki.ca.certFile, pair) };
}

export async function startTenancyStack(options: TenancyStackOptions): Promise<TenancyStack> {
  const dir = await makeWorkDir("tenancy-stack");
  const stops: Array<() => Promise<void>> = [];
  const stop = async () => {
    for (const step of stops.reverse()) await step().catch(() => undefined);
    await removeWorkDir(dir);
  };
  try {
    let kube: ExistingKube;
    if (options.kube) {
      kube = options.kube;
    } else {
      if (!options.etcdServers) throw new Error("startTenancyStack needs kube (an apiserver to reuse) or etcdServers (to start one)");
      const pki = await createClusterPki(dir);
      const prefix = `/tenancy-${dir.split("/").pop()}`;
      const started: KubeApiserver = await startKubeApiserver({ etcdServers: options.etcdServers, pki, extraArgs: [`--etcd-prefix=${prefix}`, ...(options.apiserverArgs ?? [])], echo: options.echo });
      stops.push(() => started.stop());
      kube = { url: started.url, kubeconfig: started.kubeconfig, pki };
    }
    const adminKubectl = kubectlOn(kube.kubeconfig);
    const identity = await controlPlaneIdentity(dir, kube, adminKubectl);
    const clusterCa = { certFile: kube.pki.ca.certFile, keyFile: kube.pki.ca.keyFile };
    const serving = await issueCertificate(dir, clusterCa, { name: "gateway", commonName: "gateway", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], usage: "server" });
    const hostAdmin = await issueCertificate(dir, clusterCa, { name: "host-admin", commonName: "host-admin", organizations: ["system:masters"], usage: "client" });
    const [listenPort, xdsPort, adminPort, envoyAdminPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const gatewayUrl = `https://127.0.0.1:${listenPort}`;
    const xdsAddress = `127.0.0.1:${xdsPort}`;
    const adminUrl = `http://127.0.0.1:${adminPort}`;
    const configFile = join(dir, "wharf.yaml");
    await writeFile(
      configFile,
      stringify({
        listener: { port: listenPort, cert_file: serving.certFile, key_file: serving.keyFile, client_ca_file: kube.pki.ca.certFile },
        upstream_cluster: {
          pools: [{ name: "main", servers: [new URL(kube.url).host] }],
          default_pool: "main",
          ca_file: kube.pki.ca.certFile,
          client_cert_file: kube.pki.frontProxyClient.certFile,
          client_key_file: kube.pki.frontProxyClient.keyFile,
        },
        tenancy: { kubeconfig: identity.kubeconfig, server: gatewayUrl },
        tenants: options.tenants ?? [],
      }),
    );
    const adminTokenFile = join(dir, "admin-token");
    await writeFile(adminTokenFile, `tenancy-stack-${Math.random().toString(36).slice(2)}-admin-token\n`, { mode: 0o600 });
    const stateDir = join(dir, "control-plane");
    const controlPlane = startProcess({
      name: "wharf control-plane",
      command: process.execPath,
      args: [wharfCli, "control-plane", "--config", configFile, "--state-dir", stateDir, "--xds-listen", xdsAddress, "--admin-token-file", adminTokenFile, "--admin-listen", adminUrl.slice("http://".length)],
      logFile: join(dir, "control-plane.log"),
      echo: options.echo,
    });
    stops.push(() => controlPlane.stop());
    await waitUntilReady(controlPlane, async () => controlPlane.logTail(100).includes("admin API serving"), 30_000);

    const credentials = join(dir, "xds-gateway");
    await run(process.execPath, [wharfCli, "envoy", "credentials", "--role", "gateway", "--node", "gateway-1", "--out", credentials, "--state-dir", stateDir]);
    const envoy = await startEnvoy({
      bootstrap: await renderXdsBootstrap({ nodeId: "gateway-1", xdsAddress, credentialsDir: credentials, adminPort: envoyAdminPort }),
      adminPort: envoyAdminPort,
      echo: options.echo,
    });
    stops.push(() => envoy.stop());
    await waitFor(async () => (await httpsGet(`${gatewayUrl}/readyz`, kube.pki.ca.certFile, hostAdmin)).body === "ok", 30_000, "the gateway listener (from xDS) to serve");

    const token = (await readFile(adminTokenFile, "utf8")).trim();
    const admin = createClient(
      AdminService,
      createConnectTransport({
        baseUrl: adminUrl,
        httpVersion: "1.1",
        interceptors: [(next) => (request) => (request.header.set("authorization", `Bearer ${token}`), next(request))],
      }),
    );
    let kubeconfigs = 0;
    const save = async (text: string, label: string) => {
      const file = join(dir, `${label}-${++kubeconfigs}.kubeconfig`);
      await writeFile(file, text, { mode: 0o600 });
      return file;
    };
    return {
      dir,
      kube,
      adminKubectl,
      gatewayUrl,
      envoy,
      controlPlane,
      adminUrl,
      adminTokenFile,
      admin,
      configFile,
      controlPlaneUser: identity.user,
      hostAdmin,
      async createTenant(name, sharedViews = []) {
        const response = await admin.createTenant({ name, sharedViews });
        return save(response.kubeconfig, name);
      },
      async tenantKubeconfig(tenant, user = "admin", groups = [], ttlSeconds = 0) {
        const response = await admin.issueTenantKubeconfig({ tenant, user, groups, ttlSeconds });
        return save(response.kubeconfig, `${tenant}-${user.replace(/[^a-z0-9]/gi, "_")}`);
      },
      async revokeUser(tenant, user) {
        return (await admin.revokeTenantUser({ tenant, user })).revokedCertificates;
      },
      async deleteTenant(name) {
        return (await admin.deleteTenant({ name })).deleted;
      },
      async wharf(...args) {
        const { stdout } = await run(process.execPath, [wharfCli, ...args, "--admin", adminUrl, "--token-file", adminTokenFile]);
        return stdout;
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
