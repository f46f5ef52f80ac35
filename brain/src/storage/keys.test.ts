import { describe, expect, it } from "vitest";
import { historyAfter, historyKey, historyPrefix, parseHistoryKey } from "./keys.js";

const compare = (a: Uint8Array, b: Uint8Array) => Buffer.compare(Buffer.from(a), Buffer.from(b));

// Keys chosen to trip an escape: zero bytes, prefixes of each other, 0xff.
const keys = [
  Uint8Array.of(),
  Uint8Array.of(0),
  Uint8Array.of(0, 0),
  Uint8Array.of(0, 1),
  Uint8Array.of(1),
  Uint8Array.of(1, 0),
  Uint8Array.of(1, 0, 0xff),
  Uint8Array.of(1, 0xff),
  Uint8Array.of(0xff),
  Uint8Array.of(0xff, 0),
];

describe("history key layout", () => {
  it("keeps user-key order and groups every version of a key together, newest first", () => {
    const entries = keys.flatMap((key, k) =>
      [1, 7, 30].flatMap((main) => [0, 2].map((sub) => ({ k, main, sub, storage: historyKey(key, { main, sub }) }))),
    );
    const sorted = [...entries].sort((a, b) => compare(a.storage, b.storage));
    const expected = [...entries].sort((a, b) => a.k - b.k || b.main - a.main || b.sub - a.sub);
    expect(sorted.map((e) => [e.k, e.main, e.sub])).toEqual(expected.map((e) => [e.k, e.main, e.sub]));
  });

  it("bounds ranges: [prefix(a), prefix(b)) holds exactly the keys in [a, b)", () => {
    for (const a of keys) {
      for (const b of keys) {
        for (const key of keys) {
          const entry = historyKey(key, { main: 5, sub: 0 });
          const inStorage = compare(entry, historyPrefix(a)) >= 0 && compare(entry, historyPrefix(b)) < 0;
          const inKeys = compare(key, a) >= 0 && compare(key, b) < 0;
          expect(inStorage, `${key} in [${a}, ${b})`).toBe(inKeys);
        }
      }
    }
  });

  it("historyAfter(key) sorts after the key's versions and before the next key's", () => {
    for (const [i, key] of keys.entries()) {
      expect(compare(historyAfter(key), historyKey(key, { main: 1, sub: 0 }))).toBeGreaterThan(0);
      for (const later of keys.slice(i + 1)) {
        expect(compare(historyAfter(key), historyKey(later, { main: 1_000_000, sub: 9 }))).toBeLessThan(0);
      }
    }
  });

  it("parses back what it wrote", () => {
    for (const key of keys) {
      const parsed = parseHistoryKey(historyKey(key, { main: 123456789, sub: 42 }));
      expect([...parsed.key]).toEqual([...key]);
      expect(parsed.revision).toEqual({ main: 123456789, sub: 42 });
    }
  });
});
