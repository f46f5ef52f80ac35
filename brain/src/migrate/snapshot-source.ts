// An etcd snapshot (`etcdctl snapshot save`, or a member's member/snap/db)
// as a migration source. Its "key" bucket holds every retained version keyed
// by revision (main u64 BE, '_', sub u64 BE, and 't' for a delete), so it
// yields the full history since the last compaction, in revision order.
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { fromBinary } from "@bufbuild/protobuf";
import { KeyValueSchema } from "@wharf/proto/etcd/api/mvccpb/kv_pb.js";
import { BboltFile } from "./bbolt.js";
import { importedKeyValue, MigrationError, type ImportedEvent } from "./import-writer.js";
import type { MigrationSource } from "./source.js";

const revisionBytes = 17;

function mainRevision(bytes: Buffer): number {
  return Number(bytes.readBigUInt64BE(0));
}

export function openSnapshotSource(path: string): MigrationSource {
  const db = new BboltFile(path);
  const buckets = db.bucketNames();
  if (!buckets.includes("key") || !buckets.includes("meta")) {
    db.close();
    throw new MigrationError(`${path} is a bbolt file but not an etcd backend (buckets: ${buckets.join(", ") || "none"})`);
  }
  const meta = new Map<string, Buffer>();
  for (const { key, value } of db.entries("meta")) meta.set(key.toString("latin1"), value);
  // A scheduled compaction is finished by etcd on its next start; so here.
  const compactRevision = Math.max(
    ...["scheduledCompactRev", "finishedCompactRev"].map((name) => {
      const value = meta.get(name);
      return value !== undefined && value.length >= 8 ? mainRevision(value) : 0;
    }),
  );
  let lastRevision = 0;
  let open = true;
  const close = () => {
    if (open) db.close();
    open = false;
  };

  return {
    description: `snapshot ${path}`,
    async *events(): AsyncGenerator<ImportedEvent> {
      for (const { key, value } of db.entries("key")) {
        if (key.length !== revisionBytes && key.length !== revisionBytes + 1) {
          throw new MigrationError(`${path}: key bucket entry of ${key.length} bytes is not a revision`);
        }
        const main = mainRevision(key);
        const sub = Number(key.readBigUInt64BE(9));
        const kv = fromBinary(KeyValueSchema, value);
        lastRevision = main;
        if (key.length === revisionBytes + 1) {
          yield { type: "delete", main, sub, key: kv.key };
        } else {
          yield { type: "put", main, sub, kv: importedKeyValue(kv) };
        }
      }
    },
    async finish() {
      const leases: Array<{ id: bigint; ttl: number }> = [];
      for (const { value } of db.entries("lease")) {
        // leasepb.Lease: ID = 1, TTL = 2 (int64 varints); RemainingTTL = 3 is not kept.
        const reader = new BinaryReader(value);
        let id = 0n;
        let ttl = 0;
        while (reader.pos < reader.len) {
          const [field, wireType] = reader.tag();
          if (field === 1) id = BigInt(reader.int64());
          else if (field === 2) ttl = Number(reader.int64());
          else reader.skip(wireType);
        }
        leases.push({ id, ttl });
      }
      close();
      // A delete compacted away can leave the newest revision only in the compaction mark.
      return { revision: Math.max(lastRevision, compactRevision), compactRevision, leases };
    },
    close,
  };
}
