// The shared group log on PostgreSQL: the leader's store appends each group
// of writes as one transaction (brain_commit_group, fenced by the leader's
// epoch); followers read the committed groups back in order.
import type pg from "pg";
import { errors } from "../../errors.js";
import { log } from "../../log.js";
import type { GroupLog, LogPosition, ReplicatedGroup, VersionRow } from "../../mvcc/group-log.js";
import type { LeaseChange } from "../../mvcc/write-context.js";
import { dedicatedClient } from "./pool.js";

/**
 * The groups a follower needs next are gone (compaction removed them or the
 * rows they carry): it must reload its copy from a snapshot instead.
 */
export class LogTruncated extends Error {
  constructor(readonly afterSequence: number, detail: string) {
    super(`the shared log no longer holds the groups after sequence ${afterSequence} (${detail}); reload the replica`);
    this.name = "LogTruncated";
  }
}

/** SQLSTATEs brain_commit_group raises (migrations.ts). */
const fenced = "WB001";
const outOfSequence = "WB002";

/** brain_kv rows removed per statement when pruning after a compaction. */
const pruneBatch = 1000;
/** brain_group rows removed per statement. */
const groupPruneBatch = 10_000;

const reconnectFirstMs = 100;
const reconnectMaxMs = 5_000;

function toNumber(value: bigint | number | string): number {
  const number = Number(value);
  if (!Number.isSafeInteger(number)) throw new Error(`PostgreSQL returned ${String(value)}, beyond what brain counts revisions and sequences in`);
  return number;
}

function sqlState(error: unknown): string | undefined {
  return typeof error === "object" && error !== null && "code" in error && typeof error.code === "string" ? error.code : undefined;
}

/** Where the log stands: the revision after its newest group, and that group's sequence. */
interface GroupRow {
  sequence: bigint;
  base_revision: bigint;
  revision: bigint;
  lease_ids: Array<bigint | null>;
  lease_ttls: Array<bigint | null>;
  compact_revision: bigint | null;
}

interface KvRow {
  revision: bigint;
  sub: number;
  tombstone: boolean;
  key: Buffer;
  kv: Buffer;
}

export class PgGroupLog implements GroupLog {
  /** The leader's epoch every append is fenced with; set on promotion. */
  epoch = 0;
  /** The connection every commit goes through, so commits keep the order of append calls. */
  private writer: pg.Client | undefined;
  /** Settles when the previous append settled. */
  private tail: Promise<void> = Promise.resolve();
  /** Set once an append failed: every later one fails without a round trip. */
  private failure: unknown;
  private readIndexRunning = false;
  private readIndexWaiters: Array<{ resolve: (position: LogPosition) => void; reject: (error: unknown) => void }> = [];
  /** ReadIndex queries sent, for tests and metrics. */
  readIndexQueries = 0;

  /**
   * `pruneDelayMs`: how long after a compaction its rows are removed here. A
   * follower a group or two behind still reads rows below the compact
   * revision to apply those groups; removing them at once would make it
   * reload its whole copy (LogTruncated).
   */
  constructor(
    private readonly pool: pg.Pool,
    private readonly options: { pruneDelayMs?: number } = {},
  ) {}

  /**
   * Commits `group` as one transaction (one round trip) at this log's epoch.
   * Calls are committed strictly in call order, each after the previous one
   * settled; once one failed, the later ones fail too without touching the
   * database (their sequence could never follow anyway). A fenced commit
   * (the epoch moved, or the sequence is not the next one: another leader
   * wrote) rejects with etcd's "leader changed".
   */
  append(group: ReplicatedGroup): Promise<void> {
    const epoch = this.epoch;
    const done = this.tail.then(() => this.commit(group, epoch));
    this.tail = done.catch(() => {});
    return done;
  }

