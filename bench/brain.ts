// `npm run bench:brain`: etcd, brain and kine (on SQLite and on PostgreSQL)
// under etcd's own benchmark tool and a Kubernetes-shaped load, all with
// durable commits. Each server starts fresh (own data dir) per round, warms
// up, then runs every row; servers take turns (etcd, brain, kine-sqlite,
// kine-pg, etcd, brain, …) for three rounds, and the table reports medians.
// Writes bench/results/brain.{md,json}; chart.sh draws brain.png.
//
//   --quick            one round, small totals: a smoke test of the script, not a result
//   --rounds N         rounds (default 3)
//   --servers a,b      a subset of etcd,brain,kine-sqlite,kine-pg
//   --rows a,b         a subset of the rows (names in brain-load.ts)
import { execFileSync } from "node:child_process";
import { accessSync, constants, readFileSync } from "node:fs";
import { cpus, loadavg, release, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { repoRoot } from "@wharf/testkit";
import { clients, connections, rangeKey, readRun, rows, runTool, type Measurement, type RowSpec, valueBytes } from "./brain-load.js";
import { benchTool, cpuSeconds, peakRssMb, processTree, pssMb, resetPeakRss, serverNames, startServer, type BenchServer, type ServerName } from "./servers.js";
import { markdownReport, summarize, type Cell } from "./brain-report.js";
import { writeResults } from "./report.js";

const { values: flags } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    rounds: { type: "string" },
    servers: { type: "string" },
    rows: { type: "string" },
  },
});
const scale = { quick: flags.quick ?? false };
const rounds = Number(flags.rounds ?? (scale.quick ? 1 : 3));
const servers = (flags.servers?.split(",") ?? [...serverNames]) as ServerName[];
const selectedRows = flags.rows ? rows.filter((row) => flags.rows!.split(",").includes(row.name)) : rows;
for (const server of servers) if (!serverNames.includes(server)) throw new Error(`unknown server ${server}; one of ${serverNames.join(", ")}`);
if (selectedRows.length === 0) throw new Error(`no rows selected; rows are ${rows.map((row) => row.name).join(", ")}`);
const rowTimeoutMs = (scale.quick ? 60 : 180) * 1000;
/** Why this run is not the full method (a smoke test or a look at a subset), if it is not. */
const provisional = scale.quick
  ? "QUICK SMOKE RUN (`--quick`): one round, small totals. It shows the script works, not how fast anything is."
  : rounds < 3 || servers.length < serverNames.length || selectedRows.length < rows.length
    ? `PARTIAL RUN (${rounds} round(s), ${servers.length} of ${serverNames.length} servers, ${selectedRows.length} of ${rows.length} rows): not the full method.`
    : undefined;

/** Memory and CPU of a server: its own processes' peak RSS, PostgreSQL's proportional share (its backends share buffers). */
function usage(server: BenchServer): { cpu: number; rssMb: number } {
  let cpu = 0;
  let rssMb = 0;
  for (const process of server.processes) {
    const tree = processTree([process.child.pid!]);
    cpu += tree.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
    rssMb += tree.reduce((sum, pid) => sum + (process.name === "postgres" ? pssMb(pid) : peakRssMb(pid)), 0);
  }
  return { cpu, rssMb };
}

function resetPeaks(server: BenchServer): void {
  for (const process of server.processes) processTree([process.child.pid!]).forEach(resetPeakRss);
}

export interface RunRecord extends Measurement {
  row: string;
  server: ServerName;
  round: number;
  cpuSeconds: number;
  rssMb: number;
}

const records: RunRecord[] = [];

