// The gateway filter: classifies each kube-apiserver request, establishes
// the caller's identity, and routes, limits or denies it by the configured
// dispatch policies.
import {
  BufferType,
  currentTimeNanoseconds,
  FilterHeadersStatus,
  getBufferBytes,
  getHeader,
  getHeaders,
  HeaderPair,
  HttpContext,
  log,
  LogLevel,
  MapType,
  continueStream,
  StreamType,
  removeHeader,
  addHeader,
  replaceHeader,
  requestCollection,
  RootContext,
  sendLocalResponse,
  setRootContextFactory,
  setTickPeriodMilliseconds,
} from "../sdk";
import { decodeConfig, FlowControlSchema, GatewayConfig } from "./config";
import { acquire, counters, release, returnIdleLeases } from "./flow-control";
import { cachedForwardedCert } from "./client-cert";
import { anonymousIdentity, extraHeaderName, http1Refusal, Identity } from "./identity";
import { describeRefusal, describeRequest } from "./access-log";
import { countMemoryPages, countRejection, countRequest, countResourcesNamed, countResponse, countTick, setInflight } from "./metrics";
import { decide } from "./policy";
import { classify } from "./request-info";
import { statusBody } from "./status";
import { certificateIdentity, tokenIdentity } from "./tenancy";
import { admitReview, cachedIdentity, cacheIdentity, identityFromReview, requestReview } from "./token-review";

export * from "../sdk/abi";

class GatewayRoot extends RootContext {
  config: GatewayConfig = new GatewayConfig();

  onConfigure(configurationSize: u32): bool {
    const bytes = getBufferBytes(BufferType.PluginConfiguration, 0, configurationSize);
    const result = decodeConfig(bytes === null ? new Uint8Array(0) : Uint8Array.wrap(bytes));
    if (result.config === null) {
      log(LogLevel.Error, "wharf gateway: configuration refused: " + result.error);
      return false;
    }
    this.config = result.config!;
    for (let i = 0; i < this.config.policies.length; i++) {
      const rules = this.config.policies[i].rules;
      for (let j = 0; j < rules.length; j++) countResourcesNamed(rules[j].resources);
    }
    // Gauges are refreshed here rather than on every request.
    setTickPeriodMilliseconds(1000);
    log(LogLevel.Info, "wharf gateway: configured with " + this.config.policies.length.toString() + " policies");
    return true;
  }

  createHttpContext(id: u32): HttpContext {
    return new GatewayStream(id, this);
  }

  /** Memory growth, and in-flight and watch gauges of the shared (not per-user) schemas. */
  onTick(): void {
    countTick();
    countMemoryPages();
    const schemas = this.config.schemas;
    returnIdleLeases(schemas);
    for (let i = 0; i < schemas.length; i++) {
      const schema = schemas[i];
      if (schema.exempt || schema.perUser) continue;
      const state = counters(schema);
      setInflight(schema.name, state >> 32, state & 0xffffffff);
    }
  }
}

function reply(code: u32, reason: string, message: string, retryAfterSeconds: i32): void {
  // Always: refusals are the rare path, and the access log needs them even before a config says more.
  describeRefusal(reason);
  const headers = new Array<HeaderPair>();
  headers.push(new HeaderPair("content-type", "application/json"));
  if (retryAfterSeconds > 0) headers.push(new HeaderPair("retry-after", retryAfterSeconds.toString()));
  sendLocalResponse(code, "wharf_gateway_" + reason.toLowerCase(), String.UTF8.encode(statusBody(<i32>code, reason, message, retryAfterSeconds)), headers);
}

function headerValue(headers: HeaderPair[], name: string): string | null {
  for (let i = 0; i < headers.length; i++) if (headers[i].name == name) return headers[i].value;
  return null;
}

/** Inputs from this size on are rare and may be hostile: their garbage is collected right away. */
const largeInputBytes = 16 * 1024;
const maxReviewBytes = 64 * 1024;

