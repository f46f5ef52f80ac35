// Writes an etcd keyspace, revisions and all, into an empty brain data dir.
// Each event lands exactly where brain's own writer would have put it (the
// current table, the key's history, the revision log), so after a migration
// brain answers reads at every retained revision, and watches from any of
// them, as the source etcd did: resource versions held by clients stay valid.
import type { KeyValue } from "@wharf/proto/etcd/api/mvccpb/kv_pb.js";
import { MvccStore } from "../mvcc/store.js";
import { encodeLogEntry, encodeRecord, EventKind, tombstoneRecord } from "../mvcc/record.js";
import { metaNames } from "../mvcc/store-view.js";
import type { StorageEngine, WriteOp } from "../storage/engine.js";
import { currentKey, encodeUint64, historyKey, leaseKey, logKey, metaKey, Table, tableEnd, tableStart } from "../storage/keys.js";
import { openRocksEngine } from "../storage/rocks-engine.js";

export interface ImportedKeyValue {
  key: Uint8Array;
  value: Uint8Array;
  createRevision: number;
  modRevision: number;
  version: number;
  lease: bigint;
}

/**
 * One version of a key at revision (main, sub). `base` marks the versions
 * live at the source's compact revision when they come in key order rather
 * than revision order (a live etcd reads them with one range at that
 * revision); they are distinct keys, so their order does not matter.
 */
/** etcd's KeyValue message (from a snapshot or the API) as an import. */
export function importedKeyValue(kv: KeyValue): ImportedKeyValue {
  return {
    key: kv.key,
    value: kv.value,
    createRevision: Number(kv.createRevision),
    modRevision: Number(kv.modRevision),
    version: Number(kv.version),
    lease: kv.lease,
  };
}

export type ImportedEvent =
  | { type: "put"; main: number; sub: number; kv: ImportedKeyValue; base?: boolean }
  | { type: "delete"; main: number; sub: number; key: Uint8Array; base?: undefined };

export interface ImportSummary {
  revision: number;
  compactRevision: number;
  events: number;
  liveKeys: number;
  leases: number;
}

const batchOps = 30_000;

export class MigrationError extends Error {}

export class ImportWriter {
  private ops: WriteOp[] = [];
  private last = { main: 0, sub: -1 };
  private events = 0;

  private constructor(private readonly engine: StorageEngine) {}

  /** Opens `dataDir` for an import; refuses a data dir that already holds data. */
  static async open(dataDir: string): Promise<ImportWriter> {
    const engine = await openRocksEngine(dataDir);
    try {
      const view = engine.view();
      try {
        for (const table of [Table.Current, Table.History, Table.Log, Table.Lease]) {
          if ((await view.count(tableStart(table), tableEnd(table))) > 0) {
            throw new MigrationError(`${dataDir} already holds data; migrate into a new, empty data dir`);
          }
        }
      } finally {
        await view.close();
      }
      // Gives the data dir its identity (cluster and member ids) as a first start would.
      const store = await MvccStore.open(engine, { sync: true });
      if (store.revision > 1) throw new MigrationError(`${dataDir} is at revision ${store.revision}; migrate into a new, empty data dir`);
      return new ImportWriter(engine);
    } catch (error) {
      await engine.close();
      throw error;
    }
  }

  /** Adds one event; events other than `base` ones must come in revision order, after them. */
  async add(event: ImportedEvent): Promise<void> {
    if (event.main < this.last.main || (event.main === this.last.main && event.sub <= this.last.sub)) {
      throw new MigrationError(`revision ${event.main}.${event.sub} comes after ${this.last.main}.${this.last.sub}: the source is not in revision order`);
    }
    if (event.base !== true) this.last = { main: event.main, sub: event.sub };
    const at = { main: event.main, sub: event.sub };
    if (event.type === "put") {
      const record = encodeRecord(event.kv);
      this.ops.push(
        { type: "put", key: currentKey(event.kv.key), value: record },
        { type: "put", key: historyKey(event.kv.key, at), value: record },
        { type: "put", key: logKey(at), value: encodeLogEntry(EventKind.Put, event.kv.key) },
      );
    } else {
      this.ops.push(
        { type: "del", key: currentKey(event.key) },
        { type: "put", key: historyKey(event.key, at), value: tombstoneRecord(event.main) },
        { type: "put", key: logKey(at), value: encodeLogEntry(EventKind.Delete, event.key) },
      );
    }
    this.events++;
    if (this.ops.length >= batchOps) await this.flush(false);
  }

  private async flush(sync: boolean): Promise<void> {
    const ops = this.ops;
    this.ops = [];
    await this.engine.write(ops, { sync });
  }

  /**
   * Records the leases and where the source stood, durably. Until this has
   * run the data dir is not a usable brain (its revision is still 1).
   */
  async finish(options: { revision: number; compactRevision: number; leases: Array<{ id: bigint; ttl: number }> }): Promise<ImportSummary> {
    const revision = Math.max(options.revision, this.last.main, 1);
    for (const lease of options.leases) this.ops.push({ type: "put", key: leaseKey(lease.id), value: encodeUint64(lease.ttl) });
    this.ops.push(
      { type: "put", key: metaKey(metaNames.compactRevision), value: encodeUint64(options.compactRevision) },
      // Everything below the compact revision was already removed at the source.
      { type: "put", key: metaKey(metaNames.compactedThrough), value: encodeUint64(options.compactRevision) },
      { type: "put", key: metaKey(metaNames.revision), value: encodeUint64(revision) },
    );
    await this.flush(true);
    const view = this.engine.view();
    try {
      const liveKeys = await view.count(tableStart(Table.Current), tableEnd(Table.Current));
      return { revision, compactRevision: options.compactRevision, events: this.events, liveKeys, leases: options.leases.length };
    } finally {
      await view.close();
    }
  }

  close(): Promise<void> {
    return this.engine.close();
  }
}
