// The tenant name mapping (docs/tenancy.md), the AssemblyScript twin of
// control-plane/src/tenancy/naming.ts; a test drives both with the same
// seeded inputs. A tenant name has no '-', so in "wt-<T>-<rest>" the tenant
// ends at the first '-' after "wt-" and the mapping is injective. The
// reverse functions answer null for a name that is not the tenant's: the
// caller treats that object as invisible (or the request as refused).

/** The label every tenant object carries upstream. */
export const tenantLabel = "tenancy.wharf.dev/tenant";
/** Upstream names starting with this belong to tenancy; no host object may use it. */
export const reservedPrefix = "wt-";
/** Prefix of every upstream user and group of a tenant identity. */
export const identityPrefix = "wharf:tenant:";
/** A DNS label (namespace names) upstream. */
export const maxLabelLength = 63;

/** [a-z][a-z0-9]{0,11} */
export function isTenantName(name: string): bool {
  if (name.length == 0 || name.length > 12) return false;
  const first = name.charCodeAt(0);
  if (first < 0x61 || first > 0x7a) return false;
  for (let i = 1; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39))) return false;
  }
  return true;
}

/** "wt-<T>-" */
export function tenantPrefix(tenant: string): string {
  return reservedPrefix + tenant + "-";
}

/** The longest namespace name tenant T can have (its upstream name is a 63-char DNS label). */
export function maxNamespaceLength(tenant: string): i32 {
  return maxLabelLength - reservedPrefix.length - 1 - tenant.length;
}

function strip(prefix: string, upstream: string): string | null {
  if (upstream.length <= prefix.length || !upstream.startsWith(prefix)) return null;
  return upstream.substring(prefix.length);
}

/** Namespace `ns` of T ↔ "wt-T-ns". */
export function upstreamNamespace(tenant: string, namespace: string): string {
  return tenantPrefix(tenant) + namespace;
}

export function tenantNamespace(tenant: string, upstream: string): string | null {
  return strip(tenantPrefix(tenant), upstream);
}

/** Cluster-scoped object `name` of T (namespaces, ClusterRoles, ...) ↔ "wt-T-name". */
export function upstreamClusterName(tenant: string, name: string): string {
  return tenantPrefix(tenant) + name;
}

export function tenantClusterName(tenant: string, upstream: string): string | null {
  return strip(tenantPrefix(tenant), upstream);
}

/** API group: host groups unchanged, any other is the tenant's own ↔ "wt-T-g". */
export function upstreamGroup(tenant: string, group: string, hostGroups: string[]): string {
  if (group.length == 0 || hostGroups.includes(group)) return group;
  return tenantPrefix(tenant) + group;
}

/** The tenant's name for an upstream group, or null if the group is neither a host group nor T's. */
export function tenantGroup(tenant: string, upstream: string, hostGroups: string[]): string | null {
  if (upstream.length == 0 || hostGroups.includes(upstream)) return upstream;
  return strip(tenantPrefix(tenant), upstream);
}

/** apiVersion "g/v" ↔ "wt-T-g/v"; "v1" (core) unchanged. */
export function upstreamApiVersion(tenant: string, apiVersion: string, hostGroups: string[]): string {
  const slash = apiVersion.lastIndexOf("/");
  if (slash < 0) return apiVersion;
  return upstreamGroup(tenant, apiVersion.substring(0, slash), hostGroups) + apiVersion.substring(slash);
}

export function tenantApiVersion(tenant: string, upstream: string, hostGroups: string[]): string | null {
  const slash = upstream.lastIndexOf("/");
  if (slash < 0) return upstream;
  const group = tenantGroup(tenant, upstream.substring(0, slash), hostGroups);
  return group === null ? null : group! + upstream.substring(slash);
}

/** CRD "plural.group" ↔ "plural.wt-T-group" (its spec.group is mapped); null without a '.'. */
export function upstreamCrdName(tenant: string, name: string): string | null {
  const dot = name.indexOf(".");
  if (dot <= 0 || dot == name.length - 1) return null;
  return name.substring(0, dot + 1) + tenantPrefix(tenant) + name.substring(dot + 1);
}

export function tenantCrdName(tenant: string, upstream: string): string | null {
  const dot = upstream.indexOf(".");
  if (dot <= 0) return null;
  const group = strip(tenantPrefix(tenant), upstream.substring(dot + 1));
  return group === null ? null : upstream.substring(0, dot + 1) + group!;
}

/** "wharf:tenant:T": the group every identity of T has upstream. */
export function tenantIdentityGroup(tenant: string): string {
  return identityPrefix + tenant;
}

/** User u of T ↔ "wharf:tenant:T:u". */
export function upstreamUser(tenant: string, user: string): string {
  return identityPrefix + tenant + ":" + user;
}

export function tenantUser(tenant: string, upstream: string): string | null {
  return strip(identityPrefix + tenant + ":", upstream);
}

/** Group g of T ↔ "wharf:tenant:T:g". */
export function upstreamUserGroup(tenant: string, group: string): string {
  return identityPrefix + tenant + ":" + group;
}

export function tenantUserGroup(tenant: string, upstream: string): string | null {
  return strip(identityPrefix + tenant + ":", upstream);
}
