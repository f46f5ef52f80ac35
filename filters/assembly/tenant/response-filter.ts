// The response side of the tenant filter on the proxy-wasm stream: decides
// from the response headers whether the body can be rewritten, then feeds
// each body chunk through the transducer and puts its output in place.
// Envoy replaces a chunk with set_buffer_bytes(start 0, length = chunk
// size); returning Continue sends it on, so nothing but the transducer's
// bounded state stays in the filter between chunks.
import {
  BufferType,
  FilterDataStatus,
  FilterHeadersStatus,
  getBufferBytes,
  getHeader,
  HeaderPair,
  log,
  LogLevel,
  MapType,
  removeHeader,
  replaceHeader,
  sendLocalResponse,
  setBufferBytes,
} from "../sdk";
import { statusBody } from "../gateway/status";
import { ContinueSealer, ResponseScope } from "./response-scope";
import { ResponseTransducer } from "./response-stream";
import { Tenant } from "./config";
import { sealContinue } from "./continue-token";
import { TenantRequest } from "./request-state";
import { mapGroup } from "./naming";
import { isOpenApiIndex, maxOpenApiBody, rewriteOpenApiGroupDocument, rewriteOpenApiIndex } from "./response-openapi";

class TenantSealer extends ContinueSealer {
  constructor(private tenant: Tenant) {
    super();
  }

  seal(upstreamToken: string): string | null {
    return sealContinue(this.tenant, upstreamToken);
  }
}

/** The world a tenant request's response is rewritten into. */
export function responseScope(request: TenantRequest): ResponseScope {
  const info = request.info;
  const tenant = request.tenant;
  const sharedView = info.isResourceRequest && tenant.sharesView(info.apiGroup, info.resource);
  const crdRequest = info.isResourceRequest && info.apiGroup == "apiextensions.k8s.io" && info.resource == "customresourcedefinitions";
  return new ResponseScope(tenant.name, request.config.hostGroups, new TenantSealer(tenant), sharedView, crdRequest);
}

const enum BodyMode {
  /** Untouched (no body, a protocol upgrade, text such as pod logs). */
  Pass,
  Rewrite,
  /** Refused or failed: nothing more goes to the client. */
  Refused,
  /** An /openapi/v3 body: held whole (bounded), rewritten at its end. */
  Whole,
}

/** What an /openapi/v3 response needs: the index, a document of one of the tenant's groups, or nothing. */
export class OpenApiPlan {
  index: bool = false;
  /** The tenant's group whose document this is, and its upstream name ("" when none). */
  group: string = "";
  upstream: string = "";
}

export function openApiPlan(request: TenantRequest): OpenApiPlan | null {
  const info = request.info;
  if (info.isResourceRequest || !info.path.startsWith("/openapi/v3")) return null;
  const plan = new OpenApiPlan();
  if (isOpenApiIndex(info.path)) {
    plan.index = true;
    return plan;
  }
  const pathPlan = request.plan;
  if (pathPlan === null) return null;
  const group = pathPlan.group;
  if (group.length == 0 || request.config.isHostGroup(group)) return null;
  const upstream = mapGroup(request.tenant.name, group, request.config.hostGroups);
  if (upstream === null) return null;
  plan.group = group;
  plan.upstream = upstream!;
  return plan;
}

/** "application/json; charset=utf-8" → "application/json". */
function mediaType(contentType: string): string {
  const semicolon = contentType.indexOf(";");
  return (semicolon < 0 ? contentType : contentType.substring(0, semicolon)).trim().toLowerCase();
}

export class TenantResponse {
  private mode: BodyMode = BodyMode.Pass;
  private transducer: ResponseTransducer;
  private held: Uint8Array = new Uint8Array(0);
  private heldSize: i32 = 0;

  constructor(
    private scope: ResponseScope,
    private openApi: OpenApiPlan | null = null,
  ) {
    this.transducer = new ResponseTransducer(scope);
  }

  /** Why the response was refused or failed ("" when it was not). */
  get failure(): string {
    return this.transducer.failure;
  }

  onHeaders(endOfStream: bool): FilterHeadersStatus {
    const status = getHeader(MapType.HttpResponseHeaders, ":status");
    if (status == "101" || status == "204" || status == "304") return FilterHeadersStatus.Continue;
    // A stale ?hash= is redirected to the current one, at the upstream path.
    const openApi = this.openApi;
    if (openApi !== null && openApi.group.length > 0 && status !== null && status!.startsWith("3")) {
      const location = getHeader(MapType.HttpResponseHeaders, "location");
      if (location !== null) {
        replaceHeader(MapType.HttpResponseHeaders, "location", location!.replace("/apis/" + openApi.upstream + "/", "/apis/" + openApi.group + "/"));
      }
    }
    const encoding = getHeader(MapType.HttpResponseHeaders, "content-encoding");
    if (encoding !== null && encoding.trim().toLowerCase() != "identity" && encoding.trim().length > 0) {
      return this.refuse("a response with content-encoding " + encoding);
    }
    const contentType = getHeader(MapType.HttpResponseHeaders, "content-type");
    const media = contentType === null ? "" : mediaType(contentType);
    // Aggregated discovery (as=APIGroupDiscoveryList) lists every group of
    // every tenant in a shape this filter does not rewrite; the request side
    // asks for plain JSON, so one arriving anyway is refused.
    if (contentType !== null && contentType.toLowerCase().indexOf("apidiscovery.k8s.io") >= 0) {
      return this.refuse("aggregated discovery (" + contentType + ")");
    }
    // kube-apiserver serves the /openapi/v3 index as text/plain.
    if (this.openApi !== null && status == "200" && (media == "application/json" || media == "text/plain")) {
      this.mode = BodyMode.Whole;
      removeHeader(MapType.HttpResponseHeaders, "content-length");
      removeHeader(MapType.HttpResponseHeaders, "etag");
      return FilterHeadersStatus.Continue;
    }
    if (media == "application/json") {
      this.mode = BodyMode.Rewrite;
      // The rewritten body has another size, and another digest.
      removeHeader(MapType.HttpResponseHeaders, "content-length");
      removeHeader(MapType.HttpResponseHeaders, "etag");
      return FilterHeadersStatus.Continue;
    }
    if (media == "text/plain" || (endOfStream && media.length == 0)) return FilterHeadersStatus.Continue;
    // Protobuf, CBOR, YAML, ...: the request side asked for JSON; anything
    // else cannot be rewritten, so it does not reach the tenant.
    return this.refuse("a response of type " + (media.length == 0 ? "(none)" : media));
  }

