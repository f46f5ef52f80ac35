// A stopped brain's data dir (RocksDB, storage format 2) as a migration
// source. It is opened the way brain itself opens it (MvccStore.open: the
// write-ahead log's acknowledged groups that RocksDB may not hold yet are
// replayed, a format-1 data dir is upgraded), so what is migrated is exactly
// what that brain would serve on its next start. A running brain holds
// RocksDB's lock on the dir: the open fails and the migration is refused.
//
// Yields what a compaction at the data dir's compact revision C retains, as
// the store's key index does: every version after C, and for each key its
// newest version at or below C unless that is a delete. Rows the store had
// not yet removed after a compaction are left behind.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { decodeKeyValue } from "../mvcc/kv-wire.js";
import { keyId } from "../mvcc/kv.js";
import { metaNames } from "../mvcc/meta.js";
import { parseRevisionKey } from "../mvcc/revision.js";
import { MvccStore } from "../mvcc/store.js";
import { copyDirectory } from "../replica/replica-node.js";
import type { ReadView } from "../storage/engine.js";
import { decodeUint64, metaKey, parseLeaseKey, Table, tableEnd, tableStart } from "../storage/keys.js";
import { openRocksEngine } from "../storage/rocks-engine.js";
import { MigrationError, type ImportedEvent } from "./import-writer.js";
import type { MigrationSource } from "./source.js";

/** Rows read per RocksDB iterator pass; the generator yields between passes. */
const pageRows = 10_000;

interface Row {
  main: number;
  sub: number;
  tombstone: boolean;
  value: Uint8Array;
}

function toEvent(row: Row, base: boolean): ImportedEvent {
  const kv = decodeKeyValue(row.value);
  if (row.tombstone) return { type: "delete", main: row.main, sub: row.sub, key: kv.key };
  return { type: "put", main: row.main, sub: row.sub, kv, ...(base ? { base: true } : {}) };
}

/** The key table in revision order, a page at a time, from one consistent view. */
async function* keyRows(view: ReadView): AsyncGenerator<Row> {
  let from: Uint8Array = tableStart(Table.Key);
  const to = tableEnd(Table.Key);
  for (;;) {
    const page: Row[] = [];
    let last: Uint8Array | undefined;
    await view.scan(from, to, (rowKey, value) => {
      const at = parseRevisionKey(rowKey);
      page.push({ ...at, value: Uint8Array.from(value) });
      last = Uint8Array.from(rowKey);
      return page.length < pageRows;
    });
    yield* page;
    if (page.length < pageRows || last === undefined) return;
    // The smallest key after `last`.
    from = Uint8Array.from([...last, 0]);
  }
}

export async function openDataDirSource(dataDir: string): Promise<MigrationSource> {
  if (existsSync(join(dataDir, copyDirectory))) {
    throw new MigrationError(`${dataDir} belongs to a brain run with --storage postgres: its data is in PostgreSQL already (${copyDirectory}/ is only a local copy)`);
  }
  if (!existsSync(join(dataDir, "CURRENT"))) {
    throw new MigrationError(`${dataDir} is not a brain data dir (it holds no RocksDB database)`);
  }
  let engine;
  try {
    engine = await openRocksEngine(dataDir);
  } catch (error) {
    if (heldByAnother(error)) {
      throw new MigrationError(`${dataDir} is in use: a running brain holds its RocksDB lock; stop that brain and migrate again`, { cause: error });
    }
    throw error;
  }
  if (engine.getMany([metaKey(metaNames.clusterId)])[0] === undefined) {
    await engine.close();
    throw new MigrationError(`${dataDir} is not a brain data dir (no cluster id in it)`);
  }
  let store: MvccStore;
  try {
    // As a brain start would: the write-ahead log is replayed (sync), the format checked.
    store = await MvccStore.open(engine, { sync: true });
  } catch (error) {
    await engine.close();
    throw error;
  }
  const { revision, compactRevision, clusterId } = store;
  const view = store.engine.view();
  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closed ??= view.close().finally(() => store.close());
    return closed;
  };

  return {
    description: `data dir ${dataDir}`,
    async *events(): AsyncGenerator<ImportedEvent> {
      // Each key's newest row at or below the compact revision, in the order met.
      const base = new Map<string, Row>();
      let baseDone = compactRevision === 0;
      for await (const row of keyRows(view)) {
        if (row.main > revision) {
          throw new MigrationError(`${dataDir}: a version at revision ${row.main} is above the data dir's revision ${revision}`);
        }
        if (!baseDone && row.main <= compactRevision) {
          base.set(keyId(decodeKeyValue(row.value).key), row);
          continue;
        }
        if (!baseDone) {
          baseDone = true;
          yield* retained(base);
        }
        yield toEvent(row, false);
      }
      if (!baseDone) yield* retained(base);
    },
    async finish() {
      const leases: Array<{ id: bigint; ttl: number }> = [];
      await view.scan(tableStart(Table.Lease), tableEnd(Table.Lease), (key, value) => {
        leases.push({ id: parseLeaseKey(key), ttl: decodeUint64(value) });
        return true;
      });
      return { revision, compactRevision, leases, clusterId };
    },
    close,
  };
}

/** RocksDB's LOCK file is held (abstract-level's LEVEL_LOCKED, somewhere in the cause chain). */
function heldByAnother(error: unknown): boolean {
  for (let cause = error; cause instanceof Error; cause = cause.cause) {
    if ((cause as Error & { code?: unknown }).code === "LEVEL_LOCKED") return true;
  }
  return false;
}

/** The versions a compaction keeps of `base`: the puts, in revision order. */
function* retained(base: Map<string, Row>): Generator<ImportedEvent> {
  const rows = [...base.values()].filter((row) => !row.tombstone).sort((a, b) => a.main - b.main || a.sub - b.sub);
  for (const row of rows) yield toEvent(row, true);
}
