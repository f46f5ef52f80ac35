// Leader election through PostgreSQL: one row (brain_leader) holds the
// leader's epoch, identity and lease expiry, on PostgreSQL's clock. Safety
// does not rest on timing: every commit is fenced by the epoch
// (brain_commit_group). The lease and the session lock are about liveness:
// how fast a dead or paused leader is replaced, and that a healthy one is not.
import type pg from "pg";
import { log } from "../../log.js";
import { dedicatedClient } from "./pool.js";

export interface LeaderInfo {
  epoch: number;
  memberId: bigint;
  name: string;
  clientUrl: string;
}

export interface ElectionMember {
  memberId: bigint;
  name: string;
  clientUrl: string;
}

export interface ElectionOptions {
  /** The leader's lease: renewed every ttl/3; a candidate takes over once it expired. */
  ttlMs: number;
}

/**
 * pg_try_advisory_lock key the leader holds on its session for its whole
 * leadership ("brain-ldr" in ASCII, arbitrary but fixed). When a candidate
 * obtains it, the leader's session ended (kill -9, a lost host): it takes
 * over at once instead of waiting out the lease.
 */
const leaderLock = 0x627261696e6c6472n;

/** A listener that throws must not look like a PostgreSQL failure (which deposes). */
function notify<T>(listeners: Set<(value: T) => void>, value: T): void {
  for (const listener of listeners) {
    try {
      listener(value);
    } catch (error) {
      log("error", "a leader election listener failed", { error: String(error) });
    }
  }
}

interface LeaderRow {
  epoch: bigint;
  member_id: bigint;
  name: string;
  client_url: string;
  locked: boolean;
  expired: boolean;
}

/**
 * Campaigns for leadership, renews it while held, and tells listeners.
 *
 * Followers look at the row every campaign tick (ttl/6, at most 250 ms).
 * A follower takes over when the lease expired (expires_at < now()) or,
 * when the leader recorded that it holds the session lock, when it obtains
 * that lock itself: the leader's session is gone. Taking over is one
 * UPDATE ... RETURNING that moves the epoch by one, conditioned on the epoch
 * it saw, so two candidates never both win an epoch (isolation: the single
 * statement's row lock, READ COMMITTED re-checks the condition on the newest
 * row). It also waits for every commit that holds the row FOR SHARE.
 *
 * The leader renews every ttl/3 with `WHERE epoch = mine`. It is deposed when
 * a renewal finds another epoch, its session is lost, or its local deadline
 * (when the last successful renewal was sent + ttl - margin) passes first:
 * that deadline falls before the lease PostgreSQL granted (its now() at the
 * renewal is no earlier than our send), so it stops before anyone may take over.
 */
export class LeaderElection {
  private session: pg.Client | undefined;
  private lockHeld = false;
  private leading: { epoch: number } | undefined;
  private current: LeaderInfo | undefined;
  private running = false;
  private loopTimer: NodeJS.Timeout | undefined;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private readonly electedListeners = new Set<(epoch: number) => void>();
  private readonly deposedListeners = new Set<(reason: string) => void>();
  private readonly changeListeners = new Set<(leader: LeaderInfo | undefined) => void>();
  private readonly campaignMs: number;
  private readonly renewMs: number;
  private readonly marginMs: number;

  constructor(
    private readonly pool: pg.Pool,
    private readonly me: ElectionMember,
    private readonly options: ElectionOptions,
  ) {
    this.campaignMs = Math.min(options.ttlMs / 6, 250);
    this.renewMs = options.ttlMs / 3;
    this.marginMs = options.ttlMs / 6;
  }

  /** The leader as last seen (this brain's own entry while it leads); undefined when none holds a live lease. */
  get leader(): LeaderInfo | undefined {
    return this.current;
  }

  /** This brain's epoch while it leads. */
  get epoch(): number | undefined {
    return this.leading?.epoch;
  }

  get isLeader(): boolean {
    return this.leading !== undefined;
  }

