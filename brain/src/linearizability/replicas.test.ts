// A 3-member brain replica set on one real PostgreSQL, checked like a single
// brain (brain.test.ts): concurrent clients spread over all three members,
// each connection pinned to one, must see a linearizable history under
// etcd's semantics (a linearizable read through a follower sees every write
// acknowledged through any member), and every watch delivers exactly the
// committed writes, also across its move to another member when its own dies
// or stalls. Faults in the middle: kill -9 of the leader, SIGSTOP of the
// leader past its lease then SIGCONT while clients still run (the resumed old
// leader must neither commit nor answer from its stale copy), and a
// PostgreSQL restart (down 0.5 s). A request in flight across a fault is "may
// or may not have happened"; a client whose request failed moves to the next
// member.
import { describe, expect, it } from "vitest";
import pg from "pg";
import {
  CompactionRequestSchema,
  Compare_CompareResult,
  Compare_CompareTarget,
  DeleteRangeRequestSchema,
  PutRequestSchema,
  RangeRequestSchema,
  StatusRequestSchema,
  TxnRequestSchema,
  type DeleteRangeResponse,
  type PutResponse,
  type RangeResponse,
  type StatusResponse,
  type TxnResponse,
} from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import { etcdServices, rawEtcdClient, startBrainReplicaSet, waitFor, type BrainReplicaSet } from "@wharf/testkit";
import type { CheckReport } from "./check.js";
import type { History } from "./history.js";
import { recordAndCheck, type Coverage } from "./run.js";

/** A brain process serves all along (some member is up): no span in which nothing could have happened. */
const noDowntime = () => {
  const now = performance.now();
  return { from: now, to: now };
};

/** The revision a member has applied (a serializable read answers from its own copy). */
async function appliedRevision(set: BrainReplicaSet, index: number): Promise<number> {
  const client = rawEtcdClient(set.endpoints[index]!, { "grpc.use_local_subchannel_pool": 1 });
  try {
    const response = (await client.call(etcdServices.KV, "Range", RangeRequestSchema, { key: Buffer.from("\0"), serializable: true })) as unknown as RangeResponse;
    return Number(response.header!.revision);
  } finally {
    client.close();
  }
}

/**
 * Watches on every member from the start (connection i is on member i mod 3),
 * and one more from revision 1 halfway through, which catches up from storage.
 */
const watches = [
  { at: 0, prevKv: true },
  { at: 0, prevKv: false },
  { at: 0, prevKv: true, prefix: "a/" },
  { at: 1 / 2, prevKv: false },
];

/** `faulted`: the member killed or paused, whose watch must have gone on delivering from another member. */
function expectClean(report: CheckReport, coverage: Coverage, history: History, faulted?: number): void {
  expect(report.violations).toEqual([]);
  expect(report.status).toBe("linearizable");
  for (const [what, count] of Object.entries(coverage)) expect(count, what).toBeGreaterThan(0);
  // Every member answered requests and served a watch.
  for (const member of [0, 1, 2]) {
    expect(history.operations.filter((op) => op.member === member && op.response).length, `requests answered by member ${member}`).toBeGreaterThan(100);
    expect(history.watches.some((watch) => watch.segments.some((segment) => segment.member === member && segment.responses.length > 0)), `a watch on member ${member}`).toBe(true);
  }
  if (faulted !== undefined) {
    const moved = history.watches.filter((watch) => {
      const first = watch.segments.findIndex((segment) => segment.member === faulted && segment.responses.length > 0);
      return first >= 0 && watch.segments.slice(first + 1).some((segment) => segment.member !== faulted && segment.responses.some((response) => response.events.length > 0));
    });
    expect(moved.length, `a watch on member ${faulted} went on delivering events from another member`).toBeGreaterThan(0);
  }
  expect(report.stats.finalRevision).toBeGreaterThan(300);
}

