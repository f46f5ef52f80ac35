import { randomBytes } from "node:crypto";
import type { StorageEngine, WriteOp } from "../storage/engine.js";
import { decodeUint64, encodeUint64, historyKey, logKey, metaKey, parseLogKey, Table } from "../storage/keys.js";
import { errors } from "../errors.js";
import { log } from "../log.js";
import { decodeLogEntry, decodeRecord } from "./record.js";
import { keyId, type WatchEvent } from "./kv.js";
import { SortedKeySet } from "./key-set.js";
import { metaNames, StoreView, type LiveKeyCounter } from "./store-view.js";
import { WriteContext, type CommittedRevision, type LeaseChange } from "./write-context.js";

export interface Commit {
  revisions: CommittedRevision[];
  leases: LeaseChange[];
  revision: number;
}

interface Job {
  run(context: WriteContext): Promise<unknown>;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

export interface StoreOptions {
  /** Write with fsync; off only for benchmarks that say so. */
  sync: boolean;
  /** Largest number of requests committed with one fsync. */
  maxGroup?: number;
}

/**
 * The MVCC store: a single writer applies requests in order against a
 * WriteContext and commits each group of them with one atomic, synced batch
 * (group commit). Reads never wait for writes: they use engine snapshots.
 */
export class MvccStore {
  private readonly queue: Job[] = [];
  private pumping = false;
  private readonly listeners = new Set<(commit: Commit) => void>();
  private compaction: Promise<void> = Promise.resolve();
  private closed = false;
  /** Live keys at `revision`, updated with each commit. */
  readonly liveKeys = new SortedKeySet();
  /** Leased keys found by the start-up scan, until the lessor takes them. */
  private leasedAtOpen: Array<[Uint8Array, bigint]> = [];
  private readonly countLive: LiveKeyCounter = (revision, start, end) =>
    revision === this.revision ? this.liveKeys.count(keyId(start), end === undefined ? undefined : keyId(end)) : undefined;

  private constructor(
    readonly engine: StorageEngine,
    private readonly options: StoreOptions,
    /** Last committed revision. */
    public revision: number,
    /** Reads below this revision fail as compacted. */
    public compactRevision: number,
    /** History below this revision has been physically removed. */
    private compactedThrough: number,
    readonly clusterId: bigint,
    readonly memberId: bigint,
    public leaseExists: (id: bigint) => boolean = () => false,
  ) {}

  static async open(engine: StorageEngine, options: StoreOptions): Promise<MvccStore> {
    const view = await StoreView.open(engine.view());
    try {
      const read = async (name: string) => {
        const raw = await view.meta(name);
        return raw === undefined ? undefined : decodeUint64(raw);
      };
      let clusterId = await view.meta(metaNames.clusterId);
      let memberId = await view.meta(metaNames.memberId);
      if (clusterId === undefined || memberId === undefined) {
        // A new data dir: give it an identity, as etcd does at bootstrap.
        clusterId = randomBytes(8);
        memberId = randomBytes(8);
        await engine.write(
          [
            { type: "put", key: metaKey(metaNames.clusterId), value: clusterId },
            { type: "put", key: metaKey(metaNames.memberId), value: memberId },
            { type: "put", key: metaKey(metaNames.revision), value: encodeUint64(1) },
          ],
          { sync: true },
        );
      }
      const positive = (bytes: Uint8Array) => Buffer.from(bytes).readBigUInt64BE() & 0x7fffffffffffffffn;
      const store = new MvccStore(
        engine,
        options,
        view.revision,
        (await read(metaNames.compactRevision)) ?? 0,
        (await read(metaNames.compactedThrough)) ?? 0,
        positive(clusterId),
        positive(memberId),
      );
      // One pass over the live keys at start: the ordered set for counting,
      // and which keys hold leases (the lessor takes those once).
      await view.scanTable(Table.Current, (key, value) => {
        const userKey = key.subarray(1);
        store.liveKeys.add(keyId(userKey));
        const lease = decodeRecord(value).lease;
        if (lease !== 0n) store.leasedAtOpen.push([userKey.slice(), lease]);
        return true;
      });
      if (store.compactedThrough < store.compactRevision) store.startCompaction(store.compactRevision);
      return store;
    } finally {
      await view.close();
    }
  }

  /** The leased keys present at start (once; later changes come as commits). */
  takeLeasedKeysAtOpen(): Array<[Uint8Array, bigint]> {
    const taken = this.leasedAtOpen;
    this.leasedAtOpen = [];
    return taken;
  }

  /** A consistent read view; close it when done. */
  async view(): Promise<StoreView> {
    if (this.closed) throw errors.stopped();
    return StoreView.open(this.engine.view(), this.countLive);
  }

  /**
   * Events from `fromRevision` on (at least one whole revision, then whole
   * revisions up to about `maxEvents`), in revision order; returns the next
   * revision to read. Below the compact revision: etcd's compacted error.
   */
  async readEvents(
    fromRevision: number,
    maxEvents: number,
    withPrevKv: boolean,
    visit: (revision: number, event: WatchEvent) => void,
  ): Promise<number> {
    if (fromRevision < this.compactRevision) throw errors.compacted();
    const view = await this.view();
    try {
      return await view.readEvents(fromRevision, maxEvents, withPrevKv, visit);
    } finally {
      await view.close();
    }
  }

