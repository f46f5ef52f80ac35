// Owns context ids: the host names contexts by number; the dispatcher maps
// them to RootContext/HttpContext objects and forwards each callback.
import { HttpContext, RootContext } from "./context";
import { setEffectiveContext } from "./hostcalls";

let rootFactory: ((id: u32) => RootContext) | null = null;
const roots = new Map<u32, RootContext>();
const streams = new Map<u32, HttpContext>();
// Envoy makes HTTP calls on the root context and answers them there; the
// dispatcher remembers which stream asked so the answer reaches it.
const callouts = new Map<u32, u32>();

// The incremental collector frees garbage in steps paced by allocation, so a
// few requests with huge inputs can leave megabytes of garbage behind and
// grow linear memory (which never shrinks). A filter that just handled a
// large input asks for a full collection; it runs when the callback has
// returned, once that callback's locals are no longer roots.
let collectionRequested = false;

/** Runs a full garbage collection after the current callback returns. */
export function requestCollection(): void {
  collectionRequested = true;
}

function collectIfRequested(): void {
  if (!collectionRequested) return;
  collectionRequested = false;
  __collect();
}

/** Records that stream `contextId` made HTTP call `calloutId`. */
export function registerCallout(calloutId: u32, contextId: u32): void {
  callouts.set(calloutId, contextId);
}

/** Called once at module start by a filter: how to make its root context. */
export function setRootContextFactory(factory: (id: u32) => RootContext): void {
  rootFactory = factory;
}

export function rootContext(id: u32): RootContext {
  return roots.get(id);
}

export function proxy_on_context_create(contextId: u32, parentContextId: u32): void {
  if (parentContextId == 0) {
    const factory = rootFactory;
    roots.set(contextId, factory === null ? new RootContext(contextId) : factory(contextId));
  } else if (roots.has(parentContextId)) {
    streams.set(contextId, roots.get(parentContextId).createHttpContext(contextId));
  }
}

export function proxy_on_vm_start(rootContextId: u32, configurationSize: u32): bool {
  return roots.has(rootContextId) ? roots.get(rootContextId).onVmStart(configurationSize) : true;
}

export function proxy_on_configure(rootContextId: u32, configurationSize: u32): bool {
  return roots.has(rootContextId) ? roots.get(rootContextId).onConfigure(configurationSize) : true;
}

export function proxy_on_tick(rootContextId: u32): void {
  if (roots.has(rootContextId)) roots.get(rootContextId).onTick();
}

export function proxy_on_request_headers(contextId: u32, headerCount: u32, endOfStream: bool): u32 {
  const status = streams.has(contextId) ? streams.get(contextId).onRequestHeaders(headerCount, endOfStream) : 0;
  collectIfRequested();
  return status;
}

export function proxy_on_request_body(contextId: u32, bodySize: u32, endOfStream: bool): u32 {
  return streams.has(contextId) ? streams.get(contextId).onRequestBody(bodySize, endOfStream) : 0;
}

export function proxy_on_request_trailers(contextId: u32, trailerCount: u32): u32 {
  return streams.has(contextId) ? streams.get(contextId).onRequestTrailers(trailerCount) : 0;
}

export function proxy_on_response_headers(contextId: u32, headerCount: u32, endOfStream: bool): u32 {
  return streams.has(contextId) ? streams.get(contextId).onResponseHeaders(headerCount, endOfStream) : 0;
}

export function proxy_on_response_body(contextId: u32, bodySize: u32, endOfStream: bool): u32 {
  return streams.has(contextId) ? streams.get(contextId).onResponseBody(bodySize, endOfStream) : 0;
}

export function proxy_on_http_call_response(contextId: u32, calloutId: u32, headerCount: u32, bodySize: u32, trailerCount: u32): void {
  let target = contextId;
  if (callouts.has(calloutId)) {
    target = callouts.get(calloutId);
    callouts.delete(calloutId);
  }
  if (streams.has(target)) {
    // Header and reply calls from here on act on the stream, not the root.
    setEffectiveContext(target);
    streams.get(target).onHttpCallResponse(calloutId, headerCount, bodySize, trailerCount);
  } else if (roots.has(target)) {
    roots.get(target).onHttpCallResponse(calloutId, headerCount, bodySize, trailerCount);
  }
  collectIfRequested();
}

export function proxy_on_log(contextId: u32): void {
  if (streams.has(contextId)) streams.get(contextId).onLog();
}

export function proxy_on_done(contextId: u32): bool {
  let done = true;
  if (streams.has(contextId)) done = streams.get(contextId).onDone();
  else if (roots.has(contextId)) done = roots.get(contextId).onDone();
  collectIfRequested();
  return done;
}

export function proxy_on_delete(contextId: u32): void {
  if (streams.has(contextId)) {
    streams.get(contextId).onDelete();
    streams.delete(contextId);
  } else if (roots.has(contextId)) {
    roots.get(contextId).onDelete();
    roots.delete(contextId);
  }
}