async function warmUp(server: BenchServer): Promise<void> {
  const seed = await runTool("kubeload", server.address, ["seed", "--key", rangeKey, "--clients", "1", "--conns", "1"], 30_000);
  if (seed.code !== 0) throw new Error(`${server.name}: could not write the range key (exit ${seed.code}${seed.timedOut ? ", timed out" : ""}): ${seed.stderr}`);
  // Not timed: connections, caches, the first fsyncs, the JIT (brain). Guarded
  // creates (not the tool's put) because every server accepts them.
  const total = scale.quick ? "500" : "3000";
  await runTool("benchmark", server.address, ["--clients", String(clients), "--conns", String(connections), "range", rangeKey, "--total", total], rowTimeoutMs);
  await runTool("kubeload", server.address, ["create", "--prefix", "/registry/warmup/", "--total", total], rowTimeoutMs);
}

/** A server that died: its rows are failures, not refusals. */
function exited(server: BenchServer): string | undefined {
  const dead = server.processes.find((process) => process.child.exitCode !== null || process.child.signalCode !== null);
  if (!dead) return undefined;
  return `${dead.name} exited (${dead.child.exitCode ?? dead.child.signalCode}); log ${dead.logFile}: ${dead.logTail(3).replaceAll("\n", " | ")}`;
}

/** Runs one row; false when the server died (the round's remaining rows for it are skipped). */
async function runRow(server: BenchServer, row: RowSpec, round: number): Promise<boolean> {
  resetPeaks(server);
  const before = usage(server);
  const run = await runTool(row.tool, server.address, row.args(scale), rowTimeoutMs);
  const after = usage(server);
  const death = exited(server);
  const measurement: Measurement = death
    ? { status: "failed", error: death, opsPerSecond: NaN, p50Ms: NaN, p99Ms: NaN, errors: 0, seconds: run.seconds }
    : readRun(row, run, scale);
  const record: RunRecord = { ...measurement, row: row.name, server: server.name, round, cpuSeconds: after.cpu - before.cpu, rssMb: after.rssMb };
  records.push(record);
  const figure = row.better === "lower" ? `p99 ${record.p99Ms.toFixed(2)} ms` : `${record.opsPerSecond.toFixed(0)} ops/s, p99 ${record.p99Ms.toFixed(2)} ms`;
  console.error(
    `  ${row.name}: ${record.status === "ok" ? figure : record.status}` +
      `${record.errors ? `, ${record.errors} errors` : ""}${record.error && record.status !== "ok" ? ` (${record.error})` : ""}` +
      `${record.detail ? ` [${record.detail}]` : ""}, ${record.cpuSeconds.toFixed(1)} CPU s, ${record.rssMb.toFixed(0)} MiB`,
  );
  return death === undefined;
}

function version(command: string, args: string[], pattern: RegExp): string {
  try {
    const output = execFileSync(command, args, { stdio: ["ignore", "pipe", "pipe"] }).toString();
    return pattern.exec(output)?.[1] ?? output.split("\n")[0]!.trim();
  } catch (error) {
    return `unknown (${(error as Error).message.split("\n")[0]})`;
  }
}

function goModuleVersion(goMod: string, module: string): string {
  const text = readFileSync(join(repoRoot, goMod), "utf8");
  return new RegExp(`^\\s*${module.replaceAll(".", "\\.")} (v\\S+)`, "m").exec(text)?.[1] ?? "unknown";
}

const cpu = cpus();
const machine = {
  cpu: cpu[0]?.model.trim() ?? "unknown",
  cores: cpu.length,
  ramGiB: Math.round(totalmem() / 2 ** 30),
  kernel: release(),
  node: process.version,
};
const versions = {
  etcd: version(join(repoRoot, ".tools", "bin", "etcd"), ["--version"], /etcd Version: (\S+)/),
  brain: version("git", ["-C", repoRoot, "rev-parse", "--short", "HEAD"], /(\S+)/),
  kine: goModuleVersion("tools/kine/go.mod", "github.com/k3s-io/kine"),
  benchmark: `go.etcd.io/etcd/v3/tools/benchmark ${goModuleVersion("tools/etcd/bench/go.mod", "go.etcd.io/etcd/v3")}`,
  postgres: version(join(repoRoot, ".tools", "bin", "postgres"), ["--version"], /\(PostgreSQL\) (\S+)/),
  sqlite: "mattn/go-sqlite3 " + goModuleVersion("tools/kine/go.mod", "github.com/mattn/go-sqlite3"),
};
for (const tool of ["benchmark", "kubeload", "kine"] as const) {
  try {
    accessSync(benchTool(tool), constants.X_OK);
  } catch {
    throw new Error(`${tool} is missing from .tools/bin: run \`bash scripts/setup.sh --bench\``);
  }
}

