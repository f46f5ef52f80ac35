// Writes a migrated keyspace into the PostgreSQL schema brain's replicas
// share (replica/pg/migrations.ts), in ONE transaction: batches of rows go
// in as they are read, and nothing is visible, to brains or anyone else,
// until the final COMMIT. A failure at any point (the source, a constraint,
// the connection) rolls everything back, or PostgreSQL aborts the
// transaction when the connection goes, so the database is left as it was.
//
// Isolation: READ COMMITTED plus EXCLUSIVE table locks taken first. They
// wait for any writer that is mid-transaction and then keep every other
// writer (a brain's commit or election, a second migration) out until the
// COMMIT, so the emptiness checks below see the final committed state and
// stay true while the rows go in. Plain reads are not blocked.
import type pg from "pg";
import { keyId } from "../mvcc/kv.js";
import { writeTombstone, writeVersion, type VersionSink } from "../mvcc/version-writer.js";
import { MigrationError, type ImportedEvent, type ImportSummary } from "./import-writer.js";
import type { SourceEnd } from "./source.js";

export interface PostgresTargetOptions {
  /** Rows per INSERT (default 2000); a batch also ends at `batchBytes`. */
  batchRows?: number;
  batchBytes?: number;
  /** Called after each batch is inserted (inside the transaction), with the versions written so far. */
  onBatch?: (versions: number) => void | Promise<void>;
}

const discard: VersionSink = { put: () => undefined };
/** A member with a heartbeat this recent is a running brain (MemberList's window). */
const liveMemberSeconds = 30;

export class PostgresImportWriter {
  private readonly batchRows: number;
  private readonly batchBytes: number;
  private mains: number[] = [];
  private subs: number[] = [];
  private tombstones: boolean[] = [];
  private keys: Uint8Array[] = [];
  private kvs: Uint8Array[] = [];
  private bytes = 0;
  private last = { main: 0, sub: -1 };
  private events = 0;
  private readonly live = new Set<string>();
  private done = false;

  private constructor(
    private readonly client: pg.PoolClient,
    private readonly where: string,
    private readonly options: PostgresTargetOptions,
  ) {
    this.batchRows = options.batchRows ?? 2000;
    this.batchBytes = options.batchBytes ?? 8 * 1024 * 1024;
  }

  /**
   * Begins the import's transaction on a client of `pool` (schema already
   * migrated). Refuses a database that holds brain data or that a brain is
   * using; the transaction is rolled back then.
   */
  static async open(pool: pg.Pool, where: string, options: PostgresTargetOptions = {}): Promise<PostgresImportWriter> {
    const client = await pool.connect();
    // A connection lost between queries is reported as an event, not to a
    // query; the next query fails with it, and abort() drops the client.
    client.on("error", () => undefined);
    const writer = new PostgresImportWriter(client, where, options);
    try {
      await client.query("BEGIN ISOLATION LEVEL READ COMMITTED");
      // The import may wait on its source between batches for longer than a brain's idle limit.
      await client.query("SET LOCAL idle_in_transaction_session_timeout = 0");
      await client.query("SET LOCAL application_name = 'brain migrate'");
      // In the order brain_commit_group locks them (leader row, then state), so a commit
      // already under way finishes first instead of deadlocking with the import.
      await client.query("LOCK TABLE brain_leader, brain_state, brain_kv, brain_lease, brain_group, brain_member IN EXCLUSIVE MODE");
      await writer.refuseUnlessEmpty();
    } catch (error) {
      await writer.abort(error);
      throw error;
    }
    return writer;
  }

  private async refuseUnlessEmpty(): Promise<void> {
    const state = await this.client.query<{ sequence: string; revision: string; versions: boolean; leases: boolean; groups: boolean }>(
      `SELECT s.sequence::text AS sequence, s.revision::text AS revision,
              EXISTS (SELECT 1 FROM brain_kv) AS versions,
              EXISTS (SELECT 1 FROM brain_lease) AS leases,
              EXISTS (SELECT 1 FROM brain_group) AS groups
       FROM brain_state s WHERE s.id = 1`,
    );
    const row = state.rows[0];
    if (row === undefined) throw new MigrationError(`${this.where} has no brain_state row: its brain schema is not set up`);
    if (row.versions || row.leases || row.groups || BigInt(row.sequence) > 0n || BigInt(row.revision) > 1n) {
      throw new MigrationError(
        `${this.where} already holds brain data (revision ${row.revision}, ${row.sequence} groups committed); ` +
          "migrate into a database without brain data (a new database, or drop the brain_* tables)",
      );
    }
    const leader = await this.client.query<{ name: string }>("SELECT name FROM brain_leader WHERE id = 1 AND expires_at > now()");
    if (leader.rows.length > 0) {
      throw new MigrationError(`brain "${leader.rows[0]!.name}" is the leader on ${this.where}; stop every brain using the database, then migrate`);
    }
    const members = await this.client.query<{ name: string }>(
      `SELECT name FROM brain_member WHERE heartbeat_at > now() - make_interval(secs => $1) ORDER BY name`,
      [liveMemberSeconds],
    );
    if (members.rows.length > 0) {
      throw new MigrationError(
        `brains are running on ${this.where} (${members.rows.map((member) => member.name).join(", ")} sent a heartbeat in the last ${liveMemberSeconds} s); ` +
          "stop every brain using the database, then migrate",
      );
    }
  }

