// Where a tenant's request goes upstream: its path with the tenant's names
// mapped (namespaces, cluster-scoped names, its own API groups), decided on
// the gateway's classification (request-info.ts, kube-apiserver's rules) so
// the filter maps exactly the segments the apiserver will read as names.
// What a tenant may not reach at all is refused here with the reason.
import { RequestInfo } from "../gateway/request-info";
import { Tenant, TenantFilterConfig } from "./config";
import { mapClusterName, mapCrdName, mapGroup, mapNamespace, namingError } from "./naming";

export class Refusal {
  constructor(
    public code: u32,
    public reason: string,
    public message: string,
  ) {}
}

export const enum Scope {
  /** The object lives in one of the tenant's namespaces: only the namespace is mapped. */
  Namespaced,
  /** A cluster-scoped object of the tenant (or an all-namespace collection): names mapped. */
  TenantCluster,
  /** A host object the tenant may read as it is (shared_views). */
  Shared,
  /** A review (access reviews, whoami): created, not stored; the body is mapped. */
  Review,
  /** Discovery, version, health: no object names. */
  NonResource,
}

export class PathPlan {
  refusal: Refusal | null = null;
  /** The upstream path (without query). */
  path: string = "";
  scope: Scope = Scope.NonResource;
  /** The tenant's view: API group, resource, subresource, namespace, name. */
  group: string = "";
  resource: string = "";
  subresource: string = "";
  namespace: string = "";
  name: string = "";
  /** A list/watch/deletecollection across namespaces or of cluster-scoped objects: filtered by the tenant label. */
  needsTenantLabel: bool = false;
  /** metadata.name in field selectors names a cluster-scoped object of the tenant (mapped). */
  namesAreClusterScoped: bool = false;
}

/** The cluster-scoped kinds of host groups a tenant owns copies of (names mapped). */
export function isTenantClusterKind(group: string, resource: string): bool {
  if (group == "") return resource == "namespaces";
  if (group == "rbac.authorization.k8s.io") return resource == "clusterroles" || resource == "clusterrolebindings";
  if (group == "apiextensions.k8s.io") return resource == "customresourcedefinitions";
  return false;
}

/** Cluster-scoped host kinds (Kubernetes 1.36): invisible to a tenant unless shared with it. */
function isHostClusterKind(group: string, resource: string): bool {
  if (group == "") return resource == "nodes" || resource == "persistentvolumes" || resource == "componentstatuses";
  if (group == "networking.k8s.io") return resource == "ingressclasses" || resource == "ipaddresses" || resource == "servicecidrs";
  if (group == "node.k8s.io") return resource == "runtimeclasses";
  if (group == "scheduling.k8s.io") return resource == "priorityclasses";
  if (group == "storage.k8s.io") return resource == "storageclasses" || resource == "csidrivers" || resource == "csinodes" || resource == "volumeattachments" || resource == "volumeattributesclasses";
  if (group == "resource.k8s.io") return resource == "deviceclasses" || resource == "resourceslices";
  if (group == "certificates.k8s.io") return resource == "clustertrustbundles";
  if (group == "storagemigration.k8s.io") return resource == "storageversionmigrations";
  return false;
}

/** Host kinds no tenant may touch, shared or not: why, or "". */
function denial(group: string, resource: string, subresource: string): string {
  if (group == "admissionregistration.k8s.io") return "webhook configurations and admission policies act on the whole cluster; tenants cannot use " + resource;
  if (group == "apiregistration.k8s.io") return "APIServices route whole API groups of the cluster; tenants cannot use them";
  if (group == "flowcontrol.apiserver.k8s.io") return "API priority and fairness is the cluster's; tenants cannot use " + resource;
  if (group == "certificates.k8s.io" && resource == "certificatesigningrequests") return "certificate signing requests are signed by the cluster's CAs; tenants cannot use them";
  if (group == "authentication.k8s.io" && resource == "tokenreviews") return "a TokenReview answers with identities outside the tenant; tenants cannot use it";
  if (group == "" && resource == "nodes" && subresource == "proxy") return "nodes/proxy reaches the kubelet of a host node; tenants cannot use it";
  return "";
}

function isReview(group: string, resource: string): bool {
  if (group == "authorization.k8s.io") return resource == "subjectaccessreviews" || resource == "selfsubjectaccessreviews" || resource == "selfsubjectrulesreviews";
  if (group == "authentication.k8s.io") return resource == "selfsubjectreviews";
  return false;
}