  onBody(bodySize: u32, endOfStream: bool): FilterDataStatus {
    if (this.mode == BodyMode.Pass) return FilterDataStatus.Continue;
    if (this.mode == BodyMode.Refused) {
      setBufferBytes(BufferType.HttpResponseBody, 0, bodySize, new ArrayBuffer(0));
      return FilterDataStatus.StopIterationNoBuffer;
    }
    let chunk = getBufferBytes(BufferType.HttpResponseBody, 0, bodySize);
    if (chunk === null) chunk = new ArrayBuffer(0);
    if (this.mode == BodyMode.Whole) return this.hold(chunk!, bodySize, endOfStream);
    const out = this.transducer.push(chunk!, endOfStream);
    if (this.transducer.failed) {
      this.mode = BodyMode.Refused;
      log(LogLevel.Warn, "wharf tenant filter: response stopped: " + this.transducer.failure);
      setBufferBytes(BufferType.HttpResponseBody, 0, bodySize, new ArrayBuffer(0));
      // After the headers went out Envoy answers a local reply by resetting
      // the stream: the client sees a broken response, never a wrong one.
      this.reply(500, "InternalError", "the tenant filter could not rewrite the response: " + this.transducer.failure);
      return FilterDataStatus.StopIterationNoBuffer;
    }
    setBufferBytes(BufferType.HttpResponseBody, 0, bodySize, out);
    return FilterDataStatus.Continue;
  }

  /** Holds an /openapi/v3 chunk; at the end puts the rewritten body in place of the last one. */
  private hold(chunk: ArrayBuffer, bodySize: u32, endOfStream: bool): FilterDataStatus {
    if (this.heldSize + chunk.byteLength > maxOpenApiBody) return this.fail("an /openapi/v3 body larger than " + maxOpenApiBody.toString() + " bytes");
    if (this.heldSize + chunk.byteLength > this.held.length) {
      const grown = new Uint8Array(max(this.held.length * 2, this.heldSize + chunk.byteLength));
      grown.set(this.held.subarray(0, this.heldSize));
      this.held = grown;
    }
    this.held.set(Uint8Array.wrap(chunk), this.heldSize);
    this.heldSize += chunk.byteLength;
    if (!endOfStream) {
      setBufferBytes(BufferType.HttpResponseBody, 0, bodySize, new ArrayBuffer(0));
      return FilterDataStatus.Continue;
    }
    const body = String.UTF8.decode(this.held.slice(0, this.heldSize).buffer);
    this.held = new Uint8Array(0);
    const plan = this.openApi!;
    let out: string;
    if (plan.index) {
      const index = rewriteOpenApiIndex(body, this.scope);
      if (index === null) return this.fail("a malformed /openapi/v3 index");
      out = index!;
    } else out = rewriteOpenApiGroupDocument(body, plan.upstream, plan.group);
    setBufferBytes(BufferType.HttpResponseBody, 0, bodySize, String.UTF8.encode(out));
    return FilterDataStatus.Continue;
  }

  private fail(why: string): FilterDataStatus {
    this.mode = BodyMode.Refused;
    this.transducer.failure = why;
    log(LogLevel.Warn, "wharf tenant filter: response stopped: " + why);
    setBufferBytes(BufferType.HttpResponseBody, 0, 0, new ArrayBuffer(0));
    this.reply(500, "InternalError", "the tenant filter could not rewrite the response: " + why);
    return FilterDataStatus.StopIterationNoBuffer;
  }

  private refuse(what: string): FilterHeadersStatus {
    this.mode = BodyMode.Refused;
    this.transducer.failure = "the tenant filter does not pass " + what + " to a tenant";
    log(LogLevel.Warn, "wharf tenant filter: " + this.transducer.failure);
    this.reply(502, "InternalError", this.transducer.failure);
    return FilterHeadersStatus.StopIteration;
  }

  private reply(code: u32, reason: string, message: string): void {
    const headers = [new HeaderPair("content-type", "application/json")];
    sendLocalResponse(code, "wharf_tenant_response", String.UTF8.encode(statusBody(<i32>code, reason, message, 0)), headers);
  }
}
