// brain's histories under concurrent Put/Range/Txn/DeleteRange and watches
// must be linearizable under etcd's semantics, with watches delivering
// exactly the committed writes; also when brain is killed with SIGKILL in the
// middle (requests in flight then are "may or may not have happened").
import { afterEach, describe, expect, it } from "vitest";
import { startBrainProcess, type Brain } from "@wharf/testkit";
import { recordAndCheck } from "./run.js";

let brain: Brain | undefined;

afterEach(async () => {
  await brain?.stop();
  brain = undefined;
});

describe("linearizability of brain", () => {
  for (const seed of [1, 2]) {
    it(`seed ${seed}: 2000 requests from 16 clients over 4 connections, 2 watches`, async () => {
      brain = await startBrainProcess();
      const report = await recordAndCheck({ label: `brain seed ${seed}`, endpoint: brain.endpoint, seed, clients: 16, connections: 4, operations: 2000 });
      expect(report.violations).toEqual([]);
      expect(report.status).toBe("linearizable");
      expect(report.stats.finalRevision).toBeGreaterThan(500);
    });
  }

  it("seed 4: killed with SIGKILL and restarted in the middle of 3000 requests from 24 clients", async () => {
    const first = await startBrainProcess();
    brain = first;
    const { dataDir } = first;
    const port = Number(new URL(first.endpoint).port);
    let restarted = false;
    try {
      const report = await recordAndCheck({
        label: "brain seed 4 with kill -9",
        endpoint: first.endpoint,
        seed: 4,
        clients: 24,
        connections: 4,
        operations: 3000,
        fault: {
          atOperation: 1500,
          async inject() {
            first.process.child.kill("SIGKILL");
            await first.process.exited;
            const from = performance.now();
            // No process serves until the restart below is spawned: requests failing inside this span did not happen.
            const to = performance.now();
            brain = await startBrainProcess({ dataDir, port });
            restarted = true;
            return { from, to };
          },
        },
      });
      expect(restarted).toBe(true);
      expect(report.violations).toEqual([]);
      expect(report.status).toBe("linearizable");
      expect(report.stats.unknown).toBeGreaterThan(0);
    } finally {
      // The restarted brain runs on the first one's data dir: stop it before that dir goes.
      if (brain !== first) await brain?.stop();
      brain = undefined;
      await first.stop();
    }
  });
});
