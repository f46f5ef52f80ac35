// Tenants' CRDs, watched with the control plane's own kubeconfig: RBAC names
// API groups exactly, so a tenant's admin role learns the group "wt-<T>-g"
// only when the control plane rewrites it after the CRD appears (and drops
// it when the CRD goes). docs/tenancy.md, "Per-tenant RBAC".
import { KubeConfig, Watch } from "@kubernetes/client-node";
import type { Log } from "../config-source.js";
import { splitUpstreamName } from "./naming.js";

/** Calls `changed(tenant)` for every event of a CRD whose group is a tenant's, until `signal` aborts. */
export async function watchTenantCrds(kubeconfigFile: string, changed: (tenant: string) => void, log: Log, signal: AbortSignal): Promise<void> {
  const config = new KubeConfig();
  config.loadFromFile(kubeconfigFile);
  const watch = new Watch(config);
  while (!signal.aborted) {
    await new Promise<void>((resolve) => {
      watch
        .watch(
          "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
          {},
          (_phase: string, crd: { spec?: { group?: unknown } }) => {
            const group = crd.spec?.group;
            const owner = typeof group === "string" ? splitUpstreamName(group) : null;
            if (owner) changed(owner.tenant);
          },
          (error: unknown) => {
            if (error && !signal.aborted) log("warn", "tenancy: the CRD watch ended; watching again", { error: String(error) });
            resolve();
          },
        )
        .then(
          (controller) => signal.addEventListener("abort", () => controller.abort(), { once: true }),
          (error: unknown) => {
            log("warn", "tenancy: cannot watch CRDs; retrying", { error: String(error) });
            resolve();
          },
        );
    });
    if (!signal.aborted) await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}