  onElected(listener: (epoch: number) => void): () => void {
    this.electedListeners.add(listener);
    return () => this.electedListeners.delete(listener);
  }

  onDeposed(listener: (reason: string) => void): () => void {
    this.deposedListeners.add(listener);
    return () => this.deposedListeners.delete(listener);
  }

  onLeaderChange(listener: (leader: LeaderInfo | undefined) => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.schedule(0);
  }

  /**
   * Stops campaigning and closes the session. A leader stopped this way does
   * not touch the row: its lock goes with the session, so a candidate takes
   * over within a campaign tick. No listener is called.
   */
  async stop(): Promise<void> {
    await this.halt();
    this.leading = undefined;
    this.closeSession();
  }

  /**
   * For a graceful stop: ends this brain's lease now (expires_at = now()) if
   * it leads, releases the lock and stops campaigning. No listener is called.
   */
  async resign(): Promise<void> {
    await this.halt();
    const leading = this.leading;
    this.leading = undefined;
    if (leading !== undefined && this.session !== undefined) {
      try {
        await this.session.query("UPDATE brain_leader SET expires_at = now(), locked = false WHERE id = 1 AND epoch = $1", [leading.epoch]);
        log("info", "resigned the leadership", { epoch: leading.epoch });
      } catch (error) {
        log("warn", "could not resign the leadership; it lapses with the lease", { error: (error as Error).message });
      }
    }
    this.closeSession();
  }

  private async halt(): Promise<void> {
    this.running = false;
    if (this.loopTimer !== undefined) clearTimeout(this.loopTimer);
    this.clearDeadline();
    await this.ticking;
  }

  private schedule(delayMs: number): void {
    this.loopTimer = setTimeout(() => {
      this.loopTimer = undefined;
      this.ticking = this.tick()
        .catch((error: unknown) => {
          log("warn", "leader election: PostgreSQL failed; retrying", { error: (error as Error).message });
          this.closeSession();
          if (this.leading !== undefined) this.depose("lost the PostgreSQL session that holds the leader lock");
        })
        .finally(() => {
          this.ticking = undefined;
          if (this.running) this.schedule(this.leading !== undefined ? this.renewMs : this.campaignMs);
        });
    }, delayMs);
  }

  private async connected(): Promise<pg.Client> {
    if (this.session !== undefined) return this.session;
    const session = dedicatedClient(this.pool);
    session.on("error", (error) => {
      if (this.session !== session) return;
      log("warn", "leader election: the PostgreSQL session failed", { error: error.message });
      this.closeSession();
      if (this.leading !== undefined) this.depose("lost the PostgreSQL session that holds the leader lock");
    });
    await session.connect();
    this.session = session;
    this.lockHeld = false;
    return session;
  }

  private closeSession(): void {
    const session = this.session;
    this.session = undefined;
    this.lockHeld = false;
    // Ending the session releases the advisory lock with it.
    session?.end().catch(() => {});
  }

  /** A query on the session, bounded by the ttl: a stuck one breaks the session. */
  private async query<R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<R[]> {
    const session = await this.connected();
    const result = await session.query<R>({ text, values, query_timeout: this.options.ttlMs } as pg.QueryConfig);
    return result.rows;
  }

  private async tick(): Promise<void> {
    if (this.leading !== undefined) await this.renew(this.leading.epoch);
    else await this.campaign();
  }

