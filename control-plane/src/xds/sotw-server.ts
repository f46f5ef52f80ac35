// ADS, state of the world: one gRPC stream per Envoy carries every resource
// type, and every answer holds all the resources of its type the node asked
// for. This module speaks the protocol only: nonces, ACK and NACK; what to
// send, and when, the cache decides.
import { create } from "@bufbuild/protobuf";
import type { ServerDuplexStream } from "@grpc/grpc-js";
import { DiscoveryResponseSchema, type DiscoveryRequest, type DiscoveryResponse } from "@wharf/proto/envoy/service/discovery/v3/discovery_pb.js";
import type { ConfigWatcher, SotwResponse } from "./cache.js";
import { typeUrls, type ResourceKind } from "./snapshot.js";
import { serveNodeStream, type StreamOptions } from "./stream.js";

interface TypeState {
  names: string[];
  /** The version and nonce of the last answer. */
  sentVersion?: string;
  nonce?: string;
  cancel?: () => void;
}

let nonceCounter = 0;

export function sotwHandler(cache: ConfigWatcher, options: StreamOptions): (call: ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>) => void {
  return (call) => {
    const types = new Map<ResourceKind, TypeState>();

    const answer = (kind: ResourceKind, state: TypeState) => (response: SotwResponse) => {
      if (stream.isClosed()) return;
      state.sentVersion = response.version;
      state.nonce = String(++nonceCounter);
      state.cancel = undefined;
      options.observer?.pushed?.(kind);
      call.write(
        create(DiscoveryResponseSchema, {
          versionInfo: response.version,
          typeUrl: typeUrls[kind],
          nonce: state.nonce,
          resources: response.resources.map((resource) => resource.packed),
        }),
      );
    };

    const stream = serveNodeStream(call, cache, options, () => types.values(), (node, kind, request: DiscoveryRequest) => {
      const state = types.get(kind) ?? { names: [] };
      types.set(kind, state);
      if (request.responseNonce !== "" && request.responseNonce !== state.nonce) return; // answers an older response
      let knownVersion = request.versionInfo;
      if (request.errorDetail) {
        cache.nacked(node, kind, state.sentVersion ?? "", request.errorDetail.message);
        // Not the refused version again: wait for the next one.
        knownVersion = state.sentVersion ?? "";
      } else if (request.responseNonce !== "") {
        cache.acked(node, kind, request.versionInfo);
      }
      const namesChanged = request.resourceNames.join("\0") !== state.names.join("\0");
      state.names = [...request.resourceNames];
      if (namesChanged || request.responseNonce === "") knownVersion = "";
      state.cancel?.();
      state.cancel = cache.watch(node, { kind, names: state.names, knownVersion }, answer(kind, state));
    });
  };
}
