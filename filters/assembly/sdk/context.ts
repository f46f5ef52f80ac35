// Context classes with default behaviour; a filter extends them and
// overrides what it needs (as the Rust SDK's traits with default methods).
import { FilterDataStatus, FilterHeadersStatus, FilterTrailersStatus } from "./enums";
import { HeaderPair, httpCall } from "./hostcalls";
import { registerCallout } from "./dispatcher";

export class HttpContext {
  constructor(
    public id: u32,
    public root: RootContext,
  ) {}

  onRequestHeaders(headerCount: u32, endOfStream: bool): FilterHeadersStatus {
    return FilterHeadersStatus.Continue;
  }
  onRequestBody(bodySize: u32, endOfStream: bool): FilterDataStatus {
    return FilterDataStatus.Continue;
  }
  onRequestTrailers(trailerCount: u32): FilterTrailersStatus {
    return FilterTrailersStatus.Continue;
  }
  onResponseHeaders(headerCount: u32, endOfStream: bool): FilterHeadersStatus {
    return FilterHeadersStatus.Continue;
  }
  onResponseBody(bodySize: u32, endOfStream: bool): FilterDataStatus {
    return FilterDataStatus.Continue;
  }
  onHttpCallResponse(calloutId: u32, headerCount: u32, bodySize: u32, trailerCount: u32): void {}

  /**
   * Sends an HTTP call to an Envoy cluster; its answer comes to this
   * stream's onHttpCallResponse. Returns the callout id, 0 if refused.
   */
  dispatchHttpCall(upstream: string, headers: HeaderPair[], body: ArrayBuffer, timeoutMilliseconds: u32): u32 {
    const calloutId = httpCall(upstream, headers, body, timeoutMilliseconds);
    if (calloutId != 0) registerCallout(calloutId, this.id);
    return calloutId;
  }

  onLog(): void {}
  onDone(): bool {
    return true;
  }
  onDelete(): void {}
}

export class RootContext {
  constructor(public id: u32) {}

  onVmStart(configurationSize: u32): bool {
    return true;
  }
  onConfigure(configurationSize: u32): bool {
    return true;
  }
  onTick(): void {}
  onHttpCallResponse(calloutId: u32, headerCount: u32, bodySize: u32, trailerCount: u32): void {}
  createHttpContext(id: u32): HttpContext {
    return new HttpContext(id, this);
  }
  onDone(): bool {
    return true;
  }
  onDelete(): void {}
}
