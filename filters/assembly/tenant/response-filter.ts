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
  sendLocalResponse,
  setBufferBytes,
} from "../sdk";
import { statusBody } from "../gateway/status";
import { ContinueSealer, ResponseScope } from "./response-scope";
import { ResponseTransducer } from "./response-stream";
import { Tenant } from "./config";
import { sealContinue } from "./continue-token";
import { TenantRequest } from "./request-state";

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
}

/** "application/json; charset=utf-8" → "application/json". */
function mediaType(contentType: string): string {
  const semicolon = contentType.indexOf(";");
  return (semicolon < 0 ? contentType : contentType.substring(0, semicolon)).trim().toLowerCase();
}

export class TenantResponse {
  private mode: BodyMode = BodyMode.Pass;
  private transducer: ResponseTransducer;

  constructor(scope: ResponseScope) {
    this.transducer = new ResponseTransducer(scope);
  }

  /** Why the response was refused or failed ("" when it was not). */
  get failure(): string {
    return this.transducer.failure;
  }

  onHeaders(endOfStream: bool): FilterHeadersStatus {
    const status = getHeader(MapType.HttpResponseHeaders, ":status");
    if (status == "101" || status == "204" || status == "304") return FilterHeadersStatus.Continue;
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
