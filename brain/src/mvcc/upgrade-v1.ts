// In-place upgrade of a data dir in storage format 1 (current, history and
// revision-log tables; no format version in meta) to format 2 (one table of
// versions keyed by revision). Each chunk moves versions out of the history
// table and into the key table in one atomic batch, so a stop at any point
// leaves every version in exactly one of the two and the next start resumes.
import type { StorageEngine, WriteBatch } from "../storage/engine.js";
import { encodeUint64, metaKey, parseHistoryKey, Table, tableEnd, tableStart } from "../storage/keys.js";
import { log } from "../log.js";
import { formatVersion, metaNames } from "./meta.js";
import { decodeRecord } from "./record.js";
import { writeTombstone, writeVersion } from "./version-writer.js";

const chunkRows = 5000;

export async function upgradeFromV1(engine: StorageEngine): Promise<void> {
  const moved = await drainTable(engine, Table.History, (batch, storageKey, value) => {
    const { key, revision } = parseHistoryKey(storageKey);
    const record = decodeRecord(value);
    if (record.tombstone) writeTombstone(batch, key, revision.main, revision.sub);
    else writeVersion(batch, { key, ...record }, revision.sub);
  });
  // The current table and the revision log are derived from the history.
  for (const table of [Table.Current, Table.Log]) await drainTable(engine, table, () => {});
  const done = engine.batch();
  done.put(metaKey(metaNames.formatVersion), encodeUint64(formatVersion));
  done.write({ sync: true });
  log("info", "upgraded the data dir to storage format 2", { versions: moved });
}

/**
 * Deletes every row of `table`, `chunkRows` per atomic batch, each row's
 * replacement (written by `move` into the same batch) going with its delete.
 * Returns the rows it removed.
 */
async function drainTable(
  engine: StorageEngine,
  table: Table,
  move: (batch: WriteBatch, storageKey: Uint8Array, value: Uint8Array) => void,
): Promise<number> {
  let total = 0;
  for (;;) {
    const batch = engine.batch();
    let rows = 0;
    const view = engine.view();
    try {
      await view.scan(tableStart(table), tableEnd(table), (storageKey, value) => {
        move(batch, storageKey, value);
        batch.del(storageKey);
        return ++rows < chunkRows;
      });
    } finally {
      await view.close();
    }
    if (rows === 0) return total;
    batch.write({ sync: false });
    total += rows;
  }
}
