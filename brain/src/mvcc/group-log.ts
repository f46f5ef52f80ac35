// What the store hands a shared log (PostgreSQL) for each group of writes,
// and what a follower replica receives back from it. The same shape both
// ways, so a follower applies exactly what the leader made durable.
import type { LeaseChange } from "./write-context.js";

/** One version in the key table: the exact mvccpb.KeyValue bytes a response carries. */
export interface VersionRow {
  main: number;
  sub: number;
  /** A delete: `kv` is the key with mod_revision set to the delete's revision. */
  tombstone: boolean;
  key: Uint8Array;
  kv: Uint8Array;
}

/** One durable group of writes, in the order the leader evaluated it. */
export interface ReplicatedGroup {
  /** Contiguous from 1 in one shared database; a follower applies them strictly in order. */
  sequence: number;
  /** The store's revision once the group is applied (unchanged by lease-only and failed groups). */
  revision: number;
  /** In (main, sub) order. */
  rows: VersionRow[];
  /** Grants (ttl set) and revokes (ttl undefined), in the order made. */
  leases: LeaseChange[];
  /** Set when the group recorded a compaction at this revision. */
  compactRevision?: number;
}

/** Where the shared log stands: its committed revision and the sequence of its newest group. */
export interface LogPosition {
  revision: number;
  sequence: number;
}

/**
 * Where a leader's groups become durable instead of brain's own write-ahead
 * log. `append` is called once per group, in sequence order, with the next
 * call possibly made before the previous one settled: the log commits them in
 * call order, and once one append failed every later one fails too (the store
 * then takes no more writes, and the replica restarts as a follower).
 */
export interface GroupLog {
  append(group: ReplicatedGroup): Promise<void>;
  /**
   * Called on the leader after its own copy dropped the versions a
   * compaction at `revision` no longer needs; the log drops its copies.
   */
  compacted?(revision: number): Promise<void>;
}
