// GatewayConfig (proto/wharf/gateway/v1/gateway.proto) decoded from the
// plugin configuration bytes.
import { ProtoReader } from "./protobuf";
import { isTenantName } from "../tenant/naming";

export class Rule {
  verbs: string[] = [];
  apiGroups: string[] = [];
  resources: string[] = [];
  resourceNames: string[] = [];
  namespaces: string[] = [];
  users: string[] = [];
  userGroups: string[] = [];
  serviceAccounts: string[] = [];
  nonResourceUrls: string[] = [];
}

export class DispatchAction {
  upstream: string = "";
  deny: bool = false;
  denyMessage: string = "";
  flowControl: string = "";
}

export class DispatchPolicy {
  name: string = "";
  rules: Rule[] = [];
  action: DispatchAction = new DispatchAction();
}

export class FlowControlSchema {
  name: string = "";
  exempt: bool = false;
  qps: f64 = 0;
  burst: u32 = 0;
  maxInflight: u32 = 0;
  maxWatches: u32 = 0;
  perUser: bool = false;
}

export class TokenReviewConfig {
  cluster: string = "";
  authority: string = "kubernetes";
  timeoutMs: u32 = 2000;
  successTtlSeconds: u32 = 60;
  failureTtlSeconds: u32 = 10;
  reviewer: string = "wharf:gateway";
  cacheSize: u32 = 4096;
  reviewsPerSecondPerSource: f64 = 10;
  reviewBurstPerSource: u32 = 20;
}

function decodeTokenReview(bytes: Uint8Array, reader: ProtoReader): TokenReviewConfig {
  const review = new TokenReviewConfig();
  const r = new ProtoReader(bytes);
  let tag = r.tag();
  while (tag != 0) {
    const field = tag >> 3;
    const wire = tag & 7;
    if (field == 1 && wire == 2) review.cluster = r.string();
    else if (field == 2 && wire == 2) review.authority = r.string();
    else if (field == 3 && wire == 0) review.timeoutMs = <u32>r.varint();
    else if (field == 4 && wire == 0) review.successTtlSeconds = <u32>r.varint();
    else if (field == 5 && wire == 0) review.failureTtlSeconds = <u32>r.varint();
    else if (field == 6 && wire == 2) review.reviewer = r.string();
    else if (field == 7 && wire == 0) review.cacheSize = <u32>r.varint();
    else if (field == 8 && wire == 1) review.reviewsPerSecondPerSource = r.double();
    else if (field == 9 && wire == 0) review.reviewBurstPerSource = <u32>r.varint();
    else r.skip(wire);
    tag = r.tag();
  }
  if (r.failed) reader.failed = true;
  if (review.authority.length == 0) review.authority = "kubernetes";
  if (review.timeoutMs == 0) review.timeoutMs = 2000;
  if (review.successTtlSeconds == 0) review.successTtlSeconds = 60;
  if (review.failureTtlSeconds == 0) review.failureTtlSeconds = 10;
  if (review.reviewer.length == 0) review.reviewer = "wharf:gateway";
  if (review.cacheSize == 0) review.cacheSize = 4096;
  if (!(review.reviewsPerSecondPerSource > 0)) review.reviewsPerSecondPerSource = 10;
  if (review.reviewBurstPerSource == 0) review.reviewBurstPerSource = <u32>Math.max(1, Math.ceil(review.reviewsPerSecondPerSource * 2));
  return review;
}

/** A tenant whose users present certificates from its own CA (gateway.proto's TenantIssuer). */
export class TenantIssuer {
  name: string = "";
  issuerSha256: string = "";
  revokedSerials: string[] = [];
  /** revokedSerials as a set: a lookup per request costs the same however long the list. */
  revoked: Set<string> = new Set<string>();
}

function decodeTenant(bytes: Uint8Array, reader: ProtoReader): TenantIssuer {
  const tenant = new TenantIssuer();
  const r = new ProtoReader(bytes);
  let tag = r.tag();
  while (tag != 0) {
    const field = tag >> 3;
    const wire = tag & 7;
    if (field == 1 && wire == 2) tenant.name = r.string();
    else if (field == 2 && wire == 2) tenant.issuerSha256 = r.string();
    else if (field == 3 && wire == 2) tenant.revokedSerials.push(r.string());
    else r.skip(wire);
    tag = r.tag();
  }
  if (r.failed) reader.failed = true;
  return tenant;
}

