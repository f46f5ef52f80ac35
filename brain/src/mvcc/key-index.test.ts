import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { openRocksEngine } from "../storage/rocks-engine.js";
import { decodeKeyValue } from "./kv-wire.js";
import { MvccStore } from "./store.js";

// A deterministic pseudo-random sequence, so a failure can be replayed.
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

const all = { start: Uint8Array.of(0), end: undefined, single: false };

/** Everything reads can see: every retained revision's full range, and the watch log. */
async function observe(store: MvccStore) {
  const ranges: unknown[] = [];
  for (let r = store.compactRevision; r <= store.revision; r++) {
    const { rows, count } = store.readRange(all, r, Number.POSITIVE_INFINITY, true);
    const limited = store.readRange(all, r, 2, true);
    ranges.push({ r, count, limitedCount: limited.count, kvs: rows.map((row) => decodeKeyValue(row)) });
  }
  const events: unknown[] = [];
  await store.readEvents(store.compactRevision, 1e6, true, (revision, event) => events.push({ revision, event }));
  return { ranges, events, index: store.index.dump(), revision: store.revision, compactRevision: store.compactRevision };
}

describe("the key index", () => {
  it("rebuilt at open from storage equals the one the writes built, through puts, deletes, failed requests and compactions", async () => {
    const dir = await mkdtemp(join(tmpdir(), "brain-index-"));
    try {
      let store = await MvccStore.open(await openRocksEngine(dir), { sync: false });
      const next = random(11);
      const key = () => Buffer.from(`k${Math.floor(next() * 12)}`);
      for (let step = 0; step < 400; step++) {
        const dice = next();
        if (dice < 0.03 && store.revision > store.compactRevision + 5) {
          await store.compact(store.revision - Math.floor(next() * 5), true);
          continue;
        }
        // Several requests per group, one of which may fail after writing.
        const requests = Array.from({ length: 1 + Math.floor(next() * 3) }, () => next());
        await Promise.allSettled(
          requests.map((choice) =>
            store.write(async (context) => {
              const target = key();
              const previous = context.get(target);
              if (choice < 0.6) {
                context.put(target, Buffer.from(`v${step}`), 0n, previous);
              } else if (choice < 0.85) {
                if (previous) context.delete(previous);
              } else {
                const other = key();
                if (other.equals(target)) return;
                context.put(target, Buffer.from("doomed"), 0n, previous);
                context.put(other, Buffer.from("doomed"), 0n, context.get(other));
                throw new Error("fails after writing");
              }
            }),
          ),
        );
      }
      expect(store.revision).toBeGreaterThan(150);
      expect(store.compactRevision).toBeGreaterThan(0);
      const before = await observe(store);
      // Counts from the live-key set agree with walking the index.
      for (const { count, limitedCount } of before.ranges as Array<{ count: number; limitedCount: number }>) expect(limitedCount).toBe(count);
      await store.close();
      store = await MvccStore.open(await openRocksEngine(dir), { sync: false });
      expect(await observe(store)).toEqual(before);
      await store.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
