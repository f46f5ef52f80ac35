// The smallest useful filter: proves that Envoy's V8 runtime loads our
// modules, recognises the ABI, creates contexts and honours header writes.
import { addHeader, FilterHeadersStatus, log, LogLevel, MapType } from "../sdk";

export * from "../sdk/abi";

export function proxy_on_context_create(contextId: u32, parentContextId: u32): void {}

export function proxy_on_vm_start(rootContextId: u32, vmConfigurationSize: u32): bool {
  log(LogLevel.Info, "wharf hello filter: vm started");
  return true;
}

export function proxy_on_configure(rootContextId: u32, pluginConfigurationSize: u32): bool {
  return true;
}

export function proxy_on_request_headers(contextId: u32, headers: u32, endOfStream: bool): u32 {
  return FilterHeadersStatus.Continue;
}

export function proxy_on_response_headers(contextId: u32, headers: u32, endOfStream: bool): u32 {
  addHeader(MapType.HttpResponseHeaders, "x-wharf-filter", "hello");
  return FilterHeadersStatus.Continue;
}

export function proxy_on_done(contextId: u32): bool {
  return true;
}

export function proxy_on_log(contextId: u32): void {}

export function proxy_on_delete(contextId: u32): void {}
