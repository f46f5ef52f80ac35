// The gateway's access log: Envoy's own file access logger writes one JSON
// line per request, from what Envoy knows (time, status, bytes, duration,
// the pool and apiserver that served it) and what the filter decided, which
// it leaves in filter state (filters/assembly/gateway/access-log.ts). No
// field reads a credential: no Authorization, no token-bearing WebSocket
// protocol header, no certificate; the path is logged without its query.
import type { JsonObject } from "@bufbuild/protobuf";

const decided = (name: string) => `%FILTER_STATE(wasm.wharf_${name}:PLAIN)%`;

/** Every field a line may hold, in the order lines hold them. */
export const accessLogFields: Readonly<Record<string, string | ((cluster: string) => string)>> = {
  time: "%START_TIME(%Y-%m-%dT%H:%M:%E3SZ)%",
  cluster: (cluster) => cluster,
  client: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
  user: decided("user"),
  groups: decided("groups"),
  method: "%REQ(:METHOD)%",
  path: "%PATH(NQ)%",
  verb: decided("verb"),
  api_group: decided("api_group"),
  resource: decided("resource"),
  subresource: decided("subresource"),
  namespace: decided("namespace"),
  name: decided("name"),
  policy: decided("policy"),
  refused: decided("refused"),
  pool: "%UPSTREAM_CLUSTER%",
  apiserver: "%UPSTREAM_HOST%",
  status: "%RESPONSE_CODE%",
  response_flags: "%RESPONSE_FLAGS%",
  details: "%RESPONSE_CODE_DETAILS%",
  bytes_received: "%BYTES_RECEIVED%",
  bytes_sent: "%BYTES_SENT%",
  duration_ms: "%DURATION%",
  audit_id: "%RESP(AUDIT-ID)%",
  user_agent: "%REQ(USER-AGENT):200%",
};

export interface AccessLogDeployment {
  /** Absolute path of the file Envoy appends to. */
  path: string;
  /** Field names from accessLogFields; empty: all. */
  fields: string[];
  /** (0, 100]. */
  samplePercent: number;
}

/** The HTTP connection manager's access_log entry for one upstream cluster ("" names the single unnamed one). */
export function accessLogFor(cluster: string, log: AccessLogDeployment): JsonObject {
  const names = log.fields.length > 0 ? Object.keys(accessLogFields).filter((field) => log.fields.includes(field)) : Object.keys(accessLogFields);
  const format: JsonObject = {};
  for (const name of names) {
    const command = accessLogFields[name]!;
    format[name] = typeof command === "string" ? command : command(cluster === "" ? "default" : cluster);
  }
  return {
    name: "envoy.access_loggers.file",
    ...(log.samplePercent < 100
      ? {
          filter: {
            runtime_filter: {
              runtime_key: `wharf.access_log.${cluster === "" ? "default" : cluster}.sample`,
              percent_sampled: { numerator: Math.round(log.samplePercent * 10_000), denominator: "MILLION" },
              use_independent_randomness: true,
            },
          },
        }
      : {}),
    typed_config: {
      "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
      path: log.path,
      log_format: { json_format: format },
    },
  };
}
