import { describe, expect, it } from "vitest";
import { inRange, keyRange } from "../mvcc/kv.js";
import { groupId, WatcherGroups, type WatcherOptions } from "./watcher-groups.js";

const bytes = (text: string) => new TextEncoder().encode(text);

/** A small deterministic generator, so a failure reproduces. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

describe("watcher groups", () => {
  it("find exactly the groups whose range holds a key (against a brute-force scan)", () => {
    const next = random(7);
    const key = () => bytes(String.fromCharCode(97 + Math.floor(next() * 6), 97 + Math.floor(next() * 6)));
    const groups = new WatcherGroups<number>();
    const members: Array<{ watcher: number; options: WatcherOptions }> = [];
    for (let watcher = 0; watcher < 300; watcher++) {
      const shape = next();
      const start = key();
      const range =
        shape < 0.3 ? keyRange(start, new Uint8Array()) : shape < 0.4 ? keyRange(start, Uint8Array.of(0)) : keyRange(start, key());
      const options = { range, noPut: next() < 0.2, noDelete: next() < 0.2, prevKv: next() < 0.5 };
      groups.add(watcher, options);
      members.push({ watcher, options });
    }
    // Remove a third, so the index is exercised after deletions too.
    for (const { watcher, options } of members.splice(0, 100)) {
      const group = groups.add(watcher, options);
      groups.delete(watcher, group);
    }
    expect(groups.size).toBe(200);
    for (let i = 0; i < 500; i++) {
      const probe = key();
      const found = new Set<number>();
      groups.forEachHolding(probe, (group) => {
        for (const watcher of group.members) found.add(watcher);
      });
      const expected = members.filter(({ options }) => inRange(options.range, probe)).map(({ watcher }) => watcher);
      expect([...found].sort((a, b) => a - b)).toEqual(expected.sort((a, b) => a - b));
    }
  });

  it("put watchers with the same range and options in one group, and no others", () => {
    const groups = new WatcherGroups<string>();
    const prefix = { range: keyRange(bytes("/registry/pods/"), bytes("/registry/pods0")), noPut: false, noDelete: false, prevKv: true };
    const a = groups.add("a", prefix);
    const b = groups.add("b", { ...prefix, range: keyRange(bytes("/registry/pods/"), bytes("/registry/pods0")) });
    const c = groups.add("c", { ...prefix, prevKv: false });
    const d = groups.add("d", { ...prefix, range: keyRange(bytes("/registry/pods/"), new Uint8Array()) });
    expect(b).toBe(a);
    expect(c).not.toBe(a);
    expect(d).not.toBe(a);
    expect(groups.groupCount).toBe(3);
    // A key range and a single key must not collide however the bytes line up.
    expect(groupId({ ...prefix, range: keyRange(bytes("ab"), new Uint8Array()) })).not.toBe(
      groupId({ ...prefix, range: keyRange(bytes("a"), bytes("b")) }),
    );
    groups.delete("a", a);
    groups.delete("b", a);
    expect(groups.groupCount).toBe(2);
    let seen = 0;
    groups.forEachHolding(bytes("/registry/pods/x"), (group) => (seen += group.members.size));
    expect(seen).toBe(1);
  });
});
