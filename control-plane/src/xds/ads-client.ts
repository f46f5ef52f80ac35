// A minimal ADS client for tests: opens one stream (either variant) with
// given TLS credentials, sends requests, and collects what comes back until
// the expected number of responses arrived or the server ended the stream.
import { create } from "@bufbuild/protobuf";
import { credentials as grpcCredentials, type ServiceError } from "@grpc/grpc-js";
import { AggregatedDiscoveryService } from "@wharf/proto/envoy/service/discovery/v3/ads_pb.js";
import {
  DeltaDiscoveryRequestSchema,
  DiscoveryRequestSchema,
  type DeltaDiscoveryResponse,
  type DiscoveryResponse,
} from "@wharf/proto/envoy/service/discovery/v3/discovery_pb.js";
import { createGrpcClient } from "@wharf/proto/grpc";
import { typeUrls, type ResourceKind } from "./snapshot.js";

/** PEM texts; undefined fields: plaintext (no `ca`) or no client certificate (no `cert`). */
export interface ClientTls {
  ca?: string;
  cert?: string;
  key?: string;
}

export interface AdsExchange<Response> {
  responses: Response[];
  /** How the server ended the stream, if it did. */
  error?: ServiceError;
}

export interface AdsRequestInit {
  kind: ResourceKind;
  names?: string[];
  /** The node id this request claims (default: the client's). */
  nodeId?: string;
}

function channel(address: string, tls: ClientTls) {
  const credentials =
    tls.ca === undefined
      ? grpcCredentials.createInsecure()
      : grpcCredentials.createSsl(Buffer.from(tls.ca), tls.key === undefined ? null : Buffer.from(tls.key), tls.cert === undefined ? null : Buffer.from(tls.cert));
  // The control plane's certificate names localhost; tests dial 127.0.0.1 by that name.
  return createGrpcClient(AggregatedDiscoveryService, address, credentials, { "grpc.ssl_target_name_override": "localhost", "grpc.default_authority": "localhost" });
}

/**
 * Sends `requests` on one stream as `nodeId` and waits for `expected`
 * responses, or for the stream to end; at most `timeoutMs`.
 */
export async function adsExchange(
  variant: "sotw" | "delta",
  address: string,
  tls: ClientTls,
  nodeId: string,
  requests: AdsRequestInit[],
  expected: number,
  timeoutMs = 10_000,
): Promise<AdsExchange<DiscoveryResponse | DeltaDiscoveryResponse>> {
  const client = channel(address, tls);
  const stream =
    variant === "sotw"
      ? client.duplex<object, DiscoveryResponse>("StreamAggregatedResources")
      : client.duplex<object, DeltaDiscoveryResponse>("DeltaAggregatedResources");
  const result: AdsExchange<DiscoveryResponse | DeltaDiscoveryResponse> = { responses: [] };
  try {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      stream.on("data", (response: DiscoveryResponse | DeltaDiscoveryResponse) => {
        result.responses.push(response);
        if (result.responses.length >= expected) done();
      });
      stream.on("error", (error: ServiceError) => {
        result.error = error;
        done();
      });
      stream.on("end", done);
      for (const request of requests) {
        const node = { id: request.nodeId ?? nodeId, cluster: "test" };
        stream.write(
          variant === "sotw"
            ? create(DiscoveryRequestSchema, { node, typeUrl: typeUrls[request.kind], resourceNames: request.names ?? [] })
            : create(DeltaDiscoveryRequestSchema, { node, typeUrl: typeUrls[request.kind], resourceNamesSubscribe: request.names ?? [] }),
        );
      }
    });
  } finally {
    stream.cancel();
    client.close();
  }
  return result;
}
