import type { ImportedEvent } from "./import-writer.js";

/** What a source reports once its events are read. */
export interface SourceEnd {
  revision: number;
  compactRevision: number;
  leases: Array<{ id: bigint; ttl: number }>;
  /** The source's cluster id where it has one brain can keep (a brain data dir). */
  clusterId?: bigint;
}

/** Where a migration reads from: a snapshot file, a running etcd or a stopped brain's data dir. */
export interface MigrationSource {
  /** For messages: "snapshot FILE", "etcd URL", "data dir DIR". */
  description: string;
  /** Every retained event, in revision order (a compaction's surviving versions first). */
  events(): AsyncIterable<ImportedEvent>;
  /** After the events: the source's revision, compact revision and leases. */
  finish(): Promise<SourceEnd>;
  close(): void | Promise<void>;
}
