import { inRange, type KeyRange, type WatchEvent } from "../mvcc/kv.js";
import type { Commit, MvccStore } from "../mvcc/store.js";
import { log } from "../log.js";

/** What a watcher receives: events of one or more revisions, in order. */
export interface WatchDelivery {
  events: WatchEvent[];
  /** The store revision the delivery is current to. */
  revision: number;
}

export interface WatcherSpec {
  range: KeyRange;
  /** First revision to deliver. */
  startRevision: number;
  noPut: boolean;
  noDelete: boolean;
  prevKv: boolean;
}

export interface WatcherSink {
  deliver(delivery: WatchDelivery): void;
  /** The watcher's start revision was compacted away. */
  compacted(compactRevision: number): void;
  /** The watcher caught up with the live stream. */
  synced?(): void;
}

export interface Watcher extends WatcherSpec {
  nextRevision: number;
  synced: boolean;
  closed: boolean;
  sink: WatcherSink;
}

const catchUpEvents = 1000;

/**
 * Fans committed events out to watchers. Synced watchers get each commit as
 * it happens; a watcher that starts in the past is unsynced and catches up
 * from the durable revision log without holding up live fan-out, then joins
 * the synced set (etcd's synced/unsynced split).
 */
export class WatchHub {
  private readonly synced = new Set<Watcher>();
  private readonly unsynced = new Set<Watcher>();

  constructor(private readonly store: MvccStore) {
    store.onCommit((commit) => this.publish(commit));
  }

  get size(): number {
    return this.synced.size + this.unsynced.size;
  }

  add(spec: WatcherSpec, sink: WatcherSink): Watcher {
    const watcher: Watcher = { ...spec, nextRevision: spec.startRevision, synced: false, closed: false, sink };
    if (watcher.nextRevision > this.store.revision) {
      this.markSynced(watcher);
    } else {
      this.unsynced.add(watcher);
      void this.catchUp(watcher);
    }
    return watcher;
  }

  remove(watcher: Watcher): void {
    watcher.closed = true;
    this.synced.delete(watcher);
    this.unsynced.delete(watcher);
  }

  private markSynced(watcher: Watcher): void {
    this.unsynced.delete(watcher);
    watcher.synced = true;
    this.synced.add(watcher);
    watcher.sink.synced?.();
  }

  private publish(commit: Commit): void {
    if (this.synced.size === 0) return;
    for (const { revision, events } of commit.revisions) {
      for (const watcher of this.synced) {
        if (revision < watcher.nextRevision) continue;
        const matching = events.filter((event) => matches(watcher, event));
        watcher.nextRevision = revision + 1;
        if (matching.length > 0) watcher.sink.deliver({ events: matching, revision });
      }
    }
  }

  private async catchUp(watcher: Watcher): Promise<void> {
    try {
      while (!watcher.closed) {
        if (watcher.nextRevision < this.store.compactRevision) {
          this.remove(watcher);
          watcher.sink.compacted(this.store.compactRevision);
          return;
        }
        const view = await this.store.view();
        const events: WatchEvent[] = [];
        try {
          watcher.nextRevision = await view.readEvents(watcher.nextRevision, catchUpEvents, watcher.prevKv, (_, event) => {
            if (matches(watcher, event)) events.push(event);
          });
        } finally {
          await view.close();
        }
        if (watcher.closed) return;
        if (events.length > 0) watcher.sink.deliver({ events, revision: view.revision });
        // No await between this check and joining the synced set: the next
        // commit either was already read above or will be published to it.
        if (watcher.nextRevision > this.store.revision) {
          this.markSynced(watcher);
          return;
        }
      }
    } catch (error) {
      log("error", "watch catch-up failed", { error: String(error) });
      this.remove(watcher);
      watcher.sink.compacted(this.store.compactRevision);
    }
  }
}

function matches(watcher: WatcherSpec, event: WatchEvent): boolean {
  if (event.type === "put" ? watcher.noPut : watcher.noDelete) return false;
  return inRange(watcher.range, event.kv.key);
}
