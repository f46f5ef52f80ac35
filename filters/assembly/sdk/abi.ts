// Everything a filter module exports to the host: the ABI marker, memory
// allocation, and the dispatcher's callbacks. A filter's entry file does
// `export * from "../sdk/abi"`. Envoy picks the ABI version from the marker's name.
import "./abort"; // referenced by the compiler's --use abort=…
export function proxy_abi_version_0_2_1(): void {}
export { proxy_on_memory_allocate, malloc } from "./memory";
export {
  proxy_on_context_create,
  proxy_on_vm_start,
  proxy_on_configure,
  proxy_on_tick,
  proxy_on_request_headers,
  proxy_on_request_body,
  proxy_on_request_trailers,
  proxy_on_response_headers,
  proxy_on_response_body,
  proxy_on_http_call_response,
  proxy_on_log,
  proxy_on_done,
  proxy_on_delete,
} from "./dispatcher";
