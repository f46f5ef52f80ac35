import type { ReadView } from "../storage/engine.js";
import {
  currentKey,
  decodeUint64,
  historyAfter,
  historyKey,
  historyPrefix,
  logKey,
  metaKey,
  parseHistoryKey,
  parseLogKey,
  Table,
  tableEnd,
  tableStart,
  userKeyOfCurrent,
} from "../storage/keys.js";
import { keyId, type KeyRange, type KeyValue, type WatchEvent } from "./kv.js";
import { decodeLogEntry, decodeRecord, EventKind } from "./record.js";

export const metaNames = {
  revision: "revision",
  compactRevision: "compact-revision",
  compactedThrough: "compacted-through",
  clusterId: "cluster-id",
  memberId: "member-id",
} as const;

export interface RangeResult {
  kvs: KeyValue[];
  /** Keys in the range at the revision, regardless of limit. */
  count: number;
}

const noLimit = Number.POSITIVE_INFINITY;

/**
 * Reads of the MVCC store at one consistent point. `revision` is read from
 * the same engine snapshot as everything else, so a response's header
 * revision always matches the data in it.
 */
/**
 * Counts live keys in [start, end) from memory when the store is still at
 * `revision`; undefined when it has moved on (then the view counts itself).
 */
export type LiveKeyCounter = (revision: number, start: Uint8Array, end: Uint8Array | undefined) => number | undefined;

export class StoreView {
  private constructor(
    private readonly view: ReadView,
    readonly revision: number,
    private readonly countLive: LiveKeyCounter | undefined,
  ) {}

  static async open(view: ReadView, countLive?: LiveKeyCounter): Promise<StoreView> {
    const raw = await view.get(metaKey(metaNames.revision));
    return new StoreView(view, raw === undefined ? 1 : decodeUint64(raw), countLive);
  }

  close(): Promise<void> {
    return this.view.close();
  }

  /** Current value of one key (undefined when absent). */
  async getCurrent(key: Uint8Array): Promise<KeyValue | undefined> {
    const raw = await this.view.get(currentKey(key));
    return raw === undefined ? undefined : { key, ...decodeRecord(raw) };
  }

  /**
   * Keys in `range` as of `revision` (this view's revision or older), in key
   * order. Stops collecting after `limit` keys but counts all of them unless
   * `countAll` is false.
   */
  async range(range: KeyRange, revision: number, limit = noLimit, countAll = true): Promise<RangeResult> {
    if (revision >= this.revision) return this.rangeCurrent(range, limit, countAll);
    return this.rangeHistory(range, revision, limit, countAll);
  }

  private async rangeCurrent(range: KeyRange, limit: number, countAll: boolean): Promise<RangeResult> {
    if (range.single) {
      const kv = await this.getCurrent(range.start);
      return { kvs: kv && limit > 0 ? [kv] : [], count: kv ? 1 : 0 };
    }
    const kvs: KeyValue[] = [];
    const from = currentKey(range.start);
    const to = range.end === undefined ? tableEnd(Table.Current) : currentKey(range.end);
    if (limit > 0) {
      await this.view.scan(from, to, (storageKey, value) => {
        // Each row the engine returns is its own copy: keep it, no second copy.
        kvs.push({ key: userKeyOfCurrent(storageKey), ...decodeRecord(value) });
        return kvs.length < limit;
      });
    }
    // Past the limit only the number of keys matters: count without values.
    let count = kvs.length;
    if (countAll && kvs.length >= limit) {
      count = this.countLive?.(this.revision, range.start, range.end) ?? (await this.view.count(from, to));
    }
    return { kvs, count };
  }

  private async rangeHistory(range: KeyRange, revision: number, limit: number, countAll: boolean): Promise<RangeResult> {
    const kvs: KeyValue[] = [];
    let count = 0;
    const from = historyPrefix(range.start);
    const to = range.single
      ? historyAfter(range.start)
      : range.end === undefined
        ? tableEnd(Table.History)
        : historyPrefix(range.end);
    // Versions of a key are contiguous, newest first. Take the first one at
    // or below `revision`, then skip the key's older versions: by stepping
    // over a few, or by seeking past the key when it has many.
    let taken: string | undefined;
    let skipped = 0;
    await this.view.scan(from, to, (storageKey, value) => {
      const { key, revision: at } = parseHistoryKey(storageKey);
      const id = keyId(key);
      if (id === taken) {
        return ++skipped < 8 ? true : historyAfter(key);
      }
      if (at.main > revision) return historyKey(key, { main: revision, sub: Number.MAX_SAFE_INTEGER });
      taken = id;
      skipped = 0;
      const record = decodeRecord(value.slice());
      if (!record.tombstone) {
        count++;
        if (kvs.length < limit) kvs.push({ key, ...record });
        if (!countAll && kvs.length >= limit) return false;
      }
      return true;
    });
    return { kvs, count };
  }

  /** The newest version of `key` strictly before `revision`, if live. */
  async getBefore(key: Uint8Array, revision: { main: number; sub: number }): Promise<KeyValue | undefined> {
    let found: KeyValue | undefined;
    const start = revision.sub > 0
      ? historyKey(key, { main: revision.main, sub: revision.sub - 1 })
      : historyKey(key, { main: revision.main - 1, sub: Number.MAX_SAFE_INTEGER });
    await this.view.scan(start, historyAfter(key), (_, value) => {
      const record = decodeRecord(value.slice());
      if (!record.tombstone) found = { key, ...record };
      return false;
    });
    return found;
  }

  /**
   * Replays the revision log from `fromRevision` through this view's
   * revision, in order, up to `maxEvents` events (a revision is never split).
   * Returns the next revision to read.
   */
  async readEvents(
    fromRevision: number,
    maxEvents: number,
    withPrevKv: boolean,
    visit: (main: number, event: WatchEvent) => void,
  ): Promise<number> {
    const entries: Array<{ main: number; sub: number; kind: EventKind; key: Uint8Array }> = [];
    let lastMain = fromRevision - 1;
    await this.view.scan(logKey({ main: fromRevision, sub: 0 }), logKey({ main: this.revision + 1, sub: 0 }), (storageKey, value) => {
      const at = parseLogKey(storageKey);
      if (entries.length >= maxEvents && at.main !== lastMain) return false;
      const { kind, key } = decodeLogEntry(value);
      entries.push({ ...at, kind, key: key.slice() });
      lastMain = at.main;
      return true;
    });
    for (const entry of entries) {
      const at = { main: entry.main, sub: entry.sub };
      const raw = await this.view.get(historyKey(entry.key, at));
      if (raw === undefined) continue; // compacted away meanwhile
      const record = decodeRecord(raw.slice());
      const kv: KeyValue =
        entry.kind === EventKind.Delete
          ? { key: entry.key, createRevision: 0, modRevision: entry.main, version: 0, lease: 0n, value: new Uint8Array() }
          : { key: entry.key, ...record };
      const prevKv = withPrevKv ? await this.getBefore(entry.key, at) : undefined;
      visit(entry.main, { type: entry.kind === EventKind.Delete ? "delete" : "put", kv, prevKv, sub: entry.sub });
    }
    return entries.length === 0 ? this.revision + 1 : Math.max(lastMain + 1, fromRevision);
  }

  /** Raw scan of one table, for hashing, snapshots and lease loading. */
  scanTable(table: Table, visit: (key: Uint8Array, value: Uint8Array) => boolean): Promise<void> {
    return this.view.scan(tableStart(table), tableEnd(table), visit);
  }

  async meta(name: string): Promise<Uint8Array | undefined> {
    return this.view.get(metaKey(name));
  }
}
