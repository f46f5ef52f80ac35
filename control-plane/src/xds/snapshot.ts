// A snapshot: one consistent, versioned set of Envoy resources for a node.
// Resources are written in Envoy's JSON/YAML form (what envoy/*.yaml shows a
// reader) and turned into protobuf messages once, here, with their @type
// fields resolved against the generated registry, so a typo fails when the
// snapshot is built, never in Envoy.
import { createHash } from "node:crypto";
import { createRegistry, fromJson, type DescMessage, type JsonValue, type Message } from "@bufbuild/protobuf";
import { anyPack, file_google_protobuf_wrappers, type Any } from "@bufbuild/protobuf/wkt";
import { ClusterSchema } from "@wharf/proto/envoy/config/cluster/v3/cluster_pb.js";
import { TypedExtensionConfigSchema } from "@wharf/proto/envoy/config/core/v3/extension_pb.js";
import { ClusterLoadAssignmentSchema } from "@wharf/proto/envoy/config/endpoint/v3/endpoint_pb.js";
import { ListenerSchema } from "@wharf/proto/envoy/config/listener/v3/listener_pb.js";
import { RouteConfigurationSchema } from "@wharf/proto/envoy/config/route/v3/route_pb.js";
import { file_envoy_extensions_filters_http_router_v3_router } from "@wharf/proto/envoy/extensions/filters/http/router/v3/router_pb.js";
import { file_envoy_extensions_filters_http_wasm_v3_wasm } from "@wharf/proto/envoy/extensions/filters/http/wasm/v3/wasm_pb.js";
import { file_envoy_extensions_filters_listener_tls_inspector_v3_tls_inspector } from "@wharf/proto/envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector_pb.js";
import { file_envoy_extensions_filters_network_http_connection_manager_v3_http_connection_manager } from "@wharf/proto/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.js";
import { file_envoy_extensions_retry_host_previous_hosts_v3_previous_hosts } from "@wharf/proto/envoy/extensions/retry/host/previous_hosts/v3/previous_hosts_pb.js";
import { SecretSchema, file_envoy_extensions_transport_sockets_tls_v3_secret } from "@wharf/proto/envoy/extensions/transport_sockets/tls/v3/secret_pb.js";
import { file_envoy_extensions_transport_sockets_tls_v3_tls } from "@wharf/proto/envoy/extensions/transport_sockets/tls/v3/tls_pb.js";
import { file_envoy_extensions_upstreams_http_v3_http_protocol_options } from "@wharf/proto/envoy/extensions/upstreams/http/v3/http_protocol_options_pb.js";
import { file_envoy_extensions_filters_http_local_ratelimit_v3_local_rate_limit } from "@wharf/proto/envoy/extensions/filters/http/local_ratelimit/v3/local_rate_limit_pb.js";
import { file_envoy_extensions_access_loggers_file_v3_file } from "@wharf/proto/envoy/extensions/access_loggers/file/v3/file_pb.js";
import { referencesOf } from "./references.js";

export const typeUrls = {
  secret: "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
  cluster: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
  endpoint: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
  extension: "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
  listener: "type.googleapis.com/envoy.config.listener.v3.Listener",
  route: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
} as const;

export type ResourceKind = keyof typeof typeUrls;

/** The order Envoy needs on an update: what others refer to goes first. */
export const pushOrder: ResourceKind[] = ["secret", "cluster", "endpoint", "extension", "listener", "route"];

const schemas: Record<ResourceKind, DescMessage> = {
  secret: SecretSchema,
  cluster: ClusterSchema,
  endpoint: ClusterLoadAssignmentSchema,
  extension: TypedExtensionConfigSchema,
  listener: ListenerSchema,
  route: RouteConfigurationSchema,
};

// Every message an @type in our resources may name.
export const registry = createRegistry(
  ...Object.values(schemas),
  file_google_protobuf_wrappers,
  file_envoy_extensions_filters_network_http_connection_manager_v3_http_connection_manager,
  file_envoy_extensions_filters_http_router_v3_router,
  file_envoy_extensions_filters_http_wasm_v3_wasm,
  file_envoy_extensions_filters_listener_tls_inspector_v3_tls_inspector,
  file_envoy_extensions_transport_sockets_tls_v3_tls,
  file_envoy_extensions_transport_sockets_tls_v3_secret,
  file_envoy_extensions_upstreams_http_v3_http_protocol_options,
  file_envoy_extensions_retry_host_previous_hosts_v3_previous_hosts,
  file_envoy_extensions_filters_http_local_ratelimit_v3_local_rate_limit,
  file_envoy_extensions_access_loggers_file_v3_file,
);

export interface NamedResource {
  name: string;
  packed: Any;
  /** Content hash: the per-resource version the delta protocol sends. */
  version: string;
}

export type ResourceSet = Partial<Record<ResourceKind, JsonValue[]>>;

export class SnapshotError extends Error {}

/** An immutable, consistency-checked set of resources with one version. */
export class Snapshot {
  private constructor(
    readonly version: string,
    private readonly resources: Map<ResourceKind, NamedResource[]>,
  ) {}

  /** Parses and checks the resources; throws SnapshotError naming the bad one. */
  static build(version: string, set: ResourceSet): Snapshot {
    const resources = new Map<ResourceKind, NamedResource[]>();
    const parsedMessages: Array<{ kind: ResourceKind; name: string; message: Message }> = [];
    for (const kind of pushOrder) {
      const parsed: NamedResource[] = [];
      for (const [index, json] of (set[kind] ?? []).entries()) {
        const name = resourceName(kind, json);
        if (!name) throw new SnapshotError(`${kind}[${index}]: has no name`);
        let message;
        try {
          message = fromJson(schemas[kind], json, { registry });
        } catch (error) {
          throw new SnapshotError(`${kind} ${name}: ${(error as Error).message}`, { cause: error });
        }
        const packed = anyPack(schemas[kind], message);
        parsed.push({ name, packed, version: createHash("sha256").update(packed.value).digest("hex").slice(0, 16) });
        parsedMessages.push({ kind, name, message });
      }
      const unique = new Set(parsed.map((resource) => resource.name));
      if (unique.size !== parsed.length) throw new SnapshotError(`${kind}: duplicate names`);
      resources.set(kind, parsed);
    }
    checkReferences(parsedMessages, resources);
    return new Snapshot(version, resources);
  }

  /** Resources of a kind; `names` empty = all of them (wildcard). */
  get(kind: ResourceKind, names: string[] = []): NamedResource[] {
    const all = this.resources.get(kind) ?? [];
    return names.length === 0 ? all : all.filter((resource) => names.includes(resource.name));
  }
}

function resourceName(kind: ResourceKind, json: JsonValue): string | undefined {
  const object = json as Record<string, unknown>;
  const name = kind === "endpoint" ? object.cluster_name ?? object.clusterName : object.name;
  return typeof name === "string" && name.length > 0 ? name : undefined;
}

/** EDS clusters need their endpoints, listeners their routes and filter configs, TLS its secrets. */
function checkReferences(parsed: Array<{ kind: ResourceKind; name: string; message: Message }>, resources: Map<ResourceKind, NamedResource[]>): void {
  const names = new Map([...resources].map(([kind, list]) => [kind, new Set(list.map((resource) => resource.name))]));
  for (const { kind, name, message } of parsed) {
    for (const reference of referencesOf(schemas[kind], message, registry)) {
      if (!names.get(reference.kind)?.has(reference.name)) {
        throw new SnapshotError(`${kind} ${name} refers to ${reference.kind} ${reference.name}, which the snapshot lacks`);
      }
    }
  }
}
