// Filter metrics through proxy-wasm: Envoy shows them in /stats and
// /stats/prometheus. Labels are spelled into the name (Envoy's stat names),
// e.g. wharf_gateway.requests.policy.<p>.verb.<v>.resource.<r>.
import { defineMetric, incrementMetric, MetricType, recordMetric } from "../sdk";

const ids = new Map<string, u32>();

function metric(type: MetricType, name: string): u32 {
  if (ids.has(name)) return ids.get(name);
  const id = defineMetric(type, name);
  ids.set(name, id);
  return id;
}

/** Stat names may not hold dots inside a label value. */
function label(value: string): string {
  return value.length == 0 ? "_" : value.replaceAll(".", "_");
}

// Stat names come from fixed sets, so no request can add stats (Envoy keeps
// every stat name forever, and so does this VM's id map): a verb, resource,
// subresource or status code outside them counts as "other".
const verbs = new Set<string>();
for (let i = 0, all = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "proxy", "head", "options"]; i < all.length; i++) verbs.add(all[i]);

const resources = new Set<string>();
for (
  let i = 0,
    all = [
      "pods", "services", "endpoints", "endpointslices", "configmaps", "secrets", "namespaces", "nodes", "persistentvolumes",
      "persistentvolumeclaims", "serviceaccounts", "events", "limitranges", "resourcequotas", "replicationcontrollers", "podtemplates",
      "componentstatuses", "bindings", "deployments", "replicasets", "statefulsets", "daemonsets", "controllerrevisions", "jobs",
      "cronjobs", "horizontalpodautoscalers", "poddisruptionbudgets", "ingresses", "ingressclasses", "networkpolicies", "roles",
      "rolebindings", "clusterroles", "clusterrolebindings", "storageclasses", "volumeattachments", "csidrivers", "csinodes",
      "csistoragecapacities", "customresourcedefinitions", "apiservices", "leases", "priorityclasses", "runtimeclasses",
      "mutatingwebhookconfigurations", "validatingwebhookconfigurations", "validatingadmissionpolicies",
      "validatingadmissionpolicybindings", "certificatesigningrequests", "tokenreviews", "subjectaccessreviews",
      "selfsubjectaccessreviews", "selfsubjectrulesreviews", "localsubjectaccessreviews", "selfsubjectreviews", "flowschemas",
      "prioritylevelconfigurations", "gatewayconfigs",
    ];
  i < all.length;
  i++
) resources.add(all[i]);

const subresources = new Set<string>();
for (let i = 0, all = ["status", "scale", "log", "exec", "attach", "portforward", "proxy", "binding", "eviction", "ephemeralcontainers", "finalize", "token", "approval", "resize"]; i < all.length; i++) subresources.add(all[i]);

/** Resources the configuration names (its rules) are counted by name too: the configuration is bounded. */
export function countResourcesNamed(names: string[]): void {
  for (let i = 0; i < names.length; i++) {
    const name = names[i].startsWith("-") ? names[i].substring(1) : names[i];
    const slash = name.indexOf("/");
    const resource = slash < 0 ? name : name.substring(0, slash);
    if (resource.length > 0 && resource != "*") resources.add(resource);
    if (slash >= 0 && slash + 1 < name.length && name.substring(slash + 1) != "*") subresources.add(name.substring(slash + 1));
  }
}

function resourceLabel(isResourceRequest: bool, resource: string, subresource: string): string {
  if (!isResourceRequest) return "nonresource";
  if (!resources.has(resource)) return "other";
  if (subresource.length == 0) return resource;
  return subresources.has(subresource) ? resource + "/" + subresource : resource + "/other";
}

/** policy: a policy name from the configuration or "default". */
export function countRequest(policy: string, verb: string, isResourceRequest: bool, resource: string, subresource: string): void {
  const verbLabel = verbs.has(verb) ? verb : "other";
  incrementMetric(metric(MetricType.Counter, "wharf_gateway.requests.policy." + label(policy) + ".verb." + verbLabel + ".resource." + resourceLabel(isResourceRequest, resource, subresource)), 1);
}

function isStatusCode(code: string): bool {
  if (code.length != 3) return false;
  const first = code.charCodeAt(0);
  if (first < 0x31 || first > 0x35) return false;
  return code.charCodeAt(1) >= 0x30 && code.charCodeAt(1) <= 0x39 && code.charCodeAt(2) >= 0x30 && code.charCodeAt(2) <= 0x39;
}

export function countResponse(code: string): void {
  incrementMetric(metric(MetricType.Counter, "wharf_gateway.responses.code." + (isStatusCode(code) ? code : "other")), 1);
}

export function countRejection(reason: string): void {
  incrementMetric(metric(MetricType.Counter, "wharf_gateway.rejections.reason." + label(reason)), 1);
}

export function setInflight(schema: string, inflight: u64, watches: u64): void {
  recordMetric(metric(MetricType.Gauge, "wharf_gateway.inflight.schema." + label(schema)), inflight);
  recordMetric(metric(MetricType.Gauge, "wharf_gateway.watches.schema." + label(schema)), watches);
}

/** Each VM counts its ticks: a liveness signal, and a clock for reading the tick-refreshed stats. */
export function countTick(): void {
  incrementMetric(metric(MetricType.Counter, "wharf_gateway.ticks"), 1);
}

let reportedPages: i32 = 0;

/**
 * Counts the growth of this VM's linear memory (which never shrinks) in 64 KiB
 * pages: summed over every worker's VM, the counter is the filter's memory,
 * and a counter that stops moving after warm-up shows that nothing accumulates.
 */
export function countMemoryPages(): void {
  const pages = memory.size();
  if (pages <= reportedPages) return;
  incrementMetric(metric(MetricType.Counter, "wharf_gateway.wasm_memory_pages"), pages - reportedPages);
  reportedPages = pages;
}
