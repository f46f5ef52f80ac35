// Dispatch policies: ordered, first match wins. A deny rule matches every
// request that can reach what it names (see ruleMatches); other rules match
// the request's own classification. docs/config.md states the semantics.
import { DispatchAction, DispatchPolicy, GatewayConfig, Rule } from "./config";
import { Identity } from "./identity";
import { RequestInfo } from "./request-info";

function matchesPattern(pattern: string, value: string, prefixes: bool): bool {
  if (pattern == "*") return true;
  if (prefixes && pattern.endsWith("*")) return value.startsWith(pattern.substring(0, pattern.length - 1));
  return pattern == value;
}

/**
 * Empty: anything. Negations ("-x") exclude; if there are only negations,
 * anything else matches; otherwise one positive entry must match.
 */
function matchesList(patterns: string[], value: string, prefixes: bool): bool {
  if (patterns.length == 0) return true;
  let positives = 0;
  let positiveMatch = false;
  for (let i = 0; i < patterns.length; i++) {
    const pattern = patterns[i];
    if (pattern.startsWith("-")) {
      if (matchesPattern(pattern.substring(1), value, prefixes)) return false;
    } else {
      positives++;
      if (matchesPattern(pattern, value, prefixes)) positiveMatch = true;
    }
  }
  return positives == 0 || positiveMatch;
}

function matchesAnyValue(patterns: string[], values: string[]): bool {
  if (patterns.length == 0) return true;
  let positives = 0;
  let positiveMatch = false;
  for (let i = 0; i < patterns.length; i++) {
    const pattern = patterns[i];
    const negated = pattern.startsWith("-");
    const body = negated ? pattern.substring(1) : pattern;
    let hit = false;
    for (let j = 0; j < values.length; j++) if (matchesPattern(body, values[j], false)) hit = true;
    if (negated) {
      if (hit) return false;
    } else {
      positives++;
      if (hit) positiveMatch = true;
    }
  }
  return positives == 0 || positiveMatch;
}

/**
 * "pods": the resource and every subresource of it (pods/exec, pods/log...);
 * "pods/exec": that subresource only; "pods/*": every subresource of pods,
 * not pods itself; "*\/scale": that subresource of any resource; "*":
 * anything. Exclude subresources with a negation: ["pods", "-pods/*"].
 */
function matchesResource(pattern: string, resource: string, subresource: string): bool {
  if (pattern == "*") return true;
  const slash = pattern.indexOf("/");
  if (slash < 0) return pattern == resource;
  if (subresource.length == 0) return false;
  const patternResource = pattern.substring(0, slash);
  const patternSub = pattern.substring(slash + 1);
  return (patternResource == "*" || patternResource == resource) && (patternSub == "*" || patternSub == subresource);
}

function matchesResources(patterns: string[], info: RequestInfo): bool {
  if (patterns.length == 0) return true;
  let positives = 0;
  let positiveMatch = false;
  for (let i = 0; i < patterns.length; i++) {
    const pattern = patterns[i];
    if (pattern.startsWith("-")) {
      if (matchesResource(pattern.substring(1), info.resource, info.subresource)) return false;
    } else {
      positives++;
      if (matchesResource(pattern, info.resource, info.subresource)) positiveMatch = true;
    }
  }
  return positives == 0 || positiveMatch;
}

/**
 * The verbs a deny rule's verb also covers: reading one object ("get") is
 * also what list and watch do to it, listing is what a watch does (its
 * initial events and every change carry whole objects), deleting it is
 * what deletecollection does. Negations stay literal, so a deny never
 * shrinks through this.
 */
function verbCovers(pattern: string, verb: string): bool {
  if (pattern == "*" || pattern == verb) return true;
  if (pattern == "get") return verb == "list" || verb == "watch";
  if (pattern == "list") return verb == "watch";
  if (pattern == "delete") return verb == "deletecollection";
  return false;
}

function matchesDenyVerbs(patterns: string[], verb: string): bool {
  if (patterns.length == 0) return true;
  let positives = 0;
  let positiveMatch = false;
  for (let i = 0; i < patterns.length; i++) {
    const pattern = patterns[i];
    if (pattern.startsWith("-")) {
      if (pattern.substring(1) == verb || pattern == "-*") return false;
    } else {
      positives++;
      if (verbCovers(pattern, verb)) positiveMatch = true;
    }
  }
  return positives == 0 || positiveMatch;
}

/**
 * Built-in cluster-scoped resources ("group/resource"): a request for them
 * without a namespace is not an all-namespace request. Any other resource
 * (including every custom resource) without a namespace may reach every
 * namespace. "namespaces" is not here: a namespace object belongs to
 * itself (its requests carry it as their namespace).
 */