describe("linearizability of a 3-member brain replica set on PostgreSQL", { timeout: 150_000 }, () => {
  it("seed 21: 2400 requests from 18 clients over 6 connections on all three members, 4 watches", async () => {
    const set = await startBrainReplicaSet({ replicas: 3 });
    try {
      const { report, coverage, history } = await recordAndCheck({ label: "replicas seed 21", endpoint: set.endpoints[0]!, endpoints: set.endpoints, seed: 21, clients: 18, connections: 6, operations: 2400, watches });
      expectClean(report, coverage, history);
      expect(report.stats.unknown).toBe(0);
    } finally {
      await set.stop();
    }
  });

  it("seed 22: the leader killed with SIGKILL in the middle, restarted once a new leader serves", async () => {
    const set = await startBrainReplicaSet({ replicas: 3 });
    try {
      const leader = await set.leaderIndex();
      let next = -1;
      const { report, coverage, history } = await recordAndCheck({
        label: "replicas seed 22 with kill -9 of the leader",
        endpoint: set.endpoints[0]!,
        endpoints: set.endpoints,
        seed: 22,
        clients: 18,
        connections: 6,
        operations: 2400,
        watches,
        fault: {
          atOperation: 800,
          async inject() {
            await set.kill(leader, "SIGKILL");
            next = await set.waitForLeader(leader, 15_000);
            await set.restart(leader);
            return noDowntime();
          },
        },
      });
      expect(next).not.toBe(leader);
      expectClean(report, coverage, history, leader);
      expect(report.stats.unknown).toBeGreaterThan(0);
    } finally {
      await set.stop();
    }
  });

  it("seed 23: the leader paused with SIGSTOP past its lease, then resumed with SIGCONT while clients run", async () => {
    const set = await startBrainReplicaSet({ replicas: 3, leaseTtl: "2s" });
    try {
      const leader = await set.leaderIndex();
      let next = -1;
      let pausedAt = 0;
      let movedTo = 0;
      const { report, coverage, history } = await recordAndCheck({
        label: "replicas seed 23 with SIGSTOP of the leader",
        endpoint: set.endpoints[0]!,
        endpoints: set.endpoints,
        seed: 23,
        clients: 18,
        connections: 6,
        operations: 2400,
        watches,
        fault: {
          atOperation: 700,
          async inject() {
            pausedAt = await appliedRevision(set, leader);
            await set.kill(leader, "SIGSTOP");
            next = await set.waitForLeader(leader, 15_000);
            // The new leader has committed writes the paused one never saw: its copy is stale when it wakes.
            await waitFor(async () => (movedTo = await appliedRevision(set, next)) > pausedAt + 20, 15_000, "the new leader to commit writes");
            await set.kill(leader, "SIGCONT");
            return noDowntime();
          },
        },
      });
      expect(next).not.toBe(leader);
      console.log(`[linearizability] paused the leader at revision ${pausedAt}; resumed it once the new leader was at ${movedTo}`);
      expectClean(report, coverage, history, leader);
    } finally {
      await set.stop();
    }
  });

  it("seed 25: a follower paused with SIGSTOP, then the leader killed for good; the follower resumed once the last member leads", async () => {
    const set = await startBrainReplicaSet({ replicas: 3, leaseTtl: "2s" });
    try {
      const leader = await set.leaderIndex();
      const follower = (leader + 1) % 3;
      let next = -1;
      const { report, coverage, history } = await recordAndCheck({
        label: "replicas seed 25 with a paused follower and a killed leader",
        endpoint: set.endpoints[0]!,
        endpoints: set.endpoints,
        seed: 25,
        clients: 18,
        connections: 6,
        operations: 2400,
        watches,
        fault: {
          atOperation: 800,
          async inject() {
            await set.kill(follower, "SIGSTOP");
            await set.kill(leader, "SIGKILL");
            // The only member left running leads alone (PostgreSQL, not a quorum of brains, decides).
            next = await set.waitForLeader(leader, 15_000);
            const from = await appliedRevision(set, next);
            await waitFor(async () => (await appliedRevision(set, next)) > from + 20, 15_000, "the last member to commit writes");
            await set.kill(follower, "SIGCONT");
            return noDowntime();
          },
        },
      });
      expect(next).toBe((leader + 2) % 3);
      expectClean(report, coverage, history, leader);
      expect(set.members[leader]!.state).toBe("dead");
    } finally {
      await set.stop();
    }
  });

  it("seed 24: PostgreSQL restarted in the middle", async () => {
    const set = await startBrainReplicaSet({ replicas: 3 });
    try {
      const { report, coverage, history } = await recordAndCheck({
        label: "replicas seed 24 with a PostgreSQL restart",
        endpoint: set.endpoints[0]!,
        endpoints: set.endpoints,
        seed: 24,
        clients: 18,
        connections: 6,
        operations: 2400,
        watches,
        fault: {
          atOperation: 800,
          async inject() {
            await set.postgres.restart({ downMs: 500 });
            await set.waitForLeader(undefined, 20_000);
            return noDowntime();
          },
        },
      });
      // The restart reached the clients (requests failed across it), and the set served on after it.
      expect(history.operations.filter((op) => !op.response).length).toBeGreaterThan(0);
      expectClean(report, coverage, history);
    } finally {
      await set.stop();
    }
  });
});

