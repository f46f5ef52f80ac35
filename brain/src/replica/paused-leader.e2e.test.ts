// The leader paused with SIGSTOP for longer than its lease, with requests in
// flight through it, while writers go on through every member: another
// member must take over and serve; once the old leader runs again
// (SIGCONT) it must commit nothing (fencing by epoch in PostgreSQL), its
// in-flight requests must end with one of etcd's clear errors (or with the
// acknowledgement of a write committed before the takeover), and it must
// come back as a follower serving the same history.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { status } from "@grpc/grpc-js";
import { RangeRequestSchema, StatusRequestSchema, type RangeResponse, type StatusResponse } from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import { etcdServices, rawEtcdClient, startBrainReplicaSet, waitFor, type BrainReplicaSet, type RawEtcdClient } from "@wharf/testkit";
import { acknowledged, bytes, checkHistory, currentRevision, retryable, watchHistory, WriteLoad, type Attempt } from "./workload.fixture.js";

const leaseTtlMs = 3000;
let set: BrainReplicaSet;
const clients: RawEtcdClient[] = [];
const client = (endpoint: string) => {
  const made = rawEtcdClient(endpoint, { "grpc.use_local_subchannel_pool": 1 });
  clients.push(made);
  return made;
};

beforeAll(async () => {
  set = await startBrainReplicaSet({ replicas: 3, leaseTtl: `${leaseTtlMs / 1000}s` });
});
afterAll(async () => {
  for (const made of clients) made.close();
  await set?.stop();
});

/** The groups PostgreSQL holds, each with the epoch of the leader that committed it. */
async function groups(url: string): Promise<Array<{ sequence: bigint; baseRevision: bigint; revision: bigint; epoch: bigint }>> {
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  try {
    const { rows } = await db.query<{ sequence: string; base_revision: string; revision: string; epoch: string }>(
      "SELECT sequence, base_revision, revision, epoch FROM brain_group ORDER BY sequence",
    );
    return rows.map((row) => ({ sequence: BigInt(row.sequence), baseRevision: BigInt(row.base_revision), revision: BigInt(row.revision), epoch: BigInt(row.epoch) }));
  } finally {
    await db.end();
  }
}

/** etcd's errors for a request that reached a member which is (no longer) the leader. */
const clearError = /^etcdserver: (leader changed|not leader|no leader|server stopped)$/;

