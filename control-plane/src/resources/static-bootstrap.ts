// The gateway's resources as one static Envoy bootstrap, for an Envoy run
// without a control plane (and for the tests and benchmark, which thereby run
// exactly what the control plane would push). Everything the xDS form fetches
// by name is put in place: endpoints into their clusters, the route
// configuration into the listener, the filter's config (ECDS) into the filter
// chain, and secrets become static secrets that the same names refer to.
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import type { ResourceSet } from "../xds/snapshot.js";

function isObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A copy of `value` with `replace` applied to every object, innermost first. */
function rewrite(value: JsonValue, replace: (object: JsonObject) => JsonObject): JsonValue {
  if (Array.isArray(value)) return value.map((item) => rewrite(item, replace));
  if (!isObject(value)) return value;
  const copy: JsonObject = {};
  for (const [key, inner] of Object.entries(value)) copy[key] = rewrite(inner, replace);
  return replace(copy);
}

function byName(resources: JsonValue[] | undefined, field: string): Map<string, JsonObject> {
  const found = new Map<string, JsonObject>();
  for (const resource of resources ?? []) if (isObject(resource) && typeof resource[field] === "string") found.set(resource[field], resource);
  return found;
}

function required<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`static bootstrap: ${what} is not among the resources`);
  return value;
}

export function staticBootstrap(resources: ResourceSet, adminPort: number): JsonObject {
  const endpoints = byName(resources.endpoint, "cluster_name");
  const routes = byName(resources.route, "name");
  const extensions = byName(resources.extension, "name");
  const inline = (object: JsonObject): JsonObject => {
    // An SDS reference without a config source names a static secret.
    if ("sds_config" in object && typeof object.name === "string") return { name: object.name };
    if (isObject(object.rds) && typeof object.rds.route_config_name === "string") {
      const { rds, ...rest } = object;
      return { ...rest, route_config: required(routes.get(rds.route_config_name as string), `route configuration ${String(rds.route_config_name)}`) };
    }
    if ("config_discovery" in object && typeof object.name === "string") {
      return { name: object.name, typed_config: required(extensions.get(object.name), `filter config ${object.name}`).typed_config ?? null };
    }
    if (object.type === "EDS" && typeof object.name === "string") {
      const { eds_cluster_config: _eds, ...rest } = object;
      return { ...rest, type: "STATIC", load_assignment: required(endpoints.get(object.name), `endpoints of ${object.name}`) };
    }
    return object;
  };
  return {
    admin: { address: { socket_address: { address: "127.0.0.1", port_value: adminPort } } },
    static_resources: {
      listeners: rewrite(resources.listener ?? [], inline),
      clusters: rewrite(resources.cluster ?? [], inline),
      secrets: resources.secret ?? [],
    },
  };
}
