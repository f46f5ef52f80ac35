import type { Snapshot } from "./snapshot.js";

/** Snapshots by node id; streams watch their node's entry. */
export class SnapshotCache {
  private readonly snapshots = new Map<string, Snapshot>();
  private readonly watchers = new Map<string, Set<(snapshot: Snapshot) => void>>();

  set(nodeId: string, snapshot: Snapshot): void {
    this.snapshots.set(nodeId, snapshot);
    for (const watcher of this.watchers.get(nodeId) ?? []) watcher(snapshot);
  }

  get(nodeId: string): Snapshot | undefined {
    return this.snapshots.get(nodeId);
  }

  /** Calls `watcher` on every new snapshot for the node; returns a cancel function. */
  watch(nodeId: string, watcher: (snapshot: Snapshot) => void): () => void {
    let set = this.watchers.get(nodeId);
    if (!set) this.watchers.set(nodeId, (set = new Set()));
    set.add(watcher);
    return () => set.delete(watcher);
  }
}
