// The config from a GatewayConfig custom resource (deploy/crds/), watched
// through the management kube-apiserver, so several control-plane replicas
// serve one config. Each change goes through the same validator as a file.
import { KubeConfig, Watch } from "@kubernetes/client-node";
import { stringify } from "yaml";
import type { Log } from "./config-source.js";

export interface GatewayConfigRef {
  namespace: string;
  name: string;
}

export function parseRef(value: string): GatewayConfigRef {
  const [namespace, name, ...rest] = value.split("/");
  if (!namespace || !name || rest.length > 0) throw new Error(`--kube-resource ${value}: want NAMESPACE/NAME`);
  return { namespace, name };
}

/**
 * Calls `onSpec` with the resource's spec (as YAML) on every change until
 * `signal` aborts; re-establishes the watch after errors.
 */
export async function watchGatewayConfig(
  kubeconfigFile: string | undefined,
  ref: GatewayConfigRef,
  onSpec: (yaml: string) => Promise<void>,
  log: Log,
  signal: AbortSignal,
): Promise<void> {
  const config = new KubeConfig();
  if (kubeconfigFile) config.loadFromFile(kubeconfigFile);
  else config.loadFromDefault();
  const watch = new Watch(config);
  const path = `/apis/wharf.dev/v1/namespaces/${ref.namespace}/gatewayconfigs`;
  while (!signal.aborted) {
    await new Promise<void>((resolve) => {
      watch
        .watch(
          path,
          { fieldSelector: `metadata.name=${ref.name}` },
          (phase: string, object: { spec?: unknown; metadata?: { resourceVersion?: string } }) => {
            if (phase !== "ADDED" && phase !== "MODIFIED") return;
            void onSpec(stringify(object.spec ?? {})).catch((error: unknown) =>
              log("error", "config refused; the last good one stays live", {
                resource: `${ref.namespace}/${ref.name}`,
                resourceVersion: object.metadata?.resourceVersion,
                error: (error as Error).message,
              }),
            );
          },
          (error: unknown) => {
            if (error && !signal.aborted) log("warn", "GatewayConfig watch ended; re-watching", { error: String(error) });
            resolve();
          },
        )
        .then(
          (controller) => signal.addEventListener("abort", () => controller.abort(), { once: true }),
          (error: unknown) => {
            log("warn", "cannot watch GatewayConfig; retrying", { error: String(error) });
            resolve();
          },
        );
    });
    if (!signal.aborted) await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}
