// One brain of a replica set sharing a PostgreSQL: its local copy of the data
// (loaded fresh at every start), the follower loop that keeps that copy
// current, and the move to leader when it wins the election. Losing the
// leadership (or the log failing under the leader) is not undone in place:
// `restart` resolves and the process starts this brain again as a follower.
import { mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type pg from "pg";
import type { BrainConfig } from "../config.js";
import { status } from "@grpc/grpc-js";
import { EtcdError, errors } from "../errors.js";
import type { Lessor } from "../lease/lessor.js";
import { log } from "../log.js";
import { startAutoCompaction } from "../mvcc/auto-compactor.js";
import { MvccStore } from "../mvcc/store.js";
import type { StorageEngine } from "../storage/engine.js";
import { openRocksEngine } from "../storage/rocks-engine.js";
import { LeaderElection } from "./pg/election.js";
import type { LogPosition } from "../mvcc/group-log.js";
import { LogTruncated, PgGroupLog } from "./pg/group-log.js";
import { loadReplica } from "./pg/loader.js";
import { heartbeat, listMembers, registerMember } from "./pg/members.js";
import { migrate } from "./pg/migrations.js";
import { openPool, redactUrl } from "./pg/pool.js";

/** Groups read per catch-up query. */
const catchUpBatch = 500;
/** Followers also poll this often, for a NOTIFY lost with its connection. */
const catchUpPollMs = 1000;
const heartbeatMs = 5000;
/** A forwarded write's answer waits at most this long for the local copy to apply it. */
const appliedWaitMs = 5000;
/** A write waits for an election this much longer than the lease TTL before failing "no leader". */
const leaderWaitSlackMs = 2000;
/** Compacted versions stay in PostgreSQL this long, for followers still applying the groups before the compaction. */
const compactedRowsKeptMs = 10_000;
/** The local copy lives here inside --data-dir; nothing else there is touched. */
export const copyDirectory = "postgres-copy";

export interface LeaderInfo {
  epoch: number;
  memberId: bigint;
  name: string;
  clientUrl: string;
}

export interface MemberInfo {
  memberId: bigint;
  name: string;
  clientUrls: string[];
}

/** Counters that outlive restarts of the brain inside one process (metrics). */
export class ReplicaCounters {
  leaderChanges = 0;
  readonly forwarded = new Map<string, number>();
  /** (notify → applied) seconds of groups applied since the last scrape, drained by the metrics. */
  readonly applySeconds: number[] = [];
  private lastLeader: string | undefined;

  /** Counts a leader change when the leader (member and epoch) differs from the last one seen. */
  sawLeader(leader: LeaderInfo | undefined): void {
    if (leader === undefined) return;
    const id = `${leader.memberId}@${leader.epoch}`;
    if (id === this.lastLeader) return;
    this.lastLeader = id;
    this.leaderChanges++;
  }

  countForward(method: string): void {
    this.forwarded.set(method, (this.forwarded.get(method) ?? 0) + 1);
  }
}

/** Where a write or lease call goes now: this brain, or the leader's client URL. */
export type Route = { local: true } | { local: false; url: string };

export class ReplicaNode {
  private stopped = false;
  private demoted = false;
  private promoting: Promise<void> | undefined;
  private promoted = false;
  private catchingUp: Promise<void> | undefined;
  private catchUpAgain = false;
  private unsubscribe: (() => Promise<void>) | undefined;
  private poll: NodeJS.Timeout | undefined;
  private beat: NodeJS.Timeout | undefined;
  private stopCompaction: () => void = () => undefined;
  private requestRestart!: (reason: string) => void;
  private readonly leaderListeners = new Set<(leader: LeaderInfo | undefined) => void>();
  /** Sequences NOTIFY announced, with when, until applied (follower apply latency). */
  private readonly notified: Array<{ sequence: number; at: number }> = [];
  private lastCatchUpError = "";
  /** Forwarded writes waiting for this copy to apply them. */
  private readonly appliedWaiters = new Set<{ revision: number; compactRevision: number; settle: (error?: EtcdError) => void }>();
  /** The newest epoch seen: the term headers and Status report. */
  private knownEpoch = 0;
  /** Resolves with why this brain must stop and start again as a follower. */
  readonly restart: Promise<string>;

  private constructor(
    private readonly config: BrainConfig,
    private readonly pool: pg.Pool,
    readonly log: PgGroupLog,
    readonly store: MvccStore,
    private readonly lessor: Lessor,
    readonly memberId: bigint,
    readonly clusterId: bigint,
    private readonly election: LeaderElection,
    private readonly counters: ReplicaCounters,
  ) {
    this.restart = new Promise((resolve) => {
      this.requestRestart = (reason) => {
        if (this.stopped) return;
        // From now on this brain takes no writes: requests still arriving are
        // answered "leader changed" until its servers close.
        this.demoted = true;
        resolve(reason);
      };
    });
  }

  /**
   * Joins the replica set: the schema, this member's identity, a fresh local
   * copy from PostgreSQL, the follower loop, then the election. `lessor` is
   * the one the store restores leases into.
   */
  static async start(config: BrainConfig, lessor: Lessor, counters: ReplicaCounters): Promise<ReplicaNode> {
    const url = config.postgresUrl!;
    const pool = openPool(url, { name: config.name });
    let engine: StorageEngine | undefined;
    let store: MvccStore | undefined;
    try {
      await migrate(pool);
      const clientUrls = config.advertiseClientUrls;
      const memberId = await registerMember(pool, config.name, clientUrls);
      engine = await openRocksEngine(await freshCopyDirectory(config.dataDir));
      const loaded = await loadReplica(pool, engine, memberId);
      const groupLog = new PgGroupLog(pool, { pruneDelayMs: compactedRowsKeptMs });
      store = await MvccStore.open(
        engine,
        { sync: false, log: groupLog, follower: true, sequence: loaded.sequence, readIndex: () => confirmedPosition(groupLog) },
        lessor,
      );
      lessor.bind(store);
      const election = new LeaderElection(pool, { memberId, name: config.name, clientUrl: clientUrls[0]! }, { ttlMs: config.leaderLeaseTtlMs });
      const node = new ReplicaNode(config, pool, groupLog, store, lessor, memberId, loaded.clusterId, election, counters);
      log("info", "joined the replica set", {
        postgres: redactUrl(url),
        memberId,
        clusterId: loaded.clusterId,
        sequence: loaded.sequence,
        revision: loaded.revision,
        compactRevision: loaded.compactRevision,
      });
      await node.follow();
      node.elect();
      return node;
    } catch (error) {
      // The engine's lock must go with this attempt, or the next start could not open the copy.
      if (store !== undefined) await store.close().catch(() => undefined);
      else await engine?.close().catch(() => undefined);
      await pool.end().catch(() => undefined);
      throw error;
    }
  }

  /** True once this brain is the promoted leader (its store writes). */
  get isLeader(): boolean {
    return this.promoted && !this.stopped;
  }

  get leader(): LeaderInfo | undefined {
    return this.election.leader;
  }

  /** The leader's epoch: etcd's raft term in headers and Status. */
  get epoch(): number {
    return Math.max(this.knownEpoch, this.election.leader?.epoch ?? 0);
  }

  onLeaderChange(listener: (leader: LeaderInfo | undefined) => void): () => void {
    this.leaderListeners.add(listener);
    return () => this.leaderListeners.delete(listener);
  }

  /**
   * Where a write goes. With no leader known (or only the one at `avoid`, which
   * could not be reached), it waits for the next election as etcd holds
   * proposals while it has no leader, at most a lease TTL and a bit; then
   * "no leader". A brain elected but still catching up waits for its
   * promotion (it is about to take writes) rather than sending them to itself.
   */
  async route(avoid?: string): Promise<Route> {
    if (this.demoted) throw errors.leaderChanged();
    if (this.stopped) throw errors.stopped();
    if (this.promoted) return { local: true };
    let leader = this.election.leader;
    if (leader === undefined || leader.clientUrl === avoid) {
      leader = await this.nextLeader(avoid, this.config.leaderLeaseTtlMs + leaderWaitSlackMs);
      if (this.promoted) return { local: true };
    }
    if (leader.memberId !== this.memberId) return { local: false, url: leader.clientUrl };
    if (this.promoting === undefined) throw errors.noLeader();
    await this.promoting;
    if (!this.promoted) throw errors.leaderChanged();
    return { local: true };
  }

  /**
   * Resolves once the local copy has applied `revision` and a compaction at
   * `compactRevision` (or when it leads): a write this member forwarded is
   * answered only then, so the client reads its own write on this member, as
   * from an etcd member that proposed it. A copy that cannot apply it within
   * `timeoutMs` (cut off from PostgreSQL) or stops first fails the request as
   * etcd's proposer does ("request timed out", "server stopped"; the write
   * may have happened): answering would hand the client a revision this
   * member has not applied, and its next read here would go back in time.
   */
  applied(revision: number, compactRevision = 0, timeoutMs = appliedWaitMs): Promise<void> {
    if (this.caughtUpTo(revision, compactRevision)) return Promise.resolve();
    if (this.stopped) return Promise.reject(errors.stopped());
    return new Promise((resolve, reject) => {
      const waiter = { revision, compactRevision, settle: (_error?: EtcdError) => undefined as void };
      const timer = setTimeout(() => {
        this.appliedWaiters.delete(waiter);
        log("warn", "a forwarded write was committed but this copy did not apply it in time; the client is told it timed out", { revision, compactRevision, applied: this.store.revision });
        reject(errors.requestTimedOut());
      }, timeoutMs);
      waiter.settle = (error) => {
        clearTimeout(timer);
        if (error === undefined) resolve();
        else reject(error);
      };
      this.appliedWaiters.add(waiter);
      // The NOTIFY is on its way; asking now saves its latency when it is not.
      this.requestCatchUp();
    });
  }

  private caughtUpTo(revision: number, compactRevision: number): boolean {
    return this.promoted || (this.store.revision >= revision && this.store.compactRevision >= compactRevision);
  }

  private wakeApplied(): void {
    for (const waiter of this.appliedWaiters) {
      const applied = this.caughtUpTo(waiter.revision, waiter.compactRevision);
      if (!applied && !this.stopped) continue;
      this.appliedWaiters.delete(waiter);
      waiter.settle(applied ? undefined : errors.stopped());
    }
  }

  /** Resolves with the first leader known whose URL is not `avoid`; "no leader" after `timeoutMs`. */
  private nextLeader(avoid: string | undefined, timeoutMs: number): Promise<LeaderInfo> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const leader = this.election.leader;
        if (this.stopped) finish(() => reject(errors.stopped()));
        else if (leader !== undefined && leader.clientUrl !== avoid) finish(() => resolve(leader));
      };
      const finish = (settle: () => void) => {
        clearTimeout(timer);
        unsubscribe();
        settle();
      };
      const timer = setTimeout(() => finish(() => reject(errors.noLeader())), timeoutMs);
      const unsubscribe = this.onLeaderChange(check);
      check();
    });
  }

  /** Members with a recent heartbeat (MemberList). */
  async members(): Promise<MemberInfo[]> {
    return (await listMembers(this.pool)).map((member) => ({ memberId: member.memberId, name: member.name, clientUrls: member.clientUrls }));
  }

  /** Revisions the local copy is behind what PostgreSQL has committed (one ReadIndex query). */
  async lag(): Promise<number> {
    return Math.max(0, (await this.log.confirmedRevision()) - this.store.revision);
  }

  // --- following ---

  private async follow(): Promise<void> {
    await this.catchUp();
    this.unsubscribe = await this.log.subscribe(
      (sequence) => {
        if (this.promoted) return;
        if (sequence <= this.store.sequence) {
          // A catch-up asked for meanwhile (a forwarded write waiting to be applied) got there first: applied 0 s after its NOTIFY.
          if (this.counters.applySeconds.length < 10_000) this.counters.applySeconds.push(0);
          return;
        }
        if (this.notified.length < 10_000) this.notified.push({ sequence, at: performance.now() });
        this.requestCatchUp();
      },
      () => this.requestCatchUp(),
    );
    this.poll = setInterval(() => this.requestCatchUp(), catchUpPollMs);
    this.poll.unref();
    this.beat = setInterval(() => {
      heartbeat(this.pool, this.memberId, this.config.advertiseClientUrls).catch((error: unknown) => log("warn", "member heartbeat failed", { error: String(error) }));
    }, heartbeatMs);
    this.beat.unref();
  }

  /** Reads and applies what the log holds beyond the local copy; one run at a time, re-run when asked meanwhile. */
  private requestCatchUp(): void {
    if (this.stopped || this.promoting !== undefined) return;
    if (this.catchingUp !== undefined) {
      this.catchUpAgain = true;
      return;
    }
    this.catchingUp = (async () => {
      do {
        this.catchUpAgain = false;
        await this.catchUp();
      } while (this.catchUpAgain && !this.stopped && this.promoting === undefined);
    })()
      .catch((error: unknown) => this.catchUpFailed(error))
      .finally(() => (this.catchingUp = undefined));
  }

  private catchUpFailed(error: unknown): void {
    if (error instanceof LogTruncated) {
      this.requestRestart(`the local copy fell behind the shared log: ${error.message}`);
      return;
    }
    // PostgreSQL unreachable: the poll and the LISTEN reconnection retry; say so once per cause.
    const message = error instanceof Error ? error.message : String(error);
    if (message !== this.lastCatchUpError) log("warn", "cannot follow the shared log yet", { error: message });
    this.lastCatchUpError = message;
  }

  /** Applies every group committed after the local copy's sequence. */
  private async catchUp(): Promise<void> {
    for (;;) {
      if (this.stopped || this.promoted) return;
      const groups = await this.log.readGroups(this.store.sequence, catchUpBatch);
      for (const group of groups) {
        // A concurrent run (the final catch-up of a promotion) may have applied it.
        if (group.sequence <= this.store.sequence) continue;
        this.store.applyGroup(group);
      }
      this.lastCatchUpError = "";
      this.observeApplied();
      this.wakeApplied();
      if (groups.length < catchUpBatch) return;
      // Let requests and watch deliveries in between large batches.
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  private observeApplied(): void {
    const applied = this.store.sequence;
    const now = performance.now();
    let done = 0;
    while (done < this.notified.length && this.notified[done]!.sequence <= applied) {
      if (this.counters.applySeconds.length < 10_000) this.counters.applySeconds.push((now - this.notified[done]!.at) / 1000);
      done++;
    }
    this.notified.splice(0, done);
  }

  // --- leadership ---

  private elect(): void {
    this.election.onLeaderChange(() => {
      const leader = this.election.leader;
      if (leader !== undefined) this.knownEpoch = Math.max(this.knownEpoch, leader.epoch);
      this.counters.sawLeader(leader);
      log("info", "leader", leader === undefined ? { leader: "none" } : { leader: leader.name, memberId: leader.memberId, epoch: leader.epoch });
      for (const listener of this.leaderListeners) listener(leader);
    });
    this.election.onElected((epoch) => {
      this.knownEpoch = Math.max(this.knownEpoch, epoch);
      this.promoting ??= this.promote(epoch).catch((error: unknown) => {
        log("error", "promotion failed", { epoch, error: String(error) });
        this.requestRestart(`promotion to leader at epoch ${epoch} failed: ${String(error)}`);
      });
    });
    this.election.onDeposed((reason) => this.requestRestart(`deposed as leader: ${reason}`));
    this.store.onFailure((error) => this.requestRestart(`the shared log failed under the leader: ${String(error)}`));
    this.election.start();
  }

  /**
   * Won epoch `epoch`: the previous leader can commit nothing more (its
   * commits are fenced by the epoch this election moved), so after a final
   * catch-up to what PostgreSQL holds, this copy is the whole log and the
   * writer starts from it.
   */
  private async promote(epoch: number): Promise<void> {
    const started = performance.now();
    // The follower loop stops here: wait for a run in progress, then read to the end.
    await this.catchingUp;
    for (;;) {
      const groups = await this.log.readGroups(this.store.sequence, catchUpBatch);
      for (const group of groups) this.store.applyGroup(group);
      if (groups.length < catchUpBatch) break;
    }
    if (this.stopped) return;
    this.log.epoch = epoch;
    this.store.promote();
    this.lessor.promote();
    this.lessor.startExpiry();
    this.stopCompaction = startAutoCompaction(this.store, { mode: this.config.autoCompactionMode, retention: this.config.autoCompactionRetention });
    this.promoted = true;
    this.notified.length = 0;
    this.wakeApplied();
    log("info", "this brain is the leader", {
      epoch,
      sequence: this.store.sequence,
      revision: this.store.revision,
      catchUpMs: Math.round(performance.now() - started),
    });
  }

  /**
   * Stops writing and, on a leader, waits (at most `drainMs`) for what its
   * writer took to be answered, then hands the leadership over at once
   * (graceful stop) instead of letting it expire.
   */
  async resign(drainMs: number): Promise<void> {
    this.stopCompaction();
    this.lessor.stop();
    if (!this.promoted) return;
    // What the writer evaluated is durable, or failed (deposed meanwhile: nothing to hand over then).
    const pending = this.store.caughtUp()?.catch(() => undefined);
    if (pending !== undefined) await Promise.race([pending, new Promise((resolve) => setTimeout(resolve, drainMs).unref())]);
    this.promoted = false;
    await this.election.resign().catch((error: unknown) => log("warn", "could not resign the leadership; it expires instead", { error: String(error) }));
  }

  /** Leaves the replica set's loops and connections; the store is closed by its owner. */
  async close(): Promise<void> {
    this.stopped = true;
    this.wakeApplied();
    this.stopCompaction();
    this.lessor.stop();
    if (this.poll) clearInterval(this.poll);
    if (this.beat) clearInterval(this.beat);
    await this.election.stop().catch((error: unknown) => log("warn", "stopping the election failed", { error: String(error) }));
    await this.unsubscribe?.().catch(() => undefined);
    await this.catchingUp;
    await this.promoting;
    await this.log.close();
  }

  /** After the store is closed: the pool. */
  async end(): Promise<void> {
    await this.pool.end().catch((error: unknown) => log("warn", "closing the PostgreSQL pool failed", { error: String(error) }));
  }
}

/**
 * ReadIndex for linearizable reads; PostgreSQL out of reach is UNAVAILABLE
 * (clients retry elsewhere), not an internal error. A leader's that finds
 * another epoch fails "leader changed" as it is.
 */
async function confirmedPosition(groupLog: PgGroupLog): Promise<LogPosition> {
  try {
    return await groupLog.confirmedPosition();
  } catch (error) {
    if (error instanceof EtcdError) throw error;
    throw new EtcdError(status.UNAVAILABLE, `brain: cannot confirm the current revision with PostgreSQL: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/**
 * The local copy's directory, emptied: it is a cache of PostgreSQL, never a
 * source of truth. Only `<data-dir>/postgres-copy` is removed, and a data dir
 * that holds a RocksDB-mode brain's data is refused rather than mixed with.
 */
async function freshCopyDirectory(dataDir: string): Promise<string> {
  await mkdir(dataDir, { recursive: true });
  const entries = await readdir(dataDir);
  if (entries.includes("CURRENT") || entries.includes("brain-wal")) {
    throw new Error(
      `--data-dir ${dataDir} holds a brain's own RocksDB data (--storage rocksdb); with --storage postgres it is a local copy. Use another --data-dir, or move the data to PostgreSQL with brain migrate --to-postgres`,
    );
  }
  const directory = join(dataDir, copyDirectory);
  await rm(directory, { recursive: true, force: true });
  await mkdir(directory);
  await writeFile(join(dataDir, "README"), "brain --storage postgres: postgres-copy/ is a local copy of the shared PostgreSQL, rebuilt at every start.\n");
  return directory;
}
