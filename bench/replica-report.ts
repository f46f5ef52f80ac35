// bench:brain's replica sections: read throughput as replicas are added
// (medians over rounds) and failover times (median and max over trials).
import type { FailoverKind, FailoverResult, FailoverTrial } from "./failover.js";
import { median, type Row } from "./report.js";
import { maxReplicas, scalingRows, type ScalingRecord } from "./read-scaling.js";

export interface ScalingCell {
  row: string;
  replicas: number;
  measured: number;
  runs: number;
  opsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  rssMb: number;
  cpuSeconds: number;
  errors: number;
  error?: string;
}

export function summarizeScaling(records: ScalingRecord[]): ScalingCell[] {
  const cells: ScalingCell[] = [];
  for (const row of scalingRows) {
    for (let replicas = 1; replicas <= maxReplicas; replicas++) {
      const all = records.filter((record) => record.row === row && record.replicas === replicas);
      if (all.length === 0) continue;
      const ok = all.filter((record) => record.status === "ok");
      cells.push({
        row,
        replicas,
        measured: ok.length,
        runs: all.length,
        opsPerSecond: median(ok.map((record) => record.opsPerSecond)),
        p50Ms: median(ok.map((record) => record.p50Ms)),
        p99Ms: median(ok.map((record) => record.p99Ms)),
        rssMb: median((ok.length > 0 ? ok : all).map((record) => record.rssMb)),
        cpuSeconds: median((ok.length > 0 ? ok : all).map((record) => record.cpuSeconds)),
        errors: all.reduce((sum, record) => sum + record.errors, 0),
        error: all.find((record) => record.error)?.error,
      });
    }
  }
  return cells;
}

export interface FailoverFigure {
  what: string;
  kind: FailoverKind;
  key: "firstWriteMs" | "newLeaderMs" | "writeGapMs" | "rejoinMs";
  trials: number;
  medianMs: number;
  maxMs: number;
}

const figures: Array<Omit<FailoverFigure, "trials" | "medianMs" | "maxMs">> = [
  { what: "kill -9 leader → first acknowledged write", kind: "kill", key: "firstWriteMs" },
  { what: "kill -9 leader → new leader in Status", kind: "kill", key: "newLeaderMs" },
  { what: "kill -9 leader: last write before → first after (client's gap)", kind: "kill", key: "writeGapMs" },
  { what: "SIGSTOP leader → first acknowledged write", kind: "pause", key: "firstWriteMs" },
  { what: "SIGSTOP leader → new leader in Status", kind: "pause", key: "newLeaderMs" },
  { what: "SIGCONT → old leader serving as a follower, caught up", kind: "pause", key: "rejoinMs" },
];

export function summarizeFailover(trials: FailoverTrial[]): FailoverFigure[] {
  return figures.map((figure) => {
    const values = trials.filter((trial) => trial.kind === figure.kind).map((trial) => trial[figure.key] ?? NaN).filter((value) => Number.isFinite(value));
    return { ...figure, trials: values.length, medianMs: median(values), maxMs: values.length ? Math.max(...values) : NaN };
  });
}

const ms = (value: number) => (Number.isFinite(value) ? `${value.toFixed(0)} ms` : "—");
const perSecond = (value: number) => (Number.isFinite(value) ? value.toFixed(0) : "—");

