// The storage engine brain's MVCC store is written against. Small on purpose:
// ordered byte keys, atomic batches, and snapshot-consistent reads. RocksDB is
// the embedded engine; a shared engine for multi-replica brains implements
// the same interface.

export type WriteOp =
  | { type: "put"; key: Uint8Array; value: Uint8Array }
  | { type: "del"; key: Uint8Array };

/**
 * A consistent point-in-time view. Every read through one view sees the same
 * state, however many batches commit meanwhile. Release it with close().
 */
export interface ReadView {
  get(key: Uint8Array): Promise<Uint8Array | undefined>;
  /**
   * Entries with `from <= key < to` in key order. The callback returns false
   * to stop early; `seekTo` inside the callback is honoured by returning a
   * key to jump to (which must be greater than the current one).
   */
  scan(
    from: Uint8Array,
    to: Uint8Array,
    visit: (key: Uint8Array, value: Uint8Array) => boolean | Uint8Array,
  ): Promise<void>;
  /** Number of keys with `from <= key < to`, without reading values. */
  count(from: Uint8Array, to: Uint8Array): Promise<number>;
  close(): Promise<void>;
}

/** Ops collected for one atomic write, handed to the engine as they come. */
export interface WriteBatch {
  put(key: Uint8Array, value: Uint8Array): void;
  del(key: Uint8Array): void;
  /** Writes every op or none, on the calling thread; with `sync`, durable on return. */
  write(options: { sync: boolean }): void;
}

export interface StorageEngine {
  /** The data dir the engine keeps its files in. */
  readonly location: string;
  /** Applies every op or none; resolves once durable when `sync` is true. */
  write(ops: WriteOp[], options: { sync: boolean }): Promise<void>;
  batch(): WriteBatch;
  /**
   * Point reads of the newest committed values, on the calling thread (one
   * multi-get): undefined where a key is absent. Values are copies.
   */
  getMany(keys: Uint8Array[]): Array<Uint8Array | undefined>;
  view(): ReadView;
  /** Bytes on disk, for Status and metrics. */
  approximateSize(): Promise<number>;
  /** Reclaims space (RocksDB: full compaction of the key range). */
  defragment(): Promise<void>;
  close(): Promise<void>;
}
