// What every benchmark script writes: one row per (workload, target), the
// machine it ran on, and bench/results/<name>.{json,md} (chart.sh draws the PNG).
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { repoRoot } from "@wharf/testkit";

export interface Row {
  workload: string;
  target: string;
  opsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  rssMb: number;
}

export function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** The middle of the finite values (NaN when there are none). */
export function median(values: number[]): number {
  const sorted = values.filter((value) => Number.isFinite(value)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

export const machine = `${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, Node ${process.version}`;

/** Writes results/<name>.json (rows + `extra`) and results/<name>.md (title, setup line, table). */
export function writeResults(name: string, rows: Row[], extra: Record<string, unknown>, title: string, setup: string, table: string): void {
  const outDir = join(repoRoot, "bench", "results");
  mkdirSync(outDir, { recursive: true });
  const date = new Date().toISOString();
  writeFileSync(join(outDir, `${name}.json`), JSON.stringify({ date, machine, ...extra, rows }, null, 2) + "\n");
  writeFileSync(join(outDir, `${name}.md`), `# ${title}\n\n${date.slice(0, 10)} on ${machine}; ${setup}\n\n${table}\n`);
}