function isReadVerb(verb: string): bool {
  return verb == "get" || verb == "list" || verb == "watch";
}

function forbidden(plan: PathPlan, message: string): PathPlan {
  plan.refusal = new Refusal(403, "Forbidden", message);
  return plan;
}

/** A name naming.ts refuses to map: 422, with its reason. */
export function namingRefusal(): Refusal {
  return new Refusal(422, "Invalid", namingError);
}

const hex = "0123456789ABCDEF";

/** A path segment for `text`, escaped as Go's url.PathEscape does. */
export function escapeSegment(text: string): string {
  let plain = true;
  for (let i = 0; i < text.length; i++) {
    if (!isSegmentChar(text.charCodeAt(i))) {
      plain = false;
      break;
    }
  }
  if (plain) return text;
  const bytes = Uint8Array.wrap(String.UTF8.encode(text));
  const parts = new Array<string>();
  for (let i = 0; i < bytes.length; i++) {
    const b = <i32>bytes[i];
    if (b < 0x80 && isSegmentChar(b)) parts.push(String.fromCharCode(b));
    else parts.push("%" + hex.charAt(b >> 4) + hex.charAt(b & 15));
  }
  return parts.join("");
}

function isSegmentChar(c: i32): bool {
  if ((c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39)) return true;
  // unreserved and the sub-delimiters, ':' and '@' that Go leaves in a path segment
  return c == 0x2d || c == 0x2e || c == 0x5f || c == 0x7e || c == 0x24 || c == 0x26 || c == 0x2b || c == 0x2c || c == 0x3a || c == 0x3b || c == 0x3d || c == 0x40;
}

/** The upstream name of a cluster-scoped object of the tenant, or null (namingError). */
export function upstreamObjectName(config: TenantFilterConfig, tenant: Tenant, group: string, resource: string, name: string): string | null {
  if (group == "apiextensions.k8s.io" && resource == "customresourcedefinitions") return mapCrdName(tenant.name, name, config.hostGroups);
  if (group == "" && resource == "namespaces") return mapNamespace(tenant.name, name);
  return mapClusterName(tenant.name, name);
}

/** Non-resource paths: discovery is mapped, a few harmless ones pass, the rest is the host's. */
function planNonResource(config: TenantFilterConfig, tenant: Tenant, info: RequestInfo, rawPath: string, plan: PathPlan): PathPlan {
  const path = info.path;
  plan.path = rawPath;
  if (path == "/version" || path == "/api" || path == "/api/" || path == "/api/v1" || path == "/api/v1/" || path == "/apis" || path == "/apis/") return plan;
  if (path == "/.well-known/openid-configuration" || path == "/openid/v1/jwks") return plan;
  for (let i = 0; i < 3; i++) {
    const probe = i == 0 ? "/healthz" : i == 1 ? "/livez" : "/readyz";
    if (path == probe || path.startsWith(probe + "/")) return plan;
  }
  if (path == "/openapi/v2" || path.startsWith("/openapi/v2/")) {
    plan.refusal = new Refusal(404, "NotFound", "/openapi/v2 describes every tenant's resources and is not served to tenants; use /openapi/v3");
    return plan;
  }
  // /apis/<group>[/<version>] and /openapi/v3/apis/<group>/<version>: a tenant group is mapped.
  let groupAt = -1;
  const segments = path.substring(1).split("/");
  if (segments[0] == "apis" && segments.length >= 2 && segments.length <= 3) groupAt = 1;
  else if (segments[0] == "openapi" && segments.length >= 2 && segments[1] == "v3") {
    if (segments.length == 2 || (segments.length <= 4 && segments[2] == "api")) return plan;
    if (segments[2] == "apis" && segments.length >= 4 && segments.length <= 5) groupAt = 3;
  }
  if (groupAt < 0 || segments[groupAt].length == 0) return forbidden(plan, "the path " + path + " is the host cluster's and is not available to tenants");
  const group = segments[groupAt];
  const mapped = mapGroup(tenant.name, group, config.hostGroups);
  if (mapped === null) {
    plan.refusal = namingRefusal();
    return plan;
  }
  plan.group = group;
  const queryAt = rawPath.indexOf("?");
  const rawSegments = rawPath.substring(1, queryAt < 0 ? rawPath.length : queryAt).split("/");
  rawSegments[groupAt] = escapeSegment(mapped!);
  plan.path = "/" + rawSegments.join("/");
  return plan;
}

