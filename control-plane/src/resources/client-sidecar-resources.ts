// The client-sidecar role's Envoy resources: what runs in workload pods. A
// plain-HTTP listener on the pod's loopback forwards every request over TLS
// to the gateway, checking the gateway's certificate name; the pod's own
// Authorization header goes through untouched, so the gateway authenticates
// the pod, not the sidecar. The only secret is the gateway's CA certificate:
// this role is never sent a private key of any kind.
import type { JsonValue } from "@bufbuild/protobuf";
import type { ResourceSet } from "../xds/snapshot.js";

export interface ClientSidecarDeployment {
  /** Always on 127.0.0.1: requests there carry bearer tokens in plain HTTP. */
  listenPort: number;
  gateways: Array<{ host: string; port: number }>;
  /** Checked in the gateway's certificate; also the SNI and :authority sent. */
  gatewayServerName: string;
  /** PEM: the CA of the gateway's serving certificate. */
  gatewayCa: string;
  readRetries: number;
  localLimit?: { requestsPerSecond: number; burst: number };
}

const ads = { ads: {}, resource_api_version: "V3" };
const sds = (name: string) => ({ name, sds_config: ads });

function route(methods: string, retryOn: string, retries: number, serverName: string): JsonValue {
  return {
    match: { prefix: "/", headers: methods === "" ? [] : [{ name: ":method", string_match: { safe_regex: { regex: methods } } }] },
    route: {
      cluster: "gateway",
      // Watches stay open as long as the client wants.
      timeout: "0s",
      host_rewrite_literal: serverName,
      retry_policy: {
        retry_on: retryOn,
        num_retries: retries,
        retry_host_predicate: [
          { name: "envoy.retry_host_predicates.previous_hosts", typed_config: { "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate" } },
        ],
      },
    },
  };
}

const localRateLimitType = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";

// The limit itself lives on the virtual host (RDS), so changing it reaches
// open connections at once; the filter in the listener stays as it is (off
// unless a route configures it), and a listener change would only reach
// new connections.
function localLimit(limit: { requestsPerSecond: number; burst: number }): JsonValue {
  return {
    "@type": localRateLimitType,
    stat_prefix: "client_sidecar",
    token_bucket: { max_tokens: limit.burst, tokens_per_fill: limit.requestsPerSecond, fill_interval: "1s" },
    filter_enabled: { default_value: { numerator: 100, denominator: "HUNDRED" } },
    filter_enforced: { default_value: { numerator: 100, denominator: "HUNDRED" } },
  };
}

export function clientSidecarResources(deployment: ClientSidecarDeployment): ResourceSet {
  return {
    secret: [{ name: "gateway-ca", validation_context: { trusted_ca: { inline_string: deployment.gatewayCa } } }],
    cluster: [
      {
        name: "gateway",
        // Gateway endpoints are usually a Service name: resolved here, in the pod.
        type: "STRICT_DNS",
        dns_lookup_family: "V4_PREFERRED",
        lb_policy: "LEAST_REQUEST",
        connect_timeout: "2s",
        load_assignment: {
          cluster_name: "gateway",
          endpoints: [{ lb_endpoints: deployment.gateways.map(({ host, port }) => ({ endpoint: { address: { socket_address: { address: host, port_value: port } } } })) }],
        },
        typed_extension_protocol_options: {
          "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            // One pooled HTTP/2 connection per gateway carries all of the pod's requests.
            explicit_http_config: { http2_protocol_options: { max_concurrent_streams: 1000 } },
          },
        },
        transport_socket: {
          name: "envoy.transport_sockets.tls",
          typed_config: {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            sni: deployment.gatewayServerName,
            common_tls_context: {
              alpn_protocols: ["h2"],
              // No tls_certificates: the sidecar has no identity of its own
              // towards the gateway; the pod's token is the identity.
              combined_validation_context: {
                default_validation_context: { match_typed_subject_alt_names: [{ san_type: "DNS", matcher: { exact: deployment.gatewayServerName } }] },
                validation_context_sds_secret_config: sds("gateway-ca"),
              },
            },
          },
        },
      },
    ],
    listener: [
      {
        name: "client-sidecar",
        address: { socket_address: { address: "127.0.0.1", port_value: deployment.listenPort } },
        filter_chains: [
          {
            filters: [
              {
                name: "envoy.filters.network.http_connection_manager",
                typed_config: {
                  "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                  stat_prefix: "client_sidecar",
                  codec_type: "AUTO",
                  stream_idle_timeout: "0s",
                  rds: { route_config_name: "client-sidecar", config_source: ads },
                  http_filters: [
                    { name: "envoy.filters.http.local_ratelimit", typed_config: { "@type": localRateLimitType, stat_prefix: "client_sidecar" } },
                    { name: "envoy.filters.http.router", typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } },
                  ],
                },
              },
            ],
          },
        ],
      },
    ],
    route: [
      {
        name: "client-sidecar",
        virtual_hosts: [
          {
            name: "gateway",
            domains: ["*"],
            ...(deployment.localLimit ? { typed_per_filter_config: { "envoy.filters.http.local_ratelimit": localLimit(deployment.localLimit) } } : {}),
            routes: [
              // Safe verbs again on another gateway after a failure; others
              // only when they cannot have been sent.
              route("GET|HEAD", "connect-failure,refused-stream,reset", deployment.readRetries, deployment.gatewayServerName),
              route("", "connect-failure,refused-stream,reset-before-request", deployment.readRetries, deployment.gatewayServerName),
            ],
          },
        ],
      },
    ],
  };
}
