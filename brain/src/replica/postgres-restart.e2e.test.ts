// PostgreSQL restarted (a fast shutdown, down for a second, up again on the
// same data and port) while writers go through every member of a replica
// set: the brains must reconnect by themselves and go on serving, with every
// acknowledged write in the history at its revision and no revision
// skipped or reused.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RangeRequestSchema, type RangeResponse } from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import { etcdServices, rawEtcdClient, startBrainReplicaSet, waitFor, type BrainReplicaSet, type RawEtcdClient } from "@wharf/testkit";
import { acknowledged, bytes, checkHistory, currentRevision, retryable, watchHistory, WriteLoad } from "./workload.fixture.js";

let set: BrainReplicaSet;
const clients: RawEtcdClient[] = [];

beforeAll(async () => {
  set = await startBrainReplicaSet({ replicas: 3, leaseTtl: "3s" });
});
afterAll(async () => {
  for (const made of clients) made.close();
  await set?.stop();
});

describe("a replica set whose PostgreSQL restarts under write load", () => {
  it("reconnects and serves again, losing no acknowledged write", async () => {
    const load = new WriteLoad(set.endpoints, { writers: 6, deadlineMs: 10_000 });
    load.start();
    let restartedAt = 0;
    try {
      await waitFor(async () => load.acked().length >= 150, 30_000, () => `150 acknowledged writes before the restart (${load.acked().length})`);
      const down = Date.now();
      await set.postgres.restart({ downMs: 1000 });
      restartedAt = Date.now();
      const ackedBefore = load.acked().filter((attempt) => attempt.issuedAt < down).length;
      // Served again: writes issued after PostgreSQL is back are acknowledged.
      const recoveredIn = await waitFor(
        async () => load.acked().filter((attempt) => attempt.issuedAt >= restartedAt).length >= 100,
        30_000,
        () => `100 writes acknowledged after PostgreSQL came back (${load.acked().filter((attempt) => attempt.issuedAt >= restartedAt).length}; last outcomes ${JSON.stringify(load.attempts.slice(-3).map((attempt) => attempt.outcome), (_, value: unknown) => (typeof value === "bigint" ? String(value) : value))})`,
      );
      console.log(`PostgreSQL restart: down ${restartedAt - down} ms (1000 ms of it refusing connections); ${ackedBefore} writes acknowledged before, 100 more within ${recoveredIn} ms of it being back`);
    } finally {
      await load.stop();
      load.close();
    }

    const failures = load.attempts.filter((attempt) => !acknowledged(attempt));
    expect(
      failures.filter((attempt) => !retryable(attempt.outcome!)).map((attempt) => `${attempt.what} via ${attempt.endpoint}: ${JSON.stringify(attempt.outcome)}`),
    ).toEqual([]);

    // Every member serves again, with a leader they agree on, and the complete history.
    const leader = await set.waitForLeader(undefined, 10_000);
    const leaderClient = rawEtcdClient(set.endpoints[leader]!, { "grpc.use_local_subchannel_pool": 1 });
    clients.push(leaderClient);
    const current = await currentRevision(leaderClient);
    const history = await watchHistory(leaderClient, current);
    const problems = checkHistory(history, current, load.attempts);
    expect(problems.slice(0, 20), `${problems.length} problems in the history`).toEqual([]);
    for (const [index, endpoint] of set.endpoints.entries()) {
      if (index === leader) continue;
      const member = rawEtcdClient(endpoint, { "grpc.use_local_subchannel_pool": 1 });
      clients.push(member);
      await waitFor(
        async () => ((await member.call(etcdServices.KV, "Range", RangeRequestSchema, { key: bytes("\0"), serializable: true })) as unknown as RangeResponse).header!.revision >= current,
        10_000,
        `${set.members[index]!.name} to apply up to revision ${current}`,
      );
      expect(await watchHistory(member, current)).toEqual(history);
    }
    console.log(`PostgreSQL restart load: ${load.acked().length} acknowledged, ${failures.length} failed (${current} revisions)`);
  }, 180_000);
});
