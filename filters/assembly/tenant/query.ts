// The query of a tenant's request, mapped: field selectors naming
// namespaces or cluster-scoped names, the tenant label added to every
// collection that is not inside one of its namespaces, continue tokens
// unsealed. Pairs the filter does not map are copied byte for byte. Keys are
// read with Go's rules (go-url.ts: "+" is a space, a pair with ";" or a bad
// escape is dropped by the apiserver), so an encoded key such as
// "label%53elector" is still seen, and every pair of a mapped key is mapped
// (the apiserver reads the first, which is then mapped too).
import { unescape } from "../gateway/go-url";
import { TextBuffer } from "../gateway/text-buffer";
import { Tenant, TenantFilterConfig } from "./config";
import { unsealContinue } from "./continue-token";
import { mapNamespace, tenantLabel } from "./naming";
import { namingRefusal, PathPlan, Refusal, Scope, upstreamObjectName } from "./request-path";

export class QueryResult {
  refusal: Refusal | null = null;
  /** The upstream query, without "?" ("" for none). */
  query: string = "";
}

const queryHex = "0123456789ABCDEF";

/** Go's url.QueryEscape. */
export function escapeQueryValue(text: string): string {
  const bytes = Uint8Array.wrap(String.UTF8.encode(text));
  const out = new TextBuffer(bytes.length + 8);
  for (let i = 0; i < bytes.length; i++) {
    const b = <i32>bytes[i];
    if ((b >= 0x61 && b <= 0x7a) || (b >= 0x41 && b <= 0x5a) || (b >= 0x30 && b <= 0x39) || b == 0x2d || b == 0x2e || b == 0x5f || b == 0x7e) out.pushCode(b);
    else if (b == 0x20) out.pushCode(0x2b);
    else {
      out.pushCode(0x25);
      out.pushCode(queryHex.charCodeAt(b >> 4));
      out.pushCode(queryHex.charCodeAt(b & 15));
    }
  }
  return out.toString();
}

/** fields.EscapeValue */
function escapeSelectorValue(text: string): string {
  const out = new TextBuffer(text.length + 4);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c == 0x5c || c == 0x2c || c == 0x3d) out.pushCode(0x5c);
    out.pushCode(c);
  }
  return out.toString();
}

/** fields.UnescapeValue, or null (the apiserver refuses the selector). */
function unescapeSelectorValue(text: string): string | null {
  if (text.indexOf("\\") < 0 && text.indexOf(",") < 0 && text.indexOf("=") < 0) return text;
  const out = new TextBuffer(text.length);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c == 0x2c || c == 0x3d) return null;
    if (c != 0x5c) {
      out.pushCode(c);
      continue;
    }
    if (i + 1 >= text.length) return null;
    const next = text.charCodeAt(i + 1);
    if (next != 0x5c && next != 0x2c && next != 0x3d) return null;
    out.pushCode(next);
    i++;
  }
  return out.toString();
}

class SelectorContext {
  constructor(
    public config: TenantFilterConfig,
    public tenant: Tenant,
    public plan: PathPlan,
  ) {}
  refusal: Refusal | null = null;
  /** involvedObject.kind / regarding.kind pinned by the selector: decides whether the object's name is cluster-scoped. */
  involvedKind: string = "";
}

/** Kinds whose objects are cluster-scoped tenant objects (an event's involvedObject.name is then mapped). */
function isTenantClusterKindName(kind: string): bool {
  return kind == "Namespace" || kind == "ClusterRole" || kind == "ClusterRoleBinding" || kind == "CustomResourceDefinition";
}

/** The mapped value of a field-selector term, or null to keep it. */
function mapField(context: SelectorContext, field: string, value: string): string | null {
  if (value.length == 0) return null;
  const tenant = context.tenant;
  const plan = context.plan;
  if (field == "metadata.namespace" || field == "involvedObject.namespace" || field == "regarding.namespace") {
    if (plan.scope == Scope.Shared) return null;
    return mapped(context, mapNamespace(tenant.name, value));
  }
  if (field == "metadata.name") {
    if (!plan.namesAreClusterScoped) return null;
    return mapped(context, upstreamObjectName(context.config, tenant, plan.group, plan.resource, value));
  }
  if (field == "involvedObject.name" || field == "regarding.name") {
    if (!isTenantClusterKindName(context.involvedKind)) return null;
    const group = context.involvedKind == "ClusterRole" || context.involvedKind == "ClusterRoleBinding" ? "rbac.authorization.k8s.io" : context.involvedKind == "CustomResourceDefinition" ? "apiextensions.k8s.io" : "";
    const resource = context.involvedKind == "Namespace" ? "namespaces" : context.involvedKind == "CustomResourceDefinition" ? "customresourcedefinitions" : "";
    return mapped(context, upstreamObjectName(context.config, tenant, group, resource, value));
  }
  return null;
}

function mapped(context: SelectorContext, name: string | null): string | null {
  if (name === null && context.refusal === null) context.refusal = namingRefusal();
  return name;
}

class Term {
  constructor(
    public start: i32,
    public end: i32,
    public op: i32,
    public opLength: i32,
  ) {}
}

