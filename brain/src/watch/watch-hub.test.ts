import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitFor } from "@wharf/testkit";
import { describe, expect, it } from "vitest";
import { inRange, keyRange, type WatchEvent } from "../mvcc/kv.js";
import { MvccStore } from "../mvcc/store.js";
import { openRocksEngine } from "../storage/rocks-engine.js";
import { WatchHub, type Watcher, type WatcherSpec } from "./watch-hub.js";

// A deterministic pseudo-random sequence, so a failure can be replayed.
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

const text = (bytes: Uint8Array) => Buffer.from(bytes).toString();
const seen = (event: WatchEvent, prevKv: boolean) => ({
  revision: event.kv.modRevision,
  type: event.type,
  key: text(event.kv.key),
  value: text(event.kv.value),
  ...(prevKv ? { prev: event.prevKv ? text(event.prevKv.value) : undefined } : {}),
});

type Entry = { event: ReturnType<typeof seen> } | { progress: number };

describe("the watch hub on a real store", () => {
  it("gives every watcher its events once and in order, through a tiny ring, store reads, refusals and mid-pass joins", async () => {
    const dir = await mkdtemp(join(tmpdir(), "brain-watch-hub-"));
    const store = await MvccStore.open(await openRocksEngine(dir), { sync: false });
    // Tiny limits, so every path runs: the ring holds 12 events, live
    // responses split past 300 bytes, catch-up batches past 2,000.
    const hub = new WatchHub(store, { ring: { maxEvents: 12, maxBytes: 1 << 20 }, liveBatchBytes: 300, batchBytes: 2000, storeReaders: 2 });
    const next = random(23);
    const key = (i: number) => Buffer.from(`k${String(i).padStart(2, "0")}`);
    const watchers: Array<{ watcher: Watcher; spec: WatcherSpec; log: Entry[]; refusals: number }> = [];
    try {
      const addWatcher = () => {
        const a = Math.floor(next() * 12);
        const b = Math.min(12, a + 1 + Math.floor(next() * 6));
        const shape = next();
        const spec: WatcherSpec = {
          range: shape < 0.3 ? keyRange(key(a), new Uint8Array()) : keyRange(key(a), key(b)),
          noPut: next() < 0.15,
          noDelete: next() < 0.15,
          prevKv: next() < 0.5,
          // Far back (storage), recent (ring) or from now on.
          startRevision: Math.max(1, store.revision + 1 - Math.floor(next() * next() * 80)),
        };
        const record = { spec, log: [] as Entry[], refusals: 0, watcher: undefined as unknown as Watcher };
        let full = false;
        record.watcher = hub.add(spec, {
          deliver: (delivery) => {
            // A stream that is full now and then, draining a little later.
            if (full || next() < 0.1) {
              if (!full) {
                full = true;
                record.refusals++;
                setTimeout(() => {
                  full = false;
                  hub.resume(record.watcher);
                }, next() * 5);
              }
              return false;
            }
            for (const event of delivery.events) record.log.push({ event: seen(event, spec.prevKv) });
            return true;
          },
          compacted: () => {
            throw new Error("nothing is compacted in this test");
          },
        });
        watchers.push(record);
      };

      for (let step = 0; step < 300; step++) {
        if (step % 10 === 0) addWatcher();
        // Several requests per group: a pass holds several revisions.
        const requests = Array.from({ length: 1 + Math.floor(next() * 4) }, () => next());
        const writes = Promise.allSettled(
          requests.map((choice) =>
            store.write(async (context) => {
              const target = key(Math.floor(next() * 12));
              const previous = context.get(target);
              if (choice < 0.7) context.put(target, Buffer.from(`v${step}-${choice.toFixed(3)}`), 0n, previous);
              else if (previous) context.delete(previous);
            }),
          ),
        );
        // Progress claims, asked for at random moments, recorded by synced watchers only.
        for (const record of watchers) {
          if (next() < 0.2) hub.whenPublished(() => hub.isSynced(record.watcher) && record.log.push({ progress: hub.revision }));
        }
        if (next() < 0.7) await writes;
      }
      await waitFor(async () => hub.revision === store.revision && watchers.every(({ watcher }) => hub.isSynced(watcher)), 20_000, "every watcher synced");

      expect(watchers.reduce((total, { refusals }) => total + refusals, 0)).toBeGreaterThan(10);
      for (const { spec, log } of watchers) {
        const expected: Array<ReturnType<typeof seen>> = [];
        await store.readEvents(spec.startRevision, 1e6, spec.prevKv, (_, event) => {
          if ((event.type === "put" ? spec.noPut : spec.noDelete) || !inRange(spec.range, event.kv.key)) return;
          expected.push(seen(event, spec.prevKv));
        });
        const events = log.flatMap((entry) => ("event" in entry ? [entry.event] : []));
        expect(events).toEqual(expected);
        let covered = 0;
        for (const entry of log) {
          if ("progress" in entry) covered = Math.max(covered, entry.progress);
          else expect(entry.event.revision).toBeGreaterThan(covered);
        }
      }
    } finally {
      hub.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("cuts a store read that outgrew its byte budget into deliveries at revision boundaries", async () => {
    const dir = await mkdtemp(join(tmpdir(), "brain-watch-hub-"));
    const store = await MvccStore.open(await openRocksEngine(dir), { sync: false });
    const batchBytes = 10_000;
    // The ring keeps two events, so a watcher from revision 1 reads the store.
    const hub = new WatchHub(store, { ring: { maxEvents: 2, maxBytes: 1 << 20 }, liveBatchBytes: batchBytes, batchBytes, storeReaders: 1 });
    try {
      // Small events first, so the store reads are sized for small events,
      // then a run of large ones that one such read takes whole.
      const sizes = [...Array.from({ length: 30 }, () => 10), ...Array.from({ length: 30 }, () => 8_000)];
      for (const [i, size] of sizes.entries()) {
        await store.write(async (context) => {
          const key = Buffer.from(`k${i}`);
          context.put(key, Buffer.alloc(size, 97), 0n, context.get(key));
        });
      }
      const deliveries: WatchEvent[][] = [];
      hub.add(
        { range: keyRange(Buffer.from("k"), Buffer.from("l")), noPut: false, noDelete: false, prevKv: false, startRevision: 1 },
        {
          deliver: (delivery) => {
            deliveries.push(delivery.events);
            return true;
          },
          compacted: () => {
            throw new Error("nothing is compacted in this test");
          },
        },
      );
      await waitFor(async () => deliveries.flat().length === sizes.length, 20_000, "every event delivered");
      const revisions = deliveries.flat().map((event) => event.kv.modRevision);
      expect(revisions).toEqual([...revisions].sort((a, b) => a - b));
      expect(new Set(revisions).size).toBe(sizes.length);
      // Each delivery stays within the budget plus the one revision that crossed it.
      for (const events of deliveries) {
        const bytes = events.reduce((total, event) => total + event.kv.value.length, 0);
        expect(bytes).toBeLessThanOrEqual(batchBytes + 8_000);
      }
      expect(deliveries.length).toBeGreaterThanOrEqual(Math.ceil((30 * 8_000) / (batchBytes + 8_000)));
    } finally {
      hub.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
