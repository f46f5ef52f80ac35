// startControlPlane(): the one way to run the control plane, for the CLI,
// `npm start` and the tests. It loads (or creates) the node CA in its state
// directory, serves ADS over mTLS only (node certificates from that CA), and
// serves snapshots from a config file, a GatewayConfig resource, or, with
// neither, whatever the caller sets on the cache.
import { ServerCredentials } from "@grpc/grpc-js";
import { startAdminServer, type RunningAdminServer } from "./admin/admin-server.js";
import { ConfigSource, type Log } from "./config-source.js";
import { NodeCa } from "./credentials/node-ca.js";
import { watchGatewayConfig, type GatewayConfigRef } from "./kube-source.js";
import { ControlPlaneMetrics } from "./metrics.js";
import { TenantStore } from "./tenancy/tenant-store.js";
import { Tenants, type TenantUpstream } from "./tenancy/tenants.js";
import { tenantUpstream } from "./tenancy/upstream.js";
import { SnapshotCache } from "./xds/cache.js";
import { certificateAuthenticator } from "./xds/node-auth.js";
import { startXdsServer } from "./xds/xds-server.js";

export interface ControlPlaneOptions {
  /** Holds the node CA (node-ca.crt, node-ca.key); created on first start. */
  stateDir: string;
  /** Default 127.0.0.1:18000 (port 0: any free port). */
  xds?: { host: string; port: number };
  /** Names in the serving certificate: what Envoys dial. Default localhost, 127.0.0.1, the in-cluster Service names. */
  xdsServerNames?: string[];
  config?: { file: string } | { kubeResource: GatewayConfigRef; kubeconfig?: string };
  /** The gateway filter's module, shipped to gateway nodes. */
  wasmFile?: string;
  admin?: { token: string; host: string; port: number };
  /** What sets tenants up and tears them down upstream, for the config's tenancy.kubeconfig. */
  tenantUpstream?: (kubeconfig: string) => TenantUpstream;
  log?: Log;
}

export interface RunningControlPlane {
  /** host:port of the ADS server. */
  xdsAddress: string;
  cache: SnapshotCache;
  ca: NodeCa;
  metrics: ControlPlaneMetrics;
  config?: ConfigSource;
  /** Present with a config source. */
  tenants?: Tenants;
  admin?: RunningAdminServer;
  /** Settles when the config source stops watching (after stop()); rejects if watching failed. */
  watching: Promise<void>;
  stop(): Promise<void>;
}

export const defaultXdsServerNames = ["localhost", "127.0.0.1", "wharf-control-plane", "wharf-control-plane.wharf-system.svc", "wharf-control-plane.wharf-system.svc.cluster.local"];

const quiet: Log = () => undefined;

export async function startControlPlane(options: ControlPlaneOptions): Promise<RunningControlPlane> {
  const log = options.log ?? quiet;
  const ca = await NodeCa.loadOrCreate(options.stateDir);
  const metrics = new ControlPlaneMetrics();
  const cache = new SnapshotCache({
    connected: (node) => log("info", "envoy connected", { node: node.name, role: node.role }),
    nacked: (node, kind, version, message) => {
      metrics.nacked(kind);
      log("warn", "envoy rejected configuration", { node: node.name, role: node.role, kind, version, error: message });
    },
  });
  const tenantStore = new TenantStore(options.stateDir);
  const config =
    options.config === undefined
      ? undefined
      : "file" in options.config
        ? new ConfigSource(options.config.file, options.wasmFile ?? "", cache, log, undefined, tenantStore)
        : new ConfigSource(
            `${options.stateDir}/gatewayconfig.yaml`,
            options.wasmFile ?? "",
            cache,
            log,
            `the config is GatewayConfig ${options.config.kubeResource.namespace}/${options.config.kubeResource.name}: change that resource`,
            tenantStore,
          );
  if (config && options.config && "file" in options.config) await config.loadFile();
  const tenants = config && new Tenants({ config, store: tenantStore, cache, upstream: options.tenantUpstream ?? ((kubeconfig) => tenantUpstream(kubeconfig)), log });
  // Tenants' upstream side follows the config: set-up of tenants that lack
  // it, and a watch of their CRDs with the config's tenancy.kubeconfig.
  const crdWatch: { kubeconfig?: string; abort?: AbortController } = {};
  const tenancyApplied = () => {
    const kubeconfig = config?.currentTenancy?.kubeconfig;
    if (!tenants || kubeconfig === crdWatch.kubeconfig) return void tenants?.reconcile();
    crdWatch.abort?.abort();
    crdWatch.kubeconfig = kubeconfig;
    crdWatch.abort = kubeconfig === undefined ? undefined : new AbortController();
    if (kubeconfig !== undefined) void tenants.watchCrds(kubeconfig, crdWatch.abort!.signal);
    void tenants.reconcile();
  };
  if (config) {
    config.onApplied = tenancyApplied;
    if (config.currentTenancy) tenancyApplied();
  }

  const serving = ca.issueServer(options.xdsServerNames ?? defaultXdsServerNames);
  const xds = await startXdsServer(cache, {
    host: options.xds?.host ?? "127.0.0.1",
    port: options.xds?.port ?? 18000,
    // Only node certificates of our CA complete the handshake; plaintext never does.
    credentials: ServerCredentials.createSsl(Buffer.from(ca.certPem), [{ cert_chain: Buffer.from(serving.cert), private_key: Buffer.from(serving.key) }], true),
    authenticate: certificateAuthenticator,
    observer: {
      pushed: (kind) => metrics.pushed(kind),
      refused: (reason, claimed) => log("warn", "xDS stream refused", { claimedNode: claimed, reason }),
    },
  });
  metrics.attach(cache, config);
  log("info", "control plane serving ADS (mTLS)", { address: xds.address });

  let admin: RunningAdminServer | undefined;
  if (options.admin) {
    admin = await startAdminServer({ config, cache, metrics, tenants, token: options.admin.token, host: options.admin.host, port: options.admin.port });
    log("info", "admin API serving", { url: admin.url });
  }

  const abort = new AbortController();
  let watching = Promise.resolve();
  if (config && options.config) {
    const source = options.config;
    watching =
      "file" in source
        ? config.watchFile(abort.signal)
        : (log("info", "watching GatewayConfig", { resource: `${source.kubeResource.namespace}/${source.kubeResource.name}` }),
          watchGatewayConfig(source.kubeconfig, source.kubeResource, async (text) => void (await config.apply(text)), log, abort.signal));
  }
  return {
    xdsAddress: xds.address,
    cache,
    ca,
    metrics,
    config,
    tenants,
    admin,
    watching,
    async stop() {
      abort.abort();
      crdWatch.abort?.abort();
      await Promise.all([xds.stop(), admin?.stop()]);
      await watching.catch(() => undefined);
    },
  };
}
