// `npm run bench:brain`: etcd, brain, kine (on SQLite and on PostgreSQL) and
// brain on PostgreSQL (one replica, three replicas) under etcd's own
// benchmark tool and a Kubernetes-shaped load, all with durable commits. Each
// server starts fresh (own data dir) per round, warms up, then runs every row;
// servers take turns (etcd, brain, kine-sqlite, kine-pg, brain-pg,
// brain-pg-3, then the replica parts, etcd, …) for three rounds, and the
// table reports medians. The replica parts: read throughput of brain on
// PostgreSQL as replicas are added (1, 2, 3), and failover time over kill -9
// and SIGSTOP trials spread over the rounds (median and max).
// Writes bench/results/brain.{md,json} and brain-replicas.{md,json};
// chart.sh draws brain.png and brain-replicas.png.
//
//   --quick               one round, small totals, 2 + 1 failover trials: a smoke test of the script, not a result
//   --rounds N            rounds (default 3)
//   --servers a,b         a subset of etcd,brain,kine-sqlite,kine-pg,brain-pg,brain-pg-3 ("none": no server rows)
//   --rows a,b            a subset of the rows (names in brain-load.ts)
//   --parts a,b           a subset of rows,scaling,failover (default all three)
//   --only postgres       brain on PostgreSQL only: --servers brain-pg,brain-pg-3 and every part
//   --failover-trials N   kill -9 trials over the whole run (default 12, at least 10 for a result)
//   --pause-trials N      SIGSTOP trials over the whole run (default 3)
import { execFileSync } from "node:child_process";
import { accessSync, constants, readFileSync } from "node:fs";
import { cpus, loadavg, release, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { repoRoot } from "@wharf/testkit";
import { clients, connections, rangeKey, readRun, rows, runTool, type Measurement, type RowSpec, valueBytes } from "./brain-load.js";
import { benchTool, resetPeaksOf, serverNames, startServer, usageOf, type BenchServer, type ServerName } from "./servers.js";
import { markdownReport, summarize, type Cell } from "./brain-report.js";
import { runFailover, type FailoverResult } from "./failover.js";
import { runReadScaling, type ScalingRecord } from "./read-scaling.js";
import { leaderLeaseTtl } from "./replica-set.js";
import { replicaChartRows, replicaMarkdown, summarizeFailover, summarizeScaling } from "./replica-report.js";
import { writeResults } from "./report.js";

const { values: flags } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    rounds: { type: "string" },
    servers: { type: "string" },
    rows: { type: "string" },
    parts: { type: "string" },
    only: { type: "string" },
    "failover-trials": { type: "string" },
    "pause-trials": { type: "string" },
  },
});
const partNames = ["rows", "scaling", "failover"] as const;
type Part = (typeof partNames)[number];
if (flags.only !== undefined && flags.only !== "postgres") throw new Error(`--only takes "postgres" (brain on PostgreSQL only), not ${flags.only}`);
if (flags.only && flags.servers) throw new Error("--only postgres chooses the servers itself; give --servers or --only, not both");
const scale = { quick: flags.quick ?? false };
const rounds = Number(flags.rounds ?? (scale.quick ? 1 : 3));
const servers = (
  flags.only === "postgres" ? ["brain-pg", "brain-pg-3"] : flags.servers === "none" ? [] : (flags.servers?.split(",") ?? [...serverNames])
) as ServerName[];
const parts = (flags.parts?.split(",") ?? [...partNames]) as Part[];
for (const part of parts) if (!partNames.includes(part)) throw new Error(`unknown part ${part}; one of ${partNames.join(", ")}`);
const selectedRows = flags.rows ? rows.filter((row) => flags.rows!.split(",").includes(row.name)) : rows;
for (const server of servers) if (!serverNames.includes(server)) throw new Error(`unknown server ${server}; one of ${serverNames.join(", ")}`);
if (selectedRows.length === 0) throw new Error(`no rows selected; rows are ${rows.map((row) => row.name).join(", ")}`);
const killTrials = Number(flags["failover-trials"] ?? (scale.quick ? 2 : 12));
const pauseTrials = Number(flags["pause-trials"] ?? (scale.quick ? 1 : 3));
if (!(rounds >= 1 && killTrials >= 0 && pauseTrials >= 0)) throw new Error("--rounds must be ≥ 1 and the trial counts ≥ 0");
const runRows = parts.includes("rows") && servers.length > 0;
const rowTimeoutMs = (scale.quick ? 60 : 180) * 1000;
/** The failover trials of round `round` (1-based): the totals spread over the rounds, the first rounds taking the remainder. */
const trialsIn = (total: number, round: number) => Math.floor(total / rounds) + (round <= total % rounds ? 1 : 0);
/** Why this run is not the full method (a smoke test or a look at a subset), if it is not. */
const provisional = scale.quick
  ? "QUICK SMOKE RUN (`--quick`): one round, small totals. It shows the script works, not how fast anything is."
  : rounds < 3 || servers.length < serverNames.length || selectedRows.length < rows.length || parts.length < partNames.length || killTrials < 10
    ? `PARTIAL RUN (${rounds} round(s), ${servers.length} of ${serverNames.length} servers, ${selectedRows.length} of ${rows.length} rows, ` +
      `parts ${parts.join("+")}, ${killTrials} kill -9 trials): not the full method.`
    : undefined;

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
  // A replica set's followers hold the range key before any read is timed.
  await server.settle?.();
}

