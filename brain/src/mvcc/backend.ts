// The MVCC store as the layers above it see it (apply, lease, watch and the
// server): kine's backend interface is the model — reads at a revision, the
// watch log, one writer, compaction and commit notifications. Nothing here
// names RocksDB, the key index or the write-ahead log.
import type { KeyRange, WatchEvent } from "./kv.js";
import type { StoreView } from "./store-view.js";
import type { CommittedRevision, LeaseChange, WriteContext } from "./write-context.js";

/** One durable group of writes, published once it is answered, in revision order. */
export interface Commit {
  revisions: CommittedRevision[];
  leases: LeaseChange[];
  revision: number;
}

/** Stored rows (mvccpb.KeyValue bytes) of a range read and the number of keys in it. */
export interface RangeRows {
  rows: Uint8Array[];
  count: number;
}

/**
 * The lessor as the store sees it; the store is given one at construction,
 * as etcd's mvcc.New is given its lease.Lessor. The store restores it from
 * storage at open and hands it each durable group before watchers see it.
 */
export interface LeaseLedger {
  /** A lease found in storage at open. */
  restore(id: bigint, ttl: number): void;
  /** A live key found at open that is attached to `lease`. */
  attach(lease: bigint, key: Uint8Array): void;
  has(id: bigint): boolean;
  /** What a durable group granted, revoked, attached and detached. */
  apply(commit: Commit): void;
}

export interface MvccBackend {
  /** Newest durable revision: what reads see. */
  readonly revision: number;
  /** Reads below it fail as compacted. */
  readonly compactRevision: number;
  readonly clusterId: bigint;
  readonly memberId: bigint;
  /** For a linearizable read: resolves once every write evaluated so far is durable (undefined: nothing pending). */
  caughtUp(): Promise<void> | undefined;
  /** Live keys in `range` at `revision`, in key order, at most `limit`, and how many there are. */
  readRange(range: KeyRange, revision: number, limit: number, countAll: boolean): RangeRows;
  /** The watch log from `fromRevision` (whole revisions, about `maxEvents`); returns the next revision to read. */
  readEvents(fromRevision: number, maxEvents: number, withPrevKv: boolean, visit: (revision: number, event: WatchEvent) => void): Promise<number>;
  /** Runs `run` in the single writer; resolves once what it wrote is durable. */
  write<T>(run: (context: WriteContext) => Promise<T>, options?: { exclusive?: boolean }): Promise<T>;
  compact(revision: number, physical: boolean): Promise<number>;
  onCommit(listener: (commit: Commit) => void): () => void;
  /** Whole-table scans (leases, hashes, snapshots). */
  view(): Promise<StoreView>;
}
