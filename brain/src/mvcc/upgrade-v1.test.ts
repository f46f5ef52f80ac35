import { cp, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Lessor } from "../lease/lessor.js";
import { openRocksEngine } from "../storage/rocks-engine.js";
import { metaKey, Table, tableEnd, tableStart } from "../storage/keys.js";
import type { KeyValue } from "./kv.js";
import { formatVersion, metaNames } from "./meta.js";
import { MvccStore } from "./store.js";
import { decodeKeyValue } from "./kv-wire.js";

const fixture = join(import.meta.dirname, "fixtures", "v1-data-dir");

interface Expected {
  revision: number;
  compactRevision: number;
  ranges: Record<string, { count: number; kvs: unknown[] }>;
  events: unknown[];
  leases: Array<{ id: string; ttl: number; keys: string[] }>;
}

const show = (kv: KeyValue) => ({
  key: Buffer.from(kv.key).toString("hex"),
  value: Buffer.from(kv.value).toString("hex"),
  createRevision: kv.createRevision,
  modRevision: kv.modRevision,
  version: kv.version,
  lease: String(kv.lease),
});

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function answers(dataDir: string) {
  const lessor = new Lessor();
  const store = await MvccStore.open(await openRocksEngine(dataDir), { sync: true }, lessor);
  lessor.bind(store);
  try {
    const ranges: Expected["ranges"] = {};
    for (let r = store.compactRevision; r <= store.revision; r++) {
      const { rows, count } = store.readRange({ start: Uint8Array.of(0), end: undefined, single: false }, r, Number.POSITIVE_INFINITY, true);
      ranges[r] = { count, kvs: rows.map((row) => show(decodeKeyValue(row))) };
    }
    const events: unknown[] = [];
    await store.readEvents(store.compactRevision, 1e6, true, (rev, e) =>
      events.push({ rev, type: e.type, sub: e.sub, kv: show(e.kv), prevKv: e.prevKv ? show(e.prevKv) : null }),
    );
    const leases = lessor.list().map((id) => {
      const info = lessor.lookup(id)!;
      return { id: String(id), ttl: info.ttl, keys: info.keys.map((k) => Buffer.from(k).toString("hex")) };
    });
    return { revision: store.revision, compactRevision: store.compactRevision, ranges, events, leases };
  } finally {
    lessor.stop();
    await store.close();
  }
}

describe("a data dir in storage format 1", () => {
  it("is upgraded in place at open and answers every retained revision, the watch log and the leases as format 1 did", async () => {
    const expected = JSON.parse(await readFile(join(fixture, "expected.json"), "utf8")) as Expected;
    const dir = await mkdtemp(join(tmpdir(), "brain-v1-"));
    dirs.push(dir);
    await cp(join(fixture, "data"), dir, { recursive: true });

    expect(await answers(dir)).toEqual(expected);

    // The old tables are gone and the format is recorded; a second open reads format 2 as is.
    const engine = await openRocksEngine(dir);
    try {
      const view = engine.view();
      for (const table of [Table.Current, Table.History, Table.Log]) expect(await view.count(tableStart(table), tableEnd(table))).toBe(0);
      await view.close();
      expect(Buffer.from(engine.getMany([metaKey(metaNames.formatVersion)])[0]!).readBigUInt64BE()).toBe(BigInt(formatVersion));
    } finally {
      await engine.close();
    }
    expect(await answers(dir)).toEqual(expected);
  });

  it("refuses a data dir written in a newer format", async () => {
    const dir = await mkdtemp(join(tmpdir(), "brain-v9-"));
    dirs.push(dir);
    const engine = await openRocksEngine(dir);
    await (await MvccStore.open(engine, { sync: true })).close();
    const again = await openRocksEngine(dir);
    await again.write([{ type: "put", key: metaKey(metaNames.formatVersion), value: Buffer.from([0, 0, 0, 0, 0, 0, 0, 9]) }], { sync: true });
    await expect(MvccStore.open(again, { sync: true })).rejects.toThrow(/storage format 9; this brain reads format 2/);
    await again.close();
  });
});