  /** Adds one event; events other than `base` ones must come in revision order, after them. */
  async add(event: ImportedEvent): Promise<void> {
    if (event.main < this.last.main || (event.main === this.last.main && event.sub <= this.last.sub)) {
      throw new MigrationError(`revision ${event.main}.${event.sub} comes after ${this.last.main}.${this.last.sub}: the source is not in revision order`);
    }
    if (event.base !== true) this.last = { main: event.main, sub: event.sub };
    let key: Uint8Array;
    let bytes: Uint8Array;
    if (event.type === "put") {
      if (event.kv.modRevision !== event.main) {
        throw new MigrationError(`the version of a key at revision ${event.main} says it was modified at ${event.kv.modRevision}`);
      }
      // The same bytes brain's writer stores and a follower's copy receives.
      bytes = writeVersion(discard, event.kv, event.sub).bytes;
      key = event.kv.key;
      this.live.add(keyId(key));
    } else {
      bytes = writeTombstone(discard, event.key, event.main, event.sub).bytes;
      key = event.key;
      this.live.delete(keyId(key));
    }
    this.mains.push(event.main);
    this.subs.push(event.sub);
    this.tombstones.push(event.type === "delete");
    this.keys.push(key);
    this.kvs.push(bytes);
    this.bytes += key.length + bytes.length;
    this.events++;
    if (this.mains.length >= this.batchRows || this.bytes >= this.batchBytes) await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.mains.length === 0) return;
    await this.client.query(
      `INSERT INTO brain_kv (revision, sub, key, tombstone, kv)
       SELECT * FROM unnest($1::bigint[], $2::int[], $3::bytea[], $4::boolean[], $5::bytea[])`,
      [this.mains, this.subs, this.keys, this.tombstones, this.kvs],
    );
    this.mains = [];
    this.subs = [];
    this.tombstones = [];
    this.keys = [];
    this.kvs = [];
    this.bytes = 0;
    await this.options.onBatch?.(this.events);
  }

  /**
   * Inserts the leases, sets brain_state to where the source stood and
   * commits. No group is recorded: the first elected brain loads the rows
   * as any brain does at start and commits group 1 after them.
   */
  async finish(end: SourceEnd): Promise<ImportSummary> {
    await this.flush();
    const revision = Math.max(end.revision, this.last.main, 1);
    const ids = end.leases.map((lease) => lease.id);
    const ttls = end.leases.map((lease) => lease.ttl);
    if (ids.length > 0) {
      await this.client.query("INSERT INTO brain_lease (id, ttl) SELECT * FROM unnest($1::bigint[], $2::bigint[])", [ids, ttls]);
    }
    await this.client.query(
      `UPDATE brain_state
       SET sequence = 0, revision = $1, compact_revision = $2,
           -- rows at or below the compact revision that no read needs are not here
           pruned_revision = $2,
           cluster_id = coalesce($3::bigint, cluster_id)
       WHERE id = 1`,
      [revision, end.compactRevision, end.clusterId ?? null],
    );
    // A brain that led this database before (with nothing committed) and is
    // paused can never commit into the migrated data: its epoch is gone.
    await this.client.query("UPDATE brain_leader SET epoch = epoch + 1 WHERE id = 1 AND epoch > 0");
    await this.client.query("COMMIT");
    this.done = true;
    this.client.release();
    return { revision, compactRevision: end.compactRevision, events: this.events, liveKeys: this.live.size, leases: end.leases.length };
  }

  /** Rolls the transaction back (or drops the connection, which does the same). */
  async abort(cause?: unknown): Promise<void> {
    if (this.done) return;
    this.done = true;
    try {
      await this.client.query("ROLLBACK");
      this.client.release();
    } catch (error) {
      // The connection is gone; PostgreSQL has aborted the transaction with it.
      this.client.release(error instanceof Error ? error : new Error(String(cause)));
    }
  }
}
