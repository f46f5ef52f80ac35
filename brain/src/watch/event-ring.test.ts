import { describe, expect, it } from "vitest";
import type { WatchEvent } from "../mvcc/kv.js";
import { EventRing, eventBytes } from "./event-ring.js";

const put = (key: string, revision: number, valueBytes = 10): WatchEvent => ({
  type: "put",
  kv: { key: new TextEncoder().encode(key), value: new Uint8Array(valueBytes), createRevision: revision, modRevision: revision, version: 1, lease: 0n },
  sub: 0,
});

function readAll(ring: EventRing, from: number): number[] {
  const seen: number[] = [];
  ring.read(from, (revision) => {
    seen.push(revision);
    return true;
  });
  return seen;
}

describe("the recent-events ring", () => {
  it("covers every revision it received, including ones without events", () => {
    const ring = new EventRing(10, { maxEvents: 100, maxBytes: 1 << 20 });
    expect(ring.covers(10)).toBe(false);
    ring.append(11, [put("a", 11)]);
    ring.advance(13); // e.g. a compaction: a revision-less commit
    ring.append(14, [put("b", 14), put("c", 14)]);
    expect(readAll(ring, 11)).toEqual([11, 14]);
    expect(readAll(ring, 12)).toEqual([14]);
    expect(ring.read(15, () => true)).toBe(15);
    expect(() => ring.append(14, [])).toThrow();
  });

  it("evicts the oldest revisions by event count and by bytes, and says what it no longer holds", () => {
    const byCount = new EventRing(0, { maxEvents: 3, maxBytes: 1 << 20 });
    for (let revision = 1; revision <= 5; revision++) byCount.append(revision, [put("k", revision)]);
    expect(byCount.eventCount).toBe(3);
    expect(byCount.firstRevision).toBe(3);
    expect(byCount.covers(2)).toBe(false);
    expect(() => byCount.read(2, () => true)).toThrow();
    expect(readAll(byCount, 3)).toEqual([3, 4, 5]);

    const big = put("k", 1, 1000);
    const byBytes = new EventRing(0, { maxEvents: 1000, maxBytes: eventBytes(big) * 2 });
    for (let revision = 1; revision <= 4; revision++) byBytes.append(revision, [put("k", revision, 1000)]);
    expect(byBytes.byteCount).toBeLessThanOrEqual(eventBytes(big) * 2);
    expect(readAll(byBytes, byBytes.firstRevision)).toEqual([3, 4]);
    // One revision larger than the whole ring is not held at all.
    byBytes.append(5, [put("k", 5, 10_000)]);
    expect(byBytes.eventCount).toBe(0);
    expect(byBytes.firstRevision).toBe(6);
  });

  it("stops where the visitor says and names the revision to read next", () => {
    const ring = new EventRing(0, { maxEvents: 10_000, maxBytes: 1 << 30 });
    for (let revision = 1; revision <= 5000; revision++) ring.append(revision, [put("k", revision)]);
    let visited = 0;
    const next = ring.read(1234, () => ++visited <= 10);
    expect(next).toBe(1244);
    expect(readAll(ring, 4999)).toEqual([4999, 5000]);
  });
});
