// The tenant name mapping (docs/tenancy.md), the AssemblyScript twin of
// control-plane/src/tenancy/naming.ts, rule for rule: the same names are
// mapped to the same upstream names and the same names are refused
// (filters/src/tenant/request-naming.test.ts drives both with the same
// seeded inputs). AssemblyScript has no exceptions: a map function returns
// null and leaves the reason in `namingError`. A tenant name has no '-', so
// in "wt-<T>-<rest>" the tenant ends at the first '-' after "wt-" and the
// mapping is injective. Unmap functions answer null for a name that is not
// the tenant's: the caller treats that object as invisible.

/** The label every tenant object carries upstream. */
export const tenantLabel = "tenancy.wharf.dev/tenant";
/** Upstream names starting with this belong to tenancy; no host object may use it. */
export const reservedPrefix = "wt-";
/** Prefix of every upstream user and group of a tenant identity. */
export const identityPrefix = "wharf:tenant:";
export const maxTenantNameLength = 12;
export const maxLabelLength = 63;
export const maxSubdomainLength = 253;
/** Kubernetes does not bound path-segment names (RBAC objects); wharf does, as for most kinds. */
export const maxObjectNameLength = 253;

/** Why the last map function returned null. */
export let namingError = "";

function fail(reason: string): string | null {
  namingError = reason;
  return null;
}

function isLower(c: i32): bool {
  return c >= 0x61 && c <= 0x7a;
}

function isDigit(c: i32): bool {
  return c >= 0x30 && c <= 0x39;
}

/** [a-z][a-z0-9]{0,11} */
export function isTenantName(name: string): bool {
  if (name.length == 0 || name.length > maxTenantNameLength) return false;
  if (!isLower(name.charCodeAt(0))) return false;
  for (let i = 1; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (!isLower(c) && !isDigit(c)) return false;
  }
  return true;
}

/** "wt-<T>-" */
export function tenantPrefix(tenant: string): string {
  return reservedPrefix + tenant + "-";
}

function isLabelText(value: string, start: i32, end: i32): bool {
  if (end <= start) return false;
  for (let i = start; i < end; i++) {
    const c = value.charCodeAt(i);
    if (isLower(c) || isDigit(c)) continue;
    if (c == 0x2d && i != start && i != end - 1) continue;
    return false;
  }
  return true;
}

/** RFC 1123 label as Kubernetes checks it. */
export function isDnsLabel(value: string): bool {
  return value.length <= maxLabelLength && isLabelText(value, 0, value.length);
}

/** RFC 1123 subdomain as Kubernetes checks it. */
export function isDnsSubdomain(value: string): bool {
  if (value.length == 0 || value.length > maxSubdomainLength) return false;
  let start = 0;
  while (true) {
    const dot = value.indexOf(".", start);
    const end = dot < 0 ? value.length : dot;
    if (!isLabelText(value, start, end)) return false;
    if (dot < 0) return true;
    start = dot + 1;
  }
  return false;
}

/** Kubernetes' path-segment name rule: not "." or "..", no '/' or '%'. */
export function isPathSegmentName(value: string): bool {
  return value.length > 0 && value != "." && value != ".." && value.indexOf("/") < 0 && value.indexOf("%") < 0;
}

/** The longest namespace name tenant T can have (its upstream name is a 63-character DNS label). */
export function maxNamespaceLength(tenant: string): i32 {
  return maxLabelLength - tenantPrefix(tenant).length;
}

/** Namespace `ns` of T → "wt-T-ns", or null (namingError). */
export function mapNamespace(tenant: string, namespace: string): string | null {
  if (!isDnsLabel(namespace)) return fail("namespace \"" + namespace + "\" is not a valid name: a lowercase RFC 1123 label (a-z, 0-9, '-' inside), at most 63 characters");
  const max = maxNamespaceLength(tenant);
  if (namespace.length > max) return fail("namespace \"" + namespace + "\" is " + namespace.length.toString() + " characters; a tenant \"" + tenant + "\" namespace may have at most " + max.toString());
  return tenantPrefix(tenant) + namespace;
}

export function unmapNamespace(tenant: string, upstream: string): string | null {
  const prefix = tenantPrefix(tenant);
  if (!upstream.startsWith(prefix)) return null;
  const namespace = upstream.substring(prefix.length);
  return isDnsLabel(namespace) && upstream.length <= maxLabelLength ? namespace : null;
}

