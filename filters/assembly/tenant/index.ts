// The tenant filter, chained after the gateway filter: a request the
// gateway marked with the tenant header (a verified tenant identity) has its
// names mapped into the tenant's upstream world (request-*.ts, query*.ts),
// and the response is mapped back (response-*.ts). Requests without the
// header pass untouched: they are host identities.
import {
  BufferType,
  isValidUtf8,
  replaceHeader,
  requestCollection,
  setBufferBytes,
  FilterDataStatus,
  FilterHeadersStatus,
  FilterTrailersStatus,
  getBufferBytes,
  getHeaders,
  HeaderPair,
  HttpContext,
  log,
  LogLevel,
  MapType,
  removeHeader,
  RootContext,
  sendLocalResponse,
  setRootContextFactory,
} from "../sdk";
import { statusBody } from "../gateway/status";
import { classify } from "../gateway/request-info";
import { decodeConfig, TenantFilterConfig } from "./config";
import { isTenantName } from "./naming";
import { TenantRequest } from "./request-state";
import { planPath, Refusal, Scope } from "./request-path";
import { mapQuery } from "./query";
import { bodyFormat, BodyFormat, mapAccept } from "./request-headers";
import { mapBody } from "./request-body";
import { mapProtobufBody } from "./request-protobuf";
import { openApiPlan, responseScope, TenantResponse } from "./response-filter";

/** kube-apiserver's own limit on a request body (3 MiB): the filter buffers no more. */
export const maxBodyBytes: u32 = 3 * 1024 * 1024;
/** Inputs from this size on are rare: their garbage is collected right away. */
const largeInputBytes: u32 = 16 * 1024;

export * from "../sdk/abi";

class TenantRoot extends RootContext {
  config: TenantFilterConfig = new TenantFilterConfig();
  configured: bool = false;

  onConfigure(configurationSize: u32): bool {
    const bytes = getBufferBytes(BufferType.PluginConfiguration, 0, configurationSize);
    const result = decodeConfig(bytes === null ? new Uint8Array(0) : Uint8Array.wrap(bytes));
    if (result.config === null) {
      log(LogLevel.Error, "wharf tenant: configuration refused: " + result.error);
      return false;
    }
    this.config = result.config!;
    this.configured = true;
    log(LogLevel.Info, "wharf tenant: configured with " + this.config.tenants.length.toString() + " tenants");
    return true;
  }

  createHttpContext(id: u32): HttpContext {
    return new TenantStream(id, this);
  }
}

/** Answers the request with a Kubernetes Status; the stream stops here. */
export function replyStatus(code: u32, reason: string, message: string): void {
  const headers = new Array<HeaderPair>();
  headers.push(new HeaderPair("content-type", "application/json"));
  sendLocalResponse(code, "wharf_tenant_" + reason.toLowerCase(), String.UTF8.encode(statusBody(<i32>code, reason, message, 0)), headers);
}

function refuse(refusal: Refusal): FilterHeadersStatus {
  replyStatus(refusal.code, refusal.reason, refusal.message);
  return FilterHeadersStatus.StopIteration;
}

function headerValue(headers: HeaderPair[], name: string): string | null {
  for (let i = 0; i < headers.length; i++) if (headers[i].name == name) return headers[i].value;
  return null;
}

export class TenantStream extends HttpContext {
  /** Set for a tenant's request; null: a host identity's request, passed untouched both ways. */
  request: TenantRequest | null = null;
  /** How the request body is mapped (None: passed as it comes). */
  private bodyFormat: BodyFormat = BodyFormat.None;

  private get root_(): TenantRoot {
    return this.root as TenantRoot;
  }

  onRequestHeaders(headerCount: u32, endOfStream: bool): FilterHeadersStatus {
    const root = this.root_;
    const headers = getHeaders(MapType.HttpRequestHeaders);
    const config = root.config;
    const tenantName = headerValue(headers, config.tenantHeader);
    if (tenantName === null) return FilterHeadersStatus.Continue;
    removeHeader(MapType.HttpRequestHeaders, config.tenantHeader);
    // The gateway filter sets the header once, to a configured tenant; anything
    // else (two values joined by Envoy, an unknown tenant) is not passed on as a host request.
    const tenant = isTenantName(tenantName!) ? config.tenant(tenantName!) : null;
    if (tenant === null) {
      replyStatus(403, "Forbidden", "the tenant of this identity is not served by this gateway");
      return FilterHeadersStatus.StopIteration;
    }
    const method = headerValue(headers, ":method");
    const path = headerValue(headers, ":path");
    if (method === null || path === null || !path!.startsWith("/")) {
      replyStatus(400, "BadRequest", "the request has no valid path");
      return FilterHeadersStatus.StopIteration;
    }
    const info = classify(method!, path!);
    if (info.refusal.length > 0) {
      replyStatus(400, "BadRequest", "the tenant filter refuses a request it cannot classify as the apiserver would: " + info.refusal);
      return FilterHeadersStatus.StopIteration;
    }
    const rawPath = path!;
    const plan = planPath(config, tenant!, info, rawPath);
    if (plan.refusal !== null) return refuse(plan.refusal!);
    const queryAt = rawPath.indexOf("?");
    let upstreamPath = plan.path;
    if (queryAt >= 0 || plan.needsTenantLabel) {
      const query = mapQuery(config, tenant!, plan, rawPath, queryAt < 0 ? rawPath.length : queryAt + 1, rawPath.length);
      if (query.refusal !== null) return refuse(query.refusal!);
      if (query.query.length > 0) upstreamPath += "?" + query.query;
      else if (queryAt >= 0 && upstreamPath == rawPath.substring(0, queryAt)) upstreamPath = rawPath;
    }
    if (upstreamPath != rawPath) replaceHeader(MapType.HttpRequestHeaders, ":path", upstreamPath);

    const request = new TenantRequest(config, tenant!, info);
    request.plan = plan;
    const accept = mapAccept(headerValue(headers, "accept"));
    request.asTable = accept.asTable;
    request.aggregatedDiscovery = accept.aggregatedDiscovery;
    if (accept.accept !== null) replaceHeader(MapType.HttpRequestHeaders, "accept", accept.accept!);
    if (headerValue(headers, "accept-encoding") !== null) removeHeader(MapType.HttpRequestHeaders, "accept-encoding");

    // DeleteOptions (DELETE) and bodies of non-resource requests name nothing to map.
    const mapsBody = !endOfStream && (method! == "POST" || method! == "PUT" || method! == "PATCH") && plan.scope != Scope.NonResource && plan.scope != Scope.Shared;
    if (mapsBody) {
      const format = bodyFormat(headerValue(headers, "content-type"));
      if (format.refusal !== null) return refuse(format.refusal!);
      this.bodyFormat = format.format;
      // The mapped body has another length; Envoy frames it.
      if (headerValue(headers, "content-length") !== null) removeHeader(MapType.HttpRequestHeaders, "content-length");
    }
    this.request = request;
    return FilterHeadersStatus.Continue;
  }

