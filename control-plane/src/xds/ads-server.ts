// The Aggregated Discovery Service, state-of-the-world variant: one gRPC
// stream per Envoy carries every resource type. The server only speaks the
// protocol; what to send comes from the snapshot cache.
import { create } from "@bufbuild/protobuf";
import type { ServerDuplexStream } from "@grpc/grpc-js";
import {
  DeltaDiscoveryResponseSchema,
  DiscoveryResponseSchema,
  ResourceSchema,
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse,
  type DiscoveryRequest,
  type DiscoveryResponse,
} from "@wharf/proto/envoy/service/discovery/v3/discovery_pb.js";
import type { SnapshotCache } from "./cache.js";
import { pushOrder, typeUrls, type ResourceKind, type Snapshot } from "./snapshot.js";

export interface NodeStatus {
  nodeId: string;
  connected: boolean;
  /** Last version Envoy accepted, by resource kind. */
  acked: Partial<Record<ResourceKind, string>>;
  lastNack?: { kind: ResourceKind; version: string; message: string; at: Date };
}

interface Subscription {
  names: string[];
  sentVersion?: string;
  nonce?: string;
}

/** What the server reports about itself, e.g. to metrics. */
export interface AdsObserver {
  pushed(kind: ResourceKind): void;
  nacked(kind: ResourceKind): void;
}

const kindOf = new Map<string, ResourceKind>((Object.keys(typeUrls) as ResourceKind[]).map((kind) => [typeUrls[kind], kind]));

export class AdsServer {
  readonly nodes = new Map<string, NodeStatus>();
  private nonceCounter = 0;

  constructor(
    private readonly cache: SnapshotCache,
    private readonly log: (level: "info" | "warn", message: string, fields: Record<string, unknown>) => void = () => undefined,
    private readonly observer?: AdsObserver,
  ) {}

  /** The handler for envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources. */
  handler(): (call: ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>) => void {
    return (call) => this.serve(call);
  }

  /** The handler for .../DeltaAggregatedResources: the incremental variant on the same cache. */
  deltaHandler(): (call: ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>) => void {
    return (call) => this.serveDelta(call);
  }

  private connect(nodeId: string): NodeStatus {
    const status: NodeStatus = { nodeId, connected: true, acked: {} };
    this.nodes.set(nodeId, status);
    this.log("info", "envoy connected", { node: nodeId });
    return status;
  }

  private nack(status: NodeStatus, kind: ResourceKind, version: string, message: string): void {
    // Envoy keeps what it had; so do we, and say so.
    status.lastNack = { kind, version, message, at: new Date() };
    this.observer?.nacked(kind);
    this.log("warn", "envoy rejected configuration", { node: status.nodeId, kind, version, error: message });
  }