/** Cluster-scoped object `name` of T → "wt-T-name" (namespaces use mapNamespace, CRDs mapCrdName). */
export function mapClusterName(tenant: string, name: string): string | null {
  if (!isPathSegmentName(name)) return fail("name \"" + name + "\" is not a valid object name: it may not be empty, \".\" or \"..\", nor contain '/' or '%'");
  const prefix = tenantPrefix(tenant);
  const max = maxObjectNameLength - prefix.length;
  if (name.length > max) return fail("name \"" + name.substring(0, 32) + "...\" is " + name.length.toString() + " characters; a tenant \"" + tenant + "\" object name may have at most " + max.toString());
  return prefix + name;
}

export function unmapClusterName(tenant: string, upstream: string): string | null {
  const prefix = tenantPrefix(tenant);
  if (!upstream.startsWith(prefix)) return null;
  const name = upstream.substring(prefix.length);
  return isPathSegmentName(name) && upstream.length <= maxObjectNameLength ? name : null;
}

/** API group: a host group stays; any other is T's own → "wt-T-g". */
export function mapGroup(tenant: string, group: string, hostGroups: string[]): string | null {
  if (group.length == 0 || hostGroups.includes(group)) return group;
  if (!isDnsSubdomain(group)) return fail("API group \"" + group + "\" is not a valid name: a lowercase RFC 1123 subdomain, at most 253 characters");
  const prefix = tenantPrefix(tenant);
  const max = maxSubdomainLength - prefix.length;
  if (group.length > max) return fail("API group \"" + group.substring(0, 32) + "...\" is " + group.length.toString() + " characters; a tenant \"" + tenant + "\" group may have at most " + max.toString());
  return prefix + group;
}

/** The tenant's name for an upstream group, or null if the group is neither a host group nor T's. */
export function unmapGroup(tenant: string, upstream: string, hostGroups: string[]): string | null {
  if (upstream.length == 0 || (hostGroups.includes(upstream) && !upstream.startsWith(reservedPrefix))) return upstream;
  const prefix = tenantPrefix(tenant);
  if (!upstream.startsWith(prefix)) return null;
  const group = upstream.substring(prefix.length);
  return isDnsSubdomain(group) && upstream.length <= maxSubdomainLength && !hostGroups.includes(group) ? group : null;
}

/** apiVersion "g/v" → "wt-T-g/v" for T's own groups; "v" (core) and host groups stay. */
export function mapApiVersion(tenant: string, apiVersion: string, hostGroups: string[]): string | null {
  const slash = apiVersion.indexOf("/");
  if (slash < 0) {
    if (!isDnsLabel(apiVersion)) return fail("apiVersion \"" + apiVersion + "\" is not a valid version");
    return apiVersion;
  }
  const version = apiVersion.substring(slash + 1);
  if (!isDnsLabel(version)) return fail("apiVersion \"" + apiVersion + "\" is not GROUP/VERSION");
  const group = apiVersion.substring(0, slash);
  if (group.length == 0) return fail("apiVersion \"" + apiVersion + "\" has an empty group");
  const mapped = mapGroup(tenant, group, hostGroups);
  return mapped === null ? null : mapped! + "/" + version;
}

export function unmapApiVersion(tenant: string, upstream: string, hostGroups: string[]): string | null {
  const slash = upstream.indexOf("/");
  if (slash < 0) return isDnsLabel(upstream) ? upstream : null;
  const version = upstream.substring(slash + 1);
  const group = upstream.substring(0, slash);
  if (!isDnsLabel(version) || group.length == 0) return null;
  const unmapped = unmapGroup(tenant, group, hostGroups);
  return unmapped === null ? null : unmapped! + "/" + version;
}

/** CRD "plural.group" → "plural.wt-T-group"; a host group is refused. */
export function mapCrdName(tenant: string, name: string, hostGroups: string[]): string | null {
  const dot = name.indexOf(".");
  const plural = dot < 0 ? name : name.substring(0, dot);
  const group = dot < 0 ? "" : name.substring(dot + 1);
  if (!isDnsLabel(plural) || group.length == 0) return fail("CustomResourceDefinition name \"" + name + "\" is not PLURAL.GROUP");
  if (hostGroups.includes(group)) return fail("CustomResourceDefinition \"" + name + "\": group \"" + group + "\" is served by the host; a tenant's CRD needs a group of its own");
  const mappedGroup = mapGroup(tenant, group, hostGroups);
  if (mappedGroup === null) return null;
  const mapped = plural + "." + mappedGroup!;
  if (mapped.length > maxSubdomainLength) return fail("CustomResourceDefinition name \"" + name.substring(0, 32) + "...\" is too long: the upstream name would exceed 253 characters");
  return mapped;
}

