// Records a history against a server and checks it, printing what was
// recorded and how long the check took: the shared step of the live tests.
import { writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { rawEtcdClient } from "@wharf/testkit";
import { checkHistory, type CheckReport } from "./check.js";
import type { History } from "./history.js";
import { recordHistory, type RecordOptions } from "./recorder.js";

export type RunOptions = Omit<RecordOptions, "connect" | "prefix"> & { label: string; budgetMs?: number };

export async function recordAndCheck(options: RunOptions): Promise<{ report: CheckReport; history: History }> {
  const started = performance.now();
  const history = await recordHistory({ ...options, prefix: "/lin/", connect: rawEtcdClient });
  const recordMs = Math.round(performance.now() - started);
  const report = checkHistory(history, { budgetMs: options.budgetMs ?? 20_000 });
  const { stats } = report;
  console.log(
    `[linearizability] ${options.label}: ${stats.operations} ops from ${stats.clients} clients over ${options.connections} connections ` +
      `(${stats.unknown} unknown, ${stats.unknownApplied} of them applied; ${stats.dropped} failed reads/downtime ops dropped; ` +
      `${stats.serializable} serializable), ${stats.watchEvents} watch events in ${history.watches.length} watches, ` +
      `final revision ${stats.finalRevision}; recorded in ${recordMs} ms, checked in ${stats.checkMs} ms: ${report.status}`,
  );
  if (report.status !== "linearizable" || process.env.WHARF_KEEP_HISTORY) {
    // Kept for a post-mortem (Infinity, for unknown returns, is written as null).
    const file = join(tmpdir(), `wharf-history-${options.label.replace(/\W+/g, "-")}-${Date.now()}.json`);
    await writeFile(file, JSON.stringify(history));
    console.log(`[linearizability] ${options.label}: history written to ${file}`);
  }
  return { report, history };
}
