// Three brain processes on one real PostgreSQL (--storage postgres): writes
// through a follower reach the leader and every copy, watches on a follower
// see the leader's writes, Status and MemberList describe one replica set,
// lease keepalives through a follower keep a lease alive, and a leader that
// stops gracefully hands over at once; one that is killed is replaced while
// writes sent meanwhile wait for the next leader.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { status as grpcStatus } from "@grpc/grpc-js";
import {
  CompactionRequestSchema,
  LeaseGrantRequestSchema,
  LeaseKeepAliveRequestSchema,
  LeaseTimeToLiveRequestSchema,
  MemberListRequestSchema,
  PutRequestSchema,
  RangeRequestSchema,
  StatusRequestSchema,
  WatchRequestSchema,
  type LeaseGrantResponse,
  type LeaseKeepAliveRequest,
  type LeaseKeepAliveResponse,
  type LeaseTimeToLiveResponse,
  type MemberListResponse,
  type PutResponse,
  type RangeResponse,
  type StatusResponse,
  type WatchRequest,
  type WatchResponse,
} from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import { etcdServices, rawEtcdClient, startBrainReplicaSet, waitFor, type BrainReplicaSet, type RawEtcdClient } from "@wharf/testkit";

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (value: Uint8Array | undefined) => new TextDecoder().decode(value);

let set: BrainReplicaSet;
let clients: RawEtcdClient[];

beforeAll(async () => {
  set = await startBrainReplicaSet({ replicas: 3, leaseTtl: "2s" });
  clients = set.endpoints.map((endpoint) => rawEtcdClient(endpoint, { "grpc.use_local_subchannel_pool": 1 }));
}, 120_000);
afterAll(async () => {
  for (const client of clients ?? []) client.close();
  await set?.stop();
});

const status = (index: number) => clients[index]!.call(etcdServices.Maintenance, "Status", StatusRequestSchema, {}) as unknown as Promise<StatusResponse>;
const range = (index: number, key: string, serializable: boolean) =>
  clients[index]!.call(etcdServices.KV, "Range", RangeRequestSchema, { key: bytes(key), serializable }) as unknown as Promise<RangeResponse>;
const put = (index: number, key: string, value: string, lease = 0n) =>
  clients[index]!.call(etcdServices.KV, "Put", PutRequestSchema, { key: bytes(key), value: bytes(value), lease }) as unknown as Promise<PutResponse>;
const metrics = async (index: number) => (await fetch(`${set.members[index]!.metricsAddress}/metrics`)).text();

/** The live members' indexes other than the leader's. */
async function roles(): Promise<{ leader: number; followers: number[] }> {
  const leader = await set.leaderIndex();
  const followers = set.members.flatMap((member, index) => (index !== leader && member.state === "running" ? [index] : []));
  return { leader, followers };
}

