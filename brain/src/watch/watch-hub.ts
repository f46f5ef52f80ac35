import { inRange, type KeyRange, type WatchEvent } from "../mvcc/kv.js";
import type { Commit, MvccBackend } from "../mvcc/backend.js";
import { log } from "../log.js";
import { defaultRingLimits, EventRing, eventBytes, type RingLimits } from "./event-ring.js";
import { WatcherGroups, type WatcherGroup, type WatcherOptions } from "./watcher-groups.js";

/**
 * Events of one or more revisions, in order. A live delivery is one object
 * shared by every watcher of a group (same range and options), so whoever
 * encodes it can do so once for all of them.
 */
export interface WatchDelivery {
  events: WatchEvent[];
  /** The store revision the delivery is current to (the response header's). */
  revision: number;
  /** Whether the receiving watchers asked for prev_kv. */
  prevKv: boolean;
}

export interface WatcherSpec extends WatcherOptions {
  range: KeyRange;
  /** First revision to deliver. */
  startRevision: number;
}

export interface WatcherSink {
  /**
   * Takes a delivery, or returns false when the watcher's stream cannot take
   * more right now: then nothing was sent, and the watcher waits, out of the
   * live fan-out, until `WatchHub.resume` (etcd's victim watchers).
   */
  deliver(delivery: WatchDelivery): boolean;
  /** The watcher's next revision was compacted away; it is removed. */
  compacted(compactRevision: number): void;
  /** The watcher caught up with the live fan-out. */
  synced?(): void;
}

type WatcherState = "synced" | "catching-up" | "victim" | "closed";

export interface Watcher {
  readonly spec: WatcherSpec;
  readonly sink: WatcherSink;
  /** Every event below this revision has been handed to the sink. */
  nextRevision: number;
  state: WatcherState;
  /** The group while synced. */
  group: WatcherGroup<Watcher> | undefined;
}

/** What the hub needs of the store: its revisions, the watch log and commit notifications. */
export type WatchableStore = Pick<MvccBackend, "revision" | "compactRevision" | "onCommit" | "readEvents">;

export interface WatchHubOptions {
  ring: RingLimits;
  /** A live response holds the revisions of one pass up to about this many bytes of events. */
  liveBatchBytes: number;
  /** Catch-up responses hold at most this many revisions (etcd's watchBatchMaxRevs)... */
  batchRevisions: number;
  /** ...and stop adding revisions past this many bytes of events. */
  batchBytes: number;
  /** Store reads for watchers behind the ring that run at once (each holds one batch). */
  storeReaders: number;
}

export const defaultHubOptions: WatchHubOptions = {
  ring: defaultRingLimits,
  liveBatchBytes: 1024 * 1024,
  batchRevisions: 1000,
  batchBytes: 4 * 1024 * 1024,
  storeReaders: 2,
};

/**
 * Fans committed events out to watchers, after the writers' responses and
 * in commit order, modelled on etcd's watchable store:
 *
 * - synced watchers sit in groups (range + options) and get each revision as
 *   it is published; matching happens once per group, not per watcher;
 * - a watcher that starts in the past, or fell behind, catches up first from
 *   the ring of recent events, then from the store, without holding up the
 *   live fan-out, and joins the synced groups once current;
 * - a watcher whose stream is full is taken out of the fan-out (a victim)
 *   and caught up from the ring or store when its stream drains, so a slow
 *   reader delays neither writers nor other watchers and costs no memory
 *   beyond its stream's bounded queue.
 *
 * `revision` is the newest revision whose events every synced watcher has
 * been handed: a progress notification may claim it and never more.
 */
export class WatchHub {
  private readonly synced = new WatcherGroups<Watcher>();
  private readonly behind = new Set<Watcher>();
  private readonly ring: EventRing;
  private readonly options: WatchHubOptions;
  /** Commits received but not yet fanned out (one event-loop turn at most). */
  private pending: Commit[] = [];
  private fanOutScheduled = false;
  private afterFanOut: Array<() => void> = [];
  private readers = 0;
  private readonly waitingReaders: Watcher[] = [];
  /**
   * Average size of the events of the last store read (prev_kv included);
   * it starts high, so the first read of unknown history is a small one.
   */
  private storeEventBytes = 64 * 1024;
  private published: number;
  private readonly unsubscribe: () => void;