/** Splits a field selector into terms as fields.ParseSelector does; null if a term has no operator. */
function splitTerms(text: string): Term[] | null {
  const terms = new Array<Term>();
  let termStart = 0;
  let escaped = false;
  for (let i = 0; i <= text.length; i++) {
    if (i < text.length) {
      const c = text.charCodeAt(i);
      if (escaped) {
        escaped = false;
        continue;
      }
      if (c == 0x5c) {
        escaped = true;
        continue;
      }
      if (c != 0x2c) continue;
    }
    const start = termStart;
    termStart = i + 1;
    if (i == start) {
      terms.push(new Term(start, i, -1, 0));
      continue;
    }
    let op = -1;
    let opLength = 0;
    for (let j = start; j < i; j++) {
      const c = text.charCodeAt(j);
      const next = j + 1 < i ? text.charCodeAt(j + 1) : 0;
      if (c == 0x21 && next == 0x3d) {
        op = j;
        opLength = 2;
        break;
      }
      if (c == 0x3d) {
        op = j;
        opLength = next == 0x3d ? 2 : 1;
        break;
      }
    }
    if (op < 0) return null;
    terms.push(new Term(start, i, op, opLength));
  }
  return terms;
}

/** The field selector with the tenant's names mapped (unparseable: unchanged, the apiserver refuses it). */
function mapFieldSelector(context: SelectorContext, selector: string): string {
  const terms = splitTerms(selector);
  if (terms === null) return selector;
  for (let i = 0; i < terms!.length; i++) {
    const term = terms![i];
    if (term.op < 0) continue;
    const field = selector.substring(term.start, term.op);
    if (field == "involvedObject.kind" || field == "regarding.kind") {
      const kind = unescapeSelectorValue(selector.substring(term.op + term.opLength, term.end));
      if (kind !== null && selector.charCodeAt(term.op) != 0x21) context.involvedKind = kind!;
    }
  }
  const out = new Array<string>();
  for (let i = 0; i < terms!.length; i++) {
    const term = terms![i];
    const raw = selector.substring(term.start, term.end);
    if (term.op < 0) {
      out.push(raw);
      continue;
    }
    const value = unescapeSelectorValue(selector.substring(term.op + term.opLength, term.end));
    if (value === null) return selector;
    const mapped = mapField(context, selector.substring(term.start, term.op), value!);
    out.push(mapped === null ? raw : selector.substring(term.start, term.op + term.opLength) + escapeSelectorValue(mapped!));
  }
  return out.join(",");
}

const labelRequirement = tenantLabel + "=";

/** The tenant's label selector with the tenant requirement first, or a refusal if it names the tenant label. */
function mapLabelSelector(context: SelectorContext, selector: string): string {
  if (selector.indexOf(tenantLabel) >= 0) {
    context.refusal = new Refusal(403, "Forbidden", "label selectors may not name " + tenantLabel + ": the gateway sets it");
    return selector;
  }
  if (!context.plan.needsTenantLabel) return selector;
  // First, and complete: nothing the tenant appends can reopen or negate it.
  const own = labelRequirement + context.tenant.name;
  return selector.trim().length == 0 ? own : own + "," + selector;
}

/** Maps query[start, end) of the raw :path. */
export function mapQuery(config: TenantFilterConfig, tenant: Tenant, plan: PathPlan, raw: string, start: i32, end: i32): QueryResult {
  const result = new QueryResult();
  const context = new SelectorContext(config, tenant, plan);
  const pairs = new Array<string>();
  let sawLabelSelector = false;
  let at = start;
  while (at < end) {
    let pairEnd = raw.indexOf("&", at);
    if (pairEnd < 0 || pairEnd > end) pairEnd = end;
    const pairStart = at;
    at = pairEnd + 1;
    const pair = raw.substring(pairStart, pairEnd);
    let eq = pair.indexOf("=");
    const keyEnd = eq < 0 ? pair.length : eq;
    const key = unescape(pair, 0, keyEnd, true);
    const wanted = !key.badEscape && !key.notUtf8 && (key.text == "fieldSelector" || key.text == "labelSelector" || key.text == "continue");
    if (!wanted) {
      pairs.push(pair);
      continue;
    }
    // The apiserver drops these pairs; the filter drops them too rather than guess.
    if (pair.indexOf(";") >= 0) continue;
    const value = eq < 0 ? "" : pair.substring(eq + 1);
    const decoded = unescape(value, 0, value.length, true);
    if (decoded.badEscape) continue;
    if (decoded.notUtf8) {
      result.refusal = new Refusal(400, "BadRequest", "the query parameter " + key.text + " is not UTF-8");
      return result;
    }
    let mapped = decoded.text;
    if (key.text == "fieldSelector") mapped = mapFieldSelector(context, decoded.text);
    else if (key.text == "labelSelector") {
      sawLabelSelector = true;
      mapped = mapLabelSelector(context, decoded.text);
    } else if (decoded.text.length > 0) {
      const token = unsealContinue(tenant, decoded.text);
      if (token === null) {
        result.refusal = new Refusal(400, "BadRequest", "the continue token was not issued to this tenant or is damaged; start the list again without it");
        return result;
      }
      mapped = token!;
    }
    if (context.refusal !== null) {
      result.refusal = context.refusal;
      return result;
    }
    pairs.push(mapped == decoded.text ? pair : key.text + "=" + escapeQueryValue(mapped));
  }
  if (plan.needsTenantLabel && !sawLabelSelector) pairs.push("labelSelector=" + escapeQueryValue(labelRequirement + tenant.name));
  result.query = pairs.join("&");
  return result;
}
