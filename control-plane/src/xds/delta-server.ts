// ADS, incremental (delta): answers carry only the resources that changed
// and the names of those removed. This module speaks the protocol only:
// subscriptions, nonces, ACK and NACK; the cache computes the differences.
import { create } from "@bufbuild/protobuf";
import type { ServerDuplexStream } from "@grpc/grpc-js";
import {
  DeltaDiscoveryResponseSchema,
  ResourceSchema,
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse,
} from "@wharf/proto/envoy/service/discovery/v3/discovery_pb.js";
import type { ConfigWatcher, DeltaResponse, DeltaSubscription } from "./cache.js";
import { typeUrls, type ResourceKind } from "./snapshot.js";
import { serveNodeStream, type StreamOptions } from "./stream.js";

interface TypeState {
  subscription: DeltaSubscription;
  nonce?: string;
  cancel?: () => void;
}

let nonceCounter = 0;

export function deltaHandler(cache: ConfigWatcher, options: StreamOptions): (call: ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>) => void {
  return (call) => {
    const types = new Map<ResourceKind, TypeState>();

    const answer = (kind: ResourceKind, state: TypeState) => (response: DeltaResponse) => {
      if (stream.isClosed()) return;
      state.nonce = String(++nonceCounter);
      state.cancel = undefined;
      options.observer?.pushed?.(kind);
      call.write(
        create(DeltaDiscoveryResponseSchema, {
          systemVersionInfo: response.version,
          typeUrl: typeUrls[kind],
          nonce: state.nonce,
          resources: response.changed.map((resource) => create(ResourceSchema, { name: resource.name, version: resource.version, resource: resource.packed })),
          removedResources: response.removed,
        }),
      );
    };

    const stream = serveNodeStream(call, cache, options, () => types.values(), (node, kind, request: DeltaDiscoveryRequest) => {
      let state = types.get(kind);
      if (!state) {
        // The first request of a type without names subscribes to everything (LDS/CDS).
        const wildcard = request.resourceNamesSubscribe.length === 0 || request.resourceNamesSubscribe.includes("*");
        state = { subscription: { kind, wildcard, names: new Set(), known: new Map(Object.entries(request.initialResourceVersions)) } };
        types.set(kind, state);
      }
      const { subscription } = state;
      if (request.responseNonce !== "" && request.responseNonce === state.nonce) {
        if (request.errorDetail) {
          cache.nacked(node, kind, subscription.pendingVersion ?? "", request.errorDetail.message);
          // Envoy kept its previous resources, which we no longer know
          // exactly: the next version is sent whole; this one not again.
          subscription.refusedVersion = subscription.pendingVersion;
          subscription.known.clear();
        } else if (subscription.pendingVersion !== undefined) {
          cache.acked(node, kind, subscription.pendingVersion);
        }
      }
      for (const name of request.resourceNamesSubscribe) if (name !== "*") subscription.names.add(name);
      for (const name of request.resourceNamesUnsubscribe) {
        subscription.names.delete(name);
        subscription.known.delete(name);
      }
      state.cancel?.();
      state.cancel = cache.deltaWatch(node, subscription, answer(kind, state), request.responseNonce === "" && !request.errorDetail);
    });
  };
}
