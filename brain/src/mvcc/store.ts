import { randomBytes } from "node:crypto";
import { join } from "node:path";
import type { StorageEngine } from "../storage/engine.js";
import { decodeUint64, encodeUint64, leaseKey, metaKey, parseLeaseKey, Table, tableEnd, tableStart } from "../storage/keys.js";
import { EtcdError, errors } from "../errors.js";
import { log } from "../log.js";
import type { Commit, LeaseLedger, MvccBackend, RangeRows } from "./backend.js";
import { TreeIndex, type Dropped, type Located } from "./key-index.js";
import { SortedKeySet } from "./key-set.js";
import type { GroupLog, LogPosition, ReplicatedGroup, VersionRow } from "./group-log.js";
import { keyId, type KeyRange, type KeyValue, type WatchEvent } from "./kv.js";
import { decodeKeyValue } from "./kv-wire.js";
import { formatVersion, metaNames } from "./meta.js";
import { parseRevisionKey, revisionKey } from "./revision.js";
import { StoreView } from "./store-view.js";
import { upgradeFromV1 } from "./upgrade-v1.js";
import { openWriteAheadLog, type WriteAheadLog } from "../storage/wal.js";
import { decodeGroupRecord, encodeGroupRecord } from "./wal-record.js";
import { WriteContext, type CommittedRevision, type GroupResult, type WriterReads } from "./write-context.js";

export type { Commit, RangeRows } from "./backend.js";

interface Job {
  run(context: WriteContext): Promise<unknown>;
  resolve(value: unknown): void;
  reject(error: unknown): void;
  exclusive: boolean;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** A group written to RocksDB and handed to the log, not yet answered. */
interface Inflight {
  jobs: Job[];
  outcomes: Outcome[];
  result: GroupResult;
  /** Size of its log record. */
  bytes: number;
  /** Its sequence in the group log, when it went there. */
  sequence: number | undefined;
  /** It wrote nothing and was answered only once the shared log's ReadIndex confirmed it (a replica's leader). */
  confirmed: boolean;
  /** Settles once the group is answered (durable) or failed. */
  settled: Promise<void>;
}

/** Groups evaluated ahead of the log: one syncing, one being written behind it. */
const maxInflightGroups = 2;
/** RocksDB is synced, and the log's older segments released, every this many logged bytes. */
const engineSyncBytes = 32 * 1024 * 1024;

export interface StoreOptions {
  /** Write with fsync; off only for benchmarks that say so. */
  sync: boolean;
  /** Largest number of requests committed with one fsync. */
  maxGroup?: number;
  /**
   * A shared log (PostgreSQL) that makes groups durable instead of brain's
   * write-ahead log. The engine is then only a local copy, reloaded from the
   * log's database at every start, so it is written without sync.
   */
  log?: GroupLog;
  /** Opened as a follower: `write` is refused, `applyGroup` takes the leader's groups. */
  follower?: boolean;
  /** Sequence of the last group the engine holds (from the loader); 0 when none. */
  sequence?: number;
  /**
   * For linearizable reads on a replica: the revision the shared log has
   * committed (etcd's ReadIndex) and the sequence of its newest group. A linearizable read waits until this store's revision reaches it
   * and it has applied that group: a compact-only group moves no revision.
   */
  readIndex?: () => Promise<LogPosition>;
}


const noPending = new Map<string, Uint8Array>();


/** For a store used without leases (tools and tests): none exist. */
const noLeases: LeaseLedger = { restore: () => {}, attach: () => {}, has: () => false, apply: () => {} };

/** brain's write-ahead log, inside the data dir (RocksDB ignores directories it did not make). */
const walDirectory = "brain-wal";

/**
 * The MVCC store (etcd's kvstore): an in-memory key index over a table of
 * immutable versions keyed by revision. A single writer evaluates requests in
 * order against the index and commits each group of them with one atomic,
 * synced batch (group commit). Reads look up the index and fetch the rows in
 * one synchronous multi-get; they see the newest durable revision.
 */
export class MvccStore implements MvccBackend, WriterReads {
  private readonly queue: Job[] = [];
  private pumping = false;
  private readonly listeners = new Set<(commit: Commit) => void>();
  private compaction: Promise<void> = Promise.resolve();
  private closed = false;
  readonly index = new TreeIndex();
  /** Keys live at `revision` (durable), for counting without a walk. */
  readonly liveKeys = new SortedKeySet();
  private readonly located: Located = { main: 0, sub: 0, tombstone: false };
  /** Groups written and handed to the log, oldest first. */
  private readonly inflight: Inflight[] = [];
  /** Leases granted (true) or revoked (false) by groups not yet answered. */
  private readonly inflightLeases = new Map<bigint, boolean>();
  /** Set once the log failed: no more writes. */
  private failure: unknown;
  private wal: WriteAheadLog | undefined;
  private walSequence = 0;
  private walBytesSinceSync = 0;
  /** Linearizable reads waiting for a revision to become durable. */
  private readonly readWaiters: Array<{ revision: number; sequence: number; resume: () => void; reject: (error: unknown) => void }> = [];
  /** Where groups become durable when it is not the write-ahead log. */
  private groupLog: GroupLog | undefined;
  /** Sequence of the last group handed to the group log (the last applied one, on a follower). */
  private logSequence = 0;
  /** Sequence of the last group durable in the group log (or applied, on a follower). */
  private durableSequence = 0;
  private following = false;
  private readonly failureListeners = new Set<(error: unknown) => void>();