/**
 * Plans the upstream path of a classified tenant request. `rawPath` is the
 * :path as received (query included); the plan's path has no query.
 */
export function planPath(config: TenantFilterConfig, tenant: Tenant, info: RequestInfo, rawPath: string): PathPlan {
  const plan = new PathPlan();
  const queryAt = rawPath.indexOf("?");
  const pathOnly = queryAt < 0 ? rawPath : rawPath.substring(0, queryAt);
  if (!info.isResourceRequest) {
    planNonResource(config, tenant, info, pathOnly, plan);
    return plan;
  }
  const group = info.apiGroup;
  const resource = info.resource;
  const subresource = info.subresource;
  plan.group = group;
  plan.resource = resource;
  plan.subresource = subresource;
  plan.namespace = info.namespace;
  plan.name = info.name;
  if (info.verb == "proxy") return forbidden(plan, "the /proxy/ path prefix is not available to tenants; use the proxy subresource");
  const hostGroup = config.isHostGroup(group);
  if (hostGroup) {
    const why = denial(group, resource, subresource);
    if (why.length > 0) return forbidden(plan, why);
  }

  // Segment positions, as request-info.ts reads them (no segment is empty or an encoded '/': classify refused those).
  const segments = info.path.substring(1).split("/");
  let count = segments.length;
  while (count > 0 && segments[count - 1].length == 0) count--;
  const rawSegments = pathOnly.substring(1).split("/");
  const groupAt = info.apiPrefix == "apis" ? 1 : -1;
  let k = info.apiPrefix == "apis" ? 3 : 2;
  if ((segments[k] == "watch" || segments[k] == "proxy") && count - k >= 2) k++;
  let namespaceAt = -1;
  if (segments[k] == "namespaces" && count - k > 1) {
    namespaceAt = k + 1;
    if (count - k > 2 && segments[k + 2] != "status" && segments[k + 2] != "finalize") k += 2;
  }
  const nameAt = k + 1 < count ? k + 1 : -1;

  const isNamespaceObject = group == "" && resource == "namespaces";
  if (groupAt >= 0 && !hostGroup) {
    const mapped = mapGroup(tenant.name, group, config.hostGroups);
    if (mapped === null) {
      plan.refusal = namingRefusal();
      return plan;
    }
    rawSegments[groupAt] = escapeSegment(mapped!);
  }

  if (info.namespace.length > 0 && !isNamespaceObject) {
    const mapped = mapNamespace(tenant.name, info.namespace);
    if (mapped === null) {
      plan.refusal = namingRefusal();
      return plan;
    }
    rawSegments[namespaceAt] = escapeSegment(mapped!);
    plan.scope = Scope.Namespaced;
  } else if (hostGroup && tenant.sharesView(group, resource)) {
    if (!isReadVerb(info.verb)) return forbidden(plan, resource + " is shared with tenant " + tenant.name + " read-only (get, list, watch)");
    plan.scope = Scope.Shared;
  } else if (hostGroup && isHostClusterKind(group, resource)) {
    return forbidden(plan, (group.length == 0 ? resource : resource + "." + group) + " belong to the host cluster and are not shared with tenant " + tenant.name);
  } else if (hostGroup && isReview(group, resource)) {
    if (info.verb != "create") return forbidden(plan, resource + " can only be created");
    plan.scope = Scope.Review;
  } else {
    // The tenant's cluster-scoped objects, or a collection across its namespaces.
    plan.scope = Scope.TenantCluster;
    plan.namesAreClusterScoped = !hostGroup || isTenantClusterKind(group, resource);
    if (info.name.length > 0 && info.nameInPath) {
      const mapped = upstreamObjectName(config, tenant, group, resource, info.name);
      if (mapped === null) {
        plan.refusal = namingRefusal();
        return plan;
      }
      rawSegments[isNamespaceObject ? namespaceAt : nameAt] = escapeSegment(mapped!);
    }
  }
  const collection = !info.nameInPath && (info.verb == "list" || info.verb == "watch" || info.verb == "deletecollection");
  plan.needsTenantLabel = collection && plan.scope == Scope.TenantCluster;
  plan.path = "/" + rawSegments.join("/");
  return plan;
}
