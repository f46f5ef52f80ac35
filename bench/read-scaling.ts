// Read throughput of brain on PostgreSQL as replicas are added: one set
// started with one member, the range rows run with the tool given every
// member's address, then a second member joins, the rows again, a third, the
// rows again. Every replica serves reads from its own copy (linearizable ones
// after asking PostgreSQL for the committed revision).
import { clients, connections, rangeKey, readRun, rows, runTool, type Measurement, type Scale } from "./brain-load.js";
import { startReplicaSet, type ReplicaSet } from "./replica-set.js";
import { resetPeaksOf, usageOf } from "./servers.js";

export const scalingRows = ["range-serializable", "range-linearizable"] as const;
export const maxReplicas = 3;

export interface ScalingRecord extends Measurement {
  round: number;
  replicas: number;
  row: (typeof scalingRows)[number];
  cpuSeconds: number;
  rssMb: number;
}

export async function runReadScaling(round: number, scale: Scale, rowTimeoutMs: number, log: (line: string) => void): Promise<ScalingRecord[]> {
  const records: ScalingRecord[] = [];
  let set: ReplicaSet | undefined;
  try {
    set = await startReplicaSet(1);
    const seed = await runTool("kubeload", set.endpoints(), ["seed", "--key", rangeKey, "--clients", "1", "--conns", "1"], 30_000);
    if (seed.code !== 0) throw new Error(`could not write the range key (exit ${seed.code}): ${seed.stderr}`);
    for (let replicas = 1; replicas <= maxReplicas; replicas++) {
      if (replicas > 1) await set.addMember();
      await set.settle();
      // Untimed, as bench:brain's warm-up: connections and the new member's caches.
      await runTool("benchmark", set.endpoints(), ["--clients", String(clients), "--conns", String(connections), "range", rangeKey, "--total", scale.quick ? "500" : "3000"], rowTimeoutMs);
      for (const name of scalingRows) {
        const row = rows.find((candidate) => candidate.name === name)!;
        const processes = set.processes();
        resetPeaksOf(processes);
        const before = usageOf(processes);
        const run = await runTool(row.tool, set.endpoints(), row.args(scale), rowTimeoutMs);
        const after = usageOf(processes);
        const measurement = readRun(row, run, scale);
        const record: ScalingRecord = { ...measurement, round, replicas, row: name, cpuSeconds: after.cpu - before.cpu, rssMb: after.rssMb };
        records.push(record);
        log(
          `  ${replicas} replica(s), ${name}: ${record.status === "ok" ? `${record.opsPerSecond.toFixed(0)} ops/s, p99 ${record.p99Ms.toFixed(2)} ms` : `${record.status} (${record.error})`}` +
            `${record.errors ? `, ${record.errors} errors` : ""}, ${record.cpuSeconds.toFixed(1)} CPU s, ${record.rssMb.toFixed(0)} MiB`,
        );
      }
    }
  } catch (error) {
    const message = (error as Error).message.split("\n")[0]!;
    log(`  read scaling failed: ${message}`);
    for (let replicas = 1; replicas <= maxReplicas; replicas++) {
      for (const row of scalingRows) {
        if (records.some((record) => record.replicas === replicas && record.row === row)) continue;
        records.push({ round, replicas, row, status: "failed", error: message, opsPerSecond: NaN, p50Ms: NaN, p99Ms: NaN, errors: 0, seconds: 0, cpuSeconds: 0, rssMb: NaN });
      }
    }
  } finally {
    await set?.stop();
  }
  return records;
}
