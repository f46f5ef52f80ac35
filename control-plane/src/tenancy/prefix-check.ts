// Whether a tenant name is free upstream: no namespace may already carry
// its prefix "wt-<T>-" (left by a tenant whose delete did not finish, or made
// by hand), or the new tenant would inherit objects it never made.
import { CoreV1Api, type KubeConfig } from "@kubernetes/client-node";

/** The first namespace named "wt-<tenant>-…", paging through all; undefined when there is none. */
export async function namespaceWithPrefix(kubeconfig: KubeConfig, tenant: string): Promise<string | undefined> {
  const api = kubeconfig.makeApiClient(CoreV1Api);
  const prefix = `wt-${tenant}-`;
  let token: string | undefined;
  do {
    const page = await api.listNamespace({ limit: 500, _continue: token });
    const found = page.items.find((namespace) => namespace.metadata?.name?.startsWith(prefix));
    if (found) return found.metadata!.name;
    token = page.metadata?._continue || undefined;
  } while (token);
  return undefined;
}
