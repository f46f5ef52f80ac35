import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startPostgres, type Postgres } from "@wharf/testkit";
import { migrate, schemaVersion, SchemaTooNew } from "./migrations.js";
import { openPool, redactUrl } from "./pool.js";
import { freshDatabase, sql } from "./pg-test.fixture.js";

let server: Postgres;
beforeAll(async () => {
  server = await startPostgres();
});
afterAll(async () => {
  await server?.stop();
});

describe("brain's PostgreSQL schema", () => {
  it("is made once when three brains migrate at the same time, and migrating again changes nothing", async () => {
    const url = await freshDatabase(server);
    const pools = [openPool(url, { name: "a" }), openPool(url, { name: "b" }), openPool(url, { name: "c" })];
    try {
      const results = await Promise.all(pools.map((pool) => migrate(pool)));
      // Exactly one of them applied the migrations; the others found them applied.
      expect(results.filter((result) => result.from === 0)).toHaveLength(1);
      expect(results.filter((result) => result.from === schemaVersion)).toHaveLength(2);
      const [state] = await sql<{ cluster_id: string; sequence: string; revision: string; compact_revision: string }>(url, "SELECT * FROM brain_state");
      expect(BigInt(state!.cluster_id)).toBeGreaterThan(0n);
      expect([state!.sequence, state!.revision, state!.compact_revision]).toEqual(["0", "1", "0"]);
      const applied = await sql(url, "SELECT version FROM brain_schema_migrations ORDER BY version");
      expect(applied.map((row) => row.version)).toEqual(Array.from({ length: schemaVersion }, (_, i) => i + 1));

      expect(await migrate(pools[0]!)).toEqual({ from: schemaVersion, to: schemaVersion });
      const [again] = await sql(url, "SELECT cluster_id FROM brain_state");
      expect(again!.cluster_id).toBe(state!.cluster_id);
      const tables = await sql(url, "SELECT tablename FROM pg_tables WHERE tablename LIKE 'brain%' ORDER BY tablename");
      expect(tables.map((row) => row.tablename)).toEqual([
        "brain_group", "brain_kv", "brain_leader", "brain_lease", "brain_member", "brain_schema_migrations", "brain_state",
      ]);
      // int8 comes back exact, as a bigint.
      const { rows } = await pools[1]!.query("SELECT 9007199254740993::bigint AS big, ARRAY[9007199254740995, NULL]::bigint[] AS many");
      expect(rows[0]).toEqual({ big: 9007199254740993n, many: [9007199254740995n, null] });
      // The session settings every connection gets.
      const settings = await pools[1]!.query(
        "SELECT current_setting('application_name') AS name, current_setting('statement_timeout') AS statement, current_setting('idle_in_transaction_session_timeout') AS idle",
      );
      expect(settings.rows[0]).toEqual({ name: "brain/b", statement: "30s", idle: "1min" });
    } finally {
      await Promise.all(pools.map((pool) => pool.end()));
    }
  });

  it("refuses a database whose schema is newer than this brain knows", async () => {
    const url = await freshDatabase(server);
    const pool = openPool(url);
    try {
      await migrate(pool);
      await sql(url, "INSERT INTO brain_schema_migrations (version) VALUES ($1)", [schemaVersion + 1]);
      const error = await migrate(pool).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(SchemaTooNew);
      expect((error as Error).message).toContain(`schema version ${schemaVersion + 1}`);
    } finally {
      await pool.end();
    }
  });

  it("never shows a password in a URL meant for logs", () => {
    expect(redactUrl("postgres://brain:s3cret@db.example:5432/brain?sslmode=require")).toBe("postgres://brain:***@db.example:5432/brain?sslmode=require");
    expect(redactUrl("postgres://db.example/brain?password=s3cret&user=brain")).toBe("postgres://db.example/brain?password=***&user=brain");
    expect(redactUrl("postgres://brain@127.0.0.1:5432/brain")).toBe("postgres://brain@127.0.0.1:5432/brain");
    expect(redactUrl("host=db user=brain password='s3 cret' dbname=brain")).toBe("host=db user=brain password=*** dbname=brain");
  });
});