/** A server that died: its rows are failures, not refusals. */
function exited(server: BenchServer): string | undefined {
  const dead = server.processes.find((process) => process.child.exitCode !== null || process.child.signalCode !== null);
  if (!dead) return undefined;
  return `${dead.name} exited (${dead.child.exitCode ?? dead.child.signalCode}); log ${dead.logFile}: ${dead.logTail(3).replaceAll("\n", " | ")}`;
}

/** Runs one row; false when the server died (the round's remaining rows for it are skipped). */
async function runRow(server: BenchServer, row: RowSpec, round: number): Promise<boolean> {
  // A replica set starts each row with every member caught up on the rows before, as a single server does.
  const settled = await server.settle?.().then(
    () => undefined,
    (error: unknown) => `not every member had caught up before the row: ${(error as Error).message.split("\n")[0]}`,
  );
  const epochBefore = await server.epoch?.();
  resetPeaksOf(server.processes);
  const before = usageOf(server.processes);
  const run = await runTool(row.tool, server.address, row.args(scale), rowTimeoutMs);
  const after = usageOf(server.processes);
  const death = exited(server);
  const measurement: Measurement = death
    ? { status: "failed", error: death, opsPerSecond: NaN, p50Ms: NaN, p99Ms: NaN, errors: 0, seconds: run.seconds }
    : readRun(row, run, scale);
  // A replica set whose leader changed during a row (a lease lost under load) says so next to the figure.
  const epochAfter = epochBefore === undefined || death ? undefined : await server.epoch?.();
  if (epochBefore !== undefined && epochAfter !== undefined && epochAfter !== epochBefore) {
    const change = Number.isFinite(epochAfter) ? `leader epoch ${epochBefore} → ${epochAfter} during the row` : "no leader agreed after the row";
    measurement.detail = [measurement.detail, change].filter(Boolean).join("; ");
  }
  if (settled) measurement.detail = [measurement.detail, settled].filter(Boolean).join("; ");
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
// kine only when a kine server runs (a look at brain on PostgreSQL alone needs no CGO build).
const kineRuns = runRows && servers.some((server) => server.startsWith("kine"));
for (const tool of ["benchmark", "kubeload", ...(kineRuns ? (["kine"] as const) : [])] as const) {
  try {
    accessSync(benchTool(tool), constants.X_OK);
  } catch {
    throw new Error(`${tool} is missing from .tools/bin: run \`bash scripts/setup.sh --bench\``);
  }
}

const scalingRecords: ScalingRecord[] = [];
const failoverRuns: FailoverResult[] = [];
const log = (line: string) => console.error(line);

const loadBefore = loadavg();
const started = new Date();
console.error(
  `bench:brain ${scale.quick ? "QUICK (smoke test) " : ""}${rounds} round(s) × ${runRows ? servers.join(", ") : "no servers"}; ${selectedRows.length} rows; ` +
    `parts ${parts.join(", ")}; load average ${loadBefore.map((load) => load.toFixed(2)).join(" ")}`,
);
for (let round = 1; round <= rounds; round++) {
  for (const name of runRows ? servers : []) {
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
  if (parts.includes("scaling")) {
    console.error(`round ${round}/${rounds}: brain-pg read throughput as replicas are added`);
    scalingRecords.push(...(await runReadScaling(round, scale, rowTimeoutMs, log)));
  }
  const [kills, pauses] = [trialsIn(killTrials, round), trialsIn(pauseTrials, round)];
  if (parts.includes("failover") && kills + pauses > 0) {
    console.error(`round ${round}/${rounds}: brain-pg-3 failover, ${kills} kill -9 and ${pauses} SIGSTOP trial(s)`);
    try {
      failoverRuns.push(await runFailover(round, kills, pauses, log));
    } catch (error) {
      // The set did not start: its trials are reported as failed, the run goes on.
      const message = (error as Error).message.split("\n")[0]!;
      log(`  failover round ${round} did not run: ${message}`);
      failoverRuns.push({
        trials: [{ round, trial: 0, kind: "kill", from: "?", epochBefore: NaN, firstWriteMs: NaN, newLeaderMs: NaN, writeGapMs: NaN, sentPuts: 0, failedPuts: 0, error: `did not run: ${message}` }],
        acknowledged: 0, lost: 0, putRate: NaN, putDeadlineMs: NaN,
      });
    }
  }
}
const loadAfter = loadavg();
const minutes = (Date.now() - started.getTime()) / 60_000;

const cells: Cell[] = summarize(records, selectedRows, servers);
const scalingCells = summarizeScaling(scalingRecords);
const failoverTrials = failoverRuns.flatMap((run) => run.trials);
const failoverFigures = summarizeFailover(failoverTrials);
const replicaTable = replicaMarkdown(
  scalingCells,
  parts.includes("failover") ? { figures: failoverFigures, trials: failoverTrials, runs: failoverRuns } : undefined,
  { leaderLeaseTtl, cores: machine.cores },
);
const setup =
  `${rounds} round(s), servers interleaved per round, each started with a fresh data dir and warmed up; medians over the rounds. ` +
  `${clients} clients over ${connections} connections, ${valueBytes} B values, fsync on for every server. ` +
  `Load average ${loadBefore.map((load) => load.toFixed(2)).join(" / ")} before, ${loadAfter.map((load) => load.toFixed(2)).join(" / ")} after; ` +
  `${minutes.toFixed(1)} minutes.`;
const commands = selectedRows.map((row) => ({ row: row.name, command: `${row.tool} ${row.args(scale).join(" ")}` }));
const table = runRows ? [markdownReport(cells, selectedRows, servers, { machine, versions, provisional, commands }), replicaTable].join("\n\n") : "";
const title = (what: string) => (provisional ? `${what} — ${scale.quick ? "QUICK SMOKE RUN" : "PARTIAL RUN"}, not a result` : what);
// Without the rows there is no server table: brain.md keeps its last one, brain-replicas.md gets the replica parts.
if (runRows) writeResults(
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
  title("brain vs etcd vs kine, and brain on PostgreSQL"),
  setup,
  table,
);
if (parts.includes("scaling") || parts.includes("failover")) {
  const replicaSetup =
    `${rounds} round(s), interleaved with the servers' rows; brain on PostgreSQL with \`--leader-lease-ttl ${leaderLeaseTtl}\`, ` +
    `${killTrials} kill -9 and ${pauseTrials} SIGSTOP trials spread over the rounds. ` +
    `Load average ${loadBefore.map((load) => load.toFixed(2)).join(" / ")} before, ${loadAfter.map((load) => load.toFixed(2)).join(" / ")} after.`;
  writeResults(
    "brain-replicas",
    replicaChartRows(scalingCells, failoverFigures),
    {
      quick: scale.quick,
      provisional: provisional ?? null,
      rounds,
      leaderLeaseTtl,
      machineDetail: machine,
      versions,
      loadAverage: { before: loadBefore, after: loadAfter },
      scaling: { cells: scalingCells, runs: scalingRecords },
      failover: { figures: failoverFigures, runs: failoverRuns },
      panels: [
        ...(parts.includes("scaling")
          ? [{ key: "opsPerSecond", title: "brain-pg reads as replicas are added (ops/s)", rows: [...new Set(scalingCells.map((cell) => cell.row))], targets: ["1 replica", "2 replicas", "3 replicas"] }]
          : []),
        ...(parts.includes("failover")
          ? [{ key: "failoverMs", title: "brain-pg-3 failover (ms, lower is better)", rows: [...new Set(replicaChartRows([], failoverFigures).map((row) => row.workload))], targets: ["median", "max"] }]
          : []),
      ],
    },
    title("brain on PostgreSQL: replicas and failover"),
    replicaSetup,
    [provisional ? `**${provisional}**\n` : "", replicaTable].join(""),
  );
}
console.log(runRows ? table : replicaTable);
if (runRows) execFileSync("bash", [join(repoRoot, "bench", "chart.sh"), "brain"], { stdio: "inherit" });
if (parts.includes("scaling") || parts.includes("failover")) execFileSync("bash", [join(repoRoot, "bench", "chart.sh"), "brain-replicas"], { stdio: "inherit" });