  private constructor(
    readonly engine: StorageEngine,
    private readonly options: StoreOptions,
    /** Newest durable revision: what reads see. */
    public revision: number,
    /** Reads below this revision fail as compacted. */
    public compactRevision: number,
    readonly clusterId: bigint,
    readonly memberId: bigint,
    private readonly lessor: LeaseLedger,
  ) {}

  /** Opens the store on `engine`, restoring `lessor` (leases and their keys) from it. */
  static async open(engine: StorageEngine, options: StoreOptions, lessor: LeaseLedger = noLeases): Promise<MvccStore> {
    const meta = (name: string) => engine.getMany([metaKey(name)])[0];
    // Groups the log made durable that RocksDB may not hold (it is written
    // without sync) are written again first.
    let wal: WriteAheadLog | undefined;
    let walSequence = 0;
    if (options.sync && options.log === undefined && options.follower !== true) {
      const opened = await openWriteAheadLog(join(engine.location, walDirectory));
      wal = opened.log;
      const raw = meta(metaNames.walSequence);
      const applied = raw === undefined ? 0 : decodeUint64(raw);
      walSequence = applied;
      let replayed = 0;
      for (const record of opened.records) {
        const { sequence, ops } = decodeGroupRecord(record);
        walSequence = Math.max(walSequence, sequence);
        if (sequence <= applied) continue;
        const batch = engine.batch();
        for (const op of ops) {
          if (op.value === undefined) batch.del(op.key);
          else batch.put(op.key, op.value);
        }
        batch.write({ sync: false });
        replayed++;
      }
      const synced = engine.batch();
      synced.put(metaKey(metaNames.walSequence), encodeUint64(walSequence));
      synced.write({ sync: true });
      await wal.release(wal.mark());
      if (replayed > 0) log("info", "replayed the write-ahead log", { groups: replayed });
    }
    const number = (name: string) => {
      const raw = meta(name);
      return raw === undefined ? undefined : decodeUint64(raw);
    };
    let clusterId = meta(metaNames.clusterId);
    let memberId = meta(metaNames.memberId);
    if (clusterId === undefined || memberId === undefined) {
      // A new data dir: give it an identity, as etcd does at bootstrap.
      clusterId = randomBytes(8);
      memberId = randomBytes(8);
      // (A data dir rebuilt from the log alone has a revision already.)
      await engine.write(
        [
          { type: "put", key: metaKey(metaNames.clusterId), value: clusterId },
          { type: "put", key: metaKey(metaNames.memberId), value: memberId },
          ...(meta(metaNames.revision) === undefined ? [{ type: "put" as const, key: metaKey(metaNames.revision), value: encodeUint64(1) }] : []),
          { type: "put", key: metaKey(metaNames.formatVersion), value: encodeUint64(formatVersion) },
        ],
        { sync: true },
      );
    }
    const format = number(metaNames.formatVersion);
    if (format === undefined) {
      await upgradeFromV1(engine);
    } else if (format !== formatVersion) {
      throw new Error(`the data dir is in storage format ${format}; this brain reads format ${formatVersion} (and upgrades format 1)`);
    }
    const positive = (bytes: Uint8Array) => Buffer.from(bytes).readBigUInt64BE() & 0x7fffffffffffffffn;
    const store = new MvccStore(
      engine,
      options,
      number(metaNames.revision) ?? 1,
      number(metaNames.compactRevision) ?? 0,
      positive(clusterId),
      positive(memberId),
      lessor,
    );
    store.newestRevision = store.revision;
    store.wal = wal;
    store.walSequence = walSequence;
    store.groupLog = options.log;
    store.following = options.follower === true;
    store.logSequence = store.durableSequence = options.sequence ?? 0;
    await store.rebuildIndex();
    await store.restoreLeases();
    // The lessor sees each durable group before any other listener (watchers).
    store.onCommit((commit) => lessor.apply(commit));
    return store;
  }

  /** Gives the lessor the leases in storage and the live keys attached to them. */
  private async restoreLeases(): Promise<void> {
    const view = await this.view();
    try {
      await view.scanTable(Table.Lease, (key, value) => {
        this.lessor.restore(parseLeaseKey(key), decodeUint64(value));
        return true;
      });
    } finally {
      await view.close();
    }
    this.index.forRange("", undefined, (index) => {
      if (index.live !== undefined && index.lease !== 0n) this.lessor.attach(index.lease, index.key);
      return true;
    });
  }

