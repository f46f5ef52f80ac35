// A replica's local copy, made from PostgreSQL at start: the shared tables
// written into a fresh storage engine in brain's own layout (storage format
// 2), which MvccStore then opens as it opens any data dir.
import type pg from "pg";
import type { StorageEngine } from "../../storage/engine.js";
import { encodeUint64, leaseKey, metaKey } from "../../storage/keys.js";
import { formatVersion, metaNames } from "../../mvcc/meta.js";
import { revisionKey } from "../../mvcc/revision.js";

export interface LoadedReplica {
  /** The last group the copy holds: a follower reads groups after it. */
  sequence: number;
  revision: number;
  compactRevision: number;
  clusterId: bigint;
}

export interface LoadOptions {
  /** Rows fetched from the cursor and written to the engine at a time. */
  batchRows?: number;
}

function toNumber(value: bigint): number {
  const number = Number(value);
  if (!Number.isSafeInteger(number)) throw new Error(`PostgreSQL holds ${value}, beyond what brain counts revisions and sequences in`);
  return number;
}

function uint64Bytes(value: bigint): Uint8Array {
  const out = Buffer.alloc(8);
  out.writeBigUInt64BE(value);
  return out;
}

/**
 * Copies the shared state into `engine`, which must be empty, from one
 * REPEATABLE READ READ ONLY snapshot (the state row, every version, every
 * lease: one consistent point of the log). Versions stream through a
 * cursor in batches, so the table is never held in memory. Versions the
 * compact revision no longer needs may still be there; MvccStore.open
 * compacts its index and drops them, as after any restart.
 */
export async function loadReplica(pool: pg.Pool, engine: StorageEngine, memberId: bigint, options: LoadOptions = {}): Promise<LoadedReplica> {
  const batchRows = options.batchRows ?? 5000;
  const view = engine.view();
  try {
    let empty = true;
    await view.scan(Uint8Array.of(0), Uint8Array.of(0xff), () => (empty = false));
    if (!empty) throw new Error(`the local copy at ${engine.location} is not empty; a replica loads into a fresh one`);
  } finally {
    await view.close();
  }

  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    const { rows: states } = await client.query<{ cluster_id: bigint; sequence: bigint; revision: bigint; compact_revision: bigint }>(
      "SELECT cluster_id, sequence, revision, compact_revision FROM brain_state WHERE id = 1",
    );
    const state = states[0];
    if (state === undefined) throw new Error("brain_state has no row: the schema was not migrated");

    await client.query("DECLARE brain_load NO SCROLL CURSOR FOR SELECT revision, sub, tombstone, kv FROM brain_kv ORDER BY revision, sub");
    for (;;) {
      const { rows } = await client.query<{ revision: bigint; sub: number; tombstone: boolean; kv: Buffer }>(`FETCH ${batchRows} FROM brain_load`);
      if (rows.length === 0) break;
      const batch = engine.batch();
      for (const row of rows) batch.put(revisionKey(toNumber(row.revision), row.sub, row.tombstone), row.kv);
      // A cache reloaded at every start: nothing here needs to survive a crash.
      batch.write({ sync: false });
      if (rows.length < batchRows) break;
    }
    await client.query("CLOSE brain_load");

    const { rows: leases } = await client.query<{ id: bigint; ttl: bigint }>("SELECT id, ttl FROM brain_lease");
    await client.query("COMMIT");

    const revision = toNumber(state.revision);
    const compactRevision = toNumber(state.compact_revision);
    const batch = engine.batch();
    for (const lease of leases) batch.put(leaseKey(lease.id), encodeUint64(toNumber(lease.ttl)));
    // Meta last: a copy is complete once it has them (and is wiped at the next start anyway).
    batch.put(metaKey(metaNames.clusterId), uint64Bytes(state.cluster_id));
    batch.put(metaKey(metaNames.memberId), uint64Bytes(memberId));
    batch.put(metaKey(metaNames.revision), encodeUint64(revision));
    batch.put(metaKey(metaNames.compactRevision), encodeUint64(compactRevision));
    batch.put(metaKey(metaNames.formatVersion), encodeUint64(formatVersion));
    batch.write({ sync: false });
    return { sequence: toNumber(state.sequence), revision, compactRevision, clusterId: state.cluster_id };
  } catch (error) {
    broken = error as Error;
    await client.query("ROLLBACK").catch(() => {});
    throw error;
  } finally {
    client.release(broken);
  }
}
