// What the control plane does on the shared kube-apiserver for tenants, with
// its own least-privilege identity (deploy/tenancy-rbac.yaml): the admission
// policy once, each tenant's RBAC and system namespaces, and the removal of
// exactly one tenant's objects. docs/tenancy.md, "Upstream".
import { KubeConfig, Watch } from "@kubernetes/client-node";
import {
  assertTenantName,
  splitUpstreamName,
  builtinGroups,
  tenantGroup,
  tenantLabel,
  tenantPrefix,
  tenantSystemNamespaces,
  identityPrefix,
} from "./naming.js";
import { connectionFromKubeconfig, expectStatus, kubeClient, KubeError, type KubeClient, type KubeObject } from "./upstream-client.js";
import { collectionPath, servedResources, type ServedResource } from "./upstream-discovery.js";
import { apply, ensureTenancyPolicy, systemLabel } from "./upstream-policy.js";

export { ensureTenancyPolicy, controlPlaneIdentity, tenancyPolicy, policyName, systemLabel, defaultControlPlaneUser } from "./upstream-policy.js";
export { kubeClient, connectionFromKubeconfig, type KubeClient, type KubeConnection } from "./upstream-client.js";

const rbac = "/apis/rbac.authorization.k8s.io/v1";
const crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";

/** Everything a tenant admin does to what it may own; never impersonate, bind, escalate, approve or sign. */
export const tenantVerbs: readonly string[] = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"];

/**
 * Host resources a tenant may be given to read as they are (get, list,
 * watch): cluster-wide facts a workload author needs, none of them secret.
 */
export const shareableViews: ReadonlyMap<string, { group: string; resource: string }> = new Map([
  ["nodes", { group: "", resource: "nodes" }],
  ["storageclasses.storage.k8s.io", { group: "storage.k8s.io", resource: "storageclasses" }],
  ["priorityclasses.scheduling.k8s.io", { group: "scheduling.k8s.io", resource: "priorityclasses" }],
  ["runtimeclasses.node.k8s.io", { group: "node.k8s.io", resource: "runtimeclasses" }],
  ["ingressclasses.networking.k8s.io", { group: "networking.k8s.io", resource: "ingressclasses" }],
]);

/** The upstream names of the RBAC objects the control plane makes for tenant T. */
export function tenantRbacNames(tenant: string): { admin: string; views: string } {
  const prefix = tenantPrefix(tenant);
  return { admin: `${prefix}wharf-tenant-admin`, views: `${prefix}wharf-shared-views` };
}

export interface RbacRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

/**
 * The tenant admin's rules: every namespaced resource of Kubernetes' own
 * groups in every namespace (RBAC cannot name a namespace prefix, and the
 * tenant filter's label-filtered all-namespace lists need it; the admission
 * policy keeps writes in wt-T-*), plus the cluster-scoped kinds a tenant owns
 * (namespaces, CRDs, ClusterRoles and bindings) and its own API groups.
 * Nothing else of the host: no nodes, PVs, webhooks, admission policies,
 * APIServices, CSRs or flowcontrol.
 */
export function tenantAdminRules(served: readonly ServedResource[], tenantGroups: readonly string[]): RbacRule[] {
  const verbs = [...tenantVerbs];
  const rules: RbacRule[] = [];
  for (const group of builtinGroups) {
    // Not the proxy subresources: through them the apiserver connects to any address a tenant's Endpoints or Pod names.
    const resources = served.filter((r) => r.group === group && r.namespaced && !r.resource.endsWith("/proxy")).map((r) => r.resource);
    if (resources.length > 0) rules.push({ apiGroups: [group], resources: [...new Set(resources)].sort(), verbs });
  }
  rules.push(
    { apiGroups: [""], resources: ["namespaces", "namespaces/finalize", "namespaces/status"], verbs },
    { apiGroups: ["apiextensions.k8s.io"], resources: ["customresourcedefinitions", "customresourcedefinitions/status"], verbs },
    { apiGroups: ["rbac.authorization.k8s.io"], resources: ["clusterrolebindings", "clusterroles"], verbs },
  );
  if (tenantGroups.length > 0) rules.push({ apiGroups: [...tenantGroups].sort(), resources: ["*"], verbs });
  return rules;
}

