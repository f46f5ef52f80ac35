import type { ImportedEvent } from "./import-writer.js";

/** Where a migration reads from: a snapshot file or a running etcd. */
export interface MigrationSource {
  /** For messages: "snapshot FILE", "etcd URL". */
  description: string;
  /** Every retained event, in revision order (a compaction's surviving versions first). */
  events(): AsyncIterable<ImportedEvent>;
  /** After the events: the source's revision, compact revision and leases. */
  finish(): Promise<{ revision: number; compactRevision: number; leases: Array<{ id: bigint; ttl: number }> }>;
  close(): void;
}