  onRequestBody(bodySize: u32, endOfStream: bool): FilterDataStatus {
    const request = this.request;
    if (request === null || this.bodyFormat == BodyFormat.None) return FilterDataStatus.Continue;
    if (bodySize > maxBodyBytes) {
      this.bodyFormat = BodyFormat.None;
      refuse(new Refusal(413, "RequestEntityTooLarge", "the request body is larger than " + maxBodyBytes.toString() + " bytes"));
      return FilterDataStatus.StopIterationNoBuffer;
    }
    if (!endOfStream) return FilterDataStatus.StopIterationAndBuffer;
    const format = this.bodyFormat;
    this.bodyFormat = BodyFormat.None;
    if (bodySize == 0) return FilterDataStatus.Continue;
    const bytes = getBufferBytes(BufferType.HttpRequestBody, 0, bodySize);
    if (bytes === null) return FilterDataStatus.Continue;
    if (bodySize >= largeInputBytes) requestCollection();
    if (format == BodyFormat.Protobuf) {
      const mappedProtobuf = mapProtobufBody(request!.config, request!.tenant, request!.plan!, Uint8Array.wrap(bytes!));
      if (mappedProtobuf.refusal !== null) {
        refuse(mappedProtobuf.refusal!);
        return FilterDataStatus.StopIterationNoBuffer;
      }
      if (mappedProtobuf.body !== null) setBufferBytes(BufferType.HttpRequestBody, 0, <u32>bytes!.byteLength, mappedProtobuf.body!.buffer);
      return FilterDataStatus.Continue;
    }
    if (!isValidUtf8(changetype<usize>(bytes!), <usize>bytes!.byteLength)) {
      refuse(new Refusal(400, "BadRequest", "the request body is not UTF-8"));
      return FilterDataStatus.StopIterationNoBuffer;
    }
    const text = String.UTF8.decode(bytes!);
    const mapped = mapBody(request!.config, request!.tenant, request!.plan!, format, text);
    if (mapped.refusal !== null) {
      refuse(mapped.refusal!);
      return FilterDataStatus.StopIterationNoBuffer;
    }
    if (mapped.body !== null) setBufferBytes(BufferType.HttpRequestBody, 0, <u32>bytes!.byteLength, String.UTF8.encode(mapped.body!));
    return FilterDataStatus.Continue;
  }

  /**
   * Trailers end a request whose body may still be buffered unmapped; kube
   * clients send none, so such a request is refused rather than let through.
   */
  onRequestTrailers(trailerCount: u32): FilterTrailersStatus {
    if (this.request === null || this.bodyFormat == BodyFormat.None) return FilterTrailersStatus.Continue;
    this.bodyFormat = BodyFormat.None;
    refuse(new Refusal(400, "BadRequest", "request trailers are not supported on a tenant request with a body"));
    return FilterTrailersStatus.StopIteration;
  }

  onDone(): bool {
    this.request = null;
    this.response = null;
    return true;
  }

  // Response side: response-*.ts (rewrites upstream names back to the tenant's).
  response: TenantResponse | null = null;

  onResponseHeaders(headerCount: u32, endOfStream: bool): FilterHeadersStatus {
    const request = this.request;
    if (request === null) return FilterHeadersStatus.Continue;
    const response = new TenantResponse(responseScope(request), openApiPlan(request));
    this.response = response;
    return response.onHeaders(endOfStream);
  }

  onResponseBody(bodySize: u32, endOfStream: bool): FilterDataStatus {
    const response = this.response;
    return response === null ? FilterDataStatus.Continue : response.onBody(bodySize, endOfStream);
  }
}

setRootContextFactory((id: u32): RootContext => new TenantRoot(id));