  private async commit(group: ReplicatedGroup, epoch: number): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    const rows = group.rows;
    try {
      const writer = await this.writerClient();
      // READ COMMITTED, one statement: the function's row locks do the fencing (migrations.ts).
      await writer.query({
        name: "brain_commit_group",
        text: "SELECT brain_commit_group($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        values: [
          epoch,
          group.sequence,
          group.revision,
          rows.map((row) => row.main),
          rows.map((row) => row.sub),
          rows.map((row) => row.tombstone),
          rows.map((row) => row.key),
          rows.map((row) => row.kv),
          group.leases.map((lease) => lease.id),
          group.leases.map((lease) => (lease.ttl === undefined ? null : lease.ttl)),
          group.compactRevision ?? null,
        ],
      });
    } catch (error) {
      const state = sqlState(error);
      if (state === fenced || state === outOfSequence) {
        log("warn", "a commit was fenced: this brain no longer leads", { sequence: group.sequence, epoch, reason: (error as Error).message });
        this.failure = errors.leaderChanged();
      } else {
        this.failure = new Error(`PostgreSQL did not commit group ${group.sequence}: ${(error as Error).message}`, { cause: error });
        // The connection's state is unknown after a driver error: drop it.
        this.dropWriter();
      }
      throw this.failure;
    }
  }

  private async writerClient(): Promise<pg.Client> {
    if (this.writer !== undefined) return this.writer;
    const client = dedicatedClient(this.pool);
    client.on("error", (error) => {
      log("warn", "the commit connection to PostgreSQL failed", { error: error.message });
      if (this.writer === client) this.writer = undefined;
    });
    await client.connect();
    this.writer = client;
    return client;
  }

  private dropWriter(): void {
    const writer = this.writer;
    this.writer = undefined;
    writer?.end().catch(() => {});
  }

  /**
   * The committed groups after `afterSequence`, oldest first, at most
   * `limit`, with their rows and lease changes. One REPEATABLE READ READ ONLY
   * snapshot, so the groups and their rows are one consistent state.
   * Throws LogTruncated when a group needed next is no longer complete.
   */
  async readGroups(afterSequence: number, limit: number): Promise<ReplicatedGroup[]> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    try {
      await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
      const state = await client.query<{ sequence: bigint; pruned_revision: bigint }>(
        "SELECT sequence, pruned_revision FROM brain_state WHERE id = 1",
      );
      const committed = toNumber(state.rows[0]!.sequence);
      const pruned = toNumber(state.rows[0]!.pruned_revision);
      if (committed <= afterSequence) {
        await client.query("COMMIT");
        return [];
      }
      const { rows: groupRows } = await client.query<GroupRow>(
        "SELECT sequence, base_revision, revision, lease_ids, lease_ttls, compact_revision FROM brain_group WHERE sequence > $1 ORDER BY sequence LIMIT $2",
        [afterSequence, limit],
      );
      const first = groupRows[0];
      if (first === undefined || toNumber(first.sequence) !== afterSequence + 1) {
        throw new LogTruncated(afterSequence, first === undefined ? "no group left" : `the oldest is ${first.sequence}`);
      }
      if (toNumber(first.base_revision) < pruned) {
        throw new LogTruncated(afterSequence, `its rows from revision ${first.base_revision} on were compacted up to ${pruned}`);
      }
      const last = groupRows[groupRows.length - 1]!;
      const { rows: kvRows } = await client.query<KvRow>(
        "SELECT revision, sub, tombstone, key, kv FROM brain_kv WHERE revision > $1 AND revision <= $2 ORDER BY revision, sub",
        [first.base_revision, last.revision],
      );
      await client.query("COMMIT");
      const groups: ReplicatedGroup[] = [];
      let at = 0;
      let expected = afterSequence + 1;
      for (const row of groupRows) {
        const sequence = toNumber(row.sequence);
        if (sequence !== expected) throw new LogTruncated(afterSequence, `group ${expected} is missing`);
        expected++;
        const revision = toNumber(row.revision);
        const rows: VersionRow[] = [];
        while (at < kvRows.length && toNumber(kvRows[at]!.revision) <= revision) {
          const kv = kvRows[at++]!;
          rows.push({ main: toNumber(kv.revision), sub: kv.sub, tombstone: kv.tombstone, key: kv.key, kv: kv.kv });
        }
        const leases: LeaseChange[] = row.lease_ids.map((id, i) => {
          const ttl = row.lease_ttls[i];
          return { id: id!, ttl: ttl === null || ttl === undefined ? undefined : toNumber(ttl) };
        });
        const group: ReplicatedGroup = { sequence, revision, rows, leases };
        if (row.compact_revision !== null) group.compactRevision = toNumber(row.compact_revision);
        groups.push(group);
      }
      return groups;
    } catch (error) {
      if (!(error instanceof LogTruncated)) broken = error as Error;
      await client.query("ROLLBACK").catch(() => {});
      throw error;
    } finally {
      client.release(broken);
    }
  }

  /**
   * The revision every acknowledged write has reached (etcd's ReadIndex): a
   * write is acknowledged only after its COMMIT returned, so a query started
   * afterwards sees it. One query is in flight at a time; callers arriving
   * while it runs share the next one (the running one may have started
   * before their write was acknowledged).
   */
  async confirmedRevision(): Promise<number> {
    return (await this.confirmedPosition()).revision;
  }

  /**
   * The same ReadIndex with the sequence of the newest committed group: a
   * replica that has applied it has every group acknowledged so far, also
   * those that move no revision (compactions, leases).
   */
  confirmedPosition(): Promise<LogPosition> {
    return new Promise((resolve, reject) => {
      this.readIndexWaiters.push({ resolve, reject });
      if (!this.readIndexRunning) this.runReadIndex();
    });
  }

  private runReadIndex(): void {
    const waiters = this.readIndexWaiters;
    this.readIndexWaiters = [];
    this.readIndexRunning = true;
    this.readIndexQueries++;
    // The leader's own ReadIndex also confirms it still leads: another leader
    // may have taken over (and committed) before this one's renewal noticed.
    const epoch = this.epoch;
    // READ COMMITTED, one statement: sees every transaction committed before it began.
    this.pool
      .query<{ revision: bigint; sequence: bigint; epoch: bigint }>({
        name: "brain_read_index",
        text: "SELECT s.revision, s.sequence, l.epoch FROM brain_state s CROSS JOIN brain_leader l WHERE s.id = 1 AND l.id = 1",
      })
      .then(
        ({ rows }) => {
          const position = { revision: toNumber(rows[0]!.revision), sequence: toNumber(rows[0]!.sequence) };
          if (epoch > 0 && toNumber(rows[0]!.epoch) !== epoch) {
            for (const waiter of waiters) waiter.reject(errors.leaderChanged());
            return;
          }
          for (const waiter of waiters) waiter.resolve(position);
        },
        (error: unknown) => {
          for (const waiter of waiters) waiter.reject(error);
        },
      )
      .finally(() => {
        this.readIndexRunning = false;
        if (this.readIndexWaiters.length > 0) this.runReadIndex();
      });
  }

  /**
   * LISTENs for committed groups on a connection of its own: `onSequence`
   * gets each committed group's sequence (NOTIFY is delivered after the
   * commit, in commit order; payloads may be coalesced, so treat it as "read
   * up to here"). Reconnects with backoff when the connection is lost, and
   * calls `onReconnect` after every (re)connection, when notifications may
   * have been missed. Resolves once first listening; the returned function stops.
   */
  async subscribe(onSequence: (sequence: number) => void, onReconnect: () => void): Promise<() => Promise<void>> {
    let stopped = false;
    let client: pg.Client | undefined;
    let timer: NodeJS.Timeout | undefined;
    let delay = reconnectFirstMs;

    const connect = async (): Promise<void> => {
      const next = dedicatedClient(this.pool);
      const lost = (reason: string) => {
        if (client !== next) return;
        client = undefined;
        next.end().catch(() => {});
        if (stopped) return;
        log("warn", "lost the PostgreSQL LISTEN connection; reconnecting", { reason });
        schedule();
      };
      next.on("error", (error) => lost(error.message));
      next.on("end", () => lost("connection ended"));
      next.on("notification", (message) => {
        if (message.channel !== "brain_log" || message.payload === undefined) return;
        const sequence = Number(message.payload);
        if (Number.isSafeInteger(sequence)) onSequence(sequence);
      });
      client = next;
      try {
        await next.connect();
        await next.query("LISTEN brain_log");
      } catch (error) {
        if (client === next) client = undefined;
        next.end().catch(() => {});
        throw error;
      }
      if (stopped) {
        await next.end().catch(() => {});
        return;
      }
      delay = reconnectFirstMs;
      onReconnect();
    };

    const schedule = () => {
      if (stopped || timer !== undefined) return;
      timer = setTimeout(() => {
        timer = undefined;
        connect().catch((error: unknown) => {
          if (stopped) return;
          log("warn", "cannot LISTEN on PostgreSQL yet", { error: (error as Error).message, retryInMs: delay });
          delay = Math.min(delay * 2, reconnectMaxMs);
          schedule();
        });
      }, delay);
      timer.unref?.();
    };

    await connect();
    return async () => {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      const current = client;
      client = undefined;
      await current?.end().catch(() => {});
    };
  }

  /**
   * Drops the rows a compaction at `revision` no longer needs, as etcd does:
   * each key keeps its newest version at or below `revision` unless that is a
   * delete, and everything above; older versions and deletes at or below go.
   * First records how far rows may be missing (a follower whose next group
   * starts below that reloads), then deletes in bounded batches, oldest
   * first, so an interrupted run leaves at most a prefix of a key's history
   * removed: never a delete gone while a version it ended stays.
   * Isolation: each statement READ COMMITTED on its own; the compaction is
   * already durable (its group), so any brain may finish this.
   */
  async compacted(revision: number): Promise<void> {
    const delayMs = this.options.pruneDelayMs ?? 0;
    if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs).unref());
    const { rows } = await this.pool.query<{ pruned_revision: bigint }>(
      "UPDATE brain_state SET pruned_revision = greatest(pruned_revision, least($1, compact_revision)) WHERE id = 1 RETURNING pruned_revision",
      [revision],
    );
    const through = toNumber(rows[0]!.pruned_revision);
    let after = { revision: 0n, sub: -1 };
    for (;;) {
      const removed = await this.pool.query<{ revision: bigint; sub: number }>(
        `WITH doomed AS (
           SELECT k.revision, k.sub FROM brain_kv k
           WHERE k.revision <= $1 AND (k.revision, k.sub) > ($2, $3)
             AND (k.tombstone OR EXISTS (
               SELECT 1 FROM brain_kv n WHERE n.key = k.key AND n.revision <= $1 AND (n.revision, n.sub) > (k.revision, k.sub)))
           ORDER BY k.revision, k.sub LIMIT $4)
         DELETE FROM brain_kv d USING doomed WHERE d.revision = doomed.revision AND d.sub = doomed.sub
         RETURNING d.revision, d.sub`,
        [through, after.revision, after.sub, pruneBatch],
      );
      if (removed.rows.length === 0) break;
      for (const row of removed.rows) {
        if (row.revision > after.revision || (row.revision === after.revision && row.sub > after.sub)) after = row;
      }
      if (removed.rows.length < pruneBatch) break;
    }
    // Groups wholly below the compaction can no longer be replayed; keep the newest of them.
    for (;;) {
      const { rowCount } = await this.pool.query(
        `DELETE FROM brain_group WHERE sequence IN (
           SELECT sequence FROM brain_group
           WHERE revision < $1 AND sequence < (SELECT max(sequence) FROM brain_group WHERE revision < $1)
           ORDER BY sequence LIMIT $2)`,
        [through, groupPruneBatch],
      );
      if ((rowCount ?? 0) < groupPruneBatch) break;
    }
  }

  /** Closes the connections this log opened (not the pool). */
  async close(): Promise<void> {
    const writer = this.writer;
    this.writer = undefined;
    await writer?.end().catch(() => {});
  }
}
