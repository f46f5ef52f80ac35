// Watch and Lease semantics, compared with the reference etcd over raw gRPC.
import { describe, it } from "vitest";
import {
  CompactionRequestSchema,
  DeleteRangeRequestSchema,
  LeaseGrantRequestSchema,
  LeaseLeasesRequestSchema,
  LeaseRevokeRequestSchema,
  LeaseTimeToLiveRequestSchema,
  PutRequestSchema,
  RangeRequestSchema,
  TxnRequestSchema,
  WatchCreateRequest_FilterType as Filter,
  MemberListRequestSchema,
  StatusRequestSchema,
  AlarmRequestSchema,
} from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import { etcdServices } from "@wharf/testkit";
import { brainTargets, bytes, differentialSuite, type Scenario } from "./differential.js";

/**
 * LeaseTimeToLive, with the remaining TTL reduced to "within two seconds of
 * the granted TTL" (the exact second depends on how busy the machine is) and
 * the keys sorted (etcd lists them from a Go map: in no defined order).
 */
async function timeToLive(s: Scenario, ID: bigint, keys: boolean): Promise<void> {
  const seen = await s.call("Lease", "LeaseTimeToLive", LeaseTimeToLiveRequestSchema, { ID, keys });
  s.log.pop();
  if ("error" in seen) {
    s.record("Lease.LeaseTimeToLive", seen);
    return;
  }
  const raw = seen.raw as { TTL: bigint; grantedTTL: bigint; keys: Uint8Array[] };
  s.record("Lease.LeaseTimeToLive", {
    ID: s.normalize(ID, "ID"),
    TTL: raw.TTL < 0n ? raw.TTL : raw.grantedTTL - raw.TTL <= 2n ? "≈granted" : raw.TTL,
    grantedTTL: raw.grantedTTL,
    keys: raw.keys.map((key) => new TextDecoder().decode(key)).sort(),
  });
}

const put = (s: Scenario, name: string, value: string, lease = 0n) =>
  s.call("KV", "Put", PutRequestSchema, { key: s.key(name), value: bytes(value), lease });
const del = (s: Scenario, name: string) => s.call("KV", "DeleteRange", DeleteRangeRequestSchema, { key: s.key(name) });
const prefixEnd = (s: Scenario) => bytes(`${s.prefix}0`);

