import { statfs } from "node:fs/promises";
import { RocksLevel } from "@nxtedition/rocksdb";
import type { ReadView, StorageEngine, WriteOp } from "./engine.js";

const bufferEncoding = { keyEncoding: "buffer", valueEncoding: "buffer" } as const;

// The binding's types are abstract-level's; this is the part we use.
interface RocksIterator {
  seek(target: Uint8Array): void;
  nextv(size: number): Promise<Array<[Buffer, Buffer]>>;
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
    return new RocksView(this.db.iterator({ ...bufferEncoding }));
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
 */
class RocksView implements ReadView {
  constructor(private readonly iterator: RocksIterator) {}

  async get(key: Uint8Array): Promise<Uint8Array | undefined> {
    this.iterator.seek(key);
    const [entry] = await this.iterator.nextv(1);
    return entry !== undefined && Buffer.compare(entry[0], key) === 0 ? entry[1] : undefined;
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
      const entries = await this.iterator.nextv(batch);
      if (entries.length === 0) return;
      for (const [key, value] of entries) {
        if (Buffer.compare(key, to) >= 0) return;
        const next = visit(key, value);
        if (next === false) return;
        if (next !== true) {
          this.iterator.seek(next);
          batch = 4; // grows back to 16 below
          break;
        }
      }
      batch = Math.min(batch * 4, 1024);
    }
  }

  close(): Promise<void> {
    return this.iterator.close();
  }
}