function labels(tenant: string): Record<string, string> {
  return { [tenantLabel]: tenant, [systemLabel]: "true" };
}

function clusterRole(name: string, tenant: string, rules: RbacRule[]): KubeObject {
  return { apiVersion: "rbac.authorization.k8s.io/v1", kind: "ClusterRole", metadata: { name, labels: labels(tenant) }, rules };
}

function clusterRoleBinding(name: string, tenant: string, group: string): KubeObject {
  return {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "ClusterRoleBinding",
    metadata: { name, labels: labels(tenant) },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name },
    subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "Group", name: group }],
  };
}

async function deleteIfPresent(client: KubeClient, path: string, body?: unknown): Promise<boolean> {
  const response = await expectStatus(client, "DELETE", path, body, [200, 202, 404]);
  return response.status !== 404;
}

async function listItems(client: KubeClient, path: string): Promise<KubeObject[]> {
  const items: KubeObject[] = [];
  let token = "";
  do {
    const query = `?limit=500${token ? `&continue=${encodeURIComponent(token)}` : ""}`;
    const page = (await expectStatus(client, "GET", path + query, undefined, [200])).body ?? {};
    items.push(...((page.items as KubeObject[] | undefined) ?? []));
    token = (page.metadata?.continue as string | undefined) ?? "";
  } while (token);
  return items;
}

/** The API groups of tenant T's CRDs (spec.group "wt-T-…"). */
export async function tenantCrdGroups(client: KubeClient, tenant: string): Promise<string[]> {
  const prefix = tenantPrefix(tenant);
  const groups = (await listItems(client, crds)).map((crd) => crd.spec?.group as string).filter((group) => typeof group === "string" && group.startsWith(prefix));
  return [...new Set(groups)].sort();
}

/**
 * Sets tenant T up upstream, idempotently (also how shared views change):
 * its admin ClusterRole bound to group wharf:tenant:T:system:masters, its
 * shared views (get/list/watch) bound to group wharf:tenant:T, and its
 * system namespaces, all labelled with the tenant and as the control
 * plane's. `served` is the apiserver's discovery (servedResources).
 */
export async function setUpTenant(client: KubeClient, name: string, sharedViews: readonly string[], served?: readonly ServedResource[]): Promise<void> {
  assertTenantName(name);
  const views = sharedViews.map((view) => {
    const resource = shareableViews.get(view);
    if (!resource) throw new Error(`shared view "${view}" is not one of ${[...shareableViews.keys()].join(", ")}`);
    return resource;
  });
  const resources = served ?? (await servedResources(client));
  const names = tenantRbacNames(name);
  // Independent writes, in parallel (tenant creation is on a user's critical path). A binding needs no role to exist yet.
  const rules = views.map((view) => ({ apiGroups: [view.group], resources: [view.resource], verbs: ["get", "list", "watch"] }));
  await Promise.all([
    ...tenantSystemNamespaces.map((ns) => {
      const upstream = tenantPrefix(name) + ns;
      return apply(client, `/api/v1/namespaces/${upstream}`, { apiVersion: "v1", kind: "Namespace", metadata: { name: upstream, labels: labels(name) } });
    }),
    applyTenantRules(client, name, resources),
    apply(client, `${rbac}/clusterrolebindings/${names.admin}`, clusterRoleBinding(names.admin, name, identityPrefix(name) + "system:masters")),
    ...(views.length === 0
      ? [deleteIfPresent(client, `${rbac}/clusterrolebindings/${names.views}`), deleteIfPresent(client, `${rbac}/clusterroles/${names.views}`)]
      : [
          apply(client, `${rbac}/clusterroles/${names.views}`, clusterRole(names.views, name, rules)),
          apply(client, `${rbac}/clusterrolebindings/${names.views}`, clusterRoleBinding(names.views, name, tenantGroup(name))),
        ]),
  ]);
}

/**
 * Rewrites tenant T's admin ClusterRole with the API groups of its CRDs as
 * they are now: RBAC cannot grant a group prefix, so each group of a
 * tenant's CRD is named once it exists (watchTenantCrds calls this). Only
 * updates (with the role's resourceVersion): a tenant that is not set up, or
 * is being deleted, gets no role back from a late CRD event.
 */