function isLarge(headers: HeaderPair[]): bool {
  let size = 0;
  for (let i = 0; i < headers.length; i++) size += headers[i].name.length + headers[i].value.length;
  return size >= largeInputBytes;
}

function unauthorized(message: string = "Unauthorized"): FilterHeadersStatus {
  countRejection("unauthorized");
  reply(401, "Unauthorized", message, 0);
  return FilterHeadersStatus.StopIteration;
}

function bearerToken(headers: HeaderPair[]): string | null {
  const authorization = headerValue(headers, "authorization");
  if (authorization === null) return null;
  const value = authorization!.trim();
  if (value.length < 8 || value.substring(0, 7).toLowerCase() != "bearer ") return null;
  const token = value.substring(7).trim();
  return token.length == 0 ? null : token;
}

class GatewayStream extends HttpContext {
  private admittedSchema: FlowControlSchema | null = null;
  private admittedUser: string = "";
  private admittedWatch: bool = false;
  private reviewedToken: string = "";
  private headers: HeaderPair[] = [];
  private method: string = "";
  private path: string = "";
  /** Set when this stream brought a hostile-sized input: its garbage is collected at once. */
  private largeInput: bool = false;

  private get config(): GatewayConfig {
    return (this.root as GatewayRoot).config;
  }

  onRequestHeaders(headerCount: u32, endOfStream: bool): FilterHeadersStatus {
    const config = this.config;
    // One read of the header map serves the method, the path and the
    // identity-header scan: each host call costs.
    this.headers = getHeaders(MapType.HttpRequestHeaders);
    const method = headerValue(this.headers, ":method");
    const path = headerValue(this.headers, ":path");
    if (method === null || path === null || !path!.startsWith("/")) {
      countRejection("bad_request");
      reply(400, "BadRequest", "the request has no valid path", 0);
      return FilterHeadersStatus.StopIteration;
    }
    this.method = method!;
    this.path = path!;
    if (config.testTrapPath.length > 0 && this.path == config.testTrapPath) unreachable();
    if (isLarge(this.headers)) {
      this.largeInput = true;
      requestCollection();
    }

    // Envoy sets this header only for a verified client certificate (and drops a client's own).
    const forwardedCert = headerValue(this.headers, "x-forwarded-client-cert");
    let identity = forwardedCert === null ? anonymousIdentity() : certificateIdentity(cachedForwardedCert(forwardedCert!), config);
    if (identity.refusal.length > 0) return unauthorized(identity.refusal);
    const review = config.tokenReview;
    if (!identity.authenticated && review !== null) {
      const token = bearerToken(this.headers);
      if (token !== null) {
        const now = currentTimeNanoseconds();
        const cached = cachedIdentity(token!, review!, now);
        if (cached === null) {
          const wait = admitReview(review!, now);
          if (wait > 0) {
            countRejection("token_review_rate");
            reply(429, "TooManyRequests", "too many token reviews from this address, please try again later", wait);
            return FilterHeadersStatus.StopIteration;
          }
          // Ask the apiserver; the stream waits for onHttpCallResponse.
          this.reviewedToken = token!;
          if (requestReview(this, token!, review!) == 0) {
            countRejection("token_review_unavailable");
            reply(503, "ServiceUnavailable", "the gateway could not verify the bearer token", 1);
          }
          return FilterHeadersStatus.StopIteration;
        }
        if (!cached!.authenticated) return unauthorized(cached!.refusal.length > 0 ? cached!.refusal : "Unauthorized");
        identity = tokenIdentity(cached!, config);
        if (identity.refusal.length > 0) return unauthorized(identity.refusal);
        removeHeader(MapType.HttpRequestHeaders, "authorization");
      }
    }
    return this.dispatch(identity);
  }

