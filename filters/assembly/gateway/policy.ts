// Dispatch policies: ordered, first match wins.
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

/** "pods", "pods/log", "*\/scale", "pods/*", "*". */
function matchesResource(pattern: string, resource: string, subresource: string): bool {
  if (pattern == "*") return true;
  const slash = pattern.indexOf("/");
  if (slash < 0) return pattern == resource && subresource.length == 0;
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

export function ruleMatches(rule: Rule, info: RequestInfo, identity: Identity): bool {
  const resourceFields = rule.apiGroups.length + rule.resources.length + rule.resourceNames.length + rule.namespaces.length;
  if (info.isResourceRequest) {
    if (rule.nonResourceUrls.length > 0) return false;
    if (!matchesList(rule.apiGroups, info.apiGroup, false)) return false;
    if (!matchesResources(rule.resources, info)) return false;
    if (!matchesList(rule.resourceNames, info.name, false)) return false;
    if (!matchesList(rule.namespaces, info.namespace, false)) return false;
  } else {
    if (resourceFields > 0) return false;
    if (!matchesList(rule.nonResourceUrls, info.path, true)) return false;
  }
  if (!matchesList(rule.verbs, info.verb, false)) return false;
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
      if (ruleMatches(policy.rules[j], info, identity)) return new Decision(policy.name, policy.action);
    }
  }
  return new Decision("default", config.defaultAction);
}
