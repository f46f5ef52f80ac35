// Writes an etcd keyspace, revisions and all, into an empty brain data dir.
// Each event is stored by the same routine brain's own writer uses
// (mvcc/version-writer.ts), so after a migration
// brain answers reads at every retained revision, and watches from any of
// them, as the source etcd did: resource versions held by clients stay valid.
import type { KeyValue } from "@wharf/proto/etcd/api/mvccpb/kv_pb.js";
import { keyId } from "../mvcc/kv.js";
import { metaNames } from "../mvcc/meta.js";
import { MvccStore } from "../mvcc/store.js";
import { writeTombstone, writeVersion } from "../mvcc/version-writer.js";
import type { StorageEngine, WriteOp } from "../storage/engine.js";
import { encodeUint64, leaseKey, metaKey, Table, tableEnd, tableStart } from "../storage/keys.js";
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
  private readonly live = new Set<string>();
  private readonly sink = { put: (key: Uint8Array, value: Uint8Array) => void this.ops.push({ type: "put", key, value }) };

  private constructor(private readonly engine: StorageEngine) {}

  /** Opens `dataDir` for an import; refuses a data dir that already holds data. */
  static async open(dataDir: string): Promise<ImportWriter> {
    const engine = await openRocksEngine(dataDir);
    try {
      const view = engine.view();
      try {
        for (const table of [Table.Key, Table.Current, Table.History, Table.Log, Table.Lease]) {
          if ((await view.count(tableStart(table), tableEnd(table))) > 0) {
            throw new MigrationError(`${dataDir} already holds data; migrate into a new, empty data dir`);
          }
        }
      } finally {
        await view.close();
      }
      // Gives the data dir its identity (cluster and member ids) as a first start would.
      // Without the write-ahead log: the import syncs its own last batch.
      const store = await MvccStore.open(engine, { sync: false });
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
    if (event.type === "put") {
      if (event.kv.modRevision !== event.main) {
        throw new MigrationError(`the version of a key at revision ${event.main} says it was modified at ${event.kv.modRevision}`);
      }
      writeVersion(this.sink, event.kv, event.sub);
      this.live.add(keyId(event.kv.key));
    } else {
      writeTombstone(this.sink, event.key, event.main, event.sub);
      this.live.delete(keyId(event.key));
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
    return { revision, compactRevision: options.compactRevision, events: this.events, liveKeys: this.live.size, leases: options.leases.length };
  }

  close(): Promise<void> {
    return this.engine.close();
  }
}
