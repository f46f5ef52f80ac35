// bench:brain's table: medians over rounds per (row, server), brain against
// the issue's targets, what kine refused and why.
import type { Measurement, RowSpec } from "./brain-load.js";
import type { ServerName } from "./servers.js";
import { median } from "./report.js";

export interface Cell {
  row: string;
  server: ServerName;
  status: Measurement["status"];
  /** Rounds that measured the row (status ok) out of those run. */
  measured: number;
  runs: number;
  opsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  rssMb: number;
  cpuSeconds: number;
  errors: number;
  error?: string;
  detail?: string;
}

interface RunLike extends Measurement {
  row: string;
  server: ServerName;
  cpuSeconds: number;
  rssMb: number;
}

export function summarize(runs: RunLike[], rows: RowSpec[], servers: ServerName[]): Cell[] {
  const cells: Cell[] = [];
  for (const row of rows) {
    for (const server of servers) {
      const all = runs.filter((run) => run.row === row.name && run.server === server);
      if (all.length === 0) continue;
      const ok = all.filter((run) => run.status === "ok");
      const source = ok.length > 0 ? ok : all;
      cells.push({
        row: row.name,
        server,
        status: ok.length > 0 ? "ok" : all[0]!.status,
        measured: ok.length,
        runs: all.length,
        opsPerSecond: median(ok.map((run) => run.opsPerSecond)),
        p50Ms: median(ok.map((run) => run.p50Ms)),
        p99Ms: median(ok.map((run) => run.p99Ms)),
        rssMb: median(source.map((run) => run.rssMb)),
        cpuSeconds: median(source.map((run) => run.cpuSeconds)),
        errors: all.reduce((sum, run) => sum + run.errors, 0),
        error: all.find((run) => run.error)?.error,
        detail: ok.find((run) => run.detail)?.detail,
      });
    }
  }
  return cells;
}

/** The number a row compares: throughput, or the p99 latency for watch rows. */
function figure(cell: Cell | undefined, row: RowSpec): number {
  if (!cell || cell.status !== "ok") return NaN;
  return row.better === "higher" ? cell.opsPerSecond : cell.p99Ms;
}

/** How many times better brain is than `other` on this row (> 1: brain is better). */
function advantage(brain: number, other: number, row: RowSpec): number {
  return row.better === "higher" ? brain / other : other / brain;
}

function show(cell: Cell | undefined, row: RowSpec): string {
  if (!cell) return "—";
  if (cell.status !== "ok") return cell.status;
  const value = figure(cell, row);
  const text = row.better === "higher" ? value.toFixed(value < 100 ? 1 : 0) : `${value.toFixed(2)} ms`;
  const partial = cell.measured < cell.runs ? ` (${cell.measured} of ${cell.runs} rounds)` : "";
  const detail = cell.detail ? ` (${cell.detail})` : "";
  return `${text}${detail}${partial}`;
}

export interface Verdict {
  row: string;
  target: string;
  met: boolean | undefined;
  why: string;
}

export function verdicts(cells: Cell[], rows: RowSpec[], servers: ServerName[]): Verdict[] {
  const at = (row: string, server: ServerName) => cells.find((cell) => cell.row === row && cell.server === server);
  const kines = servers.filter((server) => server.startsWith("kine"));
  return rows.map((row) => {
    const target = [
      row.better === "lower" ? "p99 ≤ etcd's" : `≥ ${row.target.etcdRatio}× etcd`,
      ...(row.target.aheadOfKine ? ["ahead of kine"] : []),
    ].join(", ");
    const brain = figure(at(row.name, "brain"), row);
    const etcd = figure(at(row.name, "etcd"), row);
    if (!servers.includes("brain") || !servers.includes("etcd")) return { row: row.name, target, met: undefined, why: "brain or etcd not run" };
    if (!Number.isFinite(brain)) return { row: row.name, target, met: false, why: `brain: ${at(row.name, "brain")?.status ?? "not run"}` };
    if (!Number.isFinite(etcd)) return { row: row.name, target, met: undefined, why: `etcd: ${at(row.name, "etcd")?.status ?? "not run"}` };
    const overEtcd = advantage(brain, etcd, row);
    const reasons: string[] = [];
    let met = overEtcd >= row.target.etcdRatio;
    if (!met) reasons.push(`${overEtcd.toFixed(2)}× etcd`);
    if (row.target.aheadOfKine) {
      for (const kine of kines) {
        const value = figure(at(row.name, kine), row);
        if (Number.isFinite(value) && advantage(brain, value, row) < 1) {
          met = false;
          reasons.push(`behind ${kine}`);
        }
      }
    }
    return { row: row.name, target, met, why: reasons.join(", ") };
  });
}

export interface ReportContext {
  /** Each row's load command, as run (after the server's address). */
  commands: Array<{ row: string; command: string }>;
  machine: { cpu: string; cores: number; ramGiB: number; kernel: string; node: string };
  versions: Record<string, string>;
  /** Set when the run is not the full method (quick or a subset): said first, in bold. */
  provisional?: string;
}

