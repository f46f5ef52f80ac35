// Connection upgrades: `kubectl exec`, `attach`, `cp` and `port-forward`
// upgrade their request to WebSocket (subprotocols v5.channel.k8s.io,
// v4.channel.k8s.io, portforward.k8s.io, …) or, from older clients, to
// SPDY/3.1. The gateway filter sees the upgrade request like any other (its
// path says pods/exec, pods/attach or pods/portforward), so policy applies
// before anything is upgraded.
//
// The pools speak HTTP/2 to the apiservers, and an upgrade cannot ride an
// HTTP/2 stream to kube-apiserver: Envoy would turn it into an RFC 8441
// extended CONNECT, which Go's apiserver does not take for SPDY (and its
// WebSocket handlers expect an HTTP/1.1 Upgrade). So each pool has a twin
// Envoy cluster, the same apiservers over HTTP/1.1, and upgrade requests are
// routed to it.
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";

/** What Envoy lets through as an upgrade; any other Upgrade header gets its 403. */
export const upgradeConfigs: JsonValue[] = [{ upgrade_type: "websocket" }, { upgrade_type: "spdy/3.1" }];

/** The HTTP/1.1 twin of a pool's Envoy cluster. */
export function upgradeClusterName(envoyCluster: string): string {
  return `${envoyCluster}/upgrade`;
}

function isObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * A pool's HTTP/2 cluster made into its HTTP/1.1 twin: same endpoints (by
 * EDS under the twin's own name), TLS, health checks and outlier detection;
 * HTTP/1.1 on the wire and in ALPN.
 */
export function upgradeCluster(poolCluster: JsonObject): JsonObject {
  const twin = structuredClone(poolCluster);
  twin.name = upgradeClusterName(String(poolCluster.name));
  twin.typed_extension_protocol_options = {
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
      "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
      explicit_http_config: { http_protocol_options: {} },
    },
  };
  // Every TLS context the twin may pick (one per server name, if the pool has several) offers only HTTP/1.1.
  const sockets = [twin.transport_socket, ...(Array.isArray(twin.transport_socket_matches) ? twin.transport_socket_matches.map((match) => (isObject(match) ? match.transport_socket : undefined)) : [])];
  for (const socket of sockets) {
    const common = isObject(socket) && isObject(socket.typed_config) ? socket.typed_config.common_tls_context : undefined;
    if (!isObject(common)) throw new Error(`cluster ${String(poolCluster.name)}: no TLS context to make an upgrade twin of`);
    common.alpn_protocols = ["http/1.1"];
  }
  // Its health checks speak what its connections negotiate, with a Host
  // header Go accepts (Envoy's default, the cluster name, has a '/').
  if (Array.isArray(twin.health_checks)) {
    for (const check of twin.health_checks) {
      if (!isObject(check) || !isObject(check.http_health_check)) continue;
      check.http_health_check.codec_client_type = "HTTP1";
      check.http_health_check.host = "kube-apiserver";
    }
  }
  return twin;
}

/** The twin's endpoints: the pool's, under the twin's name. */
export function upgradeEndpoints(poolEndpoints: JsonObject): JsonObject {
  return { ...structuredClone(poolEndpoints), cluster_name: upgradeClusterName(String(poolEndpoints.cluster_name)) };
}

/**
 * Put before a pool's own routes: its upgrade requests go to the twin. An
 * upgrade is not retried (its request has no replayable body and its
 * stream is the session), except when no connection could be made at all.
 */
export function upgradeRoute(byPool: JsonValue[], envoyCluster: string, responseHeaders: JsonValue[]): JsonValue {
  return {
    match: { prefix: "/", headers: [...byPool, { name: "upgrade", present_match: true }] },
    route: {
      cluster: upgradeClusterName(envoyCluster),
      timeout: "0s",
      retry_policy: { retry_on: "connect-failure", num_retries: 2 },
    },
    response_headers_to_add: responseHeaders,
  };
}