// Each decoded configuration gets its own number, so what was derived
// under an older one (a certificate's tenant identity) is recognised as stale.
let generations: u32 = 0;

export class GatewayConfig {
  /** Unique per decoded configuration (0: the default, before any). */
  generation: u32 = 0;
  policies: DispatchPolicy[] = [];
  schemas: FlowControlSchema[] = [];
  defaultAction: DispatchAction | null = null;
  routingHeader: string = "x-wharf-upstream";
  annotateRequests: bool = false;
  /** Describe each request in filter state for Envoy's access log (access-log.ts). */
  accessLog: bool = false;
  /** gateway.proto's test_trap_path: never set by the control plane. */
  testTrapPath: string = "";
  tokenReview: TokenReviewConfig | null = null;
  tenants: TenantIssuer[] = [];
  tenantsByIssuer: Map<string, TenantIssuer> = new Map<string, TenantIssuer>();
  tenantsByName: Map<string, TenantIssuer> = new Map<string, TenantIssuer>();
  tenantHeader: string = "x-wharf-tenant";

  schema(name: string): FlowControlSchema | null {
    for (let i = 0; i < this.schemas.length; i++) if (this.schemas[i].name == name) return this.schemas[i];
    return null;
  }
}

/** The decoded config, or an error message naming what is wrong. */
export class ConfigResult {
  config: GatewayConfig | null = null;
  error: string = "";
}

function decodeRule(bytes: Uint8Array, reader: ProtoReader): Rule {
  const rule = new Rule();
  const r = new ProtoReader(bytes);
  let tag = r.tag();
  while (tag != 0) {
    const field = tag >> 3;
    if ((tag & 7) != 2 || field < 1 || field > 9) {
      r.skip(tag & 7);
    } else {
      const value = r.string();
      if (field == 1) rule.verbs.push(value);
      else if (field == 2) rule.apiGroups.push(value);
      else if (field == 3) rule.resources.push(value);
      else if (field == 4) rule.resourceNames.push(value);
      else if (field == 5) rule.namespaces.push(value);
      else if (field == 6) rule.users.push(value);
      else if (field == 7) rule.userGroups.push(value);
      else if (field == 8) rule.serviceAccounts.push(value);
      else rule.nonResourceUrls.push(value);
    }
    tag = r.tag();
  }
  if (r.failed) reader.failed = true;
  return rule;
}

function decodeAction(bytes: Uint8Array, reader: ProtoReader): DispatchAction {
  const action = new DispatchAction();
  const r = new ProtoReader(bytes);
  let tag = r.tag();
  while (tag != 0) {
    const field = tag >> 3;
    if (field == 1 && (tag & 7) == 2) action.upstream = r.string();
    else if (field == 2 && (tag & 7) == 2) {
      action.deny = true;
      const deny = new ProtoReader(r.bytes());
      let inner = deny.tag();
      while (inner != 0) {
        if (inner >> 3 == 1 && (inner & 7) == 2) action.denyMessage = deny.string();
        else deny.skip(inner & 7);
        inner = deny.tag();
      }
      if (deny.failed) reader.failed = true;
    } else if (field == 3 && (tag & 7) == 2) action.flowControl = r.string();
    else r.skip(tag & 7);
    tag = r.tag();
  }
  if (r.failed) reader.failed = true;
  return action;
}

function decodePolicy(bytes: Uint8Array, reader: ProtoReader): DispatchPolicy {
  const policy = new DispatchPolicy();
  const r = new ProtoReader(bytes);
  let tag = r.tag();
  while (tag != 0) {
    const field = tag >> 3;
    if (field == 1 && (tag & 7) == 2) policy.name = r.string();
    else if (field == 2 && (tag & 7) == 2) policy.rules.push(decodeRule(r.bytes(), reader));
    else if (field == 3 && (tag & 7) == 2) policy.action = decodeAction(r.bytes(), reader);
    else r.skip(tag & 7);
    tag = r.tag();
  }
  if (r.failed) reader.failed = true;
  return policy;
}

