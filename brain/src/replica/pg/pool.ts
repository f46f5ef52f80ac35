// Connections to the shared PostgreSQL. Every brain of a replica set talks to
// the same database; this module is the one place that knows how.
import pg from "pg";
import { log } from "../../log.js";

const int8Oid = 20;
const int8ArrayOid = 1016;

/**
 * int8 (revisions, sequences, lease and member ids) comes back as a bigint:
 * the driver's default is a string, and a JavaScript number would silently
 * round ids above 2^53. Per pool, not through the driver's global parsers,
 * so nothing else in the process is affected.
 */
const types: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: "text" | "binary") => {
    if (format !== "binary" && oid === int8Oid) return (value: string) => BigInt(value);
    if (format !== "binary" && oid === int8ArrayOid) {
      const parserOf = pg.types.getTypeParser as (oid: number, format: "text") => (value: string) => Array<string | null>;
      const strings = parserOf(int8ArrayOid, "text");
      return (value: string) => strings(value).map((item) => (item === null ? null : BigInt(item)));
    }
    return pg.types.getTypeParser(oid, format ?? "text");
  }) as pg.CustomTypesConfig["getTypeParser"],
};

export interface PoolOptions {
  /** Most connections this brain opens through the pool (dedicated clients are extra). */
  max?: number;
  /** Shown as application_name `brain/<name>` in pg_stat_activity. */
  name?: string;
}

/** What a dedicated client (listener, writer, election session) is opened with. */
const clientConfigs = new WeakMap<pg.Pool, pg.ClientConfig>();

function clientConfig(url: string, options: PoolOptions): pg.ClientConfig {
  return {
    connectionString: url,
    types,
    application_name: `brain/${options.name ?? "brain"}`,
    // A statement that runs this long is stuck (a lost lock, a dead server
    // that TCP has not noticed yet); the caller fails and retries or demotes.
    statement_timeout: 30_000,
    // The client side too: a query on a connection whose server vanished
    // without a FIN would otherwise wait forever.
    query_timeout: 35_000,
    connectionTimeoutMillis: 10_000,
    // A snapshot left open by a paused brain holds back vacuum; end it.
    idle_in_transaction_session_timeout: 60_000,
    keepAlive: true,
    keepAliveInitialDelayMillis: 5_000,
  };
}

/** A pool on `url` (a postgres:// URL; `sslmode` and the rest as the driver reads them). */
export function openPool(url: string, options: PoolOptions = {}): pg.Pool {
  const config = clientConfig(url, options);
  const pool = new pg.Pool({ ...config, max: options.max ?? 10, idleTimeoutMillis: 30_000 });
  // An idle client whose connection dropped (PostgreSQL restarted) is
  // reported here; without a listener that would end the process. The pool
  // replaces it on the next checkout.
  pool.on("error", (error) => log("warn", "an idle PostgreSQL connection failed", { url: redactUrl(url), error: error.message }));
  // A checked-out client between two queries (a REPEATABLE READ snapshot
  // being read) has no pool listener: its connection failing there would
  // be an unhandled 'error' that ends the process. The next query on it
  // fails instead, and its holder releases it as broken.
  pool.on("connect", (client) => {
    client.on("error", (error) => log("debug", "a PostgreSQL connection in use failed", { error: error.message }));
  });
  clientConfigs.set(pool, config);
  return pool;
}

/**
 * A connection of its own, outside the pool, with the pool's settings: for
 * sessions that must live long or stay the same (LISTEN, the advisory lock
 * of a leader, the writer whose commits must keep their order).
 */
export function dedicatedClient(pool: pg.Pool): pg.Client {
  const config = clientConfigs.get(pool);
  if (config === undefined) throw new Error("dedicatedClient needs a pool made by openPool");
  const client = new pg.Client(config);
  return client;
}

/** The URL a log line may show: the password replaced (URL or key=value form). */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== "") parsed.password = "***";
    const password = parsed.searchParams.get("password");
    if (password !== null) parsed.searchParams.set("password", "***");
    return parsed.toString();
  } catch {
    return url.replace(/(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)/gi, "$1***");
  }
}