export function markdownReport(cells: Cell[], rows: RowSpec[], servers: ServerName[], context: ReportContext): string {
  const at = (row: string, server: ServerName) => cells.find((cell) => cell.row === row && cell.server === server);
  const lines: string[] = [];
  if (context.provisional) lines.push(`**${context.provisional}**`, "");
  const { machine, versions } = context;
  lines.push(
    `Machine: ${machine.cpu}, ${machine.cores} cores, ${machine.ramGiB} GiB RAM, Linux ${machine.kernel}, Node ${machine.node}.`,
    `Versions: ${Object.entries(versions).map(([name, version]) => `${name} ${version}`).join("; ")}.`,
    "",
    "## Rows and targets",
    "",
    "Throughput in requests/s (median of the rounds); the watch rows give the p99 delivery latency instead. " +
      "\"X vs etcd\" is how many times better X is (throughput ratio, or etcd's p99 over X's). " +
      "brain-pg is brain on PostgreSQL with one replica, brain-pg-3 with three (the tools given all three addresses); " +
      "the targets are the issue's for brain on RocksDB.",
    "",
  );
  const verdictList = verdicts(cells, rows, servers);
  // Every brain target run beside etcd gets its ratio; the issue's targets are brain-on-RocksDB's.
  const compared = servers.includes("etcd") ? servers.filter((server) => server.startsWith("brain")) : [];
  lines.push(
    `| row | ${servers.join(" | ")} |${compared.map((server) => ` ${server} vs etcd |`).join("")} target | met |`,
    `|---|${servers.map(() => "---:").join("|")}|${compared.map(() => "---:|").join("")}---|---|`,
  );
  for (const row of rows) {
    const etcd = figure(at(row.name, "etcd"), row);
    const ratio = (server: ServerName) => {
      const value = figure(at(row.name, server), row);
      return Number.isFinite(value) && Number.isFinite(etcd) ? `${advantage(value, etcd, row).toFixed(2)}×` : "—";
    };
    const verdict = verdictList.find((entry) => entry.row === row.name)!;
    const met = verdict.met === undefined ? `— ${verdict.why}` : verdict.met ? "met" : `missed (${verdict.why})`;
    lines.push(
      `| ${row.label} | ${servers.map((server) => show(at(row.name, server), row)).join(" | ")} |${compared.map((server) => ` ${ratio(server)} |`).join("")} ${verdict.target} | ${met} |`,
    );
  }
  const memory = rows.map((row) => [at(row.name, "brain")?.rssMb, at(row.name, "etcd")?.rssMb] as const).filter(([b, e]) => b !== undefined && e !== undefined);
  const memoryMet = memory.filter(([brain, etcd]) => brain! <= etcd!).length;
  lines.push("", `Peak RSS ≤ etcd's (target): met on ${memoryMet} of ${memory.length} rows.`, "");
  const overall = (server: ServerName) => {
    const own = cells.filter((cell) => cell.server === server);
    const peak = Math.max(...own.map((cell) => cell.rssMb));
    const cpu = own.reduce((sum, cell) => sum + cell.cpuSeconds, 0);
    return `${server} ${peak.toFixed(0)} MiB / ${cpu.toFixed(1)} CPU s`;
  };
  lines.push(
    `Over all rows (peak RSS / CPU seconds, medians per row summed): ${servers.map(overall).join("; ")}. ` +
      "kine's CPU covers less work: it refuses some rows.",
    "",
  );

  lines.push("## Latency: p50 / p99 ms", "", `| row | ${servers.join(" | ")} |`, `|---|${servers.map(() => "---:").join("|")}|`);
  for (const row of rows) {
    const cellText = (server: ServerName) => {
      const cell = at(row.name, server);
      return !cell ? "—" : cell.status !== "ok" ? cell.status : `${cell.p50Ms.toFixed(2)} / ${cell.p99Ms.toFixed(2)}`;
    };
    lines.push(`| ${row.name} | ${servers.map(cellText).join(" | ")} |`);
  }

  lines.push(
    "",
    "## Server cost per row: peak RSS MiB / CPU seconds",
    "",
    "Peak RSS is the server process's VmHWM, reset before each row (for brain-pg-3, the three brains' summed); for kine-pg and brain-pg* it adds " +
      "PostgreSQL's processes' proportional set size at the end of the row (their shared buffers counted once). " +
      "CPU is user + system time of the server's processes (PostgreSQL's included) during the row.",
    "",
    `| row | ${servers.join(" | ")} |`,
    `|---|${servers.map(() => "---:").join("|")}|`,
  );
  for (const row of rows) {
    const cellText = (server: ServerName) => {
      const cell = at(row.name, server);
      return cell ? `${cell.rssMb.toFixed(0)} / ${cell.cpuSeconds.toFixed(1)}` : "—";
    };
    lines.push(`| ${row.name} | ${servers.map(cellText).join(" | ")} |`);
  }

  const problems = cells.filter((cell) => cell.status !== "ok" || cell.errors > 0);
  if (problems.length > 0) {
    lines.push("", "## Refused, unfinished and failed requests", "");
    for (const cell of problems) {
      const what = cell.status === "ok" ? `${cell.errors} requests failed (the rest were measured)` : cell.status;
      lines.push(`- ${cell.server}, ${cell.row}: ${what}${cell.error ? `: \`${cell.error.replaceAll("`", "'")}\`` : ""}`);
    }
  }
  lines.push("", "## Commands", "", "Each row's load, against each server's address (`--endpoints`):", "");
  for (const { row, command } of context.commands) lines.push(`- ${row}: \`${command}\``);
  return lines.join("\n");
}
