import { execFile } from "node:child_process";
import { accessSync, constants, realpathSync, existsSync, readFileSync, statSync } from "node:fs";
import { chown, mkdir } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import { freePort } from "./ports.js";
import { startProcess, waitUntilReady, type LineSink, type RunningProcess } from "./process.js";
import { repoRoot } from "./tools.js";
import { makeWorkDir, removeWorkDir } from "./workdir.js";

/**
 * A throwaway PostgreSQL server on loopback over TCP only (no Unix socket),
 * with its own data dir, durable like a production one (fsync and
 * synchronous_commit on). `npm run setup` links postgres and initdb into
 * .tools/bin.
 */
export interface Postgres {
  /** postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable (trust auth: loopback only) */
  url: string;
  port: number;
  dataDir: string;
  /** The postmaster (the current one after a restart); its backends are its children. */
  readonly process: RunningProcess;
  /**
   * A fast shutdown, then the same server again on the same data dir and
   * port: every session is cut, nothing committed is lost. `downMs` keeps it
   * down that long before starting it again (clients see refused connections).
   */
  restart(options?: { downMs?: number }): Promise<void>;
  /** A fast shutdown (SIGINT: open sessions are ended), then the data dir is removed (unless it was given). */
  stop(): Promise<void>;
}

export interface PostgresOptions {
  /** Keep the data here (created by initdb if empty or missing, left on stop); a throwaway dir by default. */
  dataDir?: string;
  port?: number;
  /** Extra `-c name=value` server settings. */
  settings?: Record<string, string>;
  echo?: LineSink;
}

const run = promisify(execFile);

/**
 * The installed binary behind the .tools/bin link. As root the server runs as
 * the postgres user, who may not be able to enter the checkout (a clone in a
 * 0700 directory such as mktemp -d's); and initdb looks for postgres beside
 * its own real path.
 */
function serverBinary(name: "postgres" | "initdb"): string {
  const link = join(repoRoot, ".tools", "bin", name);
  try {
    return realpathSync(link);
  } catch {
    return link;
  }
}

/**
 * PostgreSQL refuses to run as root. As root (CI, this machine) it runs as
 * the `postgres` system user that Debian's package creates, via setpriv,
 * which execs in place: the pid we hold is the postmaster's.
 */
function dropRoot(): { wrap: (command: string, args: string[]) => [string, string[]]; uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return { wrap: (command, args) => [command, args] };
  const entry = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .map((line) => line.split(":"))
    .find((fields) => fields[0] === "postgres");
  if (!entry) {
    throw new Error("PostgreSQL cannot run as root and there is no `postgres` user; install Debian's postgresql package (npm run setup installs it as root)");
  }
  const [uid, gid] = [Number(entry[2]), Number(entry[3])];
  return {
    wrap: (command, args) => ["setpriv", [`--reuid=${uid}`, `--regid=${gid}`, "--clear-groups", "--", command, ...args]],
    uid,
    gid,
  };
}

/**
 * As root the server runs as the postgres user, who must be able to enter
 * every directory above a data dir of the caller's choosing (npm start keeps
 * one in the checkout's .wharf): a checkout under /root, or in a 0700
 * directory, is not. Says which directory and what to do, before initdb
 * fails with "could not change directory" or "invalid binary".
 */
function unreachableBy(uid: number, gid: number, directory: string): void {
  for (let at = directory; ; at = dirname(at)) {
    if (existsSync(at)) {
      const { mode, uid: owner, gid: group } = statSync(at);
      const searchable = owner === uid ? mode & 0o100 : group === gid ? mode & 0o010 : mode & 0o001;
      if (!searchable) {
        throw new Error(
          `PostgreSQL runs as the postgres user, which cannot enter ${at} (mode ${(mode & 0o777).toString(8)}) to reach its data under ${directory}. ` +
            "Keep the data elsewhere (npm start: WHARF_STATE_DIR=/var/tmp/wharf) or let others search that directory (chmod o+x).",
        );
      }
    }
    if (at === dirname(at)) return;
  }
}

