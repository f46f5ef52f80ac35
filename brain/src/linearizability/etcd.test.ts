// Histories recorded from the reference etcd must pass: the checker has no
// false positives on the implementation that defines the semantics. A fresh
// etcd of its own, not the shared one: the model needs an empty store at
// revision 1 and no other writer moving revisions.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startReferenceEtcd, type ReferenceEtcd } from "@wharf/testkit";
import { recordAndCheck } from "./run.js";

let etcd: ReferenceEtcd;

beforeAll(async () => {
  etcd = await startReferenceEtcd();
});

afterAll(async () => {
  await etcd?.stop();
});

describe("linearizability checker on the reference etcd", () => {
  it("accepts a concurrent history of puts, ranges, txns, deletes and watches", async () => {
    const report = await recordAndCheck({ label: "etcd seed 11", endpoint: etcd.endpoint, seed: 11, clients: 16, connections: 4, operations: 2500 });
    expect(report.violations).toEqual([]);
    expect(report.status).toBe("linearizable");
    expect(report.stats.operations).toBeGreaterThanOrEqual(2500);
    expect(report.stats.finalRevision).toBeGreaterThan(500);
  });
});
