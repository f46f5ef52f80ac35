// The servers bench/brain.ts compares, each started fresh (own data dir, own
// port) with durable commits: etcd fsyncs its WAL, brain syncs every group
// commit, kine on SQLite runs with synchronous=FULL (an fsync per commit in
// WAL mode; kine's default is NORMAL, which does not sync commits), and
// PostgreSQL with fsync and synchronous_commit on. brain on PostgreSQL
// (`brain-pg`, `brain-pg-3`) commits every group in a PostgreSQL transaction
// and is measured with one replica and with three (the tools given every
// member's address, as a client would be).
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import {
  freePort,
  makeWorkDir,
  removeWorkDir,
  repoRoot,
  startBrainProcess,
  startPostgres,
  startProcess,
  startReferenceEtcd,
  waitUntilReady,
  type RunningProcess,
} from "@wharf/testkit";
import { startReplicaSet } from "./replica-set.js";

export const serverNames = ["etcd", "brain", "kine-sqlite", "kine-pg", "brain-pg", "brain-pg-3"] as const;
export type ServerName = (typeof serverNames)[number];

export interface BenchServer {
  name: ServerName;
  /** host:port (comma-separated for a replica set), what etcd's benchmark tool and kubeload take */
  address: string;
  /** The processes whose memory and CPU count as this server's. */
  processes: RunningProcess[];
  /** Replica sets: waits until every member has applied every write made so far (before reads are timed). */
  settle?(): Promise<void>;
  /** Replica sets: the leader's epoch now, so a row can report leader changes during it. */
  epoch?(): Promise<number>;
  stop(): Promise<void>;
}

export function benchTool(name: "benchmark" | "kubeload" | "kine"): string {
  return join(repoRoot, ".tools", "bin", name);
}

function hostPort(endpoint: string): string {
  return new URL(endpoint).host;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

async function startKine(name: ServerName, endpoint: (workDir: string) => string, extra: RunningProcess[], stopExtra: () => Promise<void>): Promise<BenchServer> {
  const workDir = await makeWorkDir(name);
  const port = await freePort();
  const kine = startProcess({
    name,
    command: benchTool("kine"),
    args: ["--listen-address", `127.0.0.1:${port}`, "--endpoint", endpoint(workDir), "--metrics-bind-address", "0"],
    logFile: join(workDir, "kine.log"),
  });
  try {
    await waitUntilReady(kine, () => canConnect(port), 60_000);
  } catch (error) {
    await stopExtra();
    await removeWorkDir(workDir);
    throw error;
  }
  return {
    name,
    address: `127.0.0.1:${port}`,
    processes: [kine, ...extra],
    async stop() {
      await kine.stop();
      await stopExtra();
      await removeWorkDir(workDir);
    },
  };
}

export async function startServer(name: ServerName): Promise<BenchServer> {
  switch (name) {
    case "etcd": {
      const etcd = await startReferenceEtcd();
      return { name, address: hostPort(etcd.endpoint), processes: [etcd.process], stop: () => etcd.stop() };
    }
    case "brain": {
      const brain = await startBrainProcess();
      return { name, address: hostPort(brain.endpoint), processes: [brain.process], stop: () => brain.stop() };
    }
    case "kine-sqlite":
      // kine's default parameters with synchronous=FULL instead of NORMAL.
      return startKine(
        name,
        (dir) => `sqlite://${dir}/state.db?_journal_mode=WAL&_busy_timeout=30000&_synchronous=FULL&_txlock=immediate&_stmt_cache_size=20&cache=shared`,
        [],
        async () => undefined,
      );
    case "kine-pg": {
      const postgres = await startPostgres();
      return startKine(name, () => postgres.url.replace("/postgres?", "/kine?"), [postgres.process], () => postgres.stop());
    }
    case "brain-pg":
    case "brain-pg-3": {
      const set = await startReplicaSet(name === "brain-pg" ? 1 : 3);
      return {
        name,
        address: set.endpoints(),
        // Fixed for the server's life: rows do not restart members.
        processes: set.processes(),
        settle: async () => void (await set.settle()),
        async epoch() {
          // The members' agreement on a leader, not their catching up (settle's job).
          const deadline = Date.now() + 10_000;
          while (Date.now() < deadline) {
            const view = await set.leader();
            if (view) return view.epoch;
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
          return NaN;
        },
        stop: () => set.stop(),
      };
    }
  }
}

/** Memory and CPU of a server's processes: their own peak RSS, PostgreSQL's proportional share (its backends share buffers). */
export function usageOf(processes: RunningProcess[]): { cpu: number; rssMb: number } {
  let cpu = 0;
  let rssMb = 0;
  for (const process of processes) {
    const tree = processTree([process.child.pid!]);
    cpu += tree.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
    rssMb += tree.reduce((sum, pid) => sum + (process.name === "postgres" ? pssMb(pid) : peakRssMb(pid)), 0);
  }
  return { cpu, rssMb };
}

export function resetPeaksOf(processes: RunningProcess[]): void {
  for (const process of processes) processTree([process.child.pid!]).forEach(resetPeakRss);
}

/** Every live process in the trees under `roots` (PostgreSQL's backends are the postmaster's children). */
export function processTree(roots: number[]): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      children.set(parent, [...(children.get(parent) ?? []), Number(entry)]);
    } catch {
      // exited while we looked
    }
  }
  const out: number[] = [];
  const visit = (pid: number) => {
    out.push(pid);
    for (const child of children.get(pid) ?? []) visit(child);
  };
  roots.forEach(visit);
  return out;
}

const ticksPerSecond = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;

/** CPU seconds used so far by `pid`, including children it has reaped (exited PostgreSQL backends). */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime, stime, cutime, cstime are fields 14-17 of stat; fields[] starts at field 3.
    return fields.slice(11, 15).reduce((sum, value) => sum + Number(value), 0) / ticksPerSecond;
  } catch {
    return 0;
  }
}

function statusField(pid: number, field: string): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    return Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}

/** Resets the peak RSS the kernel keeps for `pid` (VmHWM), so each row reports its own peak. */
export function resetPeakRss(pid: number): void {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, "5");
  } catch {
    // not ours to reset (or exited): the peak then covers the whole run so far
  }
}

/** Peak RSS (MiB) since the last reset. */
export function peakRssMb(pid: number): number {
  return statusField(pid, "VmHWM");
}

/** Proportional set size (MiB) now: shared memory divided between the processes that map it. */
export function pssMb(pid: number): number {
  try {
    const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
    return Number(/^Pss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}
