import { statfs } from "node:fs/promises";
import { RocksLevel } from "@nxtedition/rocksdb";
import type { ReadView, StorageEngine, WriteOp } from "./engine.js";

const bufferEncoding = { keyEncoding: "buffer", valueEncoding: "buffer" } as const;

// The binding's types are abstract-level's; this is the part we use.
interface RocksIterator {
  seek(target: Uint8Array): void;
  /** Reads up to `size` entries on the calling thread: [key, value, key, value, …]. */
  _nextvSync(size: number, options: object): { rows: Buffer[]; finished: boolean };
  close(): Promise<void>;
}
interface RocksDb {
  open(options: Record<string, unknown>): Promise<void>;
  close(): Promise<void>;
  batch(ops: Array<Record<string, unknown>>, options: Record<string, unknown>): Promise<void>;
  iterator(options: Record<string, unknown>): RocksIterator;
  getProperty(property: string): string;
}

/** Opens (creating if missing) a RocksDB database at `path`. */
export async function openRocksEngine(path: string): Promise<StorageEngine> {
  const db = new RocksLevel(path) as unknown as RocksDb;
  try {
    await db.open({ createIfMissing: true, infoLogLevel: "error" });
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

  async write(ops: WriteOp[], options: { sync: boolean }): Promise<void> {
    if (ops.length === 0) return;
    await this.db.batch(
      ops.map((op) => (op.type === "put" ? { type: "put", key: op.key, value: op.value } : { type: "del", key: op.key })),
      { ...bufferEncoding, sync: options.sync },
    );
  }

  view(): ReadView {
    // The binding writes batches synchronously on this thread, so two
    // iterators created in one synchronous block see the same state.
    return new RocksView(this.db.iterator({ ...bufferEncoding }), this.db.iterator({ ...bufferEncoding, values: false }));
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
  constructor(
    private readonly iterator: RocksIterator,
    /** Same snapshot, keys only: counting a long range copies no values. */
    private readonly keysIterator: RocksIterator,
  ) {}

  async count(from: Uint8Array, to: Uint8Array): Promise<number> {
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
    await Promise.all([this.iterator.close(), this.keysIterator.close()]);
  }
}
