// The one place that builds the gateway sidecar's Envoy resources, in
// Envoy's JSON form: pushed over xDS by the control plane, or put together as
// one static config (static-bootstrap.ts) for the tests, the benchmark and
// `wharf envoy static`. Certificates travel as SDS secrets, so rotating one
// is a snapshot update, not a restart.
import { create, fromBinary, toBinary, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { GatewayConfigSchema, TenantIssuerSchema } from "@wharf/proto/wharf/gateway/v1/gateway_pb.js";
import { TenantFilterConfigSchema } from "@wharf/proto/wharf/tenant/v1/tenant_pb.js";
import type { ResourceSet } from "../xds/snapshot.js";
import { accessLogFor, type AccessLogDeployment } from "./access-log.js";
import { clientTimeouts } from "./timeouts.js";
import { upgradeCluster, upgradeConfigs, upgradeEndpoints, upgradeRoute } from "./upgrades.js";

export interface UpstreamPool {
  name: string;
  endpoints: Array<{ host: string; port: number }>;
  /**
   * The name every apiserver of the pool must present in its certificate's
   * SANs (and, for a DNS name, the SNI sent). Default: each endpoint's host.
   */
  serverName?: string;
}

/**
 * One cluster of kube-apiservers behind the gateway, with everything that
 * belongs to it alone: the hostnames that select it, the certificate it
 * serves and the CA its clients' certificates chain to, its pools and the
 * filter config (policies, limits, token review) that applies to it.
 */
export interface UpstreamClusterDeployment {
  /**
   * Prefixes its Envoy resource names ("<name>/<pool>"). "" only for the one
   * cluster of a config's `upstream_cluster`: its names stay unprefixed.
   */
  name: string;
  /** TLS SNI names that select this cluster; empty: every connection (one cluster only). */
  hostnames: string[];
  /** PEM texts. */
  servingCert: string;
  servingKey: string;
  clientCa: string;
  upstreamCa: string;
  frontProxyCert: string;
  frontProxyKey: string;
  /** Encoded wharf.gateway.v1.GatewayConfig; its token_review.cluster names an Envoy cluster (see envoyClusterName). */
  gatewayConfig: Uint8Array;
  pools: UpstreamPool[];
  /** The pool requests go to when the filter names none. */
  defaultPool: string;
  /** Envoy's access log for this cluster's requests; none if unset. */
  accessLog?: AccessLogDeployment;
}

/** One tenant as the gateway needs it (docs/tenancy.md). */
export interface TenantDeployment {
  name: string;
  sharedViews: string[];
  /** PEM: the tenant's CA, trusted for client certificates beside the cluster's client CA. */
  caCert: string;
  /** SHA-256 (hex) of the CA's subject Name DER: how the gateway filter tells its users. */
  issuerSha256: string;
  /** Unexpired certificates refused (serial hex, TenantIssuer.revoked_serials). */
  revokedSerials: string[];
  /** 32 bytes: seals the tenant's continue tokens. */
  continueKey: Uint8Array;
}

/** Tenants on the one upstream cluster. */
export interface TenancyDeployment {
  tenants: TenantDeployment[];
  /**
   * The tenant filter's module, chained right after the gateway filter;
   * absent: not chained (tenant users are mapped to their upstream identity
   * by the gateway filter, and nothing of their requests is rewritten).
   */
  filterModule?: Uint8Array;
  /** API groups tenants see as they are (the host's built-ins, "" = core). */
  hostGroups: string[];
  /** Default "x-wharf-tenant". */
  tenantHeader?: string;
}

export interface GatewayDeployment {
  /** Default 127.0.0.1: nothing listens beyond loopback unless configured. */
  listenAddress?: string;
  listenPort: number;
  /** The gateway filter's compiled module: shipped inline, so sidecars need no copy of it. */
  wasmModule: Uint8Array;
  /** One listener filter chain each, chosen by SNI. */
  clusters: UpstreamClusterDeployment[];
  routingHeader?: string;
  /** Tenants (config with upstream_cluster only: one cluster); absent: none. */
  tenancy?: TenancyDeployment;
}

/**
 * The short form for one cluster on every hostname (what a config's
 * `upstream_cluster` says): its fields flat beside the listener's.
 */
export type SingleClusterDeployment = Omit<GatewayDeployment, "clusters"> & Omit<UpstreamClusterDeployment, "name" | "hostnames">;

function clustersOf(deployment: GatewayDeployment | SingleClusterDeployment): UpstreamClusterDeployment[] {
  if ("clusters" in deployment) return deployment.clusters;
  const { listenAddress: _address, listenPort: _port, wasmModule: _wasm, routingHeader: _header, tenancy: _tenancy, ...cluster } = deployment;
  return [{ ...cluster, name: "", hostnames: [] }];
}

/** A resource of `cluster`: unprefixed for the single unnamed cluster, so its names stay what they always were. */
function scoped(cluster: UpstreamClusterDeployment, name: string): string {
  return cluster.name === "" ? name : `${cluster.name}/${name}`;
}

/** The Envoy cluster that holds `pool` of `cluster` (what the filter's token review calls). */
export function envoyClusterName(cluster: Pick<UpstreamClusterDeployment, "name">, pool: string): string {
  return cluster.name === "" ? pool : `${cluster.name}/${pool}`;
}

const ads = { ads: {}, resource_api_version: "V3" };
const sds = (name: string) => ({ name, sds_config: ads });
// Reads are retried on another apiserver when the first could not take them,
// including the 503 an apiserver answers while it shuts down (before any
// handler runs). Writes only when they cannot have reached a handler.
const readRetries = {
  retry_on: "reset,connect-failure,refused-stream,retriable-status-codes",
  retriable_status_codes: [503],
  num_retries: 3,
  retry_host_predicate: [
    { name: "envoy.retry_host_predicates.previous_hosts", typed_config: { "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate" } },
  ],
  host_selection_retry_max_attempts: 5,
};
// An apiserver that refuses a connection is taken out of balancing at once
// (the health check would need two intervals), so the retry of the request
// that found it dead goes elsewhere. HTTP 5xx do not eject: an apiserver
// answers those for one request's reasons (a failing webhook, a timeout).
const outlierDetection = {
  split_external_local_origin_errors: true,
  consecutive_local_origin_failure: 1,
  enforcing_consecutive_local_origin_failure: 100,
  enforcing_consecutive_5xx: 0,
  enforcing_success_rate: 0,
  base_ejection_time: "5s",
};
const writeRetries = { ...readRetries, retry_on: "connect-failure,refused-stream,reset-before-request", retriable_status_codes: [] };

function routesFor(pool: string, envoyCluster: string, header: string, isDefault: boolean): JsonValue[] {
  const byPool = isDefault ? [] : [{ name: header, string_match: { exact: pool } }];
  const reads = { name: ":method", string_match: { safe_regex: { regex: "GET|HEAD" } } };
  const served = [{ header: { key: "x-wharf-served-by", value: pool } }];
  return [
    upgradeRoute(byPool, envoyCluster, served),
    { match: { prefix: "/", headers: [...byPool, reads] }, route: { cluster: envoyCluster, timeout: "0s", retry_policy: readRetries }, response_headers_to_add: served },
    { match: { prefix: "/", headers: byPool }, route: { cluster: envoyCluster, timeout: "0s", retry_policy: writeRetries }, response_headers_to_add: served },
  ];
}

const ipAddress = /^(\d{1,3}(\.\d{1,3}){3}|[0-9a-f]*:[0-9a-f:.]*)$/i;

/**
 * TLS to the apiservers: the front-proxy client certificate goes only to a
 * server whose certificate, from the upstream CA, names the expected server
 * (a SAN match, DNS or IP), so a host that answers on an apiserver's address
 * with another certificate of the same CA (a kubelet's, say) never receives
 * the identity headers. Endpoints that expect different names get one TLS
 * context each, chosen by their metadata.
 */
function tlsContext(serverName: string, clientCert: string, upstreamCa: string): JsonValue {
  const isIp = ipAddress.test(serverName);
  return {
    name: "envoy.transport_sockets.tls",
    typed_config: {
      "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
      // SNI carries host names only (RFC 6066); an IP is checked against the IP SANs.
      ...(isIp ? {} : { sni: serverName }),
      common_tls_context: {
        alpn_protocols: ["h2"],
        tls_certificate_sds_secret_configs: [sds(clientCert)],
        combined_validation_context: {
          default_validation_context: { match_typed_subject_alt_names: [{ san_type: isIp ? "IP_ADDRESS" : "DNS", matcher: { exact: serverName } }] },
          validation_context_sds_secret_config: sds(upstreamCa),
        },
      },
    },
  };
}

const serverNames = (pool: UpstreamPool) => [...new Set(pool.endpoints.map(({ host }) => pool.serverName ?? host))];

function upstreamTls(pool: UpstreamPool, clientCert: string, upstreamCa: string): { transport_socket: JsonValue; transport_socket_matches?: JsonValue[] } {
  const names = serverNames(pool);
  if (names.length === 1) return { transport_socket: tlsContext(names[0]!, clientCert, upstreamCa) };
  return {
    // The fallback matches no endpoint (each has a match) and verifies a name nothing can hold.
    transport_socket: tlsContext("unmatched-endpoint.invalid", clientCert, upstreamCa),
    transport_socket_matches: names.map((server) => ({ name: `server ${server}`, match: { server }, transport_socket: tlsContext(server, clientCert, upstreamCa) })),
  };
}

const base64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64");

/** The listener's trusted client CAs: the cluster's, then every tenant's. */
function clientCaBundle(clusterCa: string, tenancy: TenancyDeployment | undefined): string {
  const pems = [clusterCa, ...(tenancy?.tenants ?? []).map((tenant) => tenant.caCert)];
  return pems.map((pem) => (pem.endsWith("\n") ? pem : `${pem}\n`)).join("");
}

/** The gateway filter's config with the tenants' issuers (and revoked serials) in it. */
function withTenantIssuers(gatewayConfig: Uint8Array, tenancy: TenancyDeployment | undefined): Uint8Array {
  if (!tenancy) return gatewayConfig;
  const config = fromBinary(GatewayConfigSchema, gatewayConfig);
  config.tenants = tenancy.tenants.map((tenant) =>
    create(TenantIssuerSchema, { name: tenant.name, issuerSha256: tenant.issuerSha256, revokedSerials: tenant.revokedSerials }),
  );
  config.tenantHeader = tenancy.tenantHeader ?? "x-wharf-tenant";
  return toBinary(GatewayConfigSchema, config);
}

function tenantFilterConfig(tenancy: TenancyDeployment): Uint8Array {
  return toBinary(
    TenantFilterConfigSchema,
    create(TenantFilterConfigSchema, {
      tenants: tenancy.tenants.map((tenant) => ({ name: tenant.name, sharedViews: tenant.sharedViews, continueKey: tenant.continueKey })),
      hostGroups: tenancy.hostGroups,
      tenantHeader: tenancy.tenantHeader ?? "x-wharf-tenant",
    }),
  );
}

/** Each pool's resource followed by its HTTP/1.1 twin for upgrades (upgrades.ts). */
function withUpgradeTwins(resources: JsonObject[], twin: (resource: JsonObject) => JsonObject): JsonObject[] {
  return resources.flatMap((resource) => [resource, twin(resource)]);
}

interface ClusterResources {
  secret: JsonValue[];
  cluster: JsonValue[];
  endpoint: JsonValue[];
  extension: JsonValue[];
  route: JsonValue[];
  filterChain: JsonValue;
}

/**
 * Everything one upstream cluster needs, named apart from every other
 * cluster's: its own secrets, Envoy clusters, route configuration and filter
 * config (with its own VM, so shared data such as cached TokenReviews and
 * flow-control buckets is never read across clusters), and the filter chain
 * that its hostnames select.
 */
function clusterResources(cluster: UpstreamClusterDeployment, wasmModule: Uint8Array, header: string, tenancy: TenancyDeployment | undefined): ClusterResources {
  const others = cluster.pools.filter((pool) => pool.name !== cluster.defaultPool);
  const name = (resource: string) => scoped(cluster, resource);
  const filterName = name("wharf.gateway");
  const tenantFilterName = name("wharf.tenant");
  const tenantFilter = tenancy?.filterModule;
  const tenantHeader = tenancy?.tenantHeader ?? "x-wharf-tenant";
  return {
    secret: [
      { name: name("gateway-serving"), tls_certificate: { certificate_chain: { inline_string: cluster.servingCert }, private_key: { inline_string: cluster.servingKey } } },
      { name: name("client-ca"), validation_context: { trusted_ca: { inline_string: clientCaBundle(cluster.clientCa, tenancy) } } },
      { name: name("front-proxy-client"), tls_certificate: { certificate_chain: { inline_string: cluster.frontProxyCert }, private_key: { inline_string: cluster.frontProxyKey } } },
      { name: name("upstream-ca"), validation_context: { trusted_ca: { inline_string: cluster.upstreamCa } } },
    ],
    cluster: withUpgradeTwins(cluster.pools.map((pool) => ({
      name: envoyClusterName(cluster, pool.name),
      type: "EDS",
      eds_cluster_config: { eds_config: ads },
      lb_policy: "LEAST_REQUEST",
      connect_timeout: "2s",
      typed_extension_protocol_options: {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
          "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
          explicit_http_config: { http2_protocol_options: { max_concurrent_streams: 1000 } },
        },
      },
      circuit_breakers: { thresholds: [{ max_connections: 100000, max_pending_requests: 100000, max_requests: 100000, max_retries: 1000 }] },
      outlier_detection: outlierDetection,
      health_checks: [
        {
          timeout: "2s",
          interval: "2s",
          unhealthy_threshold: 2,
          healthy_threshold: 1,
          http_health_check: {
            path: "/readyz",
            codec_client_type: "HTTP2",
            request_headers_to_add: [{ header: { key: "x-remote-user", value: "wharf:gateway-health-check" } }],
          },
        },
      ],
      ...upstreamTls(pool, name("front-proxy-client"), name("upstream-ca")),
    })), upgradeCluster),
    endpoint: withUpgradeTwins(cluster.pools.map((pool) => ({
      cluster_name: envoyClusterName(cluster, pool.name),
      endpoints: [
        {
          lb_endpoints: pool.endpoints.map(({ host, port }) => ({
            endpoint: { address: { socket_address: { address: host, port_value: port } } },
            ...(serverNames(pool).length > 1 ? { metadata: { filter_metadata: { "envoy.transport_socket_match": { server: pool.serverName ?? host } } } } : {}),
          })),
        },
      ],
    })), upgradeEndpoints),
    extension: [
      {
        name: filterName,
        typed_config: {
          "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
          config: {
            name: filterName,
            root_id: "wharf.gateway",
            // A VM that traps (a filter bug) fails its request closed and is
            // replaced by a fresh one for the next request (Envoy counts the
            // reloads): never fail-open, never a gateway stuck refusing all.
            failure_policy: "FAIL_RELOAD",
            configuration: { "@type": "type.googleapis.com/google.protobuf.BytesValue", value: base64(withTenantIssuers(cluster.gatewayConfig, tenancy)) },
            vm_config: { vm_id: filterName, runtime: "envoy.wasm.runtime.v8", code: { local: { inline_bytes: base64(wasmModule) } } },
          },
        },
      },
      ...(tenancy && tenantFilter
        ? [
            {
              name: tenantFilterName,
              typed_config: {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                config: {
                  name: tenantFilterName,
                  root_id: "wharf.tenant",
                  failure_policy: "FAIL_RELOAD",
                  configuration: { "@type": "type.googleapis.com/google.protobuf.BytesValue", value: base64(tenantFilterConfig(tenancy)) },
                  vm_config: { vm_id: tenantFilterName, runtime: "envoy.wasm.runtime.v8", code: { local: { inline_bytes: base64(tenantFilter) } } },
                },
              },
            },
          ]
        : []),
    ],
    route: [
      {
        name: name("kube-apiserver"),
        virtual_hosts: [
          {
            // The SNI picked this route configuration: the Host header
            // cannot reach another cluster's pools (no domain fronting).
            name: "kube",
            domains: ["*"],
            // The tenant header is the filters' business: never the apiserver's.
            request_headers_to_remove: ["x-forwarded-client-cert", ...(tenancy ? [tenantHeader] : [])],
            routes: [
              ...others.flatMap((pool) => routesFor(pool.name, envoyClusterName(cluster, pool.name), header, false)),
              ...routesFor(cluster.defaultPool, envoyClusterName(cluster, cluster.defaultPool), header, true),
            ],
          },
        ],
      },
    ],
    filterChain: {
      ...(cluster.hostnames.length > 0 ? { name: name("kube-apiserver"), filter_chain_match: { server_names: cluster.hostnames } } : {}),
      transport_socket: {
        name: "envoy.transport_sockets.tls",
        typed_config: {
          "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
          require_client_certificate: false,
          common_tls_context: {
            alpn_protocols: ["h2", "http/1.1"],
            tls_certificate_sds_secret_configs: [sds(name("gateway-serving"))],
            validation_context_sds_secret_config: sds(name("client-ca")),
          },
        },
      },
      filters: [
        {
          name: "envoy.filters.network.http_connection_manager",
          typed_config: {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            stat_prefix: cluster.name === "" ? "gateway" : `gateway.${cluster.name}`,
            codec_type: "AUTO",
            ...clientTimeouts(),
            // The verified client certificate itself (URL-encoded PEM in
            // x-forwarded-client-cert) is what the filter derives the
            // identity from, exactly as kube-apiserver would; a client's own
            // XFCC never survives. The route removes it before the apiserver.
            forward_client_cert_details: "SANITIZE_SET",
            set_current_client_cert_details: { cert: true },
            upgrade_configs: upgradeConfigs,
            ...(cluster.accessLog ? { access_log: [accessLogFor(cluster.name, cluster.accessLog)] } : {}),
            rds: { route_config_name: name("kube-apiserver"), config_source: ads },
            http_filters: [
              {
                // The filter's config comes by ECDS: a change reaches
                // new streams on open connections too, with no
                // listener drain (and open watches stay up).
                name: filterName,
                config_discovery: { config_source: ads, type_urls: ["type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"] },
              },
              // Present whenever the config has tenancy (even with no tenant
              // yet), so creating or deleting a tenant changes ECDS and SDS
              // resources only: no listener update, no connection drained.
              ...(tenancy && tenantFilter
                ? [{ name: tenantFilterName, config_discovery: { config_source: ads, type_urls: ["type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"] } }]
                : []),
              { name: "envoy.filters.http.router", typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } },
            ],
          },
        },
      ],
    },
  };
}