  constructor(
    private readonly store: WatchableStore,
    options: Partial<WatchHubOptions> = {},
  ) {
    this.options = { ...defaultHubOptions, ...options };
    this.published = store.revision;
    this.ring = new EventRing(store.revision, this.options.ring);
    this.unsubscribe = store.onCommit((commit) => this.receive(commit));
  }

  /** Newest revision fully handed to every synced watcher. */
  get revision(): number {
    return this.published;
  }

  /** Every watcher: synced, catching up or waiting on its stream. */
  get size(): number {
    return this.synced.size + this.behind.size;
  }

  /** Watchers out of the live fan-out (catching up or waiting on a full stream). */
  get unsyncedCount(): number {
    return this.behind.size;
  }

  get ringStats(): { events: number; bytes: number; firstRevision: number; lastRevision: number } {
    return { events: this.ring.eventCount, bytes: this.ring.byteCount, firstRevision: this.ring.firstRevision, lastRevision: this.ring.lastRevision };
  }

  close(): void {
    this.unsubscribe();
  }

  add(spec: WatcherSpec, sink: WatcherSink): Watcher {
    const watcher: Watcher = { spec, sink, nextRevision: spec.startRevision, state: "catching-up", group: undefined };
    if (watcher.nextRevision > this.ring.lastRevision) {
      // Starts after everything received: the live fan-out covers it (it skips
      // revisions below nextRevision, e.g. ones still pending publication).
      this.join(watcher, false);
    } else {
      this.behind.add(watcher);
      // Not from inside add(): the caller registers the watcher first.
      queueMicrotask(() => this.catchUp(watcher));
    }
    return watcher;
  }

  remove(watcher: Watcher): void {
    if (watcher.state === "synced" && watcher.group) this.synced.delete(watcher, watcher.group);
    this.behind.delete(watcher);
    watcher.group = undefined;
    watcher.state = "closed";
  }

  /** A victim's stream has room again: catch it up and return it to the fan-out. */
  resume(watcher: Watcher): void {
    if (watcher.state !== "victim") return;
    watcher.state = "catching-up";
    this.catchUp(watcher);
  }

  isSynced(watcher: Watcher): boolean {
    return watcher.state === "synced";
  }

  /**
   * Runs `then` once no received commit awaits fan-out, so `revision` is
   * as new as what the store has told the hub (progress notifications).
   */
  whenPublished(then: () => void): void {
    if (this.pending.length === 0) then();
    else this.afterFanOut.push(then);
  }

  private receive(commit: Commit): void {
    for (const { revision, events } of commit.revisions) this.ring.append(revision, events);
    this.ring.advance(commit.revision);
    this.pending.push(commit);
    if (!this.fanOutScheduled) {
      this.fanOutScheduled = true;
      // A tick queued from a microtask runs once the microtask queue is
      // empty: after the promise chains that write the writers' responses,
      // yet in the same turn, so the events share their socket flush rather
      // than waiting behind the next group's commit (setImmediate would).
      queueMicrotask(() => process.nextTick(() => this.fanOut()));
    }
  }

  private fanOut(): void {
    this.fanOutScheduled = false;
    const commits = this.pending;
    this.pending = [];
    this.publish(commits.flatMap((commit) => commit.revisions));
    for (const commit of commits) this.published = Math.max(this.published, commit.revision);
    const waiting = this.afterFanOut;
    this.afterFanOut = [];
    for (const then of waiting) then();
  }