  onCommit(listener: (commit: Commit) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Runs `run` in the writer; resolves with its result once durable. */
  write<T>(run: (context: WriteContext) => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(errors.stopped());
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ run, resolve: resolve as (value: unknown) => void, reject });
      if (!this.pumping) {
        this.pumping = true;
        // Start the group after this turn's I/O callbacks: every request that
        // arrived with this one joins its fsync instead of waiting for the next.
        setImmediate(() => void this.pump());
      }
    });
  }

  private async pump(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const jobs = this.queue.splice(0, this.options.maxGroup ?? 512);
        await this.commitGroup(jobs);
        // Let the requests that arrived during the fsync be read first.
        await new Promise((resolve) => setImmediate(resolve));
      }
    } finally {
      this.pumping = false;
    }
  }

  private async commitGroup(jobs: Job[]): Promise<void> {
    const view = await StoreView.open(this.engine.view());
    const context = new WriteContext(view, this.revision, this.leaseExists);
    const outcomes: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    try {
      for (const job of jobs) {
        context.beginRequest();
        try {
          const value = await job.run(context);
          context.endRequest();
          outcomes.push({ ok: true, value });
        } catch (error) {
          context.abortRequest();
          outcomes.push({ ok: false, error });
        }
      }
    } finally {
      await view.close();
    }
    const result = context.finish();
    try {
      await this.engine.write(result.ops, { sync: this.options.sync });
    } catch (error) {
      // Nothing of the group is durable or visible; memory was not touched.
      const failure = isNoSpace(error) ? errors.noSpace() : error;
      for (const job of jobs) job.reject(failure);
      return;
    }
    for (const { events } of result.revisions) {
      for (const event of events) {
        if (event.type === "put") this.liveKeys.add(keyId(event.kv.key));
        else this.liveKeys.delete(keyId(event.kv.key));
      }
    }
    this.revision = result.revision;
    const commit: Commit = { revisions: result.revisions, leases: result.leases, revision: result.revision };
    for (const listener of this.listeners) listener(commit);
    outcomes.forEach((outcome, i) => {
      const job = jobs[i]!;
      if (outcome.ok) job.resolve(outcome.value);
      else job.reject(outcome.error);
    });
  }

  /**
   * Marks every revision below `revision` compacted (durably, before it
   * answers), then removes superseded history in the background in bounded
   * chunks, so neither reads nor writes stop. `physical` waits for removal.
   */
  async compact(revision: number, physical: boolean): Promise<number> {
    const current = await this.write(async (context) => {
      if (revision <= this.compactRevision) throw errors.compacted();
      if (revision > context.revision) throw errors.futureRevision();
      context.putMeta(metaNames.compactRevision, encodeUint64(revision));
      return context.revision;
    });
    this.compactRevision = revision;
    this.startCompaction(revision);
    if (physical) await this.compaction;
    return current;
  }

  private startCompaction(revision: number): void {
    this.compaction = this.compaction.then(() => this.removeHistoryBelow(revision)).catch((error: unknown) => {
      // Leaves compactedThrough behind; the next start resumes from there.
      log("error", "compaction failed", { error: String(error) });
    });
  }

  private async removeHistoryBelow(revision: number): Promise<void> {
    const chunk = 1000;
    while (this.compactedThrough < revision && !this.closed) {
      const view = await StoreView.open(this.engine.view());
      const ops: WriteOp[] = [];
      let next: number;
      try {
        const entries: Array<{ main: number; sub: number; key: Uint8Array }> = [];
        await view.scanTable(Table.Log, (storageKey, value) => {
          const at = parseLogKey(storageKey);
          if (at.main >= revision || entries.length >= chunk) return false;
          entries.push({ ...at, key: decodeLogEntry(value).key.slice() });
          return true;
        });
        for (const entry of entries) {
          // Keep the newest version at or below the compact revision unless
          // it is a tombstone: reads at the compact revision still need it.
          const newest = await view.range({ start: entry.key, end: undefined, single: true }, revision);
          const keep = newest.kvs[0];
          // etcd rejects a txn that touches one key twice, so a key has at
          // most one entry per main revision.
          const isKept = keep !== undefined && keep.modRevision === entry.main;
          if (!isKept) ops.push({ type: "del", key: historyKey(entry.key, entry) });
          ops.push({ type: "del", key: logKey(entry) });
        }
        next = entries.length < chunk ? revision : entries[entries.length - 1]!.main;
      } finally {
        await view.close();
      }
      ops.push({ type: "put", key: metaKey(metaNames.compactedThrough), value: encodeUint64(next) });
      await this.engine.write(ops, { sync: false });
      this.compactedThrough = next;
      // Let requests in between chunks.
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.compaction;
    while (this.pumping) await new Promise((resolve) => setTimeout(resolve, 5));
    await this.engine.close();
  }
}

function isNoSpace(error: unknown): boolean {
  return error instanceof Error && /no space|ENOSPC/i.test(error.message);
}
