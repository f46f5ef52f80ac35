import type { Snapshot } from "./snapshot.js";

/**
 * Snapshots by node id, and a default for nodes without one of their own
 * (every sidecar of one gateway gets the same resources); streams watch
 * their node's entry.
 */
export class SnapshotCache {
  private readonly snapshots = new Map<string, Snapshot>();
  private fallback: Snapshot | undefined;
  private readonly watchers = new Map<string, Set<(snapshot: Snapshot) => void>>();

  set(nodeId: string, snapshot: Snapshot): void {
    this.snapshots.set(nodeId, snapshot);
    for (const watcher of this.watchers.get(nodeId) ?? []) watcher(snapshot);
  }

  setDefault(snapshot: Snapshot): void {
    this.fallback = snapshot;
    for (const [nodeId, watchers] of this.watchers) {
      if (this.snapshots.has(nodeId)) continue;
      for (const watcher of watchers) watcher(snapshot);
    }
  }

  get(nodeId: string): Snapshot | undefined {
    return this.snapshots.get(nodeId) ?? this.fallback;
  }

  /** Calls `watcher` on every new snapshot for the node; returns a cancel function. */
  watch(nodeId: string, watcher: (snapshot: Snapshot) => void): () => void {
    let set = this.watchers.get(nodeId);
    if (!set) this.watchers.set(nodeId, (set = new Set()));
    set.add(watcher);
    return () => set.delete(watcher);
  }
}