describe("a leader deposed before it knows it (its lease ended early on PostgreSQL's clock)", { timeout: 90_000 }, () => {
  // PostgreSQL's clock stepping forward (or the leader's event loop stalling)
  // ends the lease before the leader's own deadline: a follower takes over
  // and commits while the old leader still believes it leads, until its next
  // renewal finds the epoch moved. Its writes are fenced; this checks it also
  // answers nothing from its stale copy meanwhile: a Txn that writes nothing,
  // a DeleteRange that deletes nothing and a linearizable Range, each sent
  // after the new leader acknowledged a write.
  it("answers no read-only Txn, empty DeleteRange or linearizable Range from its stale copy", async () => {
    const set = await startBrainReplicaSet({ replicas: 3, leaseTtl: "6s" });
    const clients = set.endpoints.map((endpoint) => rawEtcdClient(endpoint, { "grpc.use_local_subchannel_pool": 1 }));
    const db = new pg.Client({ connectionString: set.postgres.url });
    await db.connect();
    try {
      const old = await set.leaderIndex();
      const key = Buffer.from("/stale/k");
      await clients[old]!.call(etcdServices.KV, "Put", PutRequestSchema, { key, value: Buffer.from("v1") });
      const leaderRow = async () => (await db.query<{ epoch: string; name: string; expires_at: Date }>("SELECT epoch::text, name, expires_at FROM brain_leader WHERE id = 1")).rows[0]!;
      const before = await leaderRow();
      // Right after a renewal (expires_at moves), so the old leader's next renewal is ttl/3 away.
      await waitFor(async () => (await leaderRow()).expires_at.getTime() !== before.expires_at.getTime(), 10_000, "a renewal", 5);
      let after = before;
      await waitFor(
        async () => {
          await db.query("UPDATE brain_leader SET expires_at = now() - interval '1 second' WHERE id = 1 AND epoch = $1", [before.epoch]);
          after = await leaderRow();
          return after.epoch !== before.epoch;
        },
        5_000,
        "a follower to take over",
        20,
      );
      const next = set.members.findIndex((member) => member.name === after.name);
      expect(next).not.toBe(old);
      const put = (await clients[next]!.call(etcdServices.KV, "Put", PutRequestSchema, { key, value: Buffer.from("v2") })) as unknown as PutResponse;
      const acknowledged = Number(put.header!.revision);
      const settle = <T>(promise: Promise<T>) => promise.then((value) => ({ value }), (error: Error) => ({ error: error.message }));
      const [txn, deleted, range] = await Promise.all([
        settle(
          clients[old]!.call(etcdServices.KV, "Txn", TxnRequestSchema, {
            compare: [{ key, target: Compare_CompareTarget.Value, result: Compare_CompareResult.Equal, targetUnion: { case: "value", value: Buffer.from("v1") } }],
            success: [{ request: { case: "requestRange", value: { key } } }],
            failure: [{ request: { case: "requestRange", value: { key } } }],
          }) as unknown as Promise<TxnResponse>,
        ),
        settle(clients[old]!.call(etcdServices.KV, "DeleteRange", DeleteRangeRequestSchema, { key: Buffer.from("/stale/none") }) as unknown as Promise<DeleteRangeResponse>),
        settle(clients[old]!.call(etcdServices.KV, "Range", RangeRequestSchema, { key }) as unknown as Promise<RangeResponse>),
      ]);
      // The old leader had not noticed yet when it answered (else this test shows nothing): it still names itself.
      const status = (await clients[old]!.call(etcdServices.Maintenance, "Status", StatusRequestSchema, {})) as unknown as StatusResponse;
      console.log(`[linearizability] deposed leader's answers after the new leader's write at ${acknowledged}: ${JSON.stringify({ txn, deleted, range }, (_, v: unknown) => (typeof v === "bigint" ? Number(v) : v instanceof Uint8Array ? Buffer.from(v).toString() : v))}`);
      expect(status.leader, "the old leader still believed it led").toBe(status.header!.memberId);
      if ("value" in txn) {
        expect(txn.value.succeeded, "a Txn comparing against the value before the new leader's write").toBe(false);
        expect(Number(txn.value.header!.revision)).toBeGreaterThanOrEqual(acknowledged);
      } else expect(txn.error).toMatch(/leader changed|UNAVAILABLE/);
      if ("value" in deleted) expect(Number(deleted.value.header!.revision)).toBeGreaterThanOrEqual(acknowledged);
      else expect(deleted.error).toMatch(/leader changed|UNAVAILABLE/);
      if ("value" in range) expect(Buffer.from(range.value.kvs[0]!.value).toString()).toBe("v2");
      else expect(range.error).toMatch(/leader changed|UNAVAILABLE/);
    } finally {
      await db.end();
      for (const client of clients) client.close();
      await set.stop();
    }
  });
});

