import { describe, expect, it } from "vitest";
import { SortedKeySet } from "./key-set.js";

describe("SortedKeySet", () => {
  it("counts ranges like a brute-force set through many inserts and deletes", () => {
    // A fixed-seed generator keeps the test reproducible.
    let seed = 42;
    const random = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    const keyOf = () => String.fromCharCode(...Array.from({ length: 1 + Math.floor(random() * 3) }, () => Math.floor(random() * 6) * 50));
    const set = new SortedKeySet();
    const reference = new Set<string>();
    for (let step = 0; step < 5000; step++) {
      const key = keyOf();
      if (random() < 0.65) {
        set.add(key);
        reference.add(key);
      } else {
        set.delete(key);
        reference.delete(key);
      }
      if (step % 50 === 0) {
        const [a, b] = [keyOf(), keyOf()].sort();
        const expected = [...reference].filter((k) => k >= a! && k < b!).length;
        expect(set.count(a!, b!)).toBe(expected);
        expect(set.count(a!, undefined)).toBe([...reference].filter((k) => k >= a!).length);
        expect(set.size).toBe(reference.size);
      }
    }
  });

  it("splits chunks and stays ordered past a thousand keys", () => {
    const set = new SortedKeySet();
    for (let i = 2000; i > 0; i--) set.add(`k${String(i).padStart(5, "0")}`);
    expect(set.size).toBe(2000);
    expect(set.count("k00001", "k01001")).toBe(1000);
    expect(set.count("k01500", undefined)).toBe(501);
    expect(set.count("z", undefined)).toBe(0);
  });
});
