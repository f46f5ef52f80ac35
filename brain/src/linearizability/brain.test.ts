// brain's histories under concurrent Put/Range/Txn/DeleteRange and watches
// must be linearizable under etcd's semantics, with watches delivering
// exactly the committed writes; also when brain is killed with SIGKILL in the
// middle (requests in flight then are "may or may not have happened").
// Each history has a brain of its own. Recording takes most of the time
// (brain's latency, not the checker's: it checks 2500 requests in < 2 s), so
// a loaded machine gets a longer timeout than vitest's default.
import { describe, expect, it } from "vitest";
import { startBrainProcess, type Brain } from "@wharf/testkit";
import { recordAndCheck } from "./run.js";

describe("linearizability of brain", { timeout: 120_000 }, () => {
  for (const seed of [1, 2]) {
    it(`seed ${seed}: 3000 requests from 16 clients over 4 connections, 3 watches`, async () => {
      const brain = await startBrainProcess();
      try {
        const { report, coverage } = await recordAndCheck({ label: `brain seed ${seed}`, endpoint: brain.endpoint, seed, clients: 16, connections: 4, operations: 3000 });
        expect(report.violations).toEqual([]);
        for (const [what, count] of Object.entries(coverage)) expect(count, what).toBeGreaterThan(0);
        expect(report.status).toBe("linearizable");
        expect(report.stats.finalRevision).toBeGreaterThan(500);
      } finally {
        await brain.stop();
      }
    });
  }

  it("seed 4: killed with SIGKILL and restarted in the middle of 3500 requests from 24 clients", async () => {
    const first = await startBrainProcess();
    const { dataDir } = first;
    const port = Number(new URL(first.endpoint).port);
    let restarted: Brain | undefined;
    try {
      const { report } = await recordAndCheck({
        label: "brain seed 4 with kill -9",
        endpoint: first.endpoint,
        seed: 4,
        clients: 24,
        connections: 4,
        operations: 3500,
        fault: {
          atOperation: 1750,
          async inject() {
            first.process.child.kill("SIGKILL");
            await first.process.exited;
            const from = performance.now();
            // No process serves from its exit until the restart is spawned: a request failing inside that span did not happen.
            const to = performance.now();
            restarted = await startBrainProcess({ dataDir, port });
            return { from, to };
          },
        },
      });
      expect(restarted).toBeDefined();
      expect(report.violations).toEqual([]);
      expect(report.status).toBe("linearizable");
      expect(report.stats.unknown).toBeGreaterThan(0);
    } finally {
      // The restarted brain runs on the first one's data dir: stop it before that dir goes.
      await restarted?.stop();
      await first.stop();
    }
  });
});