describe("a replica set whose leader is paused past its lease", () => {
  it("elects another leader; the paused one commits nothing once resumed, fails its in-flight requests clearly and rejoins as a follower", async () => {
    // Long deadlines: requests stuck in the paused leader get its own answer once it runs again.
    const load = new WriteLoad(set.endpoints, { writers: 6, deadlineMs: 30_000 });
    let oldLeader = -1;
    let newLeader: number | undefined;
    let oldEpoch = 0n;
    let stoppedAt = 0;
    let continuedAt = 0;
    let sentWhilePaused: Array<Promise<Attempt>> | undefined;
    let oldEpochGroupsAtTakeover: number | undefined;
    load.start();
    try {
      await waitFor(async () => load.acked().length >= 100, 30_000, () => `100 acknowledged writes before the pause (${load.acked().length})`);
      oldLeader = await set.leaderIndex();
      oldEpoch = ((await client(set.endpoints[oldLeader]!).call(etcdServices.Maintenance, "Status", StatusRequestSchema, {})) as unknown as StatusResponse).raftTerm;
      stoppedAt = Date.now();
      await set.kill(oldLeader, "SIGSTOP");
      // Its own clients wait on it; the others' writers, failed over, do not pile up there too.
      load.avoid(set.endpoints[oldLeader]!);
      // Requests sent to it while it is paused wait in its socket: they are in flight through it and cannot
      // have been committed before the pause, whatever the timing of the writers' requests.
      sentWhilePaused = [0, 1, 2].map((n) => load.put(set.endpoints[oldLeader]!, `paused/${n}`, String(n), 30_000));
      const followers = set.endpoints.filter((_, index) => index !== oldLeader);

      newLeader = await set.waitForLeader(oldLeader, 20_000);
      const tookOverMs = Date.now() - stoppedAt;
      // Writes succeed through the new leader while the old one is still paused.
      let probe = 0;
      await waitFor(async () => acknowledged(await load.put(followers[probe++ % followers.length]!, `probe/${probe}`, "x", 2000)), 10_000, "a write through a follower after the takeover");
      const acked = load.acked().length;
      await waitFor(async () => load.acked().length >= acked + 30, 20_000, "30 more acknowledged writes while the old leader is paused");
      // Past its lease for sure, whatever the election took.
      await waitFor(async () => Date.now() - stoppedAt > leaseTtlMs * 1.5, leaseTtlMs * 2, "the pause to outlast the lease");
      const stored = await groups(set.postgres.url);
      oldEpochGroupsAtTakeover = stored.filter((group) => group.epoch <= oldEpoch).length;

      continuedAt = Date.now();
      await set.kill(oldLeader, "SIGCONT");
      console.log(`paused leader: ${set.members[newLeader!]!.name} took over ${tookOverMs} ms after the SIGSTOP; SIGCONT after ${continuedAt - stoppedAt} ms`);

      // Everything in flight at the pause ends, with an answer from the old leader (not a client deadline).
      const inFlight = load.inFlightAt(stoppedAt);
      await waitFor(async () => inFlight.every((attempt) => attempt.settledAt !== undefined), 25_000, "the requests in flight at the pause to end");
      // It rejoins: every member, the old leader included, names the new leader.
      await set.waitForLeader(oldLeader, 20_000);
      load.allow(set.endpoints[oldLeader]!);
      const ackedAfterRejoin = load.acked().length;
      await waitFor(async () => load.acked().length >= ackedAfterRejoin + 30, 20_000, "30 more acknowledged writes after the old leader rejoined");
    } finally {
      await load.stop();
      load.close();
    }

    // PostgreSQL: every group the old epoch committed precedes every later epoch's, and none came after the takeover.
    const stored = await groups(set.postgres.url);
    const old = stored.filter((group) => group.epoch <= oldEpoch);
    const later = stored.filter((group) => group.epoch > oldEpoch);
    expect(later.length, "groups committed by the new leader").toBeGreaterThan(0);
    expect(old.length, "groups committed at the old epoch or before, now and when the new leader was serving").toBe(oldEpochGroupsAtTakeover);
    expect(old.at(-1)!.sequence).toBeLessThan(later[0]!.sequence);
    const lastOldRevision = old.at(-1)!.revision;
    const epochOf = (revision: bigint) => stored.find((group) => group.baseRevision < revision && revision <= group.revision)?.epoch;

    // The requests in flight at the pause: an acknowledgement only for a write committed before the takeover, else a clear error.
    const inFlight = load.inFlightAt(stoppedAt);
    const show = (attempt: Attempt) => `${attempt.what} via ${attempt.endpoint === set.endpoints[oldLeader] ? "the old leader" : attempt.endpoint}: ${JSON.stringify(attempt.outcome, (_, value: unknown) => (typeof value === "bigint" ? String(value) : value))}`;
    expect(inFlight.length, "requests in flight when the leader was paused").toBeGreaterThan(0);
    for (const attempt of inFlight) {
      if (acknowledged(attempt)) {
        expect(attempt.outcome.revision <= lastOldRevision, `${show(attempt)}: acknowledged, so committed before the takeover`).toBe(true);
      } else {
        const outcome = attempt.outcome as { code: number; details: string };
        expect(outcome.code, show(attempt)).toBe(status.UNAVAILABLE);
        expect(outcome.details, show(attempt)).toMatch(clearError);
      }
    }
    // The requests sent to the paused leader: a clear error, or served by the new leader once the old one follows.
    const paused = await Promise.all(sentWhilePaused ?? []);
    expect(paused.length).toBe(3);
    for (const attempt of paused) {
      if (acknowledged(attempt)) {
        expect(epochOf(attempt.outcome.revision), `${show(attempt)}: acknowledged, so committed by a later leader`).toBeGreaterThan(oldEpoch);
      } else {
        expect(attempt.outcome, show(attempt)).toMatchObject({ code: status.UNAVAILABLE, details: expect.stringMatching(clearError) as unknown });
      }
    }
    // Anything the old leader answered after it ran again was committed before the takeover or by the new leader.
    for (const attempt of load.acked().filter((attempt) => attempt.endpoint === set.endpoints[oldLeader] && attempt.settledAt! >= continuedAt)) {
      const revision = attempt.outcome.revision;
      expect(revision <= lastOldRevision || (epochOf(revision) ?? 0n) > oldEpoch, `${show(attempt)} (epoch ${epochOf(revision)})`).toBe(true);
    }
    const failures = load.attempts.filter((attempt) => !acknowledged(attempt));
    expect(failures.filter((attempt) => !retryable(attempt.outcome!)).map(show)).toEqual([]);

    // The old leader follows: it names the new leader, catches up, and serves the same history.
    const leaderClient = client(set.endpoints[newLeader!]!);
    const current = await currentRevision(leaderClient);
    const oldClient = client(set.endpoints[oldLeader]!);
    const oldStatus = (await oldClient.call(etcdServices.Maintenance, "Status", StatusRequestSchema, {})) as unknown as StatusResponse;
    const newStatus = (await leaderClient.call(etcdServices.Maintenance, "Status", StatusRequestSchema, {})) as unknown as StatusResponse;
    expect(oldStatus.leader).toBe(newStatus.header!.memberId);
    expect(oldStatus.leader).not.toBe(oldStatus.header!.memberId);
    expect(newStatus.raftTerm).toBeGreaterThan(oldEpoch);
    await waitFor(
      async () => ((await oldClient.call(etcdServices.KV, "Range", RangeRequestSchema, { key: bytes("\0"), serializable: true })) as unknown as RangeResponse).header!.revision >= current,
      10_000,
      `the old leader to apply up to revision ${current}`,
    );
    const history = await watchHistory(leaderClient, current);
    const problems = checkHistory(history, current, load.attempts);
    expect(problems.slice(0, 20), `${problems.length} problems in the history`).toEqual([]);
    expect(await watchHistory(oldClient, current)).toEqual(history);
    console.log(`paused leader load: ${load.acked().length} writes acknowledged, ${failures.length} failed; ${inFlight.length} in flight at the pause: ${inFlight.filter(acknowledged).length} acknowledged (committed before the takeover), the rest failed clearly; sent to it while paused: ${paused.map((attempt) => (acknowledged(attempt) ? `acknowledged at ${attempt.outcome.revision}` : (attempt.outcome as { details: string }).details)).join("; ")}`);
  }, 180_000);
});
