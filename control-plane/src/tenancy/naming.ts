// The name mapping between a tenant's view of its cluster and the one
// kube-apiserver they all share (docs/tenancy.md, "The name mapping").
//
// Pure functions over strings, no dependencies: filters/assembly/tenant/
// naming.ts is the AssemblyScript twin the gateway runs, and both are compared
// on the same inputs. Mapping refuses (NamingError) anything it cannot map to
// a valid upstream name; unmapping returns null for an upstream name that is
// not in the image of the mapping for that tenant (another tenant's, the
// host's, or one no tenant request can produce).
//
// Why it is injective: every tenant-derived upstream name starts with
// "wt-" + T + "-" (or "wharf:tenant:" + T + ":" for identities), and T
// matches [a-z][a-z0-9]{0,11}: it holds no '-' (no ':'), so T is exactly the
// text between "wt-" and the next '-', and the name is the rest. The unmap
// functions below are left inverses of the map functions, which is the proof.

/** Label set on every tenant object upstream; its value is the tenant name. */
export const tenantLabel = "tenancy.wharf.dev/tenant";

/** The reserved prefix of every tenant-derived upstream name. */
export const reservedPrefix = "wt-";

/** The prefix of every upstream user or group name that stands for a tenant identity. */
export const tenantIdentityPrefix = "wharf:tenant:";

export const maxTenantNameLength = 12;

/** Namespaces every tenant gets at creation, as the tenant sees them. */
export const tenantSystemNamespaces: readonly string[] = ["default", "kube-system", "kube-public", "kube-node-lease"];

/**
 * API groups kube-apiserver 1.36 serves itself ("" is the core group). A
 * tenant sees them as they are; any other group it names is its own. Checked
 * against a real apiserver's discovery in naming.test.ts.
 */
export const builtinGroups: readonly string[] = [
  "",
  "admissionregistration.k8s.io",
  "apiextensions.k8s.io",
  "apiregistration.k8s.io",
  "apps",
  "authentication.k8s.io",
  "authorization.k8s.io",
  "autoscaling",
  "batch",
  "certificates.k8s.io",
  "coordination.k8s.io",
  "discovery.k8s.io",
  "events.k8s.io",
  "flowcontrol.apiserver.k8s.io",
  "networking.k8s.io",
  "node.k8s.io",
  "policy",
  "rbac.authorization.k8s.io",
  "resource.k8s.io",
  "scheduling.k8s.io",
  "storage.k8s.io",
];

/** A set of host group names (see `hostGroupSet`). */
export type HostGroups = ReadonlySet<string>;

/** Refusal to map a name: `reason` says which rule it breaks, fit for a Kubernetes Status message. */
export class NamingError extends Error {
  override readonly name = "NamingError";
}

// --- tenant names --------------------------------------------------------

/** Why `name` is not a valid tenant name, or undefined when it is. */
export function tenantNameError(name: string): string | undefined {
  if (name.length === 0) return "tenant name is empty";
  if (name.length > maxTenantNameLength) {
    return `tenant name "${name}" is ${name.length} characters; at most ${maxTenantNameLength}`;
  }
  if (!isLower(name.charCodeAt(0))) return `tenant name "${name}" must start with a lowercase letter a-z`;
  for (let i = 1; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (!isLower(c) && !isDigit(c)) {
      return c === 0x2d
        ? `tenant name "${name}" may not contain '-': it separates the tenant from the name in wt-<tenant>-<name>`
        : `tenant name "${name}" may contain only a-z and 0-9`;
    }
  }
  return undefined;
}

export function isTenantName(name: string): boolean {
  return tenantNameError(name) === undefined;
}

export function assertTenantName(name: string): void {
  const error = tenantNameError(name);
  if (error !== undefined) throw new NamingError(error);
}

/** "wt-T-": every upstream namespace and cluster-scoped name of tenant T starts with it. */
export function tenantPrefix(tenant: string): string {
  assertTenantName(tenant);
  return reservedPrefix + tenant + "-";
}

/**
 * The tenant an upstream name ("wt-T-rest", rest non-empty) belongs to, and
 * the rest; null when it belongs to no tenant. Says nothing about whether the
 * rest is a name the tenant could have made (the unmap functions do).
 */