  private serveDelta(call: ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>): void {
    interface DeltaSubscription {
      wildcard: boolean;
      names: Set<string>;
      /** What Envoy has: resource name → version. */
      known: Map<string, string>;
      nonce?: string;
      pendingVersion?: string;
    }
    const subscriptions = new Map<ResourceKind, DeltaSubscription>();
    let status: NodeStatus | undefined;
    let cancelWatch: (() => void) | undefined;

    const push = (kind: ResourceKind, snapshot: Snapshot, force: boolean) => {
      const subscription = subscriptions.get(kind);
      if (!subscription) return;
      const wanted = snapshot.get(kind).filter((resource) => subscription.wildcard || subscription.names.has(resource.name));
      const changed = wanted.filter((resource) => subscription.known.get(resource.name) !== resource.version);
      const present = new Set(wanted.map((resource) => resource.name));
      const removed = [...subscription.known.keys()].filter((name) => !present.has(name));
      if (!force && changed.length === 0 && removed.length === 0) {
        // Nothing of this kind changed: once the last push was accepted,
        // Envoy holds this version of it too.
        if (status && (subscription.pendingVersion === undefined || status.acked[kind] === subscription.pendingVersion)) {
          subscription.pendingVersion = snapshot.version;
          status.acked[kind] = snapshot.version;
        }
        return;
      }
      for (const resource of changed) subscription.known.set(resource.name, resource.version);
      for (const name of removed) subscription.known.delete(name);
      const nonce = String(++this.nonceCounter);
      subscription.nonce = nonce;
      subscription.pendingVersion = snapshot.version;
      this.observer?.pushed(kind);
      call.write(
        create(DeltaDiscoveryResponseSchema, {
          systemVersionInfo: snapshot.version,
          typeUrl: typeUrls[kind],
          nonce,
          resources: changed.map((resource) => create(ResourceSchema, { name: resource.name, version: resource.version, resource: resource.packed })),
          removedResources: removed,
        }),
      );
    };

    call.on("data", (request: DeltaDiscoveryRequest) => {
      const kind = kindOf.get(request.typeUrl);
      if (!kind) return;
      if (!status) {
        status = this.connect(request.node?.id ?? "");
        cancelWatch = this.cache.watch(status.nodeId, (snapshot) => {
          for (const each of pushOrder) push(each, snapshot, false);
        });
      }
      let subscription = subscriptions.get(kind);
      if (!subscription) {
        // The first request of a type without names subscribes to everything (LDS/CDS).
        subscription = { wildcard: request.resourceNamesSubscribe.length === 0 || request.resourceNamesSubscribe.includes("*"), names: new Set(), known: new Map() };
        for (const [name, version] of Object.entries(request.initialResourceVersions)) subscription.known.set(name, version);
        subscriptions.set(kind, subscription);
      }
      if (request.responseNonce !== "" && request.responseNonce === subscription.nonce) {
        if (request.errorDetail) {
          this.nack(status, kind, subscription.pendingVersion ?? "", request.errorDetail.message);
          // Forget what was sent: Envoy kept its previous resources.
          subscription.known.clear();
        } else if (subscription.pendingVersion !== undefined) {
          status.acked[kind] = subscription.pendingVersion;
        }
      }
      for (const name of request.resourceNamesSubscribe) if (name !== "*") subscription.names.add(name);
      for (const name of request.resourceNamesUnsubscribe) {
        subscription.names.delete(name);
        subscription.known.delete(name);
      }
      const snapshot = this.cache.get(status.nodeId);
      if (snapshot && !request.errorDetail) push(kind, snapshot, request.responseNonce === "");
    });
    onStreamClosed(call, () => {
      cancelWatch?.();
      if (status) status.connected = false;
    });
  }

  private serve(call: ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>): void {
    const subscriptions = new Map<ResourceKind, Subscription>();
    let status: NodeStatus | undefined;
    let cancelWatch: (() => void) | undefined;

    const send = (kind: ResourceKind, snapshot: Snapshot) => {
      const subscription = subscriptions.get(kind);
      if (!subscription) return;
      const nonce = String(++this.nonceCounter);
      subscription.sentVersion = snapshot.version;
      subscription.nonce = nonce;
      this.observer?.pushed(kind);
      call.write(
        create(DiscoveryResponseSchema, {
          versionInfo: snapshot.version,
          typeUrl: typeUrls[kind],
          nonce,
          resources: snapshot.get(kind, subscription.names).map((resource) => resource.packed),
        }),
      );
    };

    call.on("data", (request: DiscoveryRequest) => {
      const kind = kindOf.get(request.typeUrl);
      if (!kind) return;
      if (!status) {
        status = this.connect(request.node?.id ?? "");
        cancelWatch = this.cache.watch(status.nodeId, (snapshot) => {
          for (const each of pushOrder) if (subscriptions.get(each)?.sentVersion !== snapshot.version) send(each, snapshot);
        });
      }
      const subscription = subscriptions.get(kind) ?? { names: [] };
      subscriptions.set(kind, subscription);
      if (request.responseNonce !== "" && request.responseNonce !== subscription.nonce) return; // answers an older response
      if (request.errorDetail) {
        this.nack(status, kind, subscription.sentVersion ?? "", request.errorDetail.message);
        return;
      }
      if (request.responseNonce !== "") status.acked[kind] = request.versionInfo;
      const namesChanged = request.resourceNames.join("\0") !== subscription.names.join("\0");
      subscription.names = [...request.resourceNames];
      const snapshot = this.cache.get(status.nodeId);
      if (snapshot && (namesChanged || subscription.sentVersion !== snapshot.version)) send(kind, snapshot);
    });
    onStreamClosed(call, () => {
      cancelWatch?.();
      if (status) status.connected = false;
    });
  }
}

/** Runs `close` once when the stream ends, fails or is cancelled; ends our side too. */
function onStreamClosed(call: ServerDuplexStream<unknown, unknown>, close: () => void): void {
  let closed = false;
  const once = () => {
    if (closed) return;
    closed = true;
    close();
  };
  call.on("end", () => {
    once();
    call.end();
  });
  call.on("error", once);
  call.on("cancelled", once);
}
