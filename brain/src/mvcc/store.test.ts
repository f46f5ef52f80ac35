import { cp, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { openRocksEngine } from "../storage/rocks-engine.js";
import { decodeKeyValue } from "./kv-wire.js";
import { MvccStore, type Commit } from "./store.js";

const all = { start: Uint8Array.of(0), end: undefined, single: false };

async function observe(store: MvccStore) {
  const ranges: unknown[] = [];
  for (let r = store.compactRevision; r <= store.revision; r++) {
    const { rows, count } = store.readRange(all, r, Number.POSITIVE_INFINITY, true);
    ranges.push({ r, count, kvs: rows.map((row) => decodeKeyValue(row)) });
  }
  const events: unknown[] = [];
  await store.readEvents(store.compactRevision, 1e6, true, (revision, event) => events.push({ revision, event }));
  return { ranges, events, index: store.index.dump(), revision: store.revision, compactRevision: store.compactRevision };
}

describe("the store's write pipeline", () => {
  it("answers groups in revision order, publishes each once after its answers, and reads see only durable revisions", async () => {
    const dir = await mkdtemp(join(tmpdir(), "brain-pipeline-"));
    try {
      const store = await MvccStore.open(await openRocksEngine(dir), { sync: true, maxGroup: 7 });
      const answered: number[] = [];
      const published: number[] = [];
      const seen: boolean[] = [];
      store.onCommit((commit: Commit) => {
        for (const { revision } of commit.revisions) published.push(revision);
        // What a commit carries is what reads see when it is published.
        seen.push(store.revision === commit.revision);
      });
      const writes = Array.from({ length: 300 }, (_, i) =>
        store
          .write(async (context) => {
            const key = Buffer.from(`k${i % 17}`);
            context.put(key, Buffer.from(`v${i}`), 0n, context.get(key));
            return context.revision;
          })
          .then((revision) => {
            // An answer never runs ahead of what reads see.
            expect(store.revision).toBeGreaterThanOrEqual(revision);
            answered.push(revision);
          }),
      );
      await Promise.all(writes);
      expect(answered).toEqual([...answered].sort((a, b) => a - b));
      expect(published).toEqual(answered);
      expect(seen.every(Boolean)).toBe(true);
      expect(answered).toEqual(Array.from({ length: 300 }, (_, i) => i + 2));
      await store.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("rebuilds every acknowledged group from the write-ahead log alone", async () => {
    const dir = await mkdtemp(join(tmpdir(), "brain-wal-source-"));
    const copy = await mkdtemp(join(tmpdir(), "brain-wal-replay-"));
    try {
      const store = await MvccStore.open(await openRocksEngine(dir), { sync: true });
      for (let i = 0; i < 200; i++) {
        await Promise.all(
          [0, 1, 2].map((j) =>
            store.write(async (context) => {
              const key = Buffer.from(`k${(i * 3 + j) % 23}`);
              const previous = context.get(key);
              if (previous && (i + j) % 5 === 0) context.delete(previous);
              else context.put(key, Buffer.from(`v${i}.${j}`), 0n, previous);
            }),
          ),
        );
        if (i === 150) await store.compact(store.revision - 40, true);
      }
      const expected = await observe(store);
      // A data dir whose RocksDB holds none of it: only the log, as after a
      // power loss that took RocksDB's unsynced writes.
      await cp(join(dir, "brain-wal"), join(copy, "brain-wal"), { recursive: true });
      await store.close();
      const replayed = await MvccStore.open(await openRocksEngine(copy), { sync: true });
      expect(await observe(replayed)).toEqual(expected);
      await replayed.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
      await rm(copy, { recursive: true, force: true });
    }
  });
});