export async function syncTenantRules(client: KubeClient, name: string, served?: readonly ServedResource[]): Promise<void> {
  const resources = served ?? (await servedResources(client));
  const { admin } = tenantRbacNames(name);
  const path = `${rbac}/clusterroles/${admin}`;
  for (let attempt = 0; attempt < 5; attempt++) {
    const current = await expectStatus(client, "GET", path, undefined, [200, 404]);
    if (current.status === 404) return;
    const role = clusterRole(admin, name, tenantAdminRules(resources, await tenantCrdGroups(client, name)));
    role.metadata.resourceVersion = current.body?.metadata?.resourceVersion;
    const updated = await expectStatus(client, "PUT", path, role, [200, 404, 409]);
    if (updated.status !== 409) return;
  }
  throw new Error(`tenant ${name}: ClusterRole ${admin} kept changing; its CRD rules are not synced`);
}

async function applyTenantRules(client: KubeClient, name: string, served: readonly ServedResource[]): Promise<void> {
  const { admin } = tenantRbacNames(name);
  await apply(client, `${rbac}/clusterroles/${admin}`, clusterRole(admin, name, tenantAdminRules(served, await tenantCrdGroups(client, name))));
}

/** Why tenant T's prefix is taken upstream (a namespace, RBAC object or CRD group "wt-T-…" exists), or undefined. */
export async function prefixTaken(client: KubeClient, name: string): Promise<string | undefined> {
  const prefix = tenantPrefix(name);
  const namespace = (await listItems(client, "/api/v1/namespaces")).find((ns) => (ns.metadata?.name as string).startsWith(prefix));
  if (namespace) return `namespace ${namespace.metadata?.name} exists`;
  for (const resource of ["clusterroles", "clusterrolebindings"]) {
    const found = (await listItems(client, `${rbac}/${resource}`)).find((o) => (o.metadata?.name as string).startsWith(prefix));
    if (found) return `${resource} ${found.metadata?.name} exists`;
  }
  const groups = await tenantCrdGroups(client, name);
  return groups.length > 0 ? `CRDs of group ${groups[0]} exist` : undefined;
}

function resourceKey(resource: Pick<ServedResource, "group" | "resource">): string {
  return resource.group === "" ? resource.resource : `${resource.resource}.${resource.group}`;
}

function count(counts: Record<string, number>, key: string, n: number): void {
  if (n > 0) counts[key] = (counts[key] ?? 0) + n;
}

export interface DeleteOptions {
  /** How long to wait for the apiserver to remove a CRD's custom resources. */
  crdTimeoutMs?: number;
  served?: readonly ServedResource[];
}

const deleteNow = { apiVersion: "v1", kind: "DeleteOptions", gracePeriodSeconds: 0, propagationPolicy: "Background" };

/**
 * Removes exactly tenant T's objects upstream and returns how many of each
 * resource went. Safe to rerun after a crash half-way: every step lists what
 * is left of the tenant ("wt-T-…" names, CRD groups) and deletes that.
 *
 * Order: the tenant's ClusterRoleBindings first (whatever of its identities
 * is still in flight loses its grants), then its CRDs (the apiserver removes
 * their custom resources), then each "wt-T-" namespace: deleted first so the
 * apiserver admits no new object in it, emptied by deletecollection over
 * every namespaced resource discovery lists (finalizers nobody will serve
 * are dropped, for no kube-controller-manager may run), then finalized; its
 * ClusterRoles last.
 */