export async function startPostgres(options: PostgresOptions = {}): Promise<Postgres> {
  for (const name of ["postgres", "initdb"] as const) {
    try {
      accessSync(serverBinary(name), constants.X_OK);
    } catch {
      throw new Error(`${name} is not installed in .tools/bin. Run \`npm run setup\` (it links Debian's PostgreSQL).`);
    }
  }
  const user = dropRoot();
  if (options.dataDir !== undefined && user.uid !== undefined) unreachableBy(user.uid, user.gid!, dirname(resolve(options.dataDir)));
  const workDir = await makeWorkDir("postgres");
  const dataDir = options.dataDir ?? join(workDir, "data");
  if (user.uid !== undefined) await chown(workDir, user.uid, user.gid!);
  if (!existsSync(join(dataDir, "PG_VERSION"))) {
    // Only the data dir itself is private (PostgreSQL requires it); directories made above it must stay searchable.
    await mkdir(dirname(dataDir), { recursive: true });
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    if (user.uid !== undefined) await chown(dataDir, user.uid, user.gid!);
    const [initdb, initdbArgs] = user.wrap(serverBinary("initdb"), [
      "--pgdata", dataDir,
      "--username", "postgres",
      "--auth", "trust",
      "--encoding", "UTF8",
      "--no-instructions",
      // A throwaway cluster need not be on disk before it is used (1.3 s instead of 3.3 s to start).
      ...(options.dataDir === undefined ? ["--no-sync"] : []),
    ]);
    try {
      await run(initdb, initdbArgs);
    } catch (error) {
      await removeWorkDir(workDir);
      const { stderr } = error as { stderr?: string };
      const hint = user.uid !== undefined ? ` (it runs as the postgres user, which must be able to reach ${dataDir})` : "";
      throw new Error(`initdb failed${hint}: ${stderr ?? String(error)}`, { cause: error });
    }
  }

  const port = options.port ?? (await freePort());
  const settings: Record<string, string> = {
    listen_addresses: "127.0.0.1",
    unix_socket_directories: "",
    fsync: "on",
    synchronous_commit: "on",
    ...options.settings,
  };
  const [command, args] = user.wrap(serverBinary("postgres"), [
    "-D", dataDir,
    "-p", String(port),
    ...Object.entries(settings).flatMap(([name, value]) => ["-c", `${name}=${value}`]),
  ]);
  const logFile = join(workDir, "postgres.log");
  const startPostmaster = async (): Promise<RunningProcess> => {
    // The log is appended to across restarts: wait for this postmaster's own line.
    const from = logSize(logFile);
    const postmaster = startProcess({ name: "postgres", command, args, logFile, echo: options.echo });
    await waitUntilReady(postmaster, async () => readFileSync(logFile).subarray(from).toString().includes(readyLine), 30_000);
    return postmaster;
  };
  let postmaster: RunningProcess;
  try {
    postmaster = await startPostmaster();
  } catch (error) {
    await removeWorkDir(workDir);
    throw error;
  }
  /** Fast shutdown: SIGTERM is a "smart" one that waits for every client to leave. */
  const shutdown = async () => {
    if (postmaster.child.exitCode === null && postmaster.child.signalCode === null) {
      postmaster.child.kill("SIGINT");
      const timer = setTimeout(() => postmaster.child.kill("SIGKILL"), 10_000);
      await postmaster.exited;
      clearTimeout(timer);
    }
    await postmaster.stop();
  };
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres?sslmode=disable`,
    port,
    dataDir,
    get process() {
      return postmaster;
    },
    async restart({ downMs = 0 } = {}) {
      await shutdown();
      if (downMs > 0) await new Promise((resolve) => setTimeout(resolve, downMs));
      postmaster = await startPostmaster();
    },
    async stop() {
      await shutdown();
      await removeWorkDir(workDir);
    },
  };
}

const readyLine = "database system is ready to accept connections";

function logSize(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}