export function unmapCrdName(tenant: string, upstream: string, hostGroups: string[]): string | null {
  const dot = upstream.indexOf(".");
  if (dot < 0 || upstream.length > maxSubdomainLength) return null;
  const plural = upstream.substring(0, dot);
  if (!isDnsLabel(plural)) return null;
  const upstreamGroup = upstream.substring(dot + 1);
  if (!upstreamGroup.startsWith(tenantPrefix(tenant))) return null;
  const group = unmapGroup(tenant, upstreamGroup, hostGroups);
  return group === null ? null : plural + "." + group!;
}

/** "wharf:tenant:T": the group every identity of T has upstream. */
export function tenantIdentityGroup(tenant: string): string {
  return identityPrefix + tenant;
}

/** User u of T → "wharf:tenant:T:u". */
export function mapUser(tenant: string, user: string): string | null {
  if (user.length == 0) return fail("user name is empty");
  return identityPrefix + tenant + ":" + user;
}

export function unmapUser(tenant: string, upstream: string): string | null {
  const prefix = identityPrefix + tenant + ":";
  return upstream.startsWith(prefix) && upstream.length > prefix.length ? upstream.substring(prefix.length) : null;
}

/** Group g of T → "wharf:tenant:T:g". */
export function mapGroupName(tenant: string, group: string): string | null {
  if (group.length == 0) return fail("group name is empty");
  return identityPrefix + tenant + ":" + group;
}

export function unmapGroupName(tenant: string, upstream: string): string | null {
  return unmapUser(tenant, upstream);
}

export const serviceAccountUserPrefix = "system:serviceaccount:";
export const serviceAccountGroupPrefix = "system:serviceaccounts:";

/**
 * An RBAC User subject: "system:serviceaccount:NS:N" names T's service
 * account (NS mapped as a namespace); any other user is T's own.
 */
export function mapSubjectUser(tenant: string, user: string): string | null {
  if (user.startsWith(serviceAccountUserPrefix)) {
    const rest = user.substring(serviceAccountUserPrefix.length);
    const colon = rest.indexOf(":");
    if (colon > 0 && colon < rest.length - 1) {
      const namespace = mapNamespace(tenant, rest.substring(0, colon));
      return namespace === null ? null : serviceAccountUserPrefix + namespace! + rest.substring(colon);
    }
  }
  return mapUser(tenant, user);
}

/** An RBAC Group subject: "system:serviceaccounts:NS" names T's namespace's service accounts. */
export function mapSubjectGroup(tenant: string, group: string): string | null {
  if (group.startsWith(serviceAccountGroupPrefix)) {
    const namespace = mapNamespace(tenant, group.substring(serviceAccountGroupPrefix.length));
    return namespace === null ? null : serviceAccountGroupPrefix + namespace!;
  }
  return mapGroupName(tenant, group);
}

// The reverse functions under the names the response side (response-*.ts) calls them by.

export function tenantNamespace(tenant: string, upstream: string): string | null {
  return unmapNamespace(tenant, upstream);
}

export function tenantClusterName(tenant: string, upstream: string): string | null {
  return unmapClusterName(tenant, upstream);
}

export function tenantGroup(tenant: string, upstream: string, hostGroups: string[]): string | null {
  return unmapGroup(tenant, upstream, hostGroups);
}

export function tenantApiVersion(tenant: string, upstream: string, hostGroups: string[]): string | null {
  return unmapApiVersion(tenant, upstream, hostGroups);
}

/** A CRD's upstream name → T's; its group is T's own, so no host group list is needed. */
export function tenantCrdName(tenant: string, upstream: string): string | null {
  return unmapCrdName(tenant, upstream, new Array<string>());
}

export function tenantUser(tenant: string, upstream: string): string | null {
  return unmapUser(tenant, upstream);
}

export function tenantUserGroup(tenant: string, upstream: string): string | null {
  return unmapGroupName(tenant, upstream);
}