export function replicaMarkdown(
  scaling: ScalingCell[],
  failover: { figures: FailoverFigure[]; trials: FailoverTrial[]; runs: FailoverResult[] } | undefined,
  context: { leaderLeaseTtl: string; cores: number },
): string {
  const lines: string[] = [];
  if (scaling.length > 0) {
    const at = (row: string, replicas: number) => scaling.find((cell) => cell.row === row && cell.replicas === replicas);
    const counts = Array.from({ length: maxReplicas }, (_, index) => index + 1);
    lines.push(
      "## brain on PostgreSQL: read throughput as replicas are added",
      "",
      "One replica set per round, started with one member; the rows run with etcd's benchmark tool given every member's address " +
        "(it spreads its connections over them), then a member joins and they run again. Requests/s, median of the rounds. " +
        `All members, PostgreSQL and the tool share this machine's ${context.cores} cores, so a member added here adds no CPU.`,
      "",
      `| row | ${counts.map((count) => `${count} replica${count > 1 ? "s" : ""}`).join(" | ")} | ${maxReplicas} vs 1 |`,
      `|---|${counts.map(() => "---:").join("|")}|---:|`,
    );
    for (const row of scalingRows) {
      const first = at(row, 1)?.opsPerSecond ?? NaN;
      const last = at(row, maxReplicas)?.opsPerSecond ?? NaN;
      const cells = counts.map((count) => {
        const cell = at(row, count);
        if (!cell) return "—";
        if (cell.measured === 0) return "failed";
        return `${perSecond(cell.opsPerSecond)}${cell.measured < cell.runs ? ` (${cell.measured} of ${cell.runs} rounds)` : ""}`;
      });
      lines.push(`| ${row} | ${cells.join(" | ")} | ${Number.isFinite(first) && Number.isFinite(last) ? `${(last / first).toFixed(2)}×` : "—"} |`);
    }
    lines.push("", "p50 / p99 ms; peak RSS MiB (every brain + PostgreSQL's proportional share) / CPU seconds:", "");
    lines.push(`| row | ${counts.map((count) => `${count}: p50 / p99`).join(" | ")} | ${counts.map((count) => `${count}: MiB / CPU s`).join(" | ")} |`);
    lines.push(`|---|${[...counts, ...counts].map(() => "---:").join("|")}|`);
    for (const row of scalingRows) {
      const latency = counts.map((count) => {
        const cell = at(row, count);
        return cell && cell.measured > 0 ? `${cell.p50Ms.toFixed(2)} / ${cell.p99Ms.toFixed(2)}` : "—";
      });
      const cost = counts.map((count) => {
        const cell = at(row, count);
        return cell ? `${cell.rssMb.toFixed(0)} / ${cell.cpuSeconds.toFixed(1)}` : "—";
      });
      lines.push(`| ${row} | ${latency.join(" | ")} | ${cost.join(" | ")} |`);
    }
    const problems = scaling.filter((cell) => cell.measured < cell.runs || cell.errors > 0);
    for (const cell of problems) {
      lines.push("", `- ${cell.replicas} replica(s), ${cell.row}: ${cell.runs - cell.measured} round(s) not measured, ${cell.errors} failed requests${cell.error ? `: \`${cell.error.replaceAll("`", "'")}\`` : ""}`);
    }
    lines.push("");
  }
  if (failover) {
    const { figures: summary, trials, runs } = failover;
    const acknowledged = runs.reduce((sum, run) => sum + run.acknowledged, 0);
    const lost = runs.reduce((sum, run) => sum + run.lost, 0);
    const run = runs[0];
    lines.push(
      "## brain on PostgreSQL: failover, three replicas",
      "",
      `A writer puts ${run?.putRate ?? "?"} keys/s round-robin over the three members' addresses, each put with a ${run?.putDeadlineMs ?? "?"} ms deadline; ` +
        "the leader is sent SIGKILL (its PostgreSQL session ends, so its advisory lock is free at once) or SIGSTOP (the others wait for its " +
        `lease, \`--leader-lease-ttl ${context.leaderLeaseTtl}\`, to expire). "First acknowledged write" counts only puts sent after the signal. ` +
        "A killed member is started again under its name and address before the next trial; a paused one gets SIGCONT and must rejoin on its own.",
      "",
      "| measured | trials | median | max |",
      "|---|---:|---:|---:|",
    );
    for (const figure of summary) lines.push(`| ${figure.what} | ${figure.trials} | ${ms(figure.medianMs)} | ${ms(figure.maxMs)} |`);
    lines.push(
      "",
      `Acknowledged puts over all failover trials: ${acknowledged}; missing from a linearizable read afterwards: ${lost}.`,
      "",
      "Each trial (signal → first write / new leader in Status / client's gap; puts sent from the signal until the set was whole and caught up again, and how many failed):",
      "",
    );
    for (const trial of trials) {
      lines.push(
        `- round ${trial.round}, ${trial.kind} ${trial.trial}: ${trial.from} → ${trial.to ?? "?"} (epoch ${trial.epochBefore} → ${trial.epochAfter ?? "?"}): ` +
          `${ms(trial.firstWriteMs)} / ${ms(trial.newLeaderMs)} / ${ms(trial.writeGapMs)}; ${trial.failedPuts} of ${trial.sentPuts} puts failed` +
          `${trial.rejoinMs !== undefined ? `; rejoined ${ms(trial.rejoinMs)} after SIGCONT` : ""}${trial.error ? `; ${trial.error}` : ""}`,
      );
    }
    lines.push("");
  }
  return lines.join("\n");
}

/** The rows bench/results/brain-replicas.json draws (chart.py): scaling throughput per replica count, failover times. */
export function replicaChartRows(scaling: ScalingCell[], failover: FailoverFigure[]): Row[] {
  const rows: Row[] = scaling.map((cell) => ({
    workload: cell.row,
    target: `${cell.replicas} replica${cell.replicas > 1 ? "s" : ""}`,
    opsPerSecond: cell.opsPerSecond,
    p50Ms: cell.p50Ms,
    p99Ms: cell.p99Ms,
    rssMb: cell.rssMb,
  }));
  for (const figure of failover) {
    for (const [target, value] of [["median", figure.medianMs], ["max", figure.maxMs]] as const) {
      rows.push({ workload: `${figure.kind === "kill" ? "kill -9" : "SIGSTOP"}: ${figure.key.replace("Ms", "")}`, target, opsPerSecond: NaN, p50Ms: NaN, p99Ms: NaN, rssMb: NaN, failoverMs: value } as Row);
    }
  }
  return rows;
}