describe.each(brainTargets)("%s", (target) => {
  const { same } = differentialSuite([], target);

  describe("Watch against the reference etcd", () => {
    it("live events on a key and a prefix, with prev_kv and filters", () =>
      same(async (s) => {
        const watch = s.watch();
        watch.send({ requestUnion: { case: "createRequest", value: { key: s.key("a") } } });
        watch.send({ requestUnion: { case: "createRequest", value: { key: s.key(""), rangeEnd: prefixEnd(s), prevKv: true } } });
        watch.send({ requestUnion: { case: "createRequest", value: { key: s.key(""), rangeEnd: prefixEnd(s), filters: [Filter.Noput] } } });
        watch.send({ requestUnion: { case: "createRequest", value: { key: s.key(""), rangeEnd: prefixEnd(s), filters: [Filter.Nodelete] } } });
        await watch.until(4);
        await put(s, "a", "1");
        await put(s, "b", "2");
        await put(s, "a", "3");
        await del(s, "a");
        await s.call("KV", "Txn", TxnRequestSchema, {
          success: [
            { request: { case: "requestPut", value: { key: s.key("c"), value: bytes("x") } } },
            { request: { case: "requestDeleteRange", value: { key: s.key("b") } } },
          ],
        });
        // created ×4; a: 4 events; prefix prev_kv: 6 events over 5 revisions;
        // NOPUT: 2 deletes; NODELETE: 4 puts.
        const expected = 4 + 3 + 5 + 2 + 4;
        s.record("responses", sortedByWatch(await watch.until(expected)));
        s.record("nothing more", (await watch.settle()).length);
        watch.close();
      }));

    it("historical replay from a start revision, and cancel", () =>
      same(async (s) => {
        await put(s, "h", "1");
        await put(s, "h", "2");
        await del(s, "h");
        await put(s, "h", "3");
        const watch = s.watch();
        watch.send({
          requestUnion: { case: "createRequest", value: { key: s.key("h"), startRevision: s.revision(1), prevKv: true } },
        });
        s.record("replay", await watch.until(2));
        watch.send({ requestUnion: { case: "cancelRequest", value: { watchId: 0n } } });
        s.record("canceled", await watch.until(3));
        await put(s, "h", "4");
        s.record("after cancel", (await watch.settle()).length);
        watch.close();
      }));

    it("a compacted start revision cancels the watch with compact_revision", () =>
      same(async (s) => {
        await put(s, "c", "1");
        await put(s, "c", "2");
        await put(s, "c", "3");
        await s.call("KV", "Compact", CompactionRequestSchema, { revision: s.revision(3), physical: true });
        const watch = s.watch();
        watch.send({ requestUnion: { case: "createRequest", value: { key: s.key("c"), startRevision: s.revision(1) } } });
        s.record("compacted", await watch.until(2));
        watch.close();
      }));

    it("a progress request answers with the current revision", () =>
      same(async (s) => {
        const watch = s.watch();
        watch.send({ requestUnion: { case: "createRequest", value: { key: s.key("p") } } });
        await watch.until(1);
        await put(s, "other", "x");
        watch.send({ requestUnion: { case: "progressRequest", value: {} } });
        s.record("progress", await watch.until(2));
        watch.close();
      }));

    it("client-chosen watch ids, and a duplicate id", () =>
      same(async (s) => {
        const watch = s.watch();
        watch.send({ requestUnion: { case: "createRequest", value: { key: s.key("w"), watchId: 7n } } });
        watch.send({ requestUnion: { case: "createRequest", value: { key: s.key("w"), watchId: 7n } } });
        watch.send({ requestUnion: { case: "createRequest", value: { key: s.key("w") } } });
        s.record("created", await watch.until(3));
        await put(s, "w", "1");
        s.record("events", sortedByWatch((await watch.until(5)).slice(3)));
        watch.close();
      }));
  });

  describe("Lease against the reference etcd", () => {
    it("grant, time-to-live with keys, list, revoke deletes keys with events", () =>
      same(async (s) => {
        const id = 0x5000n + BigInt(s.prefix.length);
        await s.call("Lease", "LeaseGrant", LeaseGrantRequestSchema, { ID: id, TTL: 100n });
        await s.call("Lease", "LeaseGrant", LeaseGrantRequestSchema, { ID: id, TTL: 100n });
        await s.call("Lease", "LeaseGrant", LeaseGrantRequestSchema, { ID: id + 1n, TTL: 1n });
        await s.call("Lease", "LeaseGrant", LeaseGrantRequestSchema, { ID: id + 2n, TTL: 9_000_000_001n });
        await put(s, "l1", "x", id);
        await put(s, "l2", "y", id);
        await timeToLive(s, id, true);
        await timeToLive(s, 0x7777n, false);
        const watch = s.watch();
        watch.send({ requestUnion: { case: "createRequest", value: { key: s.key(""), rangeEnd: prefixEnd(s) } } });
        await watch.until(1);
        await s.call("Lease", "LeaseRevoke", LeaseRevokeRequestSchema, { ID: id });
        s.record("revoke events", await watch.until(2));
        await s.call("KV", "Range", RangeRequestSchema, { key: s.key(""), rangeEnd: prefixEnd(s) });
        await s.call("Lease", "LeaseRevoke", LeaseRevokeRequestSchema, { ID: id });
        await s.call("Lease", "LeaseRevoke", LeaseRevokeRequestSchema, { ID: id + 1n });
        watch.close();
      }));

    it("a server-chosen lease id works like a given one", () =>
      same(async (s) => {
        const granted = await s.call("Lease", "LeaseGrant", LeaseGrantRequestSchema, { TTL: 30n });
        const id = (granted.raw as { ID: bigint }).ID;
        await put(s, "auto", "x", id);
        await timeToLive(s, id, true);
        const listed = await s.call("Lease", "LeaseLeases", LeaseLeasesRequestSchema, {});
        s.record("listed", (listed.raw as { leases: Array<{ ID: bigint }> }).leases.some((lease) => lease.ID === id));
        await s.call("Lease", "LeaseRevoke", LeaseRevokeRequestSchema, { ID: id });
      }));
  });

  describe("Maintenance and Cluster against the reference etcd", () => {
    it("status, alarms and members have the same shape", () =>
      same(async (s) => {
        // Sizes, ids and URLs belong to each instance; compare what must agree.
        // A member of a replica set answers what a member of an etcd cluster
        // of that size would: the leader is itself only if it leads, and the
        // list holds every member, itself with its own URL among them.
        const status = (await s.target.client.call(etcdServices.Maintenance, "Status", StatusRequestSchema, {})) as unknown as {
          version: string;
          leader: bigint;
          header: { memberId: bigint };
          dbSize: bigint;
          errors: string[];
        };
        s.record("status", {
          series: status.version.split(".").slice(0, 2).join("."),
          leaderIsSelfIfLeading: (status.leader === status.header.memberId) === (s.target.leads ?? true),
          leaderKnown: status.leader !== 0n,
          hasSize: status.dbSize > 0n,
          errors: status.errors,
        });
        await s.call("Maintenance", "Alarm", AlarmRequestSchema, {});
        const members = (await s.target.client.call(etcdServices.Cluster, "MemberList", MemberListRequestSchema, {})) as unknown as {
          header: { revision: bigint };
          members: Array<{ ID: bigint; clientURLs: string[] }>;
        };
        s.record("members", {
          countIsClusterSize: members.members.length === (s.target.members ?? 1),
          headerRevision: members.header.revision,
          servesOwnUrl: members.members.find((member) => member.ID === status.header.memberId)?.clientURLs.includes(s.target.endpoint),
        });
      }));
  });
});

/** Responses of different watchers interleave by timing; order them by watch id, stably. */
function sortedByWatch(responses: unknown[]): unknown[] {
  return [...responses].sort(
    (a, b) => Number((a as { watchId: string }).watchId) - Number((b as { watchId: string }).watchId),
  );
}