const clusterScoped: string[] = [
  "/nodes", "/persistentvolumes", "/componentstatuses",
  "rbac.authorization.k8s.io/clusterroles", "rbac.authorization.k8s.io/clusterrolebindings",
  "apiextensions.k8s.io/customresourcedefinitions", "apiregistration.k8s.io/apiservices",
  "storage.k8s.io/storageclasses", "storage.k8s.io/csidrivers", "storage.k8s.io/csinodes",
  "storage.k8s.io/volumeattachments", "storage.k8s.io/volumeattributesclasses",
  "scheduling.k8s.io/priorityclasses", "node.k8s.io/runtimeclasses", "networking.k8s.io/ingressclasses",
  "networking.k8s.io/ipaddresses", "networking.k8s.io/servicecidrs",
  "admissionregistration.k8s.io/mutatingwebhookconfigurations", "admissionregistration.k8s.io/validatingwebhookconfigurations",
  "admissionregistration.k8s.io/validatingadmissionpolicies", "admissionregistration.k8s.io/validatingadmissionpolicybindings",
  "admissionregistration.k8s.io/mutatingadmissionpolicies", "admissionregistration.k8s.io/mutatingadmissionpolicybindings",
  "certificates.k8s.io/certificatesigningrequests", "certificates.k8s.io/clustertrustbundles",
  "authentication.k8s.io/tokenreviews", "authentication.k8s.io/selfsubjectreviews",
  "authorization.k8s.io/subjectaccessreviews", "authorization.k8s.io/selfsubjectaccessreviews", "authorization.k8s.io/selfsubjectrulesreviews",
  "flowcontrol.apiserver.k8s.io/flowschemas", "flowcontrol.apiserver.k8s.io/prioritylevelconfigurations",
  "resource.k8s.io/deviceclasses", "resource.k8s.io/resourceslices", "internal.apiserver.k8s.io/storageversions",
];

function isClusterScoped(info: RequestInfo): bool {
  return clusterScoped.includes(info.apiGroup + "/" + info.resource);
}

/** Whether some value satisfies the list (matchesList's rules): a collection reaches every name. */
function matchesSomeValue(patterns: string[]): bool {
  if (patterns.length == 0) return true;
  for (let i = 0; i < patterns.length; i++) {
    const pattern = patterns[i];
    if (pattern.startsWith("-")) continue;
    // A positive entry that no negation names exactly can be met.
    if (!patterns.includes("-" + pattern) && !patterns.includes("-*")) return true;
  }
  // Only negations: everything they do not name.
  for (let i = 0; i < patterns.length; i++) if (!patterns[i].startsWith("-")) return false;
  return !patterns.includes("-*");
}

const serviceAccountPrefix = "system:serviceaccount:";

function matchesServiceAccounts(patterns: string[], user: string): bool {
  if (patterns.length == 0) return true;
  // "ns/name" and "ns/*" compare against system:serviceaccount:ns:name.
  const translated = new Array<string>(patterns.length);
  for (let i = 0; i < patterns.length; i++) {
    const negated = patterns[i].startsWith("-");
    const body = negated ? patterns[i].substring(1) : patterns[i];
    const account = body == "*" ? "*" : serviceAccountPrefix + body.replace("/", ":");
    translated[i] = (negated ? "-" : "") + account;
  }
  if (!user.startsWith(serviceAccountPrefix)) {
    // Not a service account: only a list of pure negations can match it.
    for (let i = 0; i < translated.length; i++) if (!translated[i].startsWith("-")) return false;
    return true;
  }
  return matchesList(translated, user, true);
}

/**
 * Literal matching: the request's own verb, name and namespace. With
 * `reach` (deny rules), the rule matches when the request can reach an
 * object the rule names: a collection request (list, watch,
 * deletecollection) reaches every object of its resource in its namespace
 * unless a field selector pins one metadata.name; a request without a
 * namespace for a resource not known to be cluster-scoped reaches every
 * namespace unless a field selector pins metadata.namespace; and verbs
 * cover what verbCovers says.
 */
export function ruleMatches(rule: Rule, info: RequestInfo, identity: Identity, reach: bool = false): bool {
  const resourceFields = rule.apiGroups.length + rule.resources.length + rule.resourceNames.length + rule.namespaces.length;
  if (info.isResourceRequest) {
    if (rule.nonResourceUrls.length > 0) return false;
    if (!matchesList(rule.apiGroups, info.apiGroup, false)) return false;
    if (!matchesResources(rule.resources, info)) return false;
    if (reach && info.isCollection) {
      const pinned = info.pinnedName;
      if (pinned !== null ? !matchesList(rule.resourceNames, pinned!, false) : !matchesSomeValue(rule.resourceNames)) return false;
    } else if (!matchesList(rule.resourceNames, info.name, false)) return false;
    if (reach && info.namespace.length == 0 && !isClusterScoped(info)) {
      const pinned = info.pinnedNamespace;
      if (pinned !== null ? !matchesList(rule.namespaces, pinned!, false) : !matchesSomeValue(rule.namespaces)) return false;
    } else if (!matchesList(rule.namespaces, info.namespace, false)) return false;
  } else {
    if (resourceFields > 0) return false;
    if (!matchesList(rule.nonResourceUrls, info.path, true)) return false;
  }
  if (reach ? !matchesDenyVerbs(rule.verbs, info.verb) : !matchesList(rule.verbs, info.verb, false)) return false;
  if (!matchesList(rule.users, identity.user, true)) return false;
  if (!matchesAnyValue(rule.userGroups, identity.groups)) return false;
  if (!matchesServiceAccounts(rule.serviceAccounts, identity.user)) return false;
  return true;
}

export class Decision {
  constructor(
    public policy: string,
    public action: DispatchAction | null,
  ) {}
}

export function decide(config: GatewayConfig, info: RequestInfo, identity: Identity): Decision {
  for (let i = 0; i < config.policies.length; i++) {
    const policy: DispatchPolicy = config.policies[i];
    for (let j = 0; j < policy.rules.length; j++) {
      if (ruleMatches(policy.rules[j], info, identity, policy.action.deny)) return new Decision(policy.name, policy.action);
    }
  }
  return new Decision("default", config.defaultAction);
}
