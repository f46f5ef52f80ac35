// The snapshot cache: which snapshot each node is served, and everything the
// control plane knows per node (open streams, pending watches, what it has
// accepted or refused). The protocol servers (sotw-server.ts,
// delta-server.ts) hold only their stream's wire state and ask this cache;
// they never see another node's snapshot.
//
// Watches are one-shot, as in the xDS protocol itself: a request opens one,
// it is answered once (now, or when a snapshot that differs arrives), and
// Envoy's next request (its ACK or NACK) opens the next.
import { pushOrder, type NamedResource, type ResourceKind, type Snapshot } from "./snapshot.js";

/** The roles an Envoy node can have; each is served its own resource set. */
export const roles = ["gateway", "client-sidecar"] as const;
export type Role = (typeof roles)[number];

/** Who a stream belongs to, as authenticated (never as claimed). */
export interface NodeIdentity {
  name: string;
  role: Role;
}

export interface NodeStatus {
  nodeId: string;
  role: Role;
  connected: boolean;
  /** Last version Envoy accepted, by resource kind. */
  acked: Partial<Record<ResourceKind, string>>;
  lastNack?: { kind: ResourceKind; version: string; message: string; at: Date };
}

/** A state-of-the-world request: the names wanted (none = all), and the version Envoy holds. */
export interface SotwWatch {
  kind: ResourceKind;
  names: string[];
  /** Answer only a snapshot whose version differs from this one ("" = answer now). */
  knownVersion: string;
}

export interface SotwResponse {
  version: string;
  resources: NamedResource[];
}

/** A delta stream's subscription to one kind; the cache updates `known` as it answers. */
export interface DeltaSubscription {
  kind: ResourceKind;
  wildcard: boolean;
  names: Set<string>;
  /** What Envoy holds: resource name → version. */
  known: Map<string, string>;
  /** The snapshot version of the last answer, until Envoy ACKs or NACKs it. */
  pendingVersion?: string;
  /** A version Envoy refused: not offered again. */
  refusedVersion?: string;
}

export interface DeltaResponse {
  version: string;
  changed: NamedResource[];
  removed: string[];
}

/** What the protocol servers need from a cache. */
export interface ConfigWatcher {
  streamOpened(node: NodeIdentity): void;
  streamClosed(node: NodeIdentity): void;
  /** Answers once, now or on a later snapshot; returns a function that cancels the watch. */
  watch(node: NodeIdentity, request: SotwWatch, respond: (response: SotwResponse) => void): () => void;
  /** Answers once with what changed since `subscription.known` (now if `answerNow`, even empty). */
  deltaWatch(node: NodeIdentity, subscription: DeltaSubscription, respond: (response: DeltaResponse) => void, answerNow: boolean): () => void;
  acked(node: NodeIdentity, kind: ResourceKind, version: string): void;
  nacked(node: NodeIdentity, kind: ResourceKind, version: string, message: string): void;
}

/** What the cache reports about itself, e.g. to metrics and logs. */
export interface CacheObserver {
  connected?(node: NodeIdentity): void;
  nacked?(node: NodeIdentity, kind: ResourceKind, version: string, message: string): void;
}

interface Watch {
  kind: ResourceKind;
  /** Tries to answer from `snapshot`; true once it has (the watch is then done). */
  offer(snapshot: Snapshot): boolean;
}

interface NodeState {
  identity: NodeIdentity;
  status: NodeStatus;
  streams: number;
  watches: Set<Watch>;
}

export class SnapshotCache implements ConfigWatcher {
  private readonly byRole = new Map<Role, Snapshot>();
  private readonly byNode = new Map<string, Snapshot>();
  /** By role and name: a name reused in another role is another node. */
  private readonly nodes = new Map<string, NodeState>();
  /** Checked after every ACK, NACK and closed stream (see whenNodes). */
  private readonly nodeWaiters = new Set<() => void>();

  constructor(private readonly observer: CacheObserver = {}) {}

  /** The snapshot every node of `role` is served, unless it has one of its own. */
  setRoleSnapshot(role: Role, snapshot: Snapshot): void {
    this.byRole.set(role, snapshot);
    for (const state of this.nodes.values()) if (state.identity.role === role && !this.byNode.has(state.identity.name)) this.offer(state, snapshot);
  }

  /** A snapshot for one node (by its authenticated name), over its role's. */
  setNodeSnapshot(name: string, snapshot: Snapshot): void {
    this.byNode.set(name, snapshot);
    for (const state of this.nodes.values()) if (state.identity.name === name) this.offer(state, snapshot);
  }

  snapshotFor(node: NodeIdentity): Snapshot | undefined {
    return this.byNode.get(node.name) ?? this.byRole.get(node.role);
  }

  /** Every node seen, connected or not. */
  status(): NodeStatus[] {
    return [...this.nodes.values()].map((state) => state.status);
  }

