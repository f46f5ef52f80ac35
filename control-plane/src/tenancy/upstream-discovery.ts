// What the apiserver serves, from its aggregated discovery (two requests):
// the tenant's RBAC grants and tenant deletion walk these resources rather
// than a list written for one Kubernetes version.
import { expectStatus, type KubeClient } from "./upstream-client.js";

export interface ServedResource {
  group: string;
  version: string;
  /** "pods", or "pods/exec" for a subresource. */
  resource: string;
  namespaced: boolean;
  verbs: string[];
}

const aggregated = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

interface DiscoveryList {
  items?: Array<{
    metadata?: { name?: string };
    versions?: Array<{
      version: string;
      resources?: Array<{ resource: string; scope: string; verbs?: string[]; subresources?: Array<{ subresource: string; verbs?: string[] }> }>;
    }>;
  }>;
}

/** Every resource and subresource of each group's preferred (first listed) version. */
export async function servedResources(client: KubeClient): Promise<ServedResource[]> {
  const served: ServedResource[] = [];
  for (const path of ["/api", "/apis"]) {
    const list = (await expectStatus(client, "GET", path, undefined, [200], { accept: aggregated })).body as DiscoveryList | undefined;
    if (!list?.items) throw new Error(`GET ${path}: not an aggregated discovery list (apidiscovery.k8s.io/v2)`);
    for (const item of list.items) {
      const group = item.metadata?.name ?? "";
      const preferred = item.versions?.[0];
      if (!preferred) continue;
      for (const resource of preferred.resources ?? []) {
        const namespaced = resource.scope === "Namespaced";
        served.push({ group, version: preferred.version, resource: resource.resource, namespaced, verbs: resource.verbs ?? [] });
        for (const sub of resource.subresources ?? []) {
          served.push({ group, version: preferred.version, resource: `${resource.resource}/${sub.subresource}`, namespaced, verbs: sub.verbs ?? [] });
        }
      }
    }
  }
  return served;
}

/** The URL path of a resource's collection, in `namespace` when given. */
export function collectionPath(resource: Pick<ServedResource, "group" | "version" | "resource">, namespace?: string): string {
  const base = resource.group === "" ? `/api/${resource.version}` : `/apis/${resource.group}/${resource.version}`;
  return namespace === undefined ? `${base}/${resource.resource}` : `${base}/namespaces/${encodeURIComponent(namespace)}/${resource.resource}`;
}
