// Names of the meta table's entries.
export const metaNames = {
  revision: "revision",
  compactRevision: "compact-revision",
  compactedThrough: "compacted-through",
  clusterId: "cluster-id",
  memberId: "member-id",
  formatVersion: "format-version",
  /** Sequence number of the newest write-ahead log record the engine holds. */
  walSequence: "wal-sequence",
} as const;

/** The storage layout this code writes (storage/keys.ts). */
export const formatVersion = 2;