/** kube-apiserver's request body limit (3 MiB) plus room for the headers and a chunk in flight. */
const tenantBodyBufferBytes = 4 * 1024 * 1024;

/**
 * The gateway's resources: one listener with a filter chain per upstream
 * cluster (picked by SNI; a hostname no cluster lists matches no chain, and
 * Envoy closes the connection before any certificate is served), and each
 * cluster's own resources beside it.
 */
export function gatewayResources(deployment: GatewayDeployment | SingleClusterDeployment): ResourceSet {
  const header = deployment.routingHeader ?? "x-wharf-upstream";
  const upstreams = clustersOf(deployment);
  const tenancy = deployment.tenancy;
  const clusters = upstreams.map((cluster) => clusterResources(cluster, deployment.wasmModule, header, tenancy));
  const bySni = upstreams.some((cluster) => cluster.hostnames.length > 0);
  return {
    secret: clusters.flatMap((cluster) => cluster.secret),
    cluster: clusters.flatMap((cluster) => cluster.cluster),
    endpoint: clusters.flatMap((cluster) => cluster.endpoint),
    extension: clusters.flatMap((cluster) => cluster.extension),
    listener: [
      {
        name: "kube-apiserver",
        address: { socket_address: { address: deployment.listenAddress ?? "127.0.0.1", port_value: deployment.listenPort } },
        // The SNI is read from the ClientHello before a filter chain is chosen.
        ...(bySni
          ? { listener_filters: [{ name: "envoy.filters.listener.tls_inspector", typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector" } }] }
          : {}),
        filter_chains: clusters.map((cluster) => cluster.filterChain),
        // The tenant filter holds a tenant's request body whole to rewrite it
        // (up to kube-apiserver's own 3 MiB limit, past which it answers a
        // Status 413); Envoy's default 1 MiB buffer would answer a plain 413
        // first for bodies the apiserver accepts.
        ...(tenancy ? { per_connection_buffer_limit_bytes: tenantBodyBufferBytes } : {}),
      },
    ],
    route: clusters.flatMap((cluster) => cluster.route),
  };
}