export function splitUpstreamName(upstream: string): { tenant: string; rest: string } | null {
  if (!upstream.startsWith(reservedPrefix)) return null;
  const dash = upstream.indexOf("-", reservedPrefix.length);
  if (dash < 0) return null;
  const tenant = upstream.slice(reservedPrefix.length, dash);
  const rest = upstream.slice(dash + 1);
  if (!isTenantName(tenant) || rest.length === 0) return null;
  return { tenant, rest };
}

// --- Kubernetes name rules ------------------------------------------------

export const maxLabelLength = 63;
export const maxSubdomainLength = 253;
/** Kubernetes does not bound path-segment names (RBAC objects); wharf does, as for most kinds. */
export const maxObjectNameLength = 253;

/** RFC 1123 label as Kubernetes checks it (IsDNS1123Label). */
export function isDnsLabel(value: string): boolean {
  return value.length <= maxLabelLength && isLabelText(value, 0, value.length);
}

/** RFC 1123 subdomain as Kubernetes checks it (IsDNS1123Subdomain: labels joined by '.', 253 at most). */
export function isDnsSubdomain(value: string): boolean {
  if (value.length === 0 || value.length > maxSubdomainLength) return false;
  let start = 0;
  for (;;) {
    const dot = value.indexOf(".", start);
    const end = dot < 0 ? value.length : dot;
    if (!isLabelText(value, start, end)) return false;
    if (dot < 0) return true;
    start = dot + 1;
  }
}

/** Kubernetes' path-segment name rule (RBAC objects): not "." or "..", no '/' or '%'. */
export function isPathSegmentName(value: string): boolean {
  return value.length > 0 && value !== "." && value !== ".." && !value.includes("/") && !value.includes("%");
}

function isLabelText(value: string, start: number, end: number): boolean {
  if (end <= start) return false;
  for (let i = start; i < end; i++) {
    const c = value.charCodeAt(i);
    if (isLower(c) || isDigit(c)) continue;
    if (c === 0x2d && i !== start && i !== end - 1) continue;
    return false;
  }
  return true;
}