export async function deleteTenant(client: KubeClient, name: string, options: DeleteOptions = {}): Promise<Record<string, number>> {
  const prefix = tenantPrefix(name);
  const counts: Record<string, number> = {};
  const owned = (o: KubeObject) => typeof o.metadata?.name === "string" && (o.metadata.name as string).startsWith(prefix);

  for (const binding of (await listItems(client, `${rbac}/clusterrolebindings`)).filter(owned)) {
    if (await deleteIfPresent(client, `${rbac}/clusterrolebindings/${encodeURIComponent(binding.metadata!.name)}`)) count(counts, "clusterrolebindings.rbac.authorization.k8s.io", 1);
  }

  const tenantCrds = (await listItems(client, crds)).filter((crd) => typeof crd.spec?.group === "string" && (crd.spec.group as string).startsWith(prefix));
  for (const crd of tenantCrds) {
    if (await deleteIfPresent(client, `${crds}/${encodeURIComponent(crd.metadata!.name)}`)) count(counts, "customresourcedefinitions.apiextensions.k8s.io", 1);
  }
  const crdDeadline = Date.now() + (options.crdTimeoutMs ?? 60_000);
  for (const crd of tenantCrds) {
    while ((await client("GET", `${crds}/${encodeURIComponent(crd.metadata!.name)}`)).status !== 404) {
      if (Date.now() > crdDeadline) throw new Error(`tenant ${name}: CRD ${crd.metadata!.name} is still being removed (with its custom resources); delete the tenant again to finish`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  const served = options.served ?? (await servedResources(client));
  const namespaced = served.filter((r) => r.namespaced && !r.resource.includes("/") && r.verbs.includes("deletecollection") && r.verbs.includes("list"));
  for (const namespace of (await listItems(client, "/api/v1/namespaces")).filter(owned)) {
    const ns = namespace.metadata!.name as string;
    if (await deleteIfPresent(client, `/api/v1/namespaces/${ns}`)) count(counts, "namespaces", 1);
    for (const resource of namespaced) count(counts, resourceKey(resource), await emptyCollection(client, resource, ns, name));
    await finalizeNamespace(client, ns);
  }

  for (const role of (await listItems(client, `${rbac}/clusterroles`)).filter(owned)) {
    if (await deleteIfPresent(client, `${rbac}/clusterroles/${encodeURIComponent(role.metadata!.name)}`)) count(counts, "clusterroles.rbac.authorization.k8s.io", 1);
  }
  return counts;
}

/** Deletes every object of `resource` in `ns`; returns how many it deleted. */
async function emptyCollection(client: KubeClient, resource: ServedResource, ns: string, tenant: string): Promise<number> {
  const path = collectionPath(resource, ns);
  const ours = builtinGroups.includes(resource.group);
  const response = await client("DELETE", path, deleteNow);
  if (response.status === 404 || response.status === 405) return 0;
  if (response.status === 403 && !ours) return 0; // a host CRD's group the control plane may not touch: tenants cannot write it either
  if (response.status !== 200) throw new KubeError("DELETE", path, response.status, response.body?.message ?? response.text.slice(0, 300));
  let deleted = ((response.body?.items as KubeObject[] | undefined) ?? []).length;
  // What is left waits on finalizers (e.g. kubernetes.io/pvc-protection) that no controller of a deleted tenant will serve.
  for (let round = 0; round < 3; round++) {
    const left = await listItems(client, path);
    if (left.length === 0) return deleted;
    for (const object of left) {
      const objectPath = `${path}/${encodeURIComponent(object.metadata!.name)}`;
      if ((object.metadata?.finalizers as string[] | undefined)?.length) {
        await expectStatus(client, "PATCH", objectPath, { metadata: { finalizers: null } }, [200, 404], { contentType: "application/merge-patch+json" });
      }
      if (await deleteIfPresent(client, objectPath, deleteNow)) deleted += object.metadata?.deletionTimestamp ? 0 : 1;
    }
  }
  const left = await listItems(client, path);
  if (left.length > 0) throw new Error(`tenant ${tenant}: ${left.length} ${resourceKey(resource)} in ${ns} could not be deleted`);
  return deleted;
}

/** Empties a deleted namespace's spec.finalizers (the namespace controller's job) and deletes it again, which removes it. */
async function finalizeNamespace(client: KubeClient, ns: string): Promise<void> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const current = await client("GET", `/api/v1/namespaces/${ns}`);
    if (current.status === 404) return;
    if (current.status !== 200 || !current.body) throw new KubeError("GET", `/api/v1/namespaces/${ns}`, current.status, current.text.slice(0, 300));
    const namespace = current.body;
    if ((namespace.spec?.finalizers as string[] | undefined)?.length) {
      namespace.spec.finalizers = [];
      const finalized = await client("PUT", `/api/v1/namespaces/${ns}/finalize`, namespace);
      if (finalized.status === 409) continue; // changed meanwhile: read again
      if (finalized.status !== 200 && finalized.status !== 404) throw new KubeError("PUT", `/api/v1/namespaces/${ns}/finalize`, finalized.status, finalized.text.slice(0, 300));
    }
    await deleteIfPresent(client, `/api/v1/namespaces/${ns}`);
  }
  const left = await client("GET", `/api/v1/namespaces/${ns}`);
  if (left.status !== 404) throw new Error(`namespace ${ns} is still there after finalizing: ${left.text.slice(0, 300)}`);
}

export type Log = (level: "info" | "warn" | "error", message: string, fields?: Record<string, unknown>) => void;

/**
 * Calls `onTenant(T)` whenever a CRD of tenant T (spec.group "wt-T-…") is
 * added, changed or removed, until `signal` aborts; calls for one tenant do
 * not overlap, and changes meanwhile are folded into one more call. The
 * watch is re-established after errors; each (re)start reports every CRD.
 */
export async function watchTenantCrds(kubeconfigFile: string, onTenant: (tenant: string) => Promise<void>, log: Log, signal: AbortSignal): Promise<void> {
  const config = new KubeConfig();
  config.loadFromFile(kubeconfigFile);
  const watch = new Watch(config);
  const running = new Map<string, Promise<void>>();
  const dirty = new Set<string>();
  const kick = (tenant: string): void => {
    if (running.has(tenant)) {
      dirty.add(tenant);
      return;
    }
    const run = async (): Promise<void> => {
      do {
        dirty.delete(tenant);
        await onTenant(tenant).catch((error: Error) => log("error", "tenant CRD rules not synced", { tenant, error: error.message }));
      } while (dirty.has(tenant) && !signal.aborted);
      running.delete(tenant);
    };
    running.set(tenant, run());
  };
  while (!signal.aborted) {
    await new Promise<void>((resolve) => {
      watch
        .watch(
          crds,
          {},
          (_phase: string, crd: { spec?: { group?: string } }) => {
            const owner = splitUpstreamName(crd.spec?.group ?? "");
            if (owner) kick(owner.tenant);
          },
          (error: unknown) => {
            if (error && !signal.aborted) log("warn", "CRD watch ended; re-watching", { error: String(error) });
            resolve();
          },
        )
        .then(
          (controller) => {
            if (signal.aborted) controller.abort();
            else signal.addEventListener("abort", () => controller.abort(), { once: true });
          },
          (error: unknown) => {
            log("warn", "cannot watch CRDs; retrying", { error: String(error) });
            resolve();
          },
        );
    });
    if (!signal.aborted) await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  await Promise.all(running.values());
}

export interface TenantUpstream {
  ensurePolicy(): Promise<void>;
  prefixTaken(tenant: string): Promise<string | undefined>;
  setUp(tenant: { name: string; sharedViews: string[] }): Promise<void>;
  remove(tenant: string): Promise<Record<string, number>>;
  /** Rewrites tenant T's admin role with the groups of its CRDs as they are now. */
  syncRules(tenant: string): Promise<void>;
  /** Keeps every tenant's admin role in step with its CRDs until `signal` aborts (watchTenantCrds). */
  watchCrds(log: Log, signal: AbortSignal): Promise<void>;
}

/**
 * The control plane's upstream side for `kubeconfig` (tenancy.kubeconfig):
 * its discovery is read once per 5 minutes, the rest on every call.
 */
export function tenantUpstream(kubeconfig: string, options: { controlPlaneUser?: string } = {}): TenantUpstream {
  let client: Promise<KubeClient> | undefined;
  const connect = () => (client ??= connectionFromKubeconfig(kubeconfig).then(kubeClient));
  let discovery: { at: number; served: Promise<ServedResource[]> } | undefined;
  const served = async () => {
    if (!discovery || Date.now() - discovery.at > 300_000) {
      discovery = { at: Date.now(), served: servedResources(await connect()) };
      discovery.served.catch(() => (discovery = undefined));
    }
    return discovery.served;
  };
  return {
    ensurePolicy: async () => ensureTenancyPolicy(await connect(), { controlPlaneUser: options.controlPlaneUser }),
    prefixTaken: async (tenant) => prefixTaken(await connect(), tenant),
    setUp: async (tenant) => setUpTenant(await connect(), tenant.name, tenant.sharedViews, await served()),
    remove: async (tenant) => deleteTenant(await connect(), tenant, { served: await served() }),
    syncRules: async (tenant) => syncTenantRules(await connect(), tenant, await served()),
    watchCrds: (log, signal) => watchTenantCrds(kubeconfig, async (tenant) => syncTenantRules(await connect(), tenant, await served()), log, signal),
  };
}
