import type { ReadView } from "../storage/engine.js";
import { metaKey, tableEnd, tableStart, type Table } from "../storage/keys.js";
import type { WatchEvent } from "./kv.js";
import type { MvccStore } from "./store.js";

export { metaNames } from "./meta.js";

/**
 * Scans of whole tables at one point (lease loading, hashes, snapshots), and
 * the watch log up to the revision the view was opened at.
 */
export class StoreView {
  constructor(
    private readonly store: MvccStore,
    private readonly view: ReadView,
    readonly revision: number,
  ) {}

  close(): Promise<void> {
    return this.view.close();
  }

  /** The store's readEvents, bounded by this view's revision. */
  readEvents(fromRevision: number, maxEvents: number, withPrevKv: boolean, visit: (main: number, event: WatchEvent) => void): Promise<number> {
    return this.store.readEvents(fromRevision, maxEvents, withPrevKv, visit, this.revision);
  }

  /** Raw scan of one table, for hashing, snapshots and lease loading. */
  scanTable(table: Table, visit: (key: Uint8Array, value: Uint8Array) => boolean): Promise<void> {
    return this.view.scan(tableStart(table), tableEnd(table), visit);
  }

  async meta(name: string): Promise<Uint8Array | undefined> {
    return this.view.get(metaKey(name));
  }
}