  nodeStatus(name: string, role?: Role): NodeStatus | undefined {
    return [...this.nodes.values()].find((state) => state.identity.name === name && (role === undefined || state.identity.role === role))?.status;
  }

  streamOpened(node: NodeIdentity): void {
    let state = this.nodes.get(key(node));
    if (!state) {
      state = { identity: node, status: { nodeId: node.name, role: node.role, connected: true, acked: {} }, streams: 0, watches: new Set() };
      this.nodes.set(key(node), state);
    }
    state.streams++;
    state.status.connected = true;
    this.observer.connected?.(node);
  }

  streamClosed(node: NodeIdentity): void {
    const state = this.nodes.get(key(node));
    if (!state) return;
    state.streams = Math.max(0, state.streams - 1);
    state.status.connected = state.streams > 0;
    this.nodesChanged();
  }

  /**
   * Resolves true once `done` holds for every connected node of `role` (e.g.
   * each has acknowledged a version), false when `timeoutMs` passes first.
   */
  whenNodes(role: Role, done: (status: NodeStatus) => boolean, timeoutMs: number): Promise<boolean> {
    const settled = () => [...this.nodes.values()].every((state) => state.identity.role !== role || !state.status.connected || done(state.status));
    if (settled()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const check = () => {
        if (!settled()) return;
        finish(true);
      };
      const timer = setTimeout(() => finish(false), timeoutMs);
      const finish = (result: boolean) => {
        clearTimeout(timer);
        this.nodeWaiters.delete(check);
        resolve(result);
      };
      this.nodeWaiters.add(check);
    });
  }

  private nodesChanged(): void {
    for (const check of [...this.nodeWaiters]) check();
  }

  watch(node: NodeIdentity, request: SotwWatch, respond: (response: SotwResponse) => void): () => void {
    return this.register(node, {
      kind: request.kind,
      offer: (snapshot) => {
        if (snapshot.version === request.knownVersion) return false;
        respond({ version: snapshot.version, resources: snapshot.get(request.kind, request.names) });
        return true;
      },
    });
  }

  deltaWatch(node: NodeIdentity, subscription: DeltaSubscription, respond: (response: DeltaResponse) => void, answerNow: boolean): () => void {
    let first = answerNow;
    return this.register(node, {
      kind: subscription.kind,
      offer: (snapshot) => {
        const force = first;
        first = false;
        if (!force && snapshot.version === subscription.refusedVersion) return false;
        const wanted = snapshot.get(subscription.kind).filter((resource) => subscription.wildcard || subscription.names.has(resource.name));
        const changed = wanted.filter((resource) => subscription.known.get(resource.name) !== resource.version);
        const present = new Set(wanted.map((resource) => resource.name));
        const removed = [...subscription.known.keys()].filter((name) => !present.has(name));
        if (!force && changed.length === 0 && removed.length === 0) {
          // Nothing of this kind changed: once the last answer was accepted,
          // Envoy holds this version of it too.
          const status = this.nodes.get(key(node))?.status;
          if (status && (subscription.pendingVersion === undefined || status.acked[subscription.kind] === subscription.pendingVersion)) {
            subscription.pendingVersion = snapshot.version;
            status.acked[subscription.kind] = snapshot.version;
            queueMicrotask(() => this.nodesChanged());
          }
          return false;
        }
        for (const resource of changed) subscription.known.set(resource.name, resource.version);
        for (const name of removed) subscription.known.delete(name);
        subscription.pendingVersion = snapshot.version;
        subscription.refusedVersion = undefined;
        respond({ version: snapshot.version, changed, removed });
        return true;
      },
    });
  }

  acked(node: NodeIdentity, kind: ResourceKind, version: string): void {
    const status = this.nodes.get(key(node))?.status;
    if (status) status.acked[kind] = version;
    this.nodesChanged();
  }

  nacked(node: NodeIdentity, kind: ResourceKind, version: string, message: string): void {
    // Envoy keeps what it had; so do we, and say so.
    const status = this.nodes.get(key(node))?.status;
    if (status) status.lastNack = { kind, version, message, at: new Date() };
    this.observer.nacked?.(node, kind, version, message);
    this.nodesChanged();
  }

  private register(node: NodeIdentity, watch: Watch): () => void {
    const state = this.nodes.get(key(node));
    if (!state) throw new Error(`no open stream for node ${node.name}`);
    const snapshot = this.snapshotFor(node);
    if (snapshot && watch.offer(snapshot)) return () => undefined;
    state.watches.add(watch);
    return () => state.watches.delete(watch);
  }

  /** A new snapshot for the node: answer its open watches, in the order Envoy needs them. */
  private offer(state: NodeState, snapshot: Snapshot): void {
    const ordered = [...state.watches].sort((a, b) => pushOrder.indexOf(a.kind) - pushOrder.indexOf(b.kind));
    for (const watch of ordered) if (watch.offer(snapshot)) state.watches.delete(watch);
  }
}

function key(node: NodeIdentity): string {
  return `${node.role}/${node.name}`;
}
