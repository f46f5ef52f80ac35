// Three brains on one PostgreSQL, the leader killed with SIGKILL while
// writers go through every member: a new leader must serve within 5 s,
// every acknowledged write must be in the history at the revision it was
// acknowledged with, revisions must run on without a gap or a reuse, and the
// killed member, started again, must come back as a follower holding the
// same history.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RangeRequestSchema, StatusRequestSchema, type RangeResponse, type StatusResponse } from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import { etcdServices, rawEtcdClient, startBrainReplicaSet, waitFor, type BrainReplicaSet, type RawEtcdClient } from "@wharf/testkit";
import { acknowledged, bytes, checkHistory, currentRevision, retryable, watchHistory, WriteLoad } from "./workload.fixture.js";

let set: BrainReplicaSet;
const clients: RawEtcdClient[] = [];
const client = (endpoint: string) => {
  const made = rawEtcdClient(endpoint, { "grpc.use_local_subchannel_pool": 1 });
  clients.push(made);
  return made;
};

beforeAll(async () => {
  set = await startBrainReplicaSet({ replicas: 3, leaseTtl: "3s" });
});
afterAll(async () => {
  for (const made of clients) made.close();
  await set?.stop();
});

describe("a replica set losing its leader to SIGKILL under write load", () => {
  it("serves from a new leader within 5 s, loses no acknowledged write, reuses and skips no revision; the old leader rejoins as a follower", async () => {
    const load = new WriteLoad(set.endpoints, { writers: 6, deadlineMs: 10_000 });
    let oldLeader = -1;
    load.start();
    try {
      await waitFor(async () => load.acked().length >= 150, 30_000, () => `150 acknowledged writes before the kill (${load.acked().length}; last failures: ${JSON.stringify(load.attempts.filter((a) => a.outcome && !acknowledged(a)).slice(-3))})`);
      oldLeader = await set.leaderIndex();
      const survivors = set.endpoints.filter((_, index) => index !== oldLeader);
      const killedAt = Date.now();
      await set.kill(oldLeader, "SIGKILL");

      // A probe through the survivors, one short request after another: when does a write succeed again?
      let served: number | undefined;
      for (let n = 0; served === undefined && Date.now() - killedAt < 15_000; n++) {
        const attempt = await load.put(survivors[n % survivors.length]!, `probe/${n}`, String(n), 1000);
        if (acknowledged(attempt)) served = attempt.settledAt! - killedAt;
        else expect(retryable(attempt.outcome!), `probe ${n}: ${JSON.stringify(attempt.outcome)}`).toBe(true);
      }
      const newLeader = await set.waitForLeader(oldLeader, 5_000);
      console.log(`failover: ${set.members[newLeader]!.name} took over from ${set.members[oldLeader]!.name}; first write acknowledged ${served} ms after the SIGKILL`);
      expect(served, "a write acknowledged after the leader was killed").toBeDefined();
      expect(served!).toBeLessThanOrEqual(5_000);

      // More load on the new leader, then the old one back, then more load through it too.
      const ackedAfterFailover = load.acked().length;
      await waitFor(async () => load.acked().length >= ackedAfterFailover + 100, 30_000, "100 more acknowledged writes after the failover");
      await set.restart(oldLeader);
      const ackedAfterRestart = load.acked().length;
      await waitFor(async () => load.acked().length >= ackedAfterRestart + 100, 30_000, "100 more acknowledged writes after the restart");
    } finally {
      await load.stop();
      load.close();
    }

    // Every failure was etcd's "try again": nothing else may go wrong for a client while the leader changes.
    const failures = load.attempts.filter((attempt) => !acknowledged(attempt));
    expect(failures.filter((attempt) => !retryable(attempt.outcome!)).map((attempt) => `${attempt.what} via ${attempt.endpoint}: ${JSON.stringify(attempt.outcome)}`)).toEqual([]);

    // All three agree on a leader other than the restarted member, which follows and has caught up.
    const leader = await set.waitForLeader(oldLeader, 10_000);
    const leaderClient = client(set.endpoints[leader]!);
    const current = await currentRevision(leaderClient);
    const histories = [];
    for (const [index, endpoint] of set.endpoints.entries()) {
      const member = client(endpoint);
      // A serializable read answers from the member's own copy: it reaches the leader's revision by following.
      await waitFor(
        async () => ((await member.call(etcdServices.KV, "Range", RangeRequestSchema, { key: bytes("\0"), serializable: true })) as unknown as RangeResponse).header!.revision >= current,
        10_000,
        `${set.members[index]!.name} to apply up to revision ${current}`,
      );
      const status = (await member.call(etcdServices.Maintenance, "Status", StatusRequestSchema, {})) as unknown as StatusResponse;
      expect(status.leader === status.header!.memberId, `${set.members[index]!.name} leads`).toBe(index === leader);
      histories.push(await watchHistory(member, current));
    }
    const problems = checkHistory(histories[leader]!, current, load.attempts);
    expect(problems.slice(0, 20), `${problems.length} problems in the history`).toEqual([]);
    // Every member serves the same history, the restarted one included.
    for (const history of histories) expect(history).toEqual(histories[leader]);
    console.log(`failover load: ${load.acked().length} writes acknowledged, ${failures.length} failed (${current} revisions)`);
  }, 180_000);
});
