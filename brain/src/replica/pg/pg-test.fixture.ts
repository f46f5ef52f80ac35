// Test helpers shared by the replica/pg tests: a database of its own per
// test on one real PostgreSQL server per test file.
import pg from "pg";
import type { Postgres } from "@wharf/testkit";

let databases = 0;

/** Creates an empty database on `server` and returns its URL. */
export async function freshDatabase(server: Postgres): Promise<string> {
  const name = `brain_test_${process.pid}_${++databases}`;
  const admin = new pg.Client({ connectionString: server.url });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  return server.url.replace(/\/postgres\?/, `/${name}?`);
}

/** Runs one statement on a connection of its own (as another party would). */
export async function sql<R extends pg.QueryResultRow = pg.QueryResultRow>(url: string, text: string, values: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end();
  }
}
