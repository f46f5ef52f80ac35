// What the filter decided, for Envoy's own access log: each field is one
// filter-state value (proxy_set_property; Envoy keys it "wasm.<name>", read
// by %FILTER_STATE(wasm.<name>:PLAIN)% in the access log's format). Only
// when the control plane configured an access log: each value is a host
// call. Never a credential: the identity is what was verified, not what
// was presented.
import { setProperty } from "../sdk";
import { Identity } from "./identity";
import { RequestInfo } from "./request-info";

function put(name: string, value: string): void {
  if (value.length > 0) setProperty([name], String.UTF8.encode(value));
}

export function describeRequest(identity: Identity, info: RequestInfo, policy: string): void {
  put("wharf_user", identity.user);
  put("wharf_groups", identity.groups.join(","));
  put("wharf_verb", info.verb);
  put("wharf_api_group", info.apiGroup);
  put("wharf_resource", info.resource);
  put("wharf_subresource", info.subresource);
  put("wharf_namespace", info.namespace);
  put("wharf_name", info.name);
  put("wharf_policy", policy);
}

/** Why the gateway answered itself (Forbidden, TooManyRequests, Unauthorized, …); unset when the apiserver answered. */
export function describeRefusal(reason: string): void {
  put("wharf_refused", reason);
}
