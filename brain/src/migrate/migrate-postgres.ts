// `brain migrate --to-postgres`: moves an etcd keyspace (a snapshot file or a
// running member) or a stopped brain's data dir into the PostgreSQL database
// a replica set of brains shares. The schema is brought up to date first
// (the same migrations every brain runs at start); the data goes in as one
// transaction (postgres-target.ts), so a failed migration leaves the
// database as it was.
import { migrate as migrateSchema } from "../replica/pg/migrations.js";
import { openPool, redactUrl } from "../replica/pg/pool.js";
import { openDataDirSource } from "./data-dir-source.js";
import { openEtcdSource } from "./etcd-source.js";
import { MigrationError, type ImportSummary } from "./import-writer.js";
import type { MigrationFrom } from "./migrate.js";
import { PostgresImportWriter, type PostgresTargetOptions } from "./postgres-target.js";
import { openSnapshotSource } from "./snapshot-source.js";
import type { MigrationSource } from "./source.js";

export type PostgresMigrationFrom = MigrationFrom | { dataDir: string };

async function openSource(from: PostgresMigrationFrom): Promise<MigrationSource> {
  if ("dataDir" in from) return openDataDirSource(from.dataDir);
  if ("snapshot" in from) return openSnapshotSource(from.snapshot);
  return openEtcdSource(from.etcd);
}

export interface PostgresMigrationOptions extends PostgresTargetOptions {
  progress?: (text: string) => void;
}

export async function migrateToPostgres(from: PostgresMigrationFrom, url: string, options: PostgresMigrationOptions = {}): Promise<ImportSummary> {
  const where = redactUrl(url);
  // A data dir a running brain holds is refused before the database is touched.
  const source = await openSource(from);
  const pool = openPool(url, { max: 1, name: "migrate" });
  let writer: PostgresImportWriter | undefined;
  // Errors of the database say so (a refused connection names no port's purpose).
  const inDatabase = async <T>(step: Promise<T>): Promise<T> => {
    try {
      return await step;
    } catch (error) {
      if (error instanceof MigrationError) throw error;
      throw new MigrationError(`PostgreSQL ${where}: ${(error as Error).message}`, { cause: error });
    }
  };
  try {
    await inDatabase(migrateSchema(pool));
    writer = await inDatabase(PostgresImportWriter.open(pool, where, options));
    let count = 0;
    for await (const event of source.events()) {
      await inDatabase(writer.add(event));
      if (++count % 100_000 === 0) options.progress?.(`${count} events read from ${source.description}`);
    }
    const end = await source.finish();
    const summary = await inDatabase(writer.finish(end));
    writer = undefined;
    return summary;
  } catch (error) {
    await writer?.abort(error);
    throw error;
  } finally {
    await source.close();
    await pool.end();
  }
}