  /** One pass over the key table, in revision order, rebuilds the key index. */
  private async rebuildIndex(): Promise<void> {
    const view = this.engine.view();
    try {
      await view.scan(tableStart(Table.Key), tableEnd(Table.Key), (rowKey, row) => {
        const at = parseRevisionKey(rowKey);
        // Rows above the recorded revision belong to a group whose batch
        // never completed; RocksDB's batches are atomic, so there are none.
        const kv = decodeKeyValue(row);
        if (at.tombstone) this.index.tombstone(kv.key, at.main, at.sub);
        else this.index.put(kv.key, at.main, at.sub, kv.lease, kv);
        return true;
      });
    } finally {
      await view.close();
    }
    this.index.commit();
    if (this.compactRevision > 0) {
      // Finishes a compaction a stop interrupted (and is a no-op otherwise).
      this.startRemoval(this.index.compact(this.compactRevision), this.compactRevision);
    }
    this.index.forRange("", undefined, (index) => {
      if (index.live !== undefined) this.liveKeys.add(index.id);
      return true;
    });
  }

  /** A view for table scans (leases, hashes, snapshots) at the current revision; close it when done. */
  async view(): Promise<StoreView> {
    if (this.closed) throw errors.stopped();
    return new StoreView(this, this.engine.view(), this.revision);
  }

