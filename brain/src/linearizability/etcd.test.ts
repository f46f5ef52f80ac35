// Histories recorded from the reference etcd must pass: the checker has no
// false positives on the implementation that defines the semantics. And the
// same history with one planted fault of each kind must fail: the checker is
// not vacuous at full size. A fresh etcd of its own, not the shared one: the
// model needs an empty store at revision 1 and no other writer moving
// revisions.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startReferenceEtcd, type ReferenceEtcd } from "@wharf/testkit";
import { checkHistory } from "./check.js";
import type { History } from "./history.js";
import { mutations } from "./mutations.js";
import { recordAndCheck } from "./run.js";

let etcd: ReferenceEtcd;
let recorded: History | undefined;

beforeAll(async () => {
  etcd = await startReferenceEtcd();
});

afterAll(async () => {
  await etcd?.stop();
});

describe("linearizability checker on the reference etcd", { timeout: 120_000 }, () => {
  it("accepts a concurrent history of puts, ranges, txns, deletes and watches", async () => {
    const { report, history, coverage } = await recordAndCheck({
      label: "etcd seed 11",
      endpoint: etcd.endpoint,
      seed: 11,
      clients: 16,
      connections: 4,
      operations: 2500,
    });
    expect(report.violations).toEqual([]);
    for (const [what, count] of Object.entries(coverage)) expect(count, what).toBeGreaterThan(0);
    expect(report.status).toBe("linearizable");
    expect(report.stats.operations).toBeGreaterThanOrEqual(2500);
    expect(report.stats.finalRevision).toBeGreaterThan(500);
    recorded = history;
  });

  it("accepts a history with etcd killed (SIGKILL) and restarted in the middle: requests in flight are 'unknown'", async () => {
    const first = await startReferenceEtcd();
    const port = Number(new URL(first.endpoint).port);
    let restarted: ReferenceEtcd | undefined;
    try {
      const { report } = await recordAndCheck({
        label: "etcd seed 12 with kill -9",
        endpoint: first.endpoint,
        seed: 12,
        clients: 24,
        connections: 4,
        operations: 2000,
        fault: {
          atOperation: 1000,
          async inject() {
            first.process.child.kill("SIGKILL");
            await first.process.exited;
            const from = performance.now();
            const to = performance.now();
            restarted = await startReferenceEtcd({ dataDir: first.dataDir, port });
            return { from, to };
          },
        },
      });
      expect(restarted).toBeDefined();
      expect(report.violations).toEqual([]);
      expect(report.status).toBe("linearizable");
      expect(report.stats.unknown).toBeGreaterThan(0);
    } finally {
      await restarted?.stop();
      await first.stop();
    }
  });

  for (const mutation of mutations) {
    it(`rejects that history with a planted ${mutation.name}`, () => {
      expect(recorded, "the recording test above failed").toBeDefined();
      const history = structuredClone(recorded!);
      const planted = mutation.apply(history);
      const report = checkHistory(history, { budgetMs: 20_000 });
      expect(report.status, planted).toBe("violation");
      expect(report.violations[0], planted).toMatch(mutation.expect);
    });
  }
});
