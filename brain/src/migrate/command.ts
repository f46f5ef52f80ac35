// `brain migrate`: the command-line face of migrate.ts and migrate-postgres.ts.
import { parseArgs } from "node:util";
import { redactUrl } from "../replica/pg/pool.js";
import type { ImportSummary } from "./import-writer.js";
import { migrate, type MigrationFrom } from "./migrate.js";
import { migrateToPostgres, type PostgresMigrationFrom } from "./migrate-postgres.js";

export const migrateHelp = `Usage: brain migrate --data-dir DIR (--from-snapshot FILE | --from-etcd URL [--cacert FILE --cert FILE --key FILE])
       brain migrate --to-postgres [URL] (--from-data-dir DIR | --from-snapshot FILE | --from-etcd URL [TLS flags])

Moves a keyspace into brain: every key, every version since the source's
last compaction (with the same revisions, so resource versions and watches
of kube-apiserver clients stay valid), the compaction point and the leases.

Into a brain data dir (--data-dir): DIR must not exist or be empty; it
appears only when complete.

Into PostgreSQL (--to-postgres, for brains started with --storage postgres):
the brain schema is created or upgraded, then everything is copied in one
transaction, so a failed migration leaves the database as it was. The
database must hold no brain data and no running brain may use it.

  --data-dir DIR        the new brain data dir to fill
  --to-postgres [URL]   the PostgreSQL database (postgres://USER[:PASSWORD]@HOST:PORT/DB?sslmode=...);
                        without URL, from the environment variable BRAIN_POSTGRES_URL, which keeps
                        the password off the command line. The password is never printed.
  --from-data-dir DIR   a stopped brain's data dir (--to-postgres only); one a running brain holds is refused
  --from-snapshot FILE  an etcd snapshot (etcdctl snapshot save) or a member's member/snap/db
  --from-etcd URL       a running etcd (http:// or https://); stop its writers first:
                        the migration fails if the revision moves while it runs
  --cacert, --cert, --key  TLS for --from-etcd, as etcdctl takes them
`;

/** `--to-postgres` may come without its URL (then BRAIN_POSTGRES_URL is read). */
function withOptionalUrl(argv: string[]): string[] {
  return argv.map((arg, i) => (arg === "--to-postgres" && (i + 1 === argv.length || argv[i + 1]!.startsWith("--")) ? "--to-postgres=" : arg));
}

function summaryLine(summary: ImportSummary, into: string): string {
  return (
    `migrated ${summary.events} versions (${summary.liveKeys} live keys, ${summary.leases} leases) up to revision ${summary.revision}` +
    ` (compacted at ${summary.compactRevision}) into ${into}\n`
  );
}

export async function runMigrateCommand(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: withOptionalUrl(argv),
      options: {
        "data-dir": { type: "string" },
        "to-postgres": { type: "string" },
        "from-data-dir": { type: "string" },
        "from-snapshot": { type: "string" },
        "from-etcd": { type: "string" },
        cacert: { type: "string" },
        cert: { type: "string" },
        key: { type: "string" },
        help: { type: "boolean" },
      },
      strict: true,
    }));
  } catch (error) {
    process.stderr.write(`brain migrate: ${(error as Error).message}\n${migrateHelp}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(migrateHelp);
    return 0;
  }
  const usage = (text: string) => {
    process.stderr.write(`brain migrate: ${text}\n${migrateHelp}`);
    return 2;
  };
  const dataDir = values["data-dir"];
  const toPostgres = values["to-postgres"];
  const fromDataDir = values["from-data-dir"];
  const snapshot = values["from-snapshot"];
  const endpoint = values["from-etcd"];
  if ((dataDir === undefined) === (toPostgres === undefined)) return usage("needs one target: --data-dir or --to-postgres");
  if ([fromDataDir, snapshot, endpoint].filter((source) => source !== undefined).length !== 1) {
    return usage(toPostgres !== undefined ? "needs one of --from-data-dir, --from-snapshot or --from-etcd" : "needs --data-dir and one of --from-snapshot or --from-etcd");
  }
  if (fromDataDir !== undefined && toPostgres === undefined) return usage("--from-data-dir is for --to-postgres (a brain data dir is already brain's)");
  if (endpoint !== undefined && !/^https?:\/\/[^/]+$/.test(endpoint)) {
    process.stderr.write(`brain migrate: --from-etcd ${endpoint}: want http://HOST:PORT or https://HOST:PORT\n`);
    return 2;
  }
  const etcdFrom: MigrationFrom | undefined =
    snapshot !== undefined
      ? { snapshot }
      : endpoint !== undefined
        ? { etcd: { endpoint, caFile: values.cacert, certFile: values.cert, keyFile: values.key } }
        : undefined;
  const progress = (text: string) => process.stderr.write(`brain migrate: ${text}\n`);
  try {
    if (toPostgres !== undefined) {
      const url = toPostgres !== "" ? toPostgres : process.env.BRAIN_POSTGRES_URL;
      if (!url) return usage("--to-postgres without a URL reads BRAIN_POSTGRES_URL, which is not set");
      const from: PostgresMigrationFrom = etcdFrom ?? { dataDir: fromDataDir! };
      const summary = await migrateToPostgres(from, url, { progress });
      process.stdout.write(summaryLine(summary, redactUrl(url)));
    } else {
      const summary = await migrate(etcdFrom!, dataDir!, progress);
      process.stdout.write(summaryLine(summary, dataDir!));
    }
    return 0;
  } catch (error) {
    process.stderr.write(`brain migrate: ${(error as Error).message}\n`);
    return 1;
  }
}