  onHttpCallResponse(calloutId: u32, headerCount: u32, bodySize: u32, trailerCount: u32): void {
    const review = this.config.tokenReview;
    if (review === null || this.reviewedToken.length == 0) return;
    // A TokenReview answer is a few KiB: a far larger one is not read (nor let grow this VM's memory), like a failed review.
    let status: string | null = null;
    let body: ArrayBuffer | null = null;
    if (bodySize <= <u32>maxReviewBytes) {
      status = getHeader(MapType.HttpCallResponseHeaders, ":status");
      body = getBufferBytes(BufferType.HttpCallResponseBody, 0, bodySize);
    }
    if (bodySize >= <u32>largeInputBytes) requestCollection();
    const reviewed = identityFromReview(status, body === null ? "" : String.UTF8.decode(body!));
    // A transport failure or an apiserver error is no verdict on the token: not cached.
    if (status !== null && (status! == "200" || status! == "201")) cacheIdentity(this.reviewedToken, reviewed, review!, currentTimeNanoseconds());
    if (status === null || (status! != "200" && status! != "201")) {
      countRejection("token_review_unavailable");
      reply(503, "ServiceUnavailable", "the gateway could not verify the bearer token", 1);
      return;
    }
    if (!reviewed.authenticated) {
      unauthorized(reviewed.refusal.length > 0 ? reviewed.refusal : "Unauthorized");
      return;
    }
    const identity = tokenIdentity(reviewed, this.config);
    if (identity.refusal.length > 0) {
      unauthorized(identity.refusal);
      return;
    }
    removeHeader(MapType.HttpRequestHeaders, "authorization");
    if (this.dispatch(identity) == FilterHeadersStatus.Continue) continueStream(StreamType.HttpRequest);
  }

  /** Identity, classification, policy, flow control, routing. */
  private dispatch(identity: Identity): FilterHeadersStatus {
    const config = this.config;
    // Through the front-proxy connection an anonymous request would reach
    // the apiserver as no one it can authenticate (or as a bearer token the
    // gateway never checked): it gets a plain 401 here instead.
    if (!identity.authenticated) return unauthorized(config.tokenReview === null ? "Unauthorized: present a client certificate" : "Unauthorized: present a client certificate or a bearer token");
    // An upgrade goes to the pool's HTTP/1.1 twin (the route matches the
    // same header), where some names would not arrive byte for byte.
    if (headerValue(this.headers, "upgrade") !== null) {
      const why = http1Refusal(identity);
      if (why !== null) return unauthorized("Unauthorized: " + why);
    }
    if (identity.tenant.length > 0 && this.impersonates()) {
      countRejection("denied");
      reply(403, "Forbidden", "impersonation is not available to tenant identities", 0);
      return FilterHeadersStatus.StopIteration;
    }
    this.forwardIdentity(identity);

    // Only the gateway chooses the pool: a client's own routing header goes
    // (no host call for the usual client, which sent none).
    const clientRouted = headerValue(this.headers, config.routingHeader) !== null;
    if (clientRouted) removeHeader(MapType.HttpRequestHeaders, config.routingHeader);

    const info = classify(this.method, this.path);
    if (info.refusal.length > 0) {
      countRejection("bad_request");
      reply(400, "BadRequest", "the gateway refuses a request it cannot classify as the apiserver would: " + info.refusal, 0);
      return FilterHeadersStatus.StopIteration;
    }
    const decision = decide(config, info, identity);
    if (config.accessLog) describeRequest(identity, info, decision.policy);
    countRequest(decision.policy, info.verb, info.isResourceRequest, info.resource, info.subresource);
    if (config.annotateRequests) {
      replaceHeader(
        MapType.HttpRequestHeaders,
        "x-wharf-request-info",
        "isResource=" + (info.isResourceRequest ? "true" : "false") +
          ";verb=" + info.verb +
          ";group=" + info.apiGroup +
          ";version=" + info.apiVersion +
          ";namespace=" + info.namespace +
          ";resource=" + info.resource +
          ";subresource=" + info.subresource +
          ";name=" + info.name +
          ";path=" + info.path +
          ";policy=" + decision.policy +
          ";user=" + identity.user,
      );
    }

    const action = decision.action;
    if (action === null) return FilterHeadersStatus.Continue;
    if (action.deny) {
      countRejection("denied");
      const message = action.denyMessage.length > 0 ? action.denyMessage : "denied by gateway policy " + decision.policy;
      reply(403, "Forbidden", message, 0);
      return FilterHeadersStatus.StopIteration;
    }
    if (action.flowControl.length > 0) {
      const schema = config.schema(action.flowControl)!;
      if (!schema.exempt) {
        const isWatch = info.verb == "watch";
        const admission = acquire(schema, identity.user, isWatch);
        if (!admission.admitted) {
          countRejection(admission.reason);
          reply(429, "TooManyRequests", "too many requests for flow-control schema " + schema.name + " (" + admission.reason + "), please try again later", admission.retryAfterSeconds);
          return FilterHeadersStatus.StopIteration;
        }
        this.admittedSchema = schema;
        this.admittedUser = identity.user;
        this.admittedWatch = isWatch;
      }
    }
    if (action.upstream.length > 0) replaceHeader(MapType.HttpRequestHeaders, config.routingHeader, action.upstream);
    return FilterHeadersStatus.Continue;
  }

