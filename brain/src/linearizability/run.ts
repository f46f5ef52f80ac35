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

/** How much of etcd's behaviour a history exercised: each should be well above zero, or the workload is degenerate. */
export interface Coverage {
  txnSucceeded: number;
  txnFailed: number;
  deletesThatDeleted: number;
  prefixDeletesOfSeveral: number;
  rangesCutByLimit: number;
  pastRevisionReads: number;
  serializableReads: number;
}

export function coverage(history: History): Coverage {
  const counts: Coverage = {
    txnSucceeded: 0,
    txnFailed: 0,
    deletesThatDeleted: 0,
    prefixDeletesOfSeveral: 0,
    rangesCutByLimit: 0,
    pastRevisionReads: 0,
    serializableReads: 0,
  };
  for (const { request, response } of history.operations) {
    if (!response) continue;
    if (response.type === "txn") counts[response.succeeded ? "txnSucceeded" : "txnFailed"]++;
    if (response.type === "delete" && response.deleted > 0) counts.deletesThatDeleted++;
    if (response.type === "delete" && response.deleted > 1) counts.prefixDeletesOfSeveral++;
    if (response.type === "range" && response.more) counts.rangesCutByLimit++;
    if (request.type === "range" && request.revision) counts.pastRevisionReads++;
    if (request.type === "range" && request.serializable) counts.serializableReads++;
  }
  return counts;
}

export async function recordAndCheck(options: RunOptions): Promise<{ report: CheckReport; history: History; coverage: Coverage }> {
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
  const covered = coverage(history);
  console.log(`[linearizability] ${options.label}: ${JSON.stringify(covered)}`);
  if (report.status !== "linearizable" || process.env.WHARF_KEEP_HISTORY) {
    // Kept for a post-mortem (Infinity, for unknown returns, is written as null).
    const file = join(tmpdir(), `wharf-history-${options.label.replace(/\W+/g, "-")}-${Date.now()}.json`);
    await writeFile(file, JSON.stringify(history));
    console.log(`[linearizability] ${options.label}: history written to ${file}`);
  }
  return { report, history, coverage: covered };
}