function isLower(c: number): boolean {
  return c >= 0x61 && c <= 0x7a;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

// --- namespaces ------------------------------------------------------------

/** The longest namespace name tenant T may use: the upstream one is a 63-character label. */
export function maxNamespaceLength(tenant: string): number {
  return maxLabelLength - tenantPrefix(tenant).length;
}

/** Namespace `ns` of tenant T → "wt-T-ns". */
export function mapNamespace(tenant: string, ns: string): string {
  const prefix = tenantPrefix(tenant);
  if (!isDnsLabel(ns)) {
    throw new NamingError(`namespace "${ns}" is not a valid name: a lowercase RFC 1123 label (a-z, 0-9, '-' inside), at most 63 characters`);
  }
  const max = maxLabelLength - prefix.length;
  if (ns.length > max) {
    throw new NamingError(`namespace "${ns}" is ${ns.length} characters; a tenant "${tenant}" namespace may have at most ${max}`);
  }
  return prefix + ns;
}

/** Upstream namespace → tenant T's name for it, or null when it is not one of T's. */
export function unmapNamespace(tenant: string, upstream: string): string | null {
  const prefix = tenantPrefix(tenant);
  if (!upstream.startsWith(prefix)) return null;
  const ns = upstream.slice(prefix.length);
  return isDnsLabel(ns) && prefix.length + ns.length <= maxLabelLength ? ns : null;
}

// --- cluster-scoped names ----------------------------------------------------

/**
 * Cluster-scoped object `name` of tenant T (ClusterRoles, bindings, the
 * tenant's cluster-scoped custom resources) → "wt-T-name". The result obeys
 * whatever rule `name` obeys (subdomain, path segment), since the prefix is a
 * label followed by '-'; it is refused when longer than 253 characters.
 * Namespaces use mapNamespace, CRDs mapCrdName.
 */
export function mapClusterName(tenant: string, name: string): string {
  const prefix = tenantPrefix(tenant);
  if (!isPathSegmentName(name)) {
    throw new NamingError(`name "${name}" is not a valid object name: it may not be empty, "." or "..", nor contain '/' or '%'`);
  }
  const max = maxObjectNameLength - prefix.length;
  if (name.length > max) {
    throw new NamingError(`name "${name.slice(0, 32)}..." is ${name.length} characters; a tenant "${tenant}" object name may have at most ${max}`);
  }
  return prefix + name;
}

export function unmapClusterName(tenant: string, upstream: string): string | null {
  const prefix = tenantPrefix(tenant);
  if (!upstream.startsWith(prefix)) return null;
  const name = upstream.slice(prefix.length);
  return isPathSegmentName(name) && upstream.length <= maxObjectNameLength ? name : null;
}

// --- API groups, apiVersions, CRDs ---------------------------------------------

/**
 * Groups that are the host's whatever the configuration says: the core
 * group, and meta.k8s.io, which no apiserver lists in discovery but whose
 * kinds (Table, PartialObjectMetadata, WatchEvent) come back in responses.
 */
export const alwaysHostGroups: readonly string[] = ["", "meta.k8s.io"];

/** The host groups as a set; refuses a "wt-" group (the prefix is the tenants'). */
export function hostGroupSet(groups: readonly string[] = builtinGroups): HostGroups {
  for (const group of groups) {
    if (group.startsWith(reservedPrefix)) throw new NamingError(`host group "${group}": the prefix "${reservedPrefix}" is reserved for tenants`);
  }
  return new Set([...alwaysHostGroups, ...groups]);
}

/** API group g: a host group stays; any other is T's own → "wt-T-g". */
export function mapGroup(tenant: string, group: string, hostGroups: HostGroups): string {
  const prefix = tenantPrefix(tenant);
  if (group === "" || hostGroups.has(group)) return group;
  if (!isDnsSubdomain(group)) {
    throw new NamingError(`API group "${group}" is not a valid name: a lowercase RFC 1123 subdomain, at most 253 characters`);
  }
  const max = maxSubdomainLength - prefix.length;
  if (group.length > max) {
    throw new NamingError(`API group "${group.slice(0, 32)}..." is ${group.length} characters; a tenant "${tenant}" group may have at most ${max}`);
  }
  return prefix + group;
}

/** Upstream group → T's name for it; null for another tenant's group or a non-host group of no tenant. */
export function unmapGroup(tenant: string, upstream: string, hostGroups: HostGroups): string | null {
  assertTenantName(tenant);
  if (upstream === "" || (hostGroups.has(upstream) && !upstream.startsWith(reservedPrefix))) return upstream;
  const prefix = tenantPrefix(tenant);
  if (!upstream.startsWith(prefix)) return null;
  const group = upstream.slice(prefix.length);
  return isDnsSubdomain(group) && upstream.length <= maxSubdomainLength && !hostGroups.has(group) ? group : null;
}

/** apiVersion "g/v" → "wt-T-g/v" for T's own groups; "v" (core) and host groups stay. */
export function mapApiVersion(tenant: string, apiVersion: string, hostGroups: HostGroups): string {
  const slash = apiVersion.indexOf("/");
  if (slash < 0) {
    assertTenantName(tenant);
    if (!isDnsLabel(apiVersion)) throw new NamingError(`apiVersion "${apiVersion}" is not a valid version`);
    return apiVersion;
  }
  const version = apiVersion.slice(slash + 1);
  if (!isDnsLabel(version)) throw new NamingError(`apiVersion "${apiVersion}" is not GROUP/VERSION`);
  const group = apiVersion.slice(0, slash);
  if (group === "") throw new NamingError(`apiVersion "${apiVersion}" has an empty group`);
  return mapGroup(tenant, group, hostGroups) + "/" + version;
}

export function unmapApiVersion(tenant: string, upstream: string, hostGroups: HostGroups): string | null {
  assertTenantName(tenant);
  const slash = upstream.indexOf("/");
  if (slash < 0) return isDnsLabel(upstream) ? upstream : null;
  const version = upstream.slice(slash + 1);
  const group = upstream.slice(0, slash);
  if (!isDnsLabel(version) || group === "") return null;
  const unmapped = unmapGroup(tenant, group, hostGroups);
  return unmapped === null ? null : unmapped + "/" + version;
}

/**
 * CRD "plural.group" → "plural.wt-T-group" (its spec.group maps with
 * mapGroup). A tenant's CRD cannot define a host group: that group's paths
 * would reach the host's resources, not the CRD.
 */
export function mapCrdName(tenant: string, name: string, hostGroups: HostGroups): string {
  const dot = name.indexOf(".");
  const plural = dot < 0 ? name : name.slice(0, dot);
  const group = dot < 0 ? "" : name.slice(dot + 1);
  if (!isDnsLabel(plural) || group === "") {
    throw new NamingError(`CustomResourceDefinition name "${name}" is not PLURAL.GROUP`);
  }
  if (hostGroups.has(group)) {
    throw new NamingError(`CustomResourceDefinition "${name}": group "${group}" is served by the host; a tenant's CRD needs a group of its own`);
  }
  const mapped = plural + "." + mapGroup(tenant, group, hostGroups);
  if (mapped.length > maxSubdomainLength) {
    throw new NamingError(`CustomResourceDefinition name "${name.slice(0, 32)}..." is too long: the upstream name would exceed 253 characters`);
  }
  return mapped;
}

export function unmapCrdName(tenant: string, upstream: string, hostGroups: HostGroups): string | null {
  const dot = upstream.indexOf(".");
  if (dot < 0 || upstream.length > maxSubdomainLength) return null;
  const plural = upstream.slice(0, dot);
  if (!isDnsLabel(plural)) return null;
  const upstreamGroup = upstream.slice(dot + 1);
  if (!upstreamGroup.startsWith(tenantPrefix(tenant))) return null;
  const group = unmapGroup(tenant, upstreamGroup, hostGroups);
  return group === null ? null : plural + "." + group;
}

// --- identities and RBAC subjects ------------------------------------------------

const serviceAccountUserPrefix = "system:serviceaccount:";
const serviceAccountGroupPrefix = "system:serviceaccounts:";

/** The upstream prefix of T's identities: "wharf:tenant:T:". */
export function identityPrefix(tenant: string): string {
  assertTenantName(tenant);
  return tenantIdentityPrefix + tenant + ":";
}

/** The group every identity of tenant T has upstream: "wharf:tenant:T". */
export function tenantGroup(tenant: string): string {
  assertTenantName(tenant);
  return tenantIdentityPrefix + tenant;
}

/** The tenant of an upstream user or group "wharf:tenant:T[:...]", else null. */
export function tenantOfIdentity(upstream: string): string | null {
  if (!upstream.startsWith(tenantIdentityPrefix)) return null;
  const colon = upstream.indexOf(":", tenantIdentityPrefix.length);
  const tenant = upstream.slice(tenantIdentityPrefix.length, colon < 0 ? upstream.length : colon);
  return isTenantName(tenant) ? tenant : null;
}

/** A tenant user (a certificate's CN) → "wharf:tenant:T:u". */
export function mapUser(tenant: string, user: string): string {
  const prefix = identityPrefix(tenant);
  if (user.length === 0) throw new NamingError("user name is empty");
  return prefix + user;
}

export function unmapUser(tenant: string, upstream: string): string | null {
  const prefix = identityPrefix(tenant);
  return upstream.startsWith(prefix) && upstream.length > prefix.length ? upstream.slice(prefix.length) : null;
}

/** A tenant group (a certificate's O) → "wharf:tenant:T:g". */
export function mapGroupName(tenant: string, group: string): string {
  const prefix = identityPrefix(tenant);
  if (group.length === 0) throw new NamingError("group name is empty");
  return prefix + group;
}

export function unmapGroupName(tenant: string, upstream: string): string | null {
  return unmapUser(tenant, upstream);
}

/** The identity the gateway asserts upstream for tenant T's user with certificate groups `groups`. */
export function mapIdentity(tenant: string, user: string, groups: readonly string[]): { user: string; groups: string[] } {
  return { user: mapUser(tenant, user), groups: [tenantGroup(tenant), ...groups.map((group) => mapGroupName(tenant, group))] };
}

export interface Subject {
  kind: string;
  name: string;
  namespace?: string;
  apiGroup?: string;
}

/**
 * An RBAC subject of tenant T → upstream. User u → "wharf:tenant:T:u" and
 * Group g → "wharf:tenant:T:g", except the names Kubernetes gives service
 * accounts: User "system:serviceaccount:NS:N" and Group
 * "system:serviceaccounts:NS" name T's service accounts, so NS maps like a
 * namespace. ServiceAccount NS/N → namespace "wt-T-NS". Any other kind is
 * refused.
 */
export function mapSubject(tenant: string, subject: Subject): Subject {
  switch (subject.kind) {
    case "User": {
      const account = splitServiceAccountUser(subject.name);
      const name = account
        ? serviceAccountUserPrefix + mapNamespace(tenant, account.namespace) + ":" + account.name
        : mapUser(tenant, subject.name);
      return { ...subject, name };
    }
    case "Group": {
      const name = subject.name.startsWith(serviceAccountGroupPrefix)
        ? serviceAccountGroupPrefix + mapNamespace(tenant, subject.name.slice(serviceAccountGroupPrefix.length))
        : mapGroupName(tenant, subject.name);
      return { ...subject, name };
    }
    case "ServiceAccount": {
      if (subject.namespace === undefined || subject.namespace === "") throw new NamingError(`ServiceAccount subject "${subject.name}" has no namespace`);
      if (!isDnsSubdomain(subject.name)) throw new NamingError(`ServiceAccount subject "${subject.name}" is not a valid name`);
      return { ...subject, namespace: mapNamespace(tenant, subject.namespace) };
    }
    default:
      throw new NamingError(`subject kind "${subject.kind}" is not User, Group or ServiceAccount`);
  }
}

/** Upstream RBAC subject → T's, or null when it names no identity of T's. */
export function unmapSubject(tenant: string, subject: Subject): Subject | null {
  switch (subject.kind) {
    case "User": {
      if (subject.name.startsWith(serviceAccountUserPrefix)) {
        const account = splitServiceAccountUser(subject.name);
        const ns = account ? unmapNamespace(tenant, account.namespace) : null;
        return account && ns !== null ? { ...subject, name: serviceAccountUserPrefix + ns + ":" + account.name } : null;
      }
      const name = unmapUser(tenant, subject.name);
      return name === null || splitServiceAccountUser(name) ? null : { ...subject, name };
    }
    case "Group": {
      if (subject.name.startsWith(serviceAccountGroupPrefix)) {
        const ns = unmapNamespace(tenant, subject.name.slice(serviceAccountGroupPrefix.length));
        return ns === null ? null : { ...subject, name: serviceAccountGroupPrefix + ns };
      }
      const name = unmapGroupName(tenant, subject.name);
      return name === null || name.startsWith(serviceAccountGroupPrefix) ? null : { ...subject, name };
    }
    case "ServiceAccount": {
      const ns = subject.namespace === undefined ? null : unmapNamespace(tenant, subject.namespace);
      return ns === null || !isDnsSubdomain(subject.name) ? null : { ...subject, namespace: ns };
    }
    default:
      return null;
  }
}

/** "system:serviceaccount:NS:NAME" with a non-empty NS and NAME, split; else null. */
function splitServiceAccountUser(user: string): { namespace: string; name: string } | null {
  if (!user.startsWith(serviceAccountUserPrefix)) return null;
  const rest = user.slice(serviceAccountUserPrefix.length);
  const colon = rest.indexOf(":");
  if (colon <= 0 || colon === rest.length - 1) return null;
  return { namespace: rest.slice(0, colon), name: rest.slice(colon + 1) };
}

/** roleRef: ClusterRole N → "wt-T-N" (a tenant never names a host ClusterRole); Role N stays. */
export function mapRoleRef(tenant: string, roleRef: { kind: string; name: string; apiGroup?: string }): { kind: string; name: string; apiGroup?: string } {
  if (roleRef.kind === "ClusterRole") return { ...roleRef, name: mapClusterName(tenant, roleRef.name) };
  if (roleRef.kind === "Role") {
    assertTenantName(tenant);
    if (!isPathSegmentName(roleRef.name)) throw new NamingError(`roleRef "${roleRef.name}" is not a valid name`);
    return roleRef;
  }
  throw new NamingError(`roleRef kind "${roleRef.kind}" is not Role or ClusterRole`);
}

export function unmapRoleRef(tenant: string, roleRef: { kind: string; name: string; apiGroup?: string }): { kind: string; name: string; apiGroup?: string } | null {
  if (roleRef.kind === "ClusterRole") {
    const name = unmapClusterName(tenant, roleRef.name);
    return name === null ? null : { ...roleRef, name };
  }
  assertTenantName(tenant);
  return roleRef.kind === "Role" && isPathSegmentName(roleRef.name) ? roleRef : null;
}