const loadBefore = loadavg();
const started = new Date();
console.error(
  `bench:brain ${scale.quick ? "QUICK (smoke test) " : ""}${rounds} round(s) × ${servers.join(", ")}; ${selectedRows.length} rows; ` +
    `load average ${loadBefore.map((load) => load.toFixed(2)).join(" ")}`,
);
for (let round = 1; round <= rounds; round++) {
  for (const name of servers) {
    console.error(`round ${round}/${rounds}: ${name}`);
    let server: BenchServer;
    try {
      server = await startServer(name);
    } catch (error) {
      const message = (error as Error).message.split("\n").slice(0, 3).join(" | ");
      console.error(`  ${name} did not start: ${message}`);
      for (const row of selectedRows) {
        records.push({ row: row.name, server: name, round, status: "failed", error: `did not start: ${message}`, opsPerSecond: NaN, p50Ms: NaN, p99Ms: NaN, errors: 0, seconds: 0, cpuSeconds: 0, rssMb: NaN });
      }
      continue;
    }
    try {
      await warmUp(server);
      for (const row of selectedRows) {
        if (!(await runRow(server, row, round))) break;
      }
    } finally {
      await server.stop();
    }
  }
}
const loadAfter = loadavg();
const minutes = (Date.now() - started.getTime()) / 60_000;

const cells: Cell[] = summarize(records, selectedRows, servers);
const setup =
  `${rounds} round(s), servers interleaved per round, each started with a fresh data dir and warmed up; medians over the rounds. ` +
  `${clients} clients over ${connections} connections, ${valueBytes} B values, fsync on for every server. ` +
  `Load average ${loadBefore.map((load) => load.toFixed(2)).join(" / ")} before, ${loadAfter.map((load) => load.toFixed(2)).join(" / ")} after; ` +
  `${minutes.toFixed(1)} minutes.`;
const commands = selectedRows.map((row) => ({ row: row.name, command: `${row.tool} ${row.args(scale).join(" ")}` }));
const table = markdownReport(cells, selectedRows, servers, { machine, versions, provisional, commands });
writeResults(
  "brain",
  cells.map((cell) => ({ workload: cell.row, target: cell.server, opsPerSecond: cell.opsPerSecond, p50Ms: cell.p50Ms, p99Ms: cell.p99Ms, rssMb: cell.rssMb })),
  {
    quick: scale.quick,
    provisional: provisional ?? null,
    rounds,
    clients,
    connections,
    valueBytes,
    machineDetail: machine,
    versions,
    loadAverage: { before: loadBefore, after: loadAfter },
    minutes,
    cells,
    runs: records,
    // chart.py: which numbers to draw (watch rows compare latency, the rest throughput).
    panels: [
      { key: "opsPerSecond", title: "throughput (ops/s, higher is better)", rows: selectedRows.filter((row) => row.better === "higher").map((row) => row.name) },
      { key: "p99Ms", title: "p99 latency (ms, lower is better)", rows: selectedRows.map((row) => row.name) },
      { key: "rssMb", title: "peak RSS (MiB)", rows: selectedRows.map((row) => row.name) },
    ],
  },
  provisional ? `brain vs etcd vs kine — ${scale.quick ? "QUICK SMOKE RUN" : "PARTIAL RUN"}, not a result` : "brain vs etcd vs kine",
  setup,
  table,
);
console.log(table);
execFileSync("bash", [join(repoRoot, "bench", "chart.sh"), "brain"], { stdio: "inherit" });