function decodeSchema(bytes: Uint8Array, reader: ProtoReader): FlowControlSchema {
  const schema = new FlowControlSchema();
  const r = new ProtoReader(bytes);
  let tag = r.tag();
  while (tag != 0) {
    const field = tag >> 3;
    const wire = tag & 7;
    if (field == 1 && wire == 2) schema.name = r.string();
    else if (field == 2 && wire == 0) schema.exempt = r.bool();
    else if (field == 3 && wire == 1) schema.qps = r.double();
    else if (field == 4 && wire == 0) schema.burst = <u32>r.varint();
    else if (field == 5 && wire == 0) schema.maxInflight = <u32>r.varint();
    else if (field == 6 && wire == 0) schema.maxWatches = <u32>r.varint();
    else if (field == 7 && wire == 0) schema.perUser = r.bool();
    else r.skip(wire);
    tag = r.tag();
  }
  if (r.failed) reader.failed = true;
  return schema;
}

/** Kubernetes request verbs and the lowercase HTTP methods of non-resource requests. */
const knownVerbs: string[] = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "proxy", "post", "put", "head", "options"];

/** "pods", "pods/exec", "pods/*", "*\/scale", "*": one optional "/" between non-empty parts. */
function isResourcePattern(pattern: string): bool {
  if (pattern.length == 0) return false;
  const slash = pattern.indexOf("/");
  if (slash < 0) return true;
  return slash > 0 && slash < pattern.length - 1 && pattern.indexOf("/", slash + 1) < 0;
}

/**
 * A rule entry that can never match is refused rather than kept: a deny
 * with verbs: [GET] (requests carry "get") or resources: [pods/] would
 * silently deny nothing.
 */
function ruleProblem(rule: Rule): string {
  for (let k = 0; k < rule.verbs.length; k++) {
    const verb = rule.verbs[k].startsWith("-") ? rule.verbs[k].substring(1) : rule.verbs[k];
    if (verb != "*" && !knownVerbs.includes(verb)) return "verbs[" + k.toString() + "]: \"" + rule.verbs[k] + "\" is not a request verb (lowercase: get, list, watch, create, update, patch, delete, deletecollection, proxy, or an HTTP method for non-resource URLs)";
  }
  for (let k = 0; k < rule.resources.length; k++) {
    const resource = rule.resources[k].startsWith("-") ? rule.resources[k].substring(1) : rule.resources[k];
    if (!isResourcePattern(resource)) return "resources[" + k.toString() + "]: \"" + rule.resources[k] + "\" is not \"resource\", \"resource/subresource\", \"resource/*\", \"*\/subresource\" or \"*\"";
  }
  return "";
}

export function decodeConfig(bytes: Uint8Array): ConfigResult {
  const result = new ConfigResult();
  const config = new GatewayConfig();
  const r = new ProtoReader(bytes);
  let tag = r.tag();
  while (tag != 0) {
    const field = tag >> 3;
    const wire = tag & 7;
    if (field == 1 && wire == 2) config.policies.push(decodePolicy(r.bytes(), r));
    else if (field == 2 && wire == 2) config.schemas.push(decodeSchema(r.bytes(), r));
    else if (field == 3 && wire == 2) config.defaultAction = decodeAction(r.bytes(), r);
    else if (field == 4 && wire == 2) config.routingHeader = r.string().toLowerCase();
    else if (field == 6 && wire == 0) config.annotateRequests = r.bool();
    else if (field == 7 && wire == 2) config.tokenReview = decodeTokenReview(r.bytes(), r);
    else if (field == 8 && wire == 0) config.accessLog = r.bool();
    else if (field == 9 && wire == 2) config.tenants.push(decodeTenant(r.bytes(), r));
    else if (field == 10 && wire == 2) config.tenantHeader = r.string().toLowerCase();
    else if (field == 99 && wire == 2) config.testTrapPath = r.string();
    else r.skip(wire);
    tag = r.tag();
  }
  if (r.failed) {
    result.error = "configuration is not a wharf.gateway.v1.GatewayConfig (malformed protobuf)";
    return result;
  }
  if (config.routingHeader.length == 0) config.routingHeader = "x-wharf-upstream";
  // Every flow_control name must exist; a policy needs a name.
  for (let i = 0; i < config.policies.length; i++) {
    const policy = config.policies[i];
    if (policy.name.length == 0) {
      result.error = "policies[" + i.toString() + "].name: required";
      return result;
    }
    for (let j = 0; j < policy.rules.length; j++) {
      const problem = ruleProblem(policy.rules[j]);
      if (problem.length > 0) {
        result.error = "policies[" + i.toString() + "].rules[" + j.toString() + "]." + problem;
        return result;
      }
    }
    const schema = policy.action.flowControl;
    if (schema.length > 0 && config.schema(schema) === null) {
      result.error = "policies[" + i.toString() + "].action.flow_control: no schema named \"" + schema + "\"";
      return result;
    }
  }
  const fallback = config.defaultAction;
  if (fallback !== null && fallback.flowControl.length > 0 && config.schema(fallback.flowControl) === null) {
    result.error = "default_action.flow_control: no schema named \"" + fallback.flowControl + "\"";
    return result;
  }
  const review = config.tokenReview;
  if (review !== null && review.cluster.length == 0) {
    result.error = "token_review.cluster: required";
    return result;
  }
  for (let i = 0; i < config.schemas.length; i++) {
    const schema = config.schemas[i];
    if (schema.qps < 0 || isNaN(schema.qps)) {
      result.error = "flow_control_schemas[" + i.toString() + "].qps: must be >= 0";
      return result;
    }
    if (schema.qps > 0 && schema.burst == 0) schema.burst = <u32>Math.max(1, Math.ceil(schema.qps));
  }
  const tenancy = tenancyProblem(config);
  if (tenancy.length > 0) {
    result.error = tenancy;
    return result;
  }
  config.generation = ++generations;
  result.config = config;
  return result;
}

