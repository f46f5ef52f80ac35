import type { WatchEvent } from "../mvcc/kv.js";

/** How much recent history the ring keeps; whichever limit is reached first evicts. */
export interface RingLimits {
  maxEvents: number;
  maxBytes: number;
}

export const defaultRingLimits: RingLimits = { maxEvents: 8192, maxBytes: 8 * 1024 * 1024 };

interface RingEntry {
  revision: number;
  events: WatchEvent[];
  bytes: number;
}

/** Per-event bookkeeping beyond key and value bytes (objects, arrays, numbers). */
const eventOverheadBytes = 160;

export function eventBytes(event: WatchEvent): number {
  let bytes = eventOverheadBytes + event.kv.key.length + event.kv.value.length;
  if (event.prevKv) bytes += eventOverheadBytes + event.prevKv.key.length + event.prevKv.value.length;
  return bytes;
}

/**
 * The events of the most recent revisions, as committed (prev_kv included),
 * so a watcher a little behind and prev_kv catch-up are served from memory
 * instead of the storage engine. It covers every revision from
 * `firstRevision` through `lastRevision`: each one either is here or had no
 * events. Bounded by event count and bytes; the oldest revisions go first.
 */
export class EventRing {
  private entries: RingEntry[] = [];
  /** Index of the oldest live entry; dropped entries are spliced off in bulk. */
  private head = 0;
  private events = 0;
  private bytes = 0;
  /** Lowest revision whose events are all here. */
  firstRevision: number;
  /** Newest revision appended (events or not). */
  lastRevision: number;

  constructor(
    revision: number,
    private readonly limits: RingLimits = defaultRingLimits,
  ) {
    this.firstRevision = revision + 1;
    this.lastRevision = revision;
  }

  get eventCount(): number {
    return this.events;
  }

  get byteCount(): number {
    return this.bytes;
  }

  /** Appends one committed revision; revisions must arrive in increasing order. */
  append(revision: number, events: WatchEvent[]): void {
    if (revision <= this.lastRevision) throw new Error(`event ring: revision ${revision} after ${this.lastRevision}`);
    this.lastRevision = revision;
    if (events.length === 0) return;
    let bytes = 0;
    for (const event of events) bytes += eventBytes(event);
    this.entries.push({ revision, events, bytes });
    this.events += events.length;
    this.bytes += bytes;
    this.evict();
  }

  /** Moves the end forward over revisions that had no events (e.g. a compaction). */
  advance(revision: number): void {
    if (revision > this.lastRevision) this.lastRevision = revision;
  }

  /** Whether every event from `revision` on is in the ring. */
  covers(revision: number): boolean {
    return revision >= this.firstRevision;
  }

  /**
   * Visits the revisions from `fromRevision` on, in order, while `visit`
   * returns true; returns the next revision to read (lastRevision + 1 when
   * everything was visited). `fromRevision` must be covered.
   */
  read(fromRevision: number, visit: (revision: number, events: WatchEvent[]) => boolean): number {
    if (!this.covers(fromRevision)) throw new Error(`event ring: revision ${fromRevision} is no longer held`);
    for (let i = this.find(fromRevision); i < this.entries.length; i++) {
      const entry = this.entries[i]!;
      if (!visit(entry.revision, entry.events)) return entry.revision;
    }
    return this.lastRevision + 1;
  }

  /** Index of the first live entry at or above `revision`. */
  private find(revision: number): number {
    let low = this.head;
    let high = this.entries.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.entries[middle]!.revision < revision) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  private evict(): void {
    while (this.head < this.entries.length && (this.events > this.limits.maxEvents || this.bytes > this.limits.maxBytes)) {
      const oldest = this.entries[this.head]!;
      this.entries[this.head] = undefined as unknown as RingEntry;
      this.head++;
      this.events -= oldest.events.length;
      this.bytes -= oldest.bytes;
      this.firstRevision = oldest.revision + 1;
    }
    if (this.head > 1024 && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
  }
}
