import { statfs } from "node:fs/promises";
import { RocksLevel } from "@nxtedition/rocksdb";
import type { ReadView, StorageEngine, WriteBatch, WriteOp } from "./engine.js";

const bufferEncoding = { keyEncoding: "buffer", valueEncoding: "buffer" } as const;

// The binding's types are abstract-level's; this is the part we use.
interface RocksIterator {
  seek(target: Uint8Array): void;
  /** Reads up to `size` entries on the calling thread: [key, value, key, value, …]. */
  _nextvSync(size: number, options: object): { rows: Buffer[]; finished: boolean };
  close(): Promise<void>;
}
// The binding's chained batch: these methods go straight to RocksDB's
// WriteBatch without abstract-level's checks, events and promises.
interface RocksChainedBatch {
  _put(key: Uint8Array, value: Uint8Array, options: object): void;
  _del(key: Uint8Array, options: object): void;
  _writeSync(options: { sync: boolean }): void;
  _closeSync(): void;
}
interface RocksDb {
  open(options: Record<string, unknown>): Promise<void>;
  close(): Promise<void>;
  batch(): RocksChainedBatch;
  iterator(options: Record<string, unknown>): RocksIterator;
  getProperty(property: string): string;
  _getManySync(keys: Uint8Array[], options: object): Array<Buffer | undefined | null>;
}

const noOptions = {};

/**
 * RocksDB options sized for a metadata store: one memtable budget, a small
 * block cache (the key index answers which version to read; the page cache
 * holds the rest), compression off for the young levels that churn.
 */
const openOptions = {
  createIfMissing: true,
  infoLogLevel: "error",
  memtableMemoryBudget: 32 * 1024 * 1024,
  compaction: "level",
  cacheSize: 8 * 1024 * 1024,
  walCompression: false,
};

/** Opens (creating if missing) a RocksDB database at `path`. */
export async function openRocksEngine(path: string): Promise<StorageEngine> {
  const db = new RocksLevel(path) as unknown as RocksDb;
  try {
    await db.open(openOptions);
  } catch (error) {
    throw new Error(`cannot open RocksDB at ${path}: ${(error as Error).message}`, { cause: error });
  }
  return new RocksEngine(db, path);
}

class RocksEngine implements StorageEngine {
  constructor(
    private readonly db: RocksDb,
    private readonly path: string,
  ) {}

  get location(): string {
    return this.path;
  }

  async write(ops: WriteOp[], options: { sync: boolean }): Promise<void> {
    if (ops.length === 0) return;
    const batch = this.batch();
    for (const op of ops) {
      if (op.type === "put") batch.put(op.key, op.value);
      else batch.del(op.key);
    }
    batch.write(options);
  }

  batch(): WriteBatch {
    const batch = this.db.batch();
    return {
      put: (key, value) => batch._put(key, value, noOptions),
      del: (key) => batch._del(key, noOptions),
      write: (options) => {
        try {
          batch._writeSync(options);
        } finally {
          batch._closeSync();
        }
      },
    };
  }

  getMany(keys: Uint8Array[]): Array<Uint8Array | undefined> {
    if (keys.length === 0) return [];
    const values = this.db._getManySync(keys, noOptions);
    for (const value of values) {
      // null is the binding's "aborted or timed out", which no read here asks for.
      if (value === null) throw new Error("RocksDB read was aborted");
    }
    return values as Array<Uint8Array | undefined>;
  }

  view(): ReadView {
    // The binding writes batches synchronously on this thread, so an
    // iterator created now sees exactly what is committed now.
    return new RocksView(this.db.iterator({ ...bufferEncoding }), () => this.db.iterator({ ...bufferEncoding, values: false }));
  }

  async approximateSize(): Promise<number> {
    const live = Number(this.db.getProperty("rocksdb.total-sst-files-size"));
    const memtables = Number(this.db.getProperty("rocksdb.cur-size-all-mem-tables"));
    return (Number.isFinite(live) ? live : 0) + (Number.isFinite(memtables) ? memtables : 0);
  }

  async defragment(): Promise<void> {
    // RocksDB reclaims space by background compaction, so there is nothing
    // to rewrite; still fail like etcd would if the data dir is gone.
    await statfs(this.path);
  }

  close(): Promise<void> {
    return this.db.close();
  }
}

/**
 * One RocksDB iterator serves every read of a view: RocksDB pins the
 * iterator's snapshot at creation, so gets (seek + compare) and scans through
 * it are mutually consistent.
 *
 * Reads run on the calling thread. A metadata store's working set sits in
 * RocksDB's memtables and block cache, where a read takes microseconds; a hop
 * through libuv's thread pool per read cost more than the read itself.
 */
class RocksView implements ReadView {
  private keysIterator: RocksIterator | undefined;

  constructor(
    private readonly iterator: RocksIterator,
    /** Same snapshot, keys only: counting a long range copies no values. */
    private readonly openKeysIterator: () => RocksIterator,
  ) {}

  async count(from: Uint8Array, to: Uint8Array): Promise<number> {
    // Created on first use: the snapshot is the one of the first iterator
    // only if nothing was written in between, so counts are for whole
    // tables at rest (start-up checks, import summaries).
    this.keysIterator ??= this.openKeysIterator();
    this.keysIterator.seek(from);
    let count = 0;
    for (;;) {
      const { rows } = this.keysIterator._nextvSync(1024, {});
      if (rows.length === 0) return count;
      for (let i = 0; i < rows.length; i += 2) {
        if (Buffer.compare(rows[i]!, to) >= 0) return count;
        count++;
      }
    }
  }

  async get(key: Uint8Array): Promise<Uint8Array | undefined> {
    this.iterator.seek(key);
    const { rows } = this.iterator._nextvSync(1, {});
    const [found, value] = rows;
    return found !== undefined && Buffer.compare(found, key) === 0 ? value : undefined;
  }

  async scan(
    from: Uint8Array,
    to: Uint8Array,
    visit: (key: Uint8Array, value: Uint8Array) => boolean | Uint8Array,
  ): Promise<void> {
    this.iterator.seek(from);
    // Start with small reads (point-like scans are common), grow for long ones.
    let batch = 8;
    for (;;) {
      const { rows } = this.iterator._nextvSync(batch, {});
      if (rows.length === 0) return;
      let sought = false;
      for (let i = 0; i < rows.length; i += 2) {
        const key = rows[i]!;
        if (Buffer.compare(key, to) >= 0) return;
        const next = visit(key, rows[i + 1]!);
        if (next === false) return;
        if (next !== true) {
          this.iterator.seek(next);
          sought = true;
          break;
        }
      }
      batch = sought ? 8 : Math.min(batch * 4, 1024);
    }
  }

  async close(): Promise<void> {
    await Promise.all([this.iterator.close(), this.keysIterator?.close()]);
  }
}