function isLowerHex(value: string): bool {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (!((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66))) return false;
  }
  return true;
}

/** A header name Envoy and HTTP/2 carry as is: lowercase token characters. */
function isHeaderName(name: string): bool {
  if (name.length == 0) return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c == 0x2d || c == 0x5f || c == 0x2e)) return false;
  }
  return true;
}

/**
 * Checks tenants and tenant_header and indexes the tenants; "" or the
 * field at fault. A revoked serial in another spelling than the one the
 * filter compares with would silently revoke nothing, so it is refused.
 */
function tenancyProblem(config: GatewayConfig): string {
  if (config.tenantHeader.length == 0) config.tenantHeader = "x-wharf-tenant";
  const header = config.tenantHeader;
  if (!isHeaderName(header)) return "tenant_header: \"" + header + "\" is not a header name (letters, digits, '-', '_', '.')";
  if (header.startsWith("x-remote-") || header.startsWith("impersonate-") || header == config.routingHeader || header == "x-forwarded-client-cert" || header == "authorization" || header == "x-wharf-request-info") {
    return "tenant_header: \"" + header + "\" is a header the gateway already gives another meaning";
  }
  for (let i = 0; i < config.tenants.length; i++) {
    const tenant = config.tenants[i];
    const field = "tenants[" + i.toString() + "]";
    if (!isTenantName(tenant.name)) return field + ".name: \"" + tenant.name + "\" is not a tenant name ([a-z][a-z0-9]{0,11})";
    if (config.tenantsByName.has(tenant.name)) return field + ".name: \"" + tenant.name + "\" is configured twice";
    if (tenant.issuerSha256.length != 64 || !isLowerHex(tenant.issuerSha256)) return field + ".issuer_sha256: not 64 lowercase hex digits";
    if (config.tenantsByIssuer.has(tenant.issuerSha256)) {
      return field + ".issuer_sha256: the same issuer as tenant \"" + config.tenantsByIssuer.get(tenant.issuerSha256).name + "\"";
    }
    for (let k = 0; k < tenant.revokedSerials.length; k++) {
      const serial = tenant.revokedSerials[k];
      if (serial.length == 0 || serial.length % 2 != 0 || !isLowerHex(serial) || (serial.length > 2 && serial.startsWith("00"))) {
        return field + ".revoked_serials[" + k.toString() + "]: \"" + serial + "\" is not lowercase hex of whole bytes without leading zero bytes";
      }
      tenant.revoked.add(serial);
    }
    config.tenantsByName.set(tenant.name, tenant);
    config.tenantsByIssuer.set(tenant.issuerSha256, tenant);
  }
  return "";
}
