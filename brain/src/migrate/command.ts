// `brain migrate`: the command-line face of migrate.ts.
import { parseArgs } from "node:util";
import { migrate, type MigrationFrom } from "./migrate.js";

export const migrateHelp = `Usage: brain migrate --data-dir DIR (--from-snapshot FILE | --from-etcd URL [--cacert FILE --cert FILE --key FILE])

Fills a new brain data dir with an etcd keyspace: every key, every version
since etcd's last compaction (with the same revisions, so resource versions
and watches of kube-apiserver clients stay valid), the compaction point and
the leases. DIR must not exist or be empty; it appears only when complete.

  --from-snapshot FILE  an etcd snapshot (etcdctl snapshot save) or a member's member/snap/db
  --from-etcd URL       a running etcd (http:// or https://); stop its writers first:
                        the migration fails if the revision moves while it runs
  --cacert, --cert, --key  TLS for --from-etcd, as etcdctl takes them
`;

export async function runMigrateCommand(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        "data-dir": { type: "string" },
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
  const dataDir = values["data-dir"];
  const snapshot = values["from-snapshot"];
  const endpoint = values["from-etcd"];
  if (!dataDir || (snapshot === undefined) === (endpoint === undefined)) {
    process.stderr.write(`brain migrate: needs --data-dir and one of --from-snapshot or --from-etcd\n${migrateHelp}`);
    return 2;
  }
  if (endpoint !== undefined && !/^https?:\/\/[^/]+$/.test(endpoint)) {
    process.stderr.write(`brain migrate: --from-etcd ${endpoint}: want http://HOST:PORT or https://HOST:PORT\n`);
    return 2;
  }
  const from: MigrationFrom =
    snapshot !== undefined ? { snapshot } : { etcd: { endpoint: endpoint!, caFile: values.cacert, certFile: values.cert, keyFile: values.key } };
  try {
    const summary = await migrate(from, dataDir, (text) => process.stderr.write(`brain migrate: ${text}\n`));
    process.stdout.write(
      `migrated ${summary.events} versions (${summary.liveKeys} live keys, ${summary.leases} leases) up to revision ${summary.revision}` +
        ` (compacted at ${summary.compactRevision}) into ${dataDir}\n`,
    );
    return 0;
  } catch (error) {
    process.stderr.write(`brain migrate: ${(error as Error).message}\n`);
    return 1;
  }
}
