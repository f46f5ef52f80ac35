// The PostgreSQL schema of brain on a shared database, as versioned
// migrations. Each brain runs migrate() at start; the first one to take the
// advisory lock applies what is missing, the others then find nothing to do.
import type pg from "pg";

export interface Migration {
  version: number;
  sql: string;
}

/**
 * Every table is named brain_* so a database shared with other software
 * stays readable. The layout mirrors brain's own storage (storage/keys.ts):
 * one row per version keyed by its revision, the exact mvccpb.KeyValue
 * bytes a response carries, so a replica's local copy is these rows as is.
 */
export const migrations: Migration[] = [
  {
    version: 1,
    sql: `
-- The shared position of the log. One row. sequence: the newest committed
-- group; revision: the store's revision after it; compact_revision: reads
-- below it fail; pruned_revision: brain_kv rows at or below it may have been
-- removed by compaction (a follower behind it must reload).
CREATE TABLE brain_state (
  id int PRIMARY KEY CHECK (id = 1),
  cluster_id bigint NOT NULL CHECK (cluster_id > 0),
  sequence bigint NOT NULL,
  revision bigint NOT NULL,
  compact_revision bigint NOT NULL,
  pruned_revision bigint NOT NULL DEFAULT 0
);
-- A random positive int64 (gen_random_uuid is built in since PostgreSQL 13
-- and draws from the server's strong random source).
INSERT INTO brain_state (id, cluster_id, sequence, revision, compact_revision)
VALUES (1, greatest(1, ('x' || substr(replace(gen_random_uuid()::text, '-', ''), 1, 16))::bit(64)::bigint & 9223372036854775807), 0, 1, 0);

-- Every version of every key, once, keyed by revision (etcd's key bucket).
-- In (revision, sub) order it is the watch log.
CREATE TABLE brain_kv (
  revision bigint NOT NULL,
  sub int NOT NULL,
  key bytea NOT NULL,
  tombstone boolean NOT NULL,
  kv bytea NOT NULL,
  PRIMARY KEY (revision, sub)
);
-- A key's versions, newest first: the current view and compaction use it.
CREATE INDEX brain_kv_key ON brain_kv (key, revision DESC, sub DESC);

-- Each key's newest version, when it is not a delete: the live keyspace.
CREATE VIEW brain_current AS
  SELECT key, revision, sub, kv
  FROM (SELECT DISTINCT ON (key) key, revision, sub, tombstone, kv FROM brain_kv ORDER BY key, revision DESC, sub DESC) newest
  WHERE NOT tombstone;

-- Granted leases and their TTL in seconds (keepalives stay in the leader's memory).
CREATE TABLE brain_lease (
  id bigint PRIMARY KEY,
  ttl bigint NOT NULL
);

-- One row per committed group: what a follower replays. Its rows are the
-- brain_kv rows with base_revision < revision <= revision. Lease changes in
-- the order made; a NULL ttl is a revoke.
CREATE TABLE brain_group (
  sequence bigint PRIMARY KEY,
  base_revision bigint NOT NULL,
  revision bigint NOT NULL,
  epoch bigint NOT NULL,
  lease_ids bigint[] NOT NULL,
  lease_ttls bigint[] NOT NULL,
  compact_revision bigint,
  committed_at timestamptz NOT NULL DEFAULT now()
);

-- The leader's lease. One row; epoch 0 with an expired lease means no leader
-- has been elected yet (brain migrate commits its import at epoch 0).
-- locked: the leader holds the leader advisory lock on its session, so a
-- candidate that obtains it knows that session ended (election.ts).
CREATE TABLE brain_leader (
  id int PRIMARY KEY CHECK (id = 1),
  epoch bigint NOT NULL,
  member_id bigint NOT NULL,
  name text NOT NULL,
  client_url text NOT NULL,
  expires_at timestamptz NOT NULL,
  locked boolean NOT NULL DEFAULT false
);
INSERT INTO brain_leader (id, epoch, member_id, name, client_url, expires_at) VALUES (1, 0, 0, '', '', '-infinity');

-- Brains that joined the replica set; one per --name, stable across restarts.
CREATE TABLE brain_member (
  member_id bigint PRIMARY KEY CHECK (member_id > 0),
  name text NOT NULL UNIQUE,
  client_urls text[] NOT NULL,
  heartbeat_at timestamptz NOT NULL
);

-- One group of writes, committed by the leader in one round trip.
-- Isolation: READ COMMITTED (the default) plus row locks, which is what makes
-- it safe:
--  * FOR SHARE on the leader row at the caller's epoch. A takeover UPDATEs
--    that row, which waits for every commit holding the share lock and makes
--    every later one find no row: each commit either finished before the new
--    epoch existed (so the new leader's catch-up reads it) or fails 'WB001'.
--  * FOR UPDATE on the state row serialises commits; the sequence must follow
--    the committed one exactly ('WB002'), so no group is lost or applied twice.
--  * the primary key (revision, sub) makes a reused revision impossible.
-- The NOTIFY is delivered to listeners when the transaction commits.
CREATE FUNCTION brain_commit_group(
  p_epoch bigint, p_sequence bigint, p_revision bigint,
  p_main bigint[], p_sub int[], p_tombstone boolean[], p_key bytea[], p_kv bytea[],
  p_lease_id bigint[], p_lease_ttl bigint[], p_compact bigint
) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
  v_sequence bigint;
  v_revision bigint;
BEGIN
  PERFORM 1 FROM brain_leader WHERE id = 1 AND epoch = p_epoch FOR SHARE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'fenced: epoch % is no longer the leader''s', p_epoch USING ERRCODE = 'WB001';
  END IF;
  SELECT sequence, revision INTO v_sequence, v_revision FROM brain_state WHERE id = 1 FOR UPDATE;
  IF v_sequence <> p_sequence - 1 THEN
    RAISE EXCEPTION 'group % does not follow the committed group %', p_sequence, v_sequence USING ERRCODE = 'WB002';
  END IF;
  IF p_revision < v_revision THEN
    RAISE EXCEPTION 'group % would move the revision back from % to %', p_sequence, v_revision, p_revision USING ERRCODE = 'WB002';
  END IF;
  IF cardinality(p_main) > 0 THEN
    INSERT INTO brain_kv (revision, sub, key, tombstone, kv)
      SELECT * FROM unnest(p_main, p_sub, p_key, p_tombstone, p_kv);
  END IF;
  IF cardinality(p_lease_id) > 0 THEN
    -- The last change of each lease in the group wins.
    WITH changes AS (
      SELECT DISTINCT ON (id) id, ttl FROM unnest(p_lease_id, p_lease_ttl) WITH ORDINALITY AS c(id, ttl, n) ORDER BY id, n DESC
    ), revoked AS (
      DELETE FROM brain_lease l USING changes c WHERE l.id = c.id AND c.ttl IS NULL
    )
    INSERT INTO brain_lease (id, ttl) SELECT id, ttl FROM changes WHERE ttl IS NOT NULL
      ON CONFLICT (id) DO UPDATE SET ttl = excluded.ttl;
  END IF;
  UPDATE brain_state
    SET sequence = p_sequence, revision = p_revision, compact_revision = greatest(compact_revision, coalesce(p_compact, 0))
    WHERE id = 1;
  INSERT INTO brain_group (sequence, base_revision, revision, epoch, lease_ids, lease_ttls, compact_revision)
    VALUES (p_sequence, v_revision, p_revision, p_epoch, p_lease_id, p_lease_ttl, p_compact);
  PERFORM pg_notify('brain_log', p_sequence::text);
END
$fn$;
`,
  },
];