  /**
   * The revisions of one pass to every synced watcher they concern, matched
   * once per group. A watcher gets one response per pass (or per
   * `liveBatchBytes` of events) rather than one per revision: commits that
   * pile up while the process is busy cost fewer messages, not more.
   */
  private publish(revisions: Array<{ revision: number; events: WatchEvent[] }>): void {
    if (this.synced.size === 0) return;
    const matched = new Map<WatcherGroup<Watcher>, Array<{ revision: number; event: WatchEvent }>>();
    for (const { revision, events } of revisions) {
      for (const event of events) {
        this.synced.forEachHolding(event.kv.key, (group) => {
          if (event.type === "put" ? group.options.noPut : group.options.noDelete) return;
          const list = matched.get(group);
          if (list) list.push({ revision, event });
          else matched.set(group, [{ revision, event }]);
        });
      }
    }
    for (const [group, events] of matched) {
      for (const batch of batches(events, this.options.liveBatchBytes)) this.publishBatch(group, batch, group.options.prevKv);
    }
  }

  private publishBatch(group: WatcherGroup<Watcher>, batch: Array<{ revision: number; event: WatchEvent }>, prevKv: boolean): void {
    const first = batch[0]!.revision;
    const last = batch[batch.length - 1]!.revision;
    // The header carries the batch's newest revision, as etcd's do.
    const shared: WatchDelivery = { events: batch.map(({ event }) => event), revision: last, prevKv };
    for (const watcher of group.members) {
      if (last < watcher.nextRevision) continue;
      // A watcher that joined during the pass already has the start of it.
      const delivery =
        first >= watcher.nextRevision
          ? shared
          : { events: batch.filter(({ revision }) => revision >= watcher.nextRevision).map(({ event }) => event), revision: last, prevKv };
      if (watcher.sink.deliver(delivery)) {
        watcher.nextRevision = last + 1;
      } else {
        watcher.nextRevision = Math.max(first, watcher.nextRevision);
        this.makeVictim(watcher);
      }
    }
  }

  private join(watcher: Watcher, notify: boolean): void {
    this.behind.delete(watcher);
    watcher.state = "synced";
    watcher.group = this.synced.add(watcher, watcher.spec);
    if (notify) watcher.sink.synced?.();
  }

  private makeVictim(watcher: Watcher): void {
    if (watcher.state === "synced" && watcher.group) this.synced.delete(watcher, watcher.group);
    watcher.group = undefined;
    watcher.state = "victim";
    this.behind.add(watcher);
  }

  /**
   * Brings a watcher that is behind up to the live fan-out: from the ring
   * while it holds the next revision (synchronously, no I/O), otherwise from
   * the store. Stops as a victim when the sink is full.
   */
  private catchUp(watcher: Watcher): void {
    while (watcher.state === "catching-up") {
      if (watcher.nextRevision < this.store.compactRevision) {
        this.compacted(watcher);
        return;
      }
      if (watcher.nextRevision > this.ring.lastRevision) {
        // Current with every commit received; ones still pending publication
        // reach it through the fan-out, which skips what it already has.
        this.join(watcher, true);
        return;
      }
      if (!this.ring.covers(watcher.nextRevision)) {
        this.readStore(watcher);
        return;
      }
      const { delivery, through } = this.fromRing(watcher);
      if (delivery.events.length > 0 && !watcher.sink.deliver(delivery)) {
        watcher.state = "victim";
        return;
      }
      watcher.nextRevision = through + 1;
    }
  }

  /** The next batch for `watcher` from the ring, filtered, and the last revision it covers. */
  private fromRing(watcher: Watcher): { delivery: WatchDelivery; through: number } {
    const { spec } = watcher;
    const events: WatchEvent[] = [];
    let bytes = 0;
    let revisions = 0;
    let last = watcher.nextRevision - 1;
    const next = this.ring.read(watcher.nextRevision, (revision, revisionEvents) => {
      if (revisions >= this.options.batchRevisions || (events.length > 0 && bytes >= this.options.batchBytes)) return false;
      for (const event of revisionEvents) {
        if (!matches(spec, event)) continue;
        events.push(event);
        bytes += eventBytes(event);
      }
      revisions++;
      last = revision;
      return true;
    });
    // Read to the end: revisions after the last entry had no events at all.
    if (next > this.ring.lastRevision) last = this.ring.lastRevision;
    // The header carries the newest revision, as etcd's catch-up responses do.
    return { delivery: { events, revision: this.ring.lastRevision, prevKv: spec.prevKv }, through: last };
  }