  onCommit(listener: (commit: Commit) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Called once when the log failed and the store stopped taking writes (a
   * replica then restarts as a follower); at once if that already happened.
   */
  onFailure(listener: (error: unknown) => void): () => void {
    if (this.failure !== undefined) {
      const error = this.failure;
      queueMicrotask(() => listener(error));
      return () => {};
    }
    this.failureListeners.add(listener);
    return () => this.failureListeners.delete(listener);
  }

  /** Sequence of the newest group durable in the group log (applied, on a follower). */
  get sequence(): number {
    return this.durableSequence;
  }

  /** True when this store is the writer (not a follower). */
  get isLeader(): boolean {
    return !this.following;
  }

  // --- reads ---

  /** Stored rows by row key, from the group's pending rows first. */
  fetchRows(rowKeys: Uint8Array[], pending: Map<string, Uint8Array>): Uint8Array[] {
    if (pending.size === 0) {
      // The read path: one multi-get, returned as is.
      const fetched = this.engine.getMany(rowKeys);
      for (let i = 0; i < fetched.length; i++) {
        if (fetched[i] === undefined) throw corruptRow(rowKeys[i]!);
      }
      return fetched as Uint8Array[];
    }
    const rows = rowKeys.map((rowKey) => pending.get(keyId(rowKey)));
    const missing = rowKeys.flatMap((_, i) => (rows[i] === undefined ? [i] : []));
    if (missing.length === 0) return rows as Uint8Array[];
    const fetched = this.engine.getMany(missing.map((i) => rowKeys[i]!));
    missing.forEach((i, n) => {
      const row = fetched[n];
      if (row === undefined) throw corruptRow(rowKeys[i]!);
      rows[i] = row;
    });
    return rows as Uint8Array[];
  }

  /**
   * Stored rows (mvccpb.KeyValue bytes) of the keys live in `range` at
   * `revision`, in key order, at most `limit` of them, and how many keys the
   * range holds (all of them when `countAll`, else at least what was read).
   */
  readRange(range: KeyRange, revision: number, limit: number, countAll: boolean, pending: Map<string, Uint8Array> = noPending): RangeRows {
    const located = this.located;
    if (range.single) {
      const index = this.index.get(range.start);
      if (index === undefined || !TreeIndex.locate(index, revision, located) || located.tombstone) return { rows: [], count: 0 };
      if (limit <= 0) return { rows: [], count: 1 };
      return { rows: this.fetchRows([revisionKey(located.main, located.sub, false)], pending), count: 1 };
    }
    // Counting the whole range from a set of live keys is two binary searches;
    // it is right at the durable revision (reads) and at the newest (writer).
    const start = keyId(range.start);
    const end = range.end === undefined ? undefined : keyId(range.end);
    const liveSet =
      pending === noPending && revision === this.revision ? this.liveKeys : revision >= this.newestRevision ? this.index.live : undefined;
    const rowKeys: Buffer[] = [];
    let count = 0;
    this.index.forRange(start, end, (index) => {
      if (!TreeIndex.locate(index, revision, located) || located.tombstone) return true;
      if (rowKeys.length < limit) {
        rowKeys.push(revisionKey(located.main, located.sub, false));
        count++;
        return true;
      }
      if (!countAll) return false;
      if (liveSet !== undefined) {
        count = liveSet.count(start, end);
        return false;
      }
      count++;
      return true;
    });
    return { rows: this.fetchRows(rowKeys, pending), count };
  }

  /** The newest revision the writer has evaluated (durable or not yet). */
  private newestRevision = 0;

  /**
   * Replays the key table from `fromRevision` through `upTo` (the durable
   * revision by default), in order, up to `maxEvents` events (a revision is
   * never split). Returns the next revision to read.
   */
  async readEvents(
    fromRevision: number,
    maxEvents: number,
    withPrevKv: boolean,
    visit: (revision: number, event: WatchEvent) => void,
    upTo: number = this.revision,
  ): Promise<number> {
    if (fromRevision < this.compactRevision) throw errors.compacted();
    const entries: Array<{ main: number; sub: number; tombstone: boolean; row: Uint8Array }> = [];
    let lastMain = fromRevision - 1;
    const view = this.engine.view();
    try {
      await view.scan(revisionKey(Math.max(fromRevision, 0), 0, false), revisionKey(upTo + 1, 0, false), (rowKey, row) => {
        const at = parseRevisionKey(rowKey);
        if (entries.length >= maxEvents && at.main !== lastMain) return false;
        entries.push({ ...at, row });
        lastMain = at.main;
        return true;
      });
    } finally {
      await view.close();
    }
    const kvs = entries.map((entry) => decodeKeyValue(entry.row));
    // Every previous version the batch needs, in one multi-get.
    const prevAt: number[] = [];
    const prevRowKeys: Buffer[] = [];
    if (withPrevKv) {
      const located = { main: 0, sub: 0, tombstone: false };
      entries.forEach((entry, i) => {
        const index = this.index.get(kvs[i]!.key);
        if (index === undefined || !TreeIndex.locateBefore(index, entry.main, entry.sub, located)) return;
        prevAt[i] = prevRowKeys.length;
        prevRowKeys.push(revisionKey(located.main, located.sub, false));
      });
    }
    const prevRows = prevRowKeys.length === 0 ? [] : this.fetchRows(prevRowKeys, noPending);
    entries.forEach((entry, i) => {
      const at = prevAt[i];
      const prevKv: KeyValue | undefined = at === undefined ? undefined : decodeKeyValue(prevRows[at]!);
      visit(entry.main, { type: entry.tombstone ? "delete" : "put", kv: kvs[i]!, prevKv, sub: entry.sub });
    });
    return entries.length === 0 ? upTo + 1 : Math.max(lastMain + 1, fromRevision);
  }

  // --- writes ---

  /**
   * Runs `run` in the writer; resolves with its result once durable.
   * `exclusive` jobs (lease grants and revokes) are evaluated only once every
   * earlier group is durable and applied, since they read the lessor's state.
   */
  write<T>(run: (context: WriteContext) => Promise<T>, options: { exclusive?: boolean } = {}): Promise<T> {
    if (this.closed) return Promise.reject(errors.stopped());
    if (this.following) return Promise.reject(errors.notLeader());
    if (this.failure !== undefined) return Promise.reject(this.failedError());
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ run, resolve: resolve as (value: unknown) => void, reject, exclusive: options.exclusive === true });
      if (!this.pumping) {
        this.pumping = true;
        // Start the group after this turn's I/O callbacks: every request that
        // arrived with this one joins its fsync instead of waiting for the next.
        setImmediate(() => void this.pump());
      }
    });
  }

  /**
   * The writer's loop. With the write-ahead log, a group is evaluated, written
   * to RocksDB without sync and appended to the log; the next group is
   * evaluated while that append's fdatasync runs. Groups become durable, and
   * are answered, strictly in order.
   */
  private async pump(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        if (this.failure !== undefined) {
          for (const job of this.queue.splice(0)) job.reject(this.failedError());
          break;
        }
        let take = Math.min(this.queue.length, this.options.maxGroup ?? 512);
        const exclusiveAt = this.queue.findIndex((job) => job.exclusive);
        if (exclusiveAt === 0) {
          await this.drain();
          take = 1;
        } else if (exclusiveAt > 0) {
          take = Math.min(take, exclusiveAt);
        }
        if (this.inflight.length >= maxInflightGroups) await this.inflight[0]!.settled;
        // The log may have failed meanwhile: then nothing more goes to it.
        if (this.failure !== undefined) continue;
        const jobs = this.queue.splice(0, take);
        const group = await this.evaluate(jobs);
        if (group !== undefined && (group.result.leases.length > 0 || jobs[0]!.exclusive)) await this.drain();
        // Let the requests that arrived meanwhile be read first.
        await new Promise((resolve) => setImmediate(resolve));
      }
    } finally {
      this.pumping = false;
    }
  }

  /** Waits until every group handed to the log is durable (or failed). */
  private async drain(): Promise<void> {
    while (this.inflight.length > 0) await this.inflight[this.inflight.length - 1]!.settled;
  }

  /** Evaluates a group and writes it; undefined when nothing of it can become durable. */
  private async evaluate(jobs: Job[]): Promise<Inflight | undefined> {
    const context = new WriteContext(this, this.newestRevision, (id) => this.writerLeaseExists(id));
    const outcomes: Outcome[] = [];
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
    const result = context.finish();
    let record: Buffer | undefined;
    let replicated: ReplicatedGroup | undefined;
    try {
      if (result.ops.length > 0) {
        if (this.wal !== undefined) {
          const sequence = ++this.walSequence;
          result.ops.push({ key: metaKey(metaNames.walSequence), value: encodeUint64(sequence) });
          record = encodeGroupRecord(sequence, result.ops);
        } else if (this.groupLog !== undefined) {
          // Only a group that wrote something needs to be durable: one that
          // wrote nothing takes no sequence (it is still answered in order).
          replicated = replicatedGroup(this.logSequence + 1, result);
          this.logSequence++;
        }
        const batch = this.engine.batch();
        for (const op of result.ops) {
          if (op.value === undefined) batch.del(op.key);
          else batch.put(op.key, op.value);
        }
        // With a log, RocksDB's own sync is the log's job (or, with a group
        // log, no one's: the local copy is reloaded at every start).
        batch.write({ sync: this.options.sync && this.wal === undefined && this.groupLog === undefined });
      }
    } catch (error) {
      // Nothing of the group is durable or visible; the index forgets it.
      if (record !== undefined) this.walSequence--;
      if (replicated !== undefined) this.logSequence--;
      this.index.rollback();
      const failure = isNoSpace(error) ? errors.noSpace() : error;
      for (const job of jobs) job.reject(failure);
      return undefined;
    }
    this.index.commit();
    this.newestRevision = result.revision;
    for (const change of result.leases) this.inflightLeases.set(change.id, change.ttl !== undefined);
    // A group that wrote nothing (failed requests, reads inside txns) is still
    // answered in order: what it read may be an earlier group not yet durable.
    // Each group settles after the one before it, whatever order the log's
    // promises resolve in within one tick.
    const previous = this.inflight[this.inflight.length - 1]?.settled ?? Promise.resolve();
    // A replica's leader may have been deposed without knowing it yet (its
    // lease ended early on the database's clock, or its event loop stalled):
    // another leader may have committed since. What a group that writes
    // nothing read (a read-only or failed Txn, a DeleteRange of nothing) is
    // then answered only once the shared log confirms it, as etcd serves a
    // read-only Txn through ReadIndex; a write is fenced by its commit instead.
    const confirm = record === undefined && replicated === undefined && this.groupLog !== undefined && this.options.readIndex !== undefined;
    const appended =
      record !== undefined && this.wal !== undefined
        ? this.wal.append(record)
        : replicated !== undefined && this.groupLog !== undefined
          ? appendTo(this.groupLog, replicated)
          : confirm
            ? this.confirmUnchanged(this.options.readIndex!)
            : Promise.resolve();
    appended.catch(() => undefined); // handled below, once the previous group settled
    const group: Inflight = { jobs, outcomes, result, bytes: record?.length ?? 0, sequence: replicated?.sequence, confirmed: confirm, settled: Promise.resolve() };
    group.settled = previous
      .then(() => appended)
      .then(
        () => this.durable(group),
        (error: unknown) => (group.confirmed ? this.unconfirmed(group, error) : this.fail(group, error)),
      );
    this.inflight.push(group);
    return group;
  }

  /**
   * Resolves when the shared log holds nothing this writer did not evaluate:
   * no other leader has committed (the log's ReadIndex also checks the epoch).
   * Asked when the group is evaluated, so after its requests arrived.
   */
  private async confirmUnchanged(readIndex: () => Promise<LogPosition>): Promise<void> {
    const committed = await readIndex();
    if (committed.revision > this.newestRevision || committed.sequence > this.logSequence) throw errors.leaderChanged();
  }

  /**
   * A group that wrote nothing could not be confirmed: its requests fail
   * (UNAVAILABLE: clients retry elsewhere) and the store goes on, since
   * nothing of it was meant to be durable; the election deposes this writer
   * if another leads.
   */
  private unconfirmed(group: Inflight, error: unknown): void {
    if (this.failure !== undefined) {
      this.fail(group, this.failure);
      return;
    }
    this.inflight.shift();
    for (const job of group.jobs) job.reject(error);
    if (this.inflight.length === 0) this.inflightLeases.clear();
  }

  /** A group is durable: it becomes what reads see, then it is answered, then applied. */
  private durable(group: Inflight): void {
    if (this.failure !== undefined) {
      this.fail(group, this.failure);
      return;
    }
    this.inflight.shift();
    const { result, outcomes, jobs } = group;
    for (const { events } of result.revisions) {
      for (const event of events) {
        if (event.type === "put") this.liveKeys.add(keyId(event.kv.key));
        else this.liveKeys.delete(keyId(event.kv.key));
      }
    }
    this.revision = result.revision;
    if (group.sequence !== undefined) this.durableSequence = group.sequence;
    // Responses first, then what the commit means to leases and watchers.
    outcomes.forEach((outcome, i) => {
      const job = jobs[i]!;
      if (outcome.ok) job.resolve(outcome.value);
      else job.reject(outcome.error);
    });
    this.publish({ revisions: result.revisions, leases: result.leases, revision: result.revision });
    if (this.inflight.length === 0) this.inflightLeases.clear();
    this.resumeReads();
    this.walBytesSinceSync += group.bytes;
    if (this.walBytesSinceSync >= engineSyncBytes) this.syncEngine();
  }

  private publish(commit: Commit): void {
    for (const listener of this.listeners) {
      try {
        listener(commit);
      } catch (error) {
        // A listener's bug must not stop the writer (the group is durable).
        log("error", "a commit listener failed", { error: String(error) });
      }
    }
  }

  /**
   * The log could not make a group durable: it and every later group fail,
   * and the store takes no more writes (like etcd, which stops on a failed
   * WAL sync); a restart recovers from what is durable.
   */
  private fail(group: Inflight, error: unknown): void {
    const first = this.failure === undefined;
    if (first) {
      this.failure = error;
      if (this.groupLog !== undefined) log("error", "the group log failed; this replica takes no more writes", { error: String(error) });
      else log("error", "the write-ahead log failed; brain takes no more writes until restarted", { error: String(error) });
    }
    const at = this.inflight.indexOf(group);
    if (at >= 0) this.inflight.splice(at, 1);
    const failed = this.failedError();
    for (const job of group.jobs) job.reject(failed);
    if (this.groupLog === undefined) {
      // Reads go on at the last durable revision.
      for (const waiter of this.readWaiters.splice(0)) waiter.resume();
    } else {
      // A replica's linearizable read may wait for a revision another leader
      // committed, which this store will not apply: it fails instead.
      for (const waiter of this.readWaiters.splice(0)) waiter.reject(failed);
    }
    if (first) {
      for (const listener of this.failureListeners) {
        try {
          listener(error);
        } catch (listenerError) {
          log("error", "a failure listener failed", { error: String(listenerError) });
        }
      }
      this.failureListeners.clear();
    }
  }

  /**
   * What requests get once the log failed: the log's own etcd error (a
   * fenced append is "leader changed"), else "server stopped".
   */
  private failedError(): unknown {
    return this.failure instanceof EtcdError ? new EtcdError(this.failure.code, this.failure.message) : errors.stopped();
  }

  /**
   * For a linearizable read (etcd's ReadIndex): resolves once every group
   * the writer has evaluated so far is durable, so the read sees what a
   * transaction evaluated meanwhile saw. Undefined when nothing is pending.
   */
  caughtUp(): Promise<void> | undefined {
    const readIndex = this.options.readIndex;
    if (readIndex !== undefined) return this.readIndexed(readIndex);
    if (this.newestRevision <= this.revision || this.failure !== undefined) return undefined;
    return this.waitFor(this.newestRevision);
  }

  /**
   * On a replica: what the writer evaluated so far (on the leader) and what
   * the shared log has committed (on any replica) must both be here first.
   */
  private async readIndexed(readIndex: () => Promise<LogPosition>): Promise<void> {
    if (this.closed) throw errors.stopped();
    if (this.failure !== undefined) throw this.failedError();
    const evaluated = this.newestRevision;
    const committed = await readIndex();
    if (!this.following && (committed.revision > this.newestRevision || committed.sequence > this.logSequence)) {
      // Only the leader writes to the log: a revision or group past
      // everything this writer made was committed by a newer leader.
      throw errors.leaderChanged();
    }
    const revision = Math.max(evaluated, committed.revision);
    // The committed group too: a compaction moves no revision, and a read
    // after an acknowledged Compact must find the revisions below it gone.
    if (this.revision >= revision && this.durableSequence >= committed.sequence) return;
    if (this.closed) throw errors.stopped();
    if (this.failure !== undefined) throw this.failedError();
    await this.waitFor(revision, committed.sequence);
  }

  private waitFor(revision: number, sequence = 0): Promise<void> {
    return new Promise((resume, reject) => this.readWaiters.push({ revision, sequence, resume, reject }));
  }

  private resumeReads(): void {
    if (this.readWaiters.length === 0) return;
    let kept = 0;
    for (const waiter of this.readWaiters) {
      if (waiter.revision <= this.revision && waiter.sequence <= this.durableSequence) waiter.resume();
      else this.readWaiters[kept++] = waiter;
    }
    this.readWaiters.length = kept;
  }

  // --- replicas ---

  /**
   * A follower applies one group the leader made durable in the shared log,
   * strictly in sequence order: it writes the same rows, leases and meta the
   * leader wrote (so a promoted follower's engine is the leader's), then
   * publishes the commit exactly as the leader did, previous versions
   * included, and wakes the linearizable reads waiting for it.
   */
  applyGroup(group: ReplicatedGroup): void {
    if (this.closed) throw errors.stopped();
    if (!this.following) throw new Error("applyGroup on the leader: only a follower applies the log's groups");
    if (group.sequence !== this.durableSequence + 1) {
      throw new Error(`group ${group.sequence} does not follow the last applied group, ${this.durableSequence}`);
    }
    const rows = group.rows;
    const newest = rows.length > 0 ? rows[rows.length - 1]!.main : this.revision;
    if (group.revision !== newest) {
      throw new Error(`group ${group.sequence} claims revision ${group.revision} but its rows end at ${newest} (store at ${this.revision})`);
    }
    const revisions: CommittedRevision[] = [];
    const batch = this.engine.batch();
    try {
      // Each event's previous version: the key's newest version before it,
      // as the leader's writer read it; several may be this group's own rows.
      const previousOf: WatchEvent[] = [];
      const previousRows: Buffer[] = [];
      const own = new Map<string, Uint8Array>();
      let lastMain = this.revision;
      let lastSub = Number.POSITIVE_INFINITY;
      for (const row of rows) {
        if (row.main < lastMain || (row.main === lastMain && row.sub <= lastSub)) {
          throw new Error(`group ${group.sequence} has version ${row.main}.${row.sub} out of order (after ${lastMain}.${lastSub}, store at ${this.revision})`);
        }
        const rowKey = revisionKey(row.main, row.sub, row.tombstone);
        batch.put(rowKey, row.kv);
        const kv = decodeKeyValue(row.kv);
        const live = this.index.get(row.key)?.live;
        const event: WatchEvent = { type: row.tombstone ? "delete" : "put", kv, sub: row.sub };
        if (live !== undefined) {
          const last = live.mains.length - 1;
          previousOf.push(event);
          previousRows.push(revisionKey(live.mains[last]!, live.subs[last]!, false));
        }
        if (row.tombstone) {
          this.index.tombstone(row.key, row.main, row.sub);
        } else {
          this.index.put(row.key, row.main, row.sub, kv.lease, kv);
          own.set(keyId(rowKey), row.kv);
        }
        if (row.main !== lastMain) revisions.push({ revision: row.main, events: [] });
        revisions[revisions.length - 1]!.events.push(event);
        lastMain = row.main;
        lastSub = row.sub;
      }
      if (previousRows.length > 0) {
        this.fetchRows(previousRows, own).forEach((bytes, i) => {
          previousOf[i]!.prevKv = decodeKeyValue(bytes);
        });
      }
      for (const change of group.leases) {
        if (change.ttl === undefined) batch.del(leaseKey(change.id));
        else batch.put(leaseKey(change.id), encodeUint64(change.ttl));
      }
      if (rows.length > 0) batch.put(metaKey(metaNames.revision), encodeUint64(group.revision));
      if (group.compactRevision !== undefined) batch.put(metaKey(metaNames.compactRevision), encodeUint64(group.compactRevision));
      batch.write({ sync: false });
    } catch (error) {
      this.index.rollback();
      throw error;
    }
    this.index.commit();
    for (const { events } of revisions) {
      for (const event of events) {
        if (event.type === "put") this.liveKeys.add(keyId(event.kv.key));
        else this.liveKeys.delete(keyId(event.kv.key));
      }
    }
    this.revision = this.newestRevision = group.revision;
    this.durableSequence = this.logSequence = group.sequence;
    this.publish({ revisions, leases: group.leases, revision: group.revision });
    if (group.compactRevision !== undefined && group.compactRevision > this.compactRevision) {
      this.compactRevision = group.compactRevision;
      this.startRemoval(this.index.compact(group.compactRevision), group.compactRevision);
    }
    this.resumeReads();
  }

  /**
   * A follower becomes the writer at its current sequence and revision (the
   * caller has applied every group the log holds). `groupLog` replaces the
   * log it was opened with, if given.
   */
  promote(groupLog?: GroupLog): void {
    if (this.closed) throw errors.stopped();
    if (!this.following) throw new Error("promote: this store is the writer already");
    const next = groupLog ?? this.groupLog;
    if (next === undefined) throw new Error("promote: a writer needs a group log to make its groups durable");
    this.groupLog = next;
    this.following = false;
    this.newestRevision = this.revision;
    this.logSequence = this.durableSequence;
  }

  private writerLeaseExists(id: bigint): boolean {
    return this.inflightLeases.get(id) ?? this.lessor.has(id);
  }

  /**
   * Syncs RocksDB (everything written before the log's mark is then in
   * RocksDB's synced WAL) so the log can drop the segments before it.
   */
  private syncEngine(): void {
    const wal = this.wal;
    if (wal === undefined || this.closed) return;
    this.walBytesSinceSync = 0;
    const mark = wal.mark();
    try {
      const batch = this.engine.batch();
      batch.put(metaKey(metaNames.walSequence), encodeUint64(this.walSequence));
      batch.write({ sync: true });
    } catch (error) {
      log("warn", "RocksDB sync failed; the write-ahead log keeps its segments", { error: String(error) });
      return;
    }
    wal.release(mark).catch((error: unknown) => log("warn", "write-ahead log segments not released", { error: String(error) }));
  }

  /**
   * Marks every revision below `revision` compacted (durably, before it
   * answers), compacts the key index, then removes the versions it no longer
   * refers to in the background in bounded chunks. `physical` waits for that.
   */
  async compact(revision: number, physical: boolean): Promise<number> {
    const current = await this.write(async (context) => {
      if (revision <= this.compactRevision) throw errors.compacted();
      if (revision > context.revision) throw errors.futureRevision();
      context.putMeta(metaNames.compactRevision, encodeUint64(revision));
      return context.revision;
    });
    this.compactRevision = revision;
    this.startRemoval(this.index.compact(revision), revision, this.groupLog);
    if (physical) await this.compaction;
    return current;
  }

  /** `log`: the leader's group log, told once the local copy dropped the rows. */
  private startRemoval(dropped: Dropped[], revision: number, groupLog?: GroupLog): void {
    this.compaction = this.compaction
      .then(async () => {
        await this.removeRows(dropped, revision);
        if (groupLog?.compacted === undefined || this.closed) return;
        // Not awaited: the log's own cleanup holds up no local work, and a
        // failure there only leaves rows a later compaction drops.
        groupLog.compacted(revision).catch((error: unknown) => log("warn", "the group log did not drop compacted versions", { revision, error: String(error) }));
      })
      .catch((error: unknown) => {
        // The next start compacts the rebuilt index again and resumes.
        log("error", "compaction failed", { error: String(error) });
      });
  }

  private async removeRows(dropped: Dropped[], revision: number): Promise<void> {
    const chunk = 1000;
    for (let from = 0; from < dropped.length && !this.closed; from += chunk) {
      const batch = this.engine.batch();
      for (const row of dropped.slice(from, from + chunk)) batch.del(revisionKey(row.main, row.sub, row.tombstone));
      batch.write({ sync: false });
      // Let requests in between chunks.
      await new Promise((resolve) => setImmediate(resolve));
    }
    if (this.closed) return;
    await this.engine.write([{ type: "put", key: metaKey(metaNames.compactedThrough), value: encodeUint64(revision) }], { sync: false });
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.compaction;
    while (this.pumping) await new Promise((resolve) => setTimeout(resolve, 5));
    await this.drain();
    // Reads waiting for a revision a replica has not applied yet.
    for (const waiter of this.readWaiters.splice(0)) waiter.reject(errors.stopped());
    if (this.wal !== undefined) {
      if (this.failure === undefined) {
        const mark = this.wal.mark();
        const batch = this.engine.batch();
        batch.put(metaKey(metaNames.walSequence), encodeUint64(this.walSequence));
        batch.write({ sync: true });
        await this.wal.release(mark);
      }
      await this.wal.close();
    }
    await this.engine.close();
  }
}

