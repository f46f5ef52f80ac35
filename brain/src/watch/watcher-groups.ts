import { compareBytes, keyId, type KeyRange } from "../mvcc/kv.js";

/** What decides which events a watcher gets and how they are encoded. */
export interface WatcherOptions {
  range: KeyRange;
  noPut: boolean;
  noDelete: boolean;
  prevKv: boolean;
}

/**
 * Watchers with the same range and options: they receive exactly the same
 * events in the same form, so the hub matches and the service encodes once
 * per group, not once per watcher.
 */
export class WatcherGroup<W> {
  readonly members = new Set<W>();

  constructor(
    readonly id: string,
    readonly options: WatcherOptions,
  ) {}
}

/** Identity of a group: range and options, byte-exact. */
export function groupId(options: WatcherOptions): string {
  const { range } = options;
  const end = range.single ? "s" : range.end === undefined ? "u" : `e${keyId(range.end)}`;
  const flags = `${options.noPut ? 1 : 0}${options.noDelete ? 1 : 0}${options.prevKv ? 1 : 0}`;
  return `${flags}${end.length}:${end}${keyId(range.start)}`;
}

/**
 * The groups of watchers, indexed for "which groups watch this key": single
 * keys by map, ranges as a list sorted by start with a running maximum of
 * their ends, so a lookup stops at the first range that cannot reach the key
 * (the job etcd's interval tree does in watcher_group.go).
 */
export class WatcherGroups<W> {
  private readonly groups = new Map<string, WatcherGroup<W>>();
  private readonly singleKeys = new Map<string, WatcherGroup<W>[]>();
  private ranges: WatcherGroup<W>[] = [];
  /** reach[i]: the largest end among ranges[0..i]; undefined = unbounded. */
  private reach: Array<Uint8Array | undefined> = [];
  private watchers = 0;

  get size(): number {
    return this.watchers;
  }

  get groupCount(): number {
    return this.groups.size;
  }

  add(watcher: W, options: WatcherOptions): WatcherGroup<W> {
    const id = groupId(options);
    let group = this.groups.get(id);
    if (!group) {
      group = new WatcherGroup<W>(id, options);
      this.groups.set(id, group);
      this.index(group);
    }
    if (!group.members.has(watcher)) {
      group.members.add(watcher);
      this.watchers++;
    }
    return group;
  }

  delete(watcher: W, group: WatcherGroup<W>): void {
    if (!group.members.delete(watcher)) return;
    this.watchers--;
    if (group.members.size === 0 && this.groups.get(group.id) === group) {
      this.groups.delete(group.id);
      this.unindex(group);
    }
  }

  /** Calls `visit` once for every group whose range holds `key`. */
  forEachHolding(key: Uint8Array, visit: (group: WatcherGroup<W>) => void): void {
    const singles = this.singleKeys.get(keyId(key));
    if (singles) for (const group of singles) visit(group);
    // Last range starting at or before the key; earlier ones are candidates
    // only while the running maximum of their ends is above the key.
    let low = 0;
    let high = this.ranges.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (compareBytes(this.ranges[middle]!.options.range.start, key) <= 0) low = middle + 1;
      else high = middle;
    }
    for (let i = low - 1; i >= 0; i--) {
      const reach = this.reach[i];
      if (reach !== undefined && compareBytes(reach, key) <= 0) break;
      const end = this.ranges[i]!.options.range.end;
      if (end === undefined || compareBytes(key, end) < 0) visit(this.ranges[i]!);
    }
  }

  private index(group: WatcherGroup<W>): void {
    const { range } = group.options;
    if (range.single) {
      const id = keyId(range.start);
      const list = this.singleKeys.get(id);
      if (list) list.push(group);
      else this.singleKeys.set(id, [group]);
      return;
    }
    let at = 0;
    while (at < this.ranges.length && compareBytes(this.ranges[at]!.options.range.start, range.start) <= 0) at++;
    this.ranges.splice(at, 0, group);
    this.recomputeReach(at);
  }

  private unindex(group: WatcherGroup<W>): void {
    const { range } = group.options;
    if (range.single) {
      const id = keyId(range.start);
      const list = this.singleKeys.get(id)?.filter((other) => other !== group) ?? [];
      if (list.length > 0) this.singleKeys.set(id, list);
      else this.singleKeys.delete(id);
      return;
    }
    const at = this.ranges.indexOf(group);
    if (at < 0) return;
    this.ranges.splice(at, 1);
    this.reach.splice(at, 1);
    this.recomputeReach(at);
  }

  private recomputeReach(from: number): void {
    this.reach.length = this.ranges.length;
    for (let i = from; i < this.ranges.length; i++) {
      const end = this.ranges[i]!.options.range.end;
      const before = i === 0 ? null : this.reach[i - 1];
      if (before === undefined || end === undefined) this.reach[i] = undefined;
      else this.reach[i] = before === null || compareBytes(end, before) > 0 ? end : before;
    }
  }
}