describe("a replica set of three brains on PostgreSQL", () => {
  it("forwards a write made through a follower; every copy serves it", async () => {
    const { leader, followers } = await roles();
    const follower = followers[0]!;
    const written = await put(follower, "rs/forwarded", "via-follower");
    const revision = written.header!.revision;
    expect(revision).toBeGreaterThan(1n);
    // Read-your-writes on the member written through, at once, as on an etcd member.
    const own = await range(follower, "rs/forwarded", true);
    expect(text(own.kvs[0]?.value)).toBe("via-follower");
    expect(own.header!.revision).toBeGreaterThanOrEqual(revision);

    // Linearizable reads on every member see it at once (ReadIndex on PostgreSQL).
    for (let index = 0; index < 3; index++) {
      const read = await range(index, "rs/forwarded", false);
      expect(text(read.kvs[0]?.value), `member ${index} (leader ${leader}), linearizable`).toBe("via-follower");
      expect(read.header!.revision).toBeGreaterThanOrEqual(revision);
    }
    // Serializable reads see it once the member's copy has applied that revision.
    for (let index = 0; index < 3; index++) {
      await waitFor(async () => (await range(index, "rs/forwarded", true)).header!.revision >= revision, 10_000, `member ${index} to apply revision ${revision}`);
      const read = await range(index, "rs/forwarded", true);
      expect(text(read.kvs[0]?.value)).toBe("via-follower");
      expect(read.kvs[0]?.modRevision).toBe(revision);
    }

    const followerMetrics = await metrics(follower);
    expect(followerMetrics).toMatch(/^brain_forwarded_requests_total\{method="etcdserverpb\.KV\/Put"\} [1-9]\d*$/m);
    expect(followerMetrics).toMatch(/^etcd_server_is_leader 0$/m);
    expect(followerMetrics).toMatch(/^etcd_server_has_leader 1$/m);
    expect(followerMetrics).toMatch(/^brain_follower_apply_seconds_count [1-9]\d*$/m);
    // Caught up (every member applied the write above, and nothing was written since).
    expect(followerMetrics).toMatch(/^brain_follower_lag_revisions 0$/m);
    expect(followerMetrics).toMatch(/^etcd_server_leader_changes_seen_total [1-9]\d*$/m);
    const leaderMetrics = await metrics(leader);
    expect(leaderMetrics).toMatch(/^etcd_server_is_leader 1$/m);
    expect(leaderMetrics).not.toMatch(/^brain_forwarded_requests_total\{/m);
  });

  it("compacts through a follower, which refuses the compacted revisions as soon as it answers", async () => {
    const { followers } = await roles();
    const follower = followers[0]!;
    const first = (await put(follower, "rs/compacted", "old")).header!.revision;
    await put(follower, "rs/compacted", "new");
    await clients[follower]!.call(etcdServices.KV, "Compact", CompactionRequestSchema, { revision: first + 1n });
    const below = await clients[follower]!
      .call(etcdServices.KV, "Range", RangeRequestSchema, { key: bytes("rs/compacted"), revision: first, serializable: true })
      .then(() => undefined, (error: { code: number; details: string }) => error);
    expect(below).toMatchObject({ code: grpcStatus.OUT_OF_RANGE, details: "etcdserver: mvcc: required revision has been compacted" });
    // Every member gets the compaction from the log.
    for (const index of followers) {
      await waitFor(
        async () => (await clients[index]!.call(etcdServices.KV, "Range", RangeRequestSchema, { key: bytes("rs/compacted"), revision: first, serializable: true }).then(() => false, () => true)),
        10_000,
        `member ${index} to apply the compaction`,
      );
    }
  });

  it("delivers the leader's writes to a watch on a follower", async () => {
    const { leader, followers } = await roles();
    const follower = followers[1]!;
    const start = (await status(follower)).header!.revision + 1n;
    const stream = clients[follower]!.stream<WatchRequest, WatchResponse>(etcdServices.Watch, "Watch");
    stream.on("error", () => undefined); // our own cancel below
    const seen: Array<{ key: string; value: string; revision: bigint }> = [];
    let created = false;
    stream.on("data", (response: WatchResponse) => {
      if (response.created) created = true;
      for (const event of response.events) seen.push({ key: text(event.kv!.key), value: text(event.kv!.value), revision: event.kv!.modRevision });
    });
    stream.write(create(WatchRequestSchema, { requestUnion: { case: "createRequest", value: { key: bytes("rs/watched/"), rangeEnd: bytes("rs/watched0"), startRevision: start } } }));
    await waitFor(async () => created, 10_000, "the watch to be created");
    const first = await put(leader, "rs/watched/a", "1");
    const second = await put(followers[0]!, "rs/watched/b", "2");
    await waitFor(async () => seen.length >= 2, 10_000, () => `two events on the follower's watch (saw ${JSON.stringify(seen, (_, v: unknown) => (typeof v === "bigint" ? String(v) : v))})`);
    stream.cancel();
    expect(seen).toEqual([
      { key: "rs/watched/a", value: "1", revision: first.header!.revision },
      { key: "rs/watched/b", value: "2", revision: second.header!.revision },
    ]);
  });

  it("agrees on the leader and its epoch in Status and MemberList on every member", async () => {
    const answers = await Promise.all([0, 1, 2].map(status));
    const leaders = new Set(answers.map((answer) => answer.leader));
    const terms = new Set(answers.map((answer) => answer.raftTerm));
    expect(leaders.size).toBe(1);
    expect(terms.size).toBe(1);
    const [leaderId] = leaders;
    expect(leaderId).not.toBe(0n);
    expect([...terms][0]).toBeGreaterThanOrEqual(1n);
    // Each member answers with its own id; the leader is one of them.
    const ids = answers.map((answer) => answer.header!.memberId);
    expect(new Set(ids).size).toBe(3);
    expect(ids).toContain(leaderId);
    // Headers carry the epoch as the raft term, and the shared cluster id.
    expect(new Set(answers.map((answer) => answer.header!.raftTerm))).toEqual(terms);
    expect(new Set(answers.map((answer) => answer.header!.clusterId)).size).toBe(1);

    const expected = set.members.map((member, index) => ({ ID: ids[index], name: member.name, clientURLs: [member.clientAddress] }));
    for (let index = 0; index < 3; index++) {
      const list = (await clients[index]!.call(etcdServices.Cluster, "MemberList", MemberListRequestSchema, {})) as unknown as MemberListResponse;
      expect(list.header!.memberId).toBe(ids[index]);
      const members = list.members.map((member) => ({ ID: member.ID, name: member.name, clientURLs: member.clientURLs }));
      expect(members.sort((a, b) => a.name.localeCompare(b.name))).toEqual(expected);
    }
  });

  it("keeps a lease alive past its TTL through keepalives sent to a follower", async () => {
    const { followers } = await roles();
    const follower = followers[0]!;
    const grant = (await clients[follower]!.call(etcdServices.Lease, "LeaseGrant", LeaseGrantRequestSchema, { TTL: 2n })) as unknown as LeaseGrantResponse;
    expect(grant.TTL).toBe(2n);
    await put(follower, "rs/leased", "held", grant.ID);

    const stream = clients[follower]!.stream<LeaseKeepAliveRequest, LeaseKeepAliveResponse>(etcdServices.Lease, "LeaseKeepAlive");
    stream.on("error", () => undefined);
    const answers: LeaseKeepAliveResponse[] = [];
    stream.on("data", (response: LeaseKeepAliveResponse) => answers.push(response));
    const started = Date.now();
    // Three times the TTL, a keepalive every half second.
    while (Date.now() - started < 6000) {
      stream.write(create(LeaseKeepAliveRequestSchema, { ID: grant.ID }));
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    expect(answers.length).toBeGreaterThanOrEqual(10);
    expect(answers.every((answer) => answer.ID === grant.ID && answer.TTL === 2n)).toBe(true);
    const ttl = (await clients[follower]!.call(etcdServices.Lease, "LeaseTimeToLive", LeaseTimeToLiveRequestSchema, { ID: grant.ID })) as unknown as LeaseTimeToLiveResponse;
    expect(ttl.TTL).toBeGreaterThan(0n);
    for (let index = 0; index < 3; index++) expect(text((await range(index, "rs/leased", false)).kvs[0]?.value)).toBe("held");

    // Without keepalives the leader expires it, and every copy sees the key go.
    stream.end();
    stream.cancel();
    await waitFor(async () => (await range(follower, "rs/leased", false)).kvs.length === 0, 10_000, "the lease to expire once keepalives stop");
  });

  it("holds a write sent to a follower while the leader is killed until the next leader takes it", async () => {
    const { leader, followers } = await roles();
    const before = (await put(followers[0]!, "rs/before-kill", "1")).header!.revision;
    await set.kill(leader, "SIGKILL");
    // Sent at once: the follower still names the dead leader, cannot connect,
    // and waits for the election instead of failing.
    const during = await put(followers[0]!, "rs/during-kill", "2");
    expect(during.header!.revision).toBe(before + 1n);
    const next = await set.waitForLeader(leader, 10_000);
    expect(followers).toContain(next);
    for (const index of followers) expect(text((await range(index, "rs/during-kill", false)).kvs[0]?.value)).toBe("2");
    // The killed brain comes back as a follower with a fresh copy.
    await set.restart(leader);
    expect(await set.leaderIndex()).toBe(next);
    await waitFor(async () => (await range(leader, "rs/during-kill", true)).kvs.length === 1, 10_000, "the restarted brain to load the write");
  });

  it("hands over at once when the leader stops gracefully; writes go on", async () => {
    const { leader, followers } = await roles();
    const before = await status(followers[0]!);
    const stopped = Date.now();
    set.members[leader]!.process.child.kill("SIGTERM");
    // A follower names itself leader in its own Status.
    let next = -1;
    const elapsed = await waitFor(
      async () => {
        for (const index of followers) {
          const answer = await status(index);
          if (answer.leader !== 0n && answer.leader === answer.header!.memberId) next = index;
        }
        return next >= 0;
      },
      10_000,
      "a follower to become leader",
      20,
    );
    // Resigning skips the lease (2 s here): the next campaign tick takes over.
    expect(elapsed).toBeLessThan(1500);
    await set.kill(leader, "SIGTERM");
    expect(await set.waitForLeader(leader, 10_000)).toBe(next);
    console.log(`graceful handover: ${set.members[next]!.name} leads ${Date.now() - stopped} ms after SIGTERM to the old leader (${elapsed} ms to its own Status)`);
    const after = await status(next);
    expect(after.raftTerm).toBeGreaterThan(before.raftTerm);

    const other = followers.find((index) => index !== next)!;
    const viaFollower = await put(other, "rs/after-failover", "ok");
    const viaLeader = await put(next, "rs/after-failover-2", "ok");
    expect(viaLeader.header!.revision).toBe(viaFollower.header!.revision + 1n);
    expect(text((await range(other, "rs/after-failover", false)).kvs[0]?.value)).toBe("ok");
    // The earlier writes survived the handover.
    expect(text((await range(other, "rs/forwarded", false)).kvs[0]?.value)).toBe("via-follower");
  });
});