/** What the group log is handed for a group: its rows, leases and compaction, from the ops the engine got. */
function replicatedGroup(sequence: number, result: GroupResult): ReplicatedGroup {
  const rows: VersionRow[] = [];
  const compactKey = metaKey(metaNames.compactRevision);
  let compactRevision: number | undefined;
  // The key table's ops are the group's events, one for one, in order.
  let r = 0;
  let e = 0;
  for (const op of result.ops) {
    if (op.key[0] === Table.Key) {
      const at = parseRevisionKey(op.key);
      while (r < result.revisions.length && e >= result.revisions[r]!.events.length) {
        r++;
        e = 0;
      }
      const committed = result.revisions[r];
      const event = committed?.events[e++];
      if (committed === undefined || event === undefined || op.value === undefined || committed.revision !== at.main || event.sub !== at.sub || (event.type === "delete") !== at.tombstone) {
        throw new Error(`the group's version ${at.main}.${at.sub} does not match its events`);
      }
      rows.push({ main: at.main, sub: at.sub, tombstone: at.tombstone, key: event.kv.key, kv: op.value });
    } else if (op.value !== undefined && Buffer.compare(op.key, compactKey) === 0) {
      compactRevision = decodeUint64(op.value);
    }
  }
  const events = result.revisions.reduce((sum, { events }) => sum + events.length, 0);
  if (events !== rows.length) throw new Error(`the group has ${events} events but ${rows.length} versions`);
  const group: ReplicatedGroup = { sequence, revision: result.revision, rows, leases: result.leases };
  if (compactRevision !== undefined) group.compactRevision = compactRevision;
  return group;
}

/** The log's append, with a synchronous throw turned into a rejection. */
async function appendTo(groupLog: GroupLog, group: ReplicatedGroup): Promise<void> {
  await groupLog.append(group);
}

function corruptRow(rowKey: Uint8Array): Error {
  const at = parseRevisionKey(rowKey);
  return new Error(`storage is missing the version written at revision ${at.main}.${at.sub}, which the key index refers to`);
}

function isNoSpace(error: unknown): boolean {
  return error instanceof Error && /no space|ENOSPC/i.test(error.message);
}