/** The newest schema this code knows. */
export const schemaVersion = Math.max(...migrations.map((migration) => migration.version));

/** pg_advisory_xact_lock key of schema changes ("brain-sch" in ASCII, arbitrary but fixed). */
const migrationLock = 0x627261696e736368n;

export class SchemaTooNew extends Error {
  constructor(readonly found: number) {
    super(
      `the PostgreSQL database holds brain schema version ${found}; this brain knows versions up to ${schemaVersion}. ` +
        "Run a newer brain (a database is never downgraded).",
    );
    this.name = "SchemaTooNew";
  }
}

/**
 * Brings the schema to `schemaVersion`. All of it in one transaction under a
 * transaction-scoped advisory lock: brains starting together apply each
 * migration once, and a failed migration leaves nothing half made.
 * Refuses a database whose schema is newer than this code.
 */
export async function migrate(pool: pg.Pool): Promise<{ from: number; to: number }> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    await client.query("SELECT pg_advisory_xact_lock($1)", [migrationLock]);
    await client.query(
      "CREATE TABLE IF NOT EXISTS brain_schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    );
    const { rows } = await client.query<{ version: number | null }>("SELECT max(version) AS version FROM brain_schema_migrations");
    const from = rows[0]?.version ?? 0;
    if (from > schemaVersion) throw new SchemaTooNew(from);
    for (const migration of migrations) {
      if (migration.version <= from) continue;
      await client.query(migration.sql);
      await client.query("INSERT INTO brain_schema_migrations (version) VALUES ($1)", [migration.version]);
    }
    await client.query("COMMIT");
    return { from, to: schemaVersion };
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}