  /**
   * Strips every X-Remote-* header a client sent, then states the verified
   * identity in the apiserver's front-proxy headers (Envoy presents the
   * front-proxy client certificate upstream, which makes them trusted).
   * Impersonate-* headers go through: the apiserver authorizes impersonation
   * against the identity stated here, as it would for a direct request.
   */
  private forwardIdentity(identity: Identity): void {
    const headers = this.headers;
    const tenantHeader = this.config.tenantHeader;
    for (let i = 0; i < headers.length; i++) {
      const name = headers[i].name;
      // x-wharf-request-info and the tenant header are the gateway's word only.
      if (name.startsWith("x-remote-") || name == "x-wharf-request-info" || name == tenantHeader) removeHeader(MapType.HttpRequestHeaders, name);
    }
    if (identity.tenant.length > 0) replaceHeader(MapType.HttpRequestHeaders, tenantHeader, identity.tenant);
    replaceHeader(MapType.HttpRequestHeaders, "x-remote-user", identity.user);
    if (identity.uid.length > 0) replaceHeader(MapType.HttpRequestHeaders, "x-remote-uid", identity.uid);
    for (let i = 0; i < identity.groups.length; i++) addHeader(MapType.HttpRequestHeaders, "x-remote-group", identity.groups[i]);
    for (let i = 0; i < identity.extraKeys.length; i++) {
      const name = extraHeaderName(identity.extraKeys[i]);
      const values = identity.extraValues[i];
      for (let k = 0; k < values.length; k++) addHeader(MapType.HttpRequestHeaders, name, values[k]);
    }
  }

  /** Whether the client asks the apiserver to act as someone else (Impersonate-User, -Group, -Uid, -Extra-*). */
  private impersonates(): bool {
    const headers = this.headers;
    for (let i = 0; i < headers.length; i++) if (headers[i].name.startsWith("impersonate-")) return true;
    return false;
  }

  onResponseHeaders(headerCount: u32, endOfStream: bool): FilterHeadersStatus {
    const status = getHeader(MapType.HttpResponseHeaders, ":status");
    countResponse(status === null ? "none" : status!);
    return FilterHeadersStatus.Continue;
  }

  onDone(): bool {
    if (this.largeInput) {
      this.headers = [];
      this.path = "";
      this.reviewedToken = "";
      requestCollection();
    }
    const schema = this.admittedSchema;
    if (schema !== null) {
      release(schema, this.admittedUser, this.admittedWatch);
      this.admittedSchema = null;
    }
    return true;
  }
}

setRootContextFactory((id: u32): RootContext => new GatewayRoot(id));
