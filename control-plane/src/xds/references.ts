// What a resource refers to by name and expects from the same snapshot:
// an EDS cluster its ClusterLoadAssignment, a listener its route
// configuration (RDS), its filters' configs (ECDS) and every TLS context its
// secrets (SDS). Found by walking the parsed messages, typed Anys included,
// so a reference anywhere in a resource counts and nothing that merely looks
// like one in the JSON does.
import type { DescMessage, Message, Registry } from "@bufbuild/protobuf";
import { anyUnpack, type Any } from "@bufbuild/protobuf/wkt";
import type { Cluster } from "@wharf/proto/envoy/config/cluster/v3/cluster_pb.js";
import { Cluster_DiscoveryType } from "@wharf/proto/envoy/config/cluster/v3/cluster_pb.js";
import type { HttpFilter, Rds } from "@wharf/proto/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.js";
import type { SdsSecretConfig } from "@wharf/proto/envoy/extensions/transport_sockets/tls/v3/secret_pb.js";

/** The resource kinds a reference can point at. */
export type ReferencedKind = "secret" | "endpoint" | "extension" | "route";

export interface Reference {
  kind: ReferencedKind;
  name: string;
}

type Visit = (typeName: string, message: Message) => void;

function isMessage(value: unknown): value is Message {
  return typeof value === "object" && value !== null && "$typeName" in value;
}

/** Calls `visit` on `message` and every message inside it, unpacking Anys the registry knows. */
function walk(desc: DescMessage, message: Message, registry: Registry, visit: Visit): void {
  if (desc.typeName === "google.protobuf.Any") {
    const inner = anyUnpack(message as Any, registry);
    const innerDesc = inner && registry.getMessage(inner.$typeName);
    if (inner && innerDesc) walk(innerDesc, inner, registry, visit);
    return;
  }
  visit(desc.typeName, message);
  const fields = message as unknown as Record<string, unknown>;
  for (const field of desc.fields) {
    let value: unknown;
    if (field.oneof) {
      const chosen = fields[field.oneof.localName] as { case?: string; value?: unknown } | undefined;
      value = chosen?.case === field.localName ? chosen.value : undefined;
    } else {
      value = fields[field.localName];
    }
    if (value === undefined) continue;
    // Wrapper types arrive unboxed (a number, a string): nothing to walk.
    if (field.fieldKind === "message" && isMessage(value)) walk(field.message, value, registry, visit);
    else if (field.fieldKind === "list" && field.listKind === "message") {
      for (const item of value as unknown[]) if (isMessage(item)) walk(field.message, item, registry, visit);
    } else if (field.fieldKind === "map" && field.mapKind === "message") {
      for (const item of Object.values(value as Record<string, unknown>)) if (isMessage(item)) walk(field.message, item, registry, visit);
    }
  }
}

/** Every name `message` (a resource of type `desc`) needs another resource of the snapshot to carry. */
export function referencesOf(desc: DescMessage, message: Message, registry: Registry): Reference[] {
  const found: Reference[] = [];
  walk(desc, message, registry, (typeName, inner) => {
    switch (typeName) {
      case "envoy.config.cluster.v3.Cluster": {
        const cluster = inner as Cluster;
        const discovery = cluster.clusterDiscoveryType;
        if (discovery.case === "type" && discovery.value === Cluster_DiscoveryType.EDS) {
          found.push({ kind: "endpoint", name: cluster.edsClusterConfig?.serviceName || cluster.name });
        }
        break;
      }
      case "envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig": {
        // Without a config source the name is a static secret of the bootstrap.
        const sds = inner as SdsSecretConfig;
        if (sds.sdsConfig) found.push({ kind: "secret", name: sds.name });
        break;
      }
      case "envoy.extensions.filters.network.http_connection_manager.v3.Rds":
        found.push({ kind: "route", name: (inner as Rds).routeConfigName });
        break;
      case "envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter": {
        const filter = inner as HttpFilter;
        if (filter.configType.case === "configDiscovery") found.push({ kind: "extension", name: filter.name });
        break;
      }
    }
  });
  return found;
}