describe("a follower cut off from PostgreSQL while the leader commits", { timeout: 90_000 }, () => {
  // Its sessions are terminated as fast as it opens them, so it cannot read
  // the log; a write sent to it still reaches the leader, which commits it.
  // The follower must not answer it with a revision it has not applied (the
  // client's next read there would go back in time): etcd's member answers
  // a write it proposed only once applied, or fails "request timed out".
  it("does not acknowledge a forwarded write at a revision it has not applied", async () => {
    const set = await startBrainReplicaSet({ replicas: 3 });
    const clients = set.endpoints.map((endpoint) => rawEtcdClient(endpoint, { "grpc.use_local_subchannel_pool": 1 }));
    // Three sessions terminating in turn: a new session of the follower's rarely lives to finish a query.
    const cutters = [0, 1, 2].map(() => new pg.Client({ connectionString: set.postgres.url }));
    await Promise.all(cutters.map((cutter) => cutter.connect()));
    let cutting = true;
    let cut: Promise<unknown> | undefined;
    try {
      const leader = await set.leaderIndex();
      const follower = (leader + 1) % 3;
      const key = Buffer.from("/cut/k");
      let terminated = 0;
      cut = Promise.all(
        cutters.map(async (cutter) => {
          while (cutting) {
            const { rows } = await cutter.query<{ ended: boolean }>(
              "SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity WHERE application_name = $1",
              [`brain/${set.members[follower]!.name}`],
            );
            terminated += rows.filter((row) => row.ended).length;
          }
        }),
      );
      // Its open sessions (LISTEN, election, pooled) are gone, and a new one was cut too.
      await waitFor(async () => terminated >= 4, 10_000, "the follower's sessions to be cut", 5);
      const settle = <T>(promise: Promise<T>) => promise.then((value) => ({ value }), (error: Error) => ({ error: error.message }));
      // A session of the follower's may slip through between cuts and apply a write in time; a few writes
      // make it very likely that one finds the copy unable to apply it. Each answer is checked either way.
      const outcomes: string[] = [];
      for (let attempt = 1; attempt <= 3; attempt++) {
        const put = await settle(clients[follower]!.call(etcdServices.KV, "Put", PutRequestSchema, { key, value: Buffer.from(`v${attempt}`) }) as unknown as Promise<PutResponse>);
        const read = (await clients[follower]!.call(etcdServices.KV, "Range", RangeRequestSchema, { key, serializable: true })) as unknown as RangeResponse;
        outcomes.push(`${"value" in put ? `acknowledged at ${put.value.header!.revision}` : put.error}, then read at revision ${read.header!.revision}`);
        if ("value" in put) {
          expect(Number(read.header!.revision), "the follower's read after it acknowledged the write").toBeGreaterThanOrEqual(Number(put.value.header!.revision));
        } else {
          expect(put.error).toMatch(/etcdserver: request timed out/);
          break;
        }
      }
      console.log(`[linearizability] writes through a follower cut off from PostgreSQL: ${outcomes.join("; ")}`);
      cutting = false;
      await cut;
      // Reconnected, it applies the write the leader committed.
      await waitFor(
        async () => ((await clients[follower]!.call(etcdServices.KV, "Range", RangeRequestSchema, { key, serializable: true })) as unknown as RangeResponse).kvs.length === 1,
        15_000,
        "the follower to apply the write once reconnected",
      );
    } finally {
      cutting = false;
      await cut?.catch(() => undefined);
      await Promise.all(cutters.map((cutter) => cutter.end()));
      for (const client of clients) client.close();
      await set.stop();
    }
  });
});