  /** A batch from the store for a watcher behind the ring; few run at once. */
  private readStore(watcher: Watcher): void {
    this.waitingReaders.push(watcher);
    this.startReaders();
  }

  private startReaders(): void {
    while (this.readers < this.options.storeReaders && this.waitingReaders.length > 0) {
      const watcher = this.waitingReaders.shift()!;
      if (watcher.state !== "catching-up") continue;
      this.readers++;
      void this.readStoreBatch(watcher).finally(() => {
        this.readers--;
        this.startReaders();
      });
    }
  }

  /**
   * Events per store read: etcd's 1000 revisions, fewer when events run
   * large, so one batch (held whole until sent) stays near `batchBytes`.
   */
  private storeBatchEvents(): number {
    const byBytes = Math.floor(this.options.batchBytes / Math.max(1, this.storeEventBytes));
    return Math.max(1, Math.min(this.options.batchRevisions, byBytes));
  }

  private async readStoreBatch(watcher: Watcher): Promise<void> {
    const { spec } = watcher;
    const events: WatchEvent[] = [];
    let next: number;
    let read = 0;
    let readBytes = 0;
    try {
      next = await this.store.readEvents(watcher.nextRevision, this.storeBatchEvents(), spec.prevKv, (_, event) => {
        if (matches(spec, event)) events.push(event);
        read++;
        readBytes += eventBytes(event);
      });
      if (read > 0) this.storeEventBytes = readBytes / read;
    } catch (error) {
      if (watcher.state !== "catching-up") return;
      if (watcher.nextRevision < this.store.compactRevision) {
        this.compacted(watcher);
        return;
      }
      log("error", "watch catch-up read failed", { error: String(error) });
      this.remove(watcher);
      watcher.sink.compacted(this.store.compactRevision);
      return;
    }
    if (watcher.state !== "catching-up") return;
    // The read is sized by an average, so a run of large events can exceed
    // `batchBytes`: deliver it in pieces cut at revision boundaries, so no
    // response outgrows what a stream may hold (a revision stays whole).
    const header = Math.max(next - 1, this.ring.lastRevision);
    for (const batch of batches(events.map((event) => ({ revision: event.kv.modRevision, event })), this.options.batchBytes)) {
      // etcd's catch-up responses carry the store's revision in the header.
      const delivery: WatchDelivery = { events: batch.map((entry) => entry.event), revision: header, prevKv: spec.prevKv };
      if (!watcher.sink.deliver(delivery)) {
        // Not taken: resume from this piece once the stream drains.
        watcher.nextRevision = Math.max(watcher.nextRevision, batch[0]!.revision);
        watcher.state = "victim";
        return;
      }
    }
    watcher.nextRevision = Math.max(watcher.nextRevision, next);
    this.catchUp(watcher);
  }

  private compacted(watcher: Watcher): void {
    this.remove(watcher);
    watcher.sink.compacted(this.store.compactRevision);
  }
}

function matches(spec: WatcherSpec, event: WatchEvent): boolean {
  if (event.type === "put" ? spec.noPut : spec.noDelete) return false;
  return inRange(spec.range, event.kv.key);
}

/** Splits a pass's events for one group at revision boundaries, about `maxBytes` each. */
function batches<T extends { revision: number; event: WatchEvent }>(events: T[], maxBytes: number): T[][] {
  const out: T[][] = [];
  let current: T[] = [];
  let bytes = 0;
  for (const entry of events) {
    const boundary = current.length > 0 && current[current.length - 1]!.revision !== entry.revision;
    if (boundary && bytes >= maxBytes) {
      out.push(current);
      current = [];
      bytes = 0;
    }
    current.push(entry);
    bytes += eventBytes(entry.event);
  }
  if (current.length > 0) out.push(current);
  return out;
}