  private async campaign(): Promise<void> {
    const [row] = await this.query<LeaderRow>(
      "SELECT epoch, member_id, name, client_url, locked, expires_at < now() AS expired FROM brain_leader WHERE id = 1",
    );
    if (row === undefined) throw new Error("brain_leader has no row: the schema was not migrated");
    this.see(row.expired || row.epoch === 0n ? undefined : { epoch: Number(row.epoch), memberId: row.member_id, name: row.name, clientUrl: row.client_url });
    if (!this.running) return;
    // The lock says something only while the leader recorded that it holds it.
    if (!this.lockHeld && (row.expired || row.locked)) {
      const [{ locked }] = (await this.query<{ locked: boolean }>("SELECT pg_try_advisory_lock($1) AS locked", [leaderLock])) as [{ locked: boolean }];
      this.lockHeld = locked;
    }
    if (!row.expired && !(row.locked && this.lockHeld)) {
      await this.releaseLock();
      return;
    }
    const sent = Date.now();
    const [won] = await this.query<{ epoch: bigint }>(
      `UPDATE brain_leader
         SET epoch = epoch + 1, member_id = $2, name = $3, client_url = $4, locked = $5, expires_at = now() + $6 * interval '1 millisecond'
       WHERE id = 1 AND epoch = $1 AND (expires_at < now() OR (locked AND $5))
       RETURNING epoch`,
      [row.epoch, this.me.memberId, this.me.name, this.me.clientUrl, this.lockHeld, this.options.ttlMs],
    );
    if (won === undefined) {
      await this.releaseLock();
      return;
    }
    if (!this.running) {
      // Stopped while taking over: give it back at once.
      await this.query("UPDATE brain_leader SET expires_at = now(), locked = false WHERE id = 1 AND epoch = $1", [won.epoch]);
      return;
    }
    const epoch = Number(won.epoch);
    this.leading = { epoch };
    this.armDeadline(sent);
    log("info", "elected leader", { epoch, member: this.me.name, via: row.expired ? "the lease expired" : "the leader's session ended" });
    this.see({ epoch, memberId: this.me.memberId, name: this.me.name, clientUrl: this.me.clientUrl });
    notify(this.electedListeners, epoch);
  }

  private async renew(epoch: number): Promise<void> {
    // A leader that took over on expiry (the old holder's session still had
    // the lock) picks the lock up once it is free, so that its own end is
    // detected quickly too.
    if (!this.lockHeld) {
      const [{ locked }] = (await this.query<{ locked: boolean }>("SELECT pg_try_advisory_lock($1) AS locked", [leaderLock])) as [{ locked: boolean }];
      this.lockHeld = locked;
    }
    const sent = Date.now();
    const renewed = await this.query(
      "UPDATE brain_leader SET expires_at = now() + $2 * interval '1 millisecond', locked = $3 WHERE id = 1 AND epoch = $1 RETURNING epoch",
      [epoch, this.options.ttlMs, this.lockHeld],
    );
    if (this.leading?.epoch !== epoch) return; // deposed meanwhile (deadline)
    if (renewed.length === 0) {
      this.depose("another brain took over the leadership");
      return;
    }
    this.armDeadline(sent);
  }

  private armDeadline(sent: number): void {
    this.clearDeadline();
    const at = sent + this.options.ttlMs - this.marginMs;
    this.deadlineTimer = setTimeout(() => this.depose("could not renew the leader lease in time"), Math.max(0, at - Date.now()));
  }

  private clearDeadline(): void {
    if (this.deadlineTimer !== undefined) clearTimeout(this.deadlineTimer);
    this.deadlineTimer = undefined;
  }

  private depose(reason: string): void {
    if (this.leading === undefined) return;
    const epoch = this.leading.epoch;
    this.leading = undefined;
    this.clearDeadline();
    log("warn", "no longer the leader", { epoch, reason });
    // Let go of the lock so a candidate need not wait out the lease.
    if (this.lockHeld) this.closeSession();
    this.see(undefined);
    notify(this.deposedListeners, reason);
  }

  private async releaseLock(): Promise<void> {
    if (!this.lockHeld) return;
    await this.query("SELECT pg_advisory_unlock($1)", [leaderLock]);
    this.lockHeld = false;
  }

  private see(leader: LeaderInfo | undefined): void {
    const before = this.current;
    this.current = leader;
    if (before?.epoch === leader?.epoch && before?.memberId === leader?.memberId) return;
    notify(this.changeListeners, leader);
  }
}