describe("a Compact acknowledged through one follower", { timeout: 90_000 }, () => {
  // A compaction is a group that moves no revision: a linearizable read on
  // another member must wait for that group too (etcd's ReadIndex covers
  // every entry committed before it), not only for the revision.
  it("makes a linearizable read at a revision below it fail as compacted on every other member at once", async () => {
    const set = await startBrainReplicaSet({ replicas: 3 });
    const clients = set.endpoints.map((endpoint) => rawEtcdClient(endpoint, { "grpc.use_local_subchannel_pool": 1 }));
    try {
      const leader = await set.leaderIndex();
      const through = (leader + 1) % 3;
      const other = (leader + 2) % 3;
      const key = Buffer.from("/compact/k");
      const put = async (value: string) =>
        Number(((await clients[leader]!.call(etcdServices.KV, "Put", PutRequestSchema, { key, value: Buffer.from(value) })) as unknown as PutResponse).header!.revision);
      const served: number[] = [];
      let refused = 0;
      for (let round = 0; round < 50; round++) {
        // Compacted below the newest write, so the read below it is of a revision that really changed.
        const revision = await put(`a${round}`);
        await put(`b${round}`);
        await clients[through]!.call(etcdServices.KV, "Compact", CompactionRequestSchema, { revision: BigInt(revision) });
        for (const member of [other, leader]) {
          try {
            await clients[member]!.call(etcdServices.KV, "Range", RangeRequestSchema, { key, revision: BigInt(revision - 1) });
            served.push(revision - 1);
          } catch (error) {
            // No member reloads its copy here (the log keeps compacted rows a while for followers): every refusal is "compacted".
            expect((error as Error).message).toMatch(/required revision has been compacted/);
            refused++;
          }
        }
      }
      expect(served, "revisions read after the Compact that removed them was acknowledged").toEqual([]);
      expect(refused).toBe(100);
    } finally {
      for (const client of clients) client.close();
      await set.stop();
    }
  });
});
