// What a client can read of a migrated keyspace, recorded the same way from
// the source etcd and from a brain serving the migrated data, so tests
// compare the two field by field: ranges at every retained revision and
// around them, a watch over the history, a watch from below the compaction,
// and the leases.
import {
  LeaseLeasesRequestSchema,
  LeaseTimeToLiveRequestSchema,
  RangeRequestSchema,
  type LeaseLeasesResponse,
  type LeaseTimeToLiveResponse,
} from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import { etcdServices } from "@wharf/testkit";
import { Scenario, type Target } from "../compat/differential.js";

const all = { key: Uint8Array.of(0), rangeEnd: Uint8Array.of(0) };

export async function clientView(target: Target, compactRevision: number, finalRevision: number): Promise<unknown[]> {
  const scenario = new Scenario(target, "");
  await scenario.call("KV", "Range", RangeRequestSchema, all);
  for (let revision = compactRevision - 1; revision <= finalRevision + 1; revision++) {
    await scenario.call("KV", "Range", RangeRequestSchema, { ...all, revision: BigInt(revision) });
  }
  const history = scenario.watch();
  history.send({ requestUnion: { case: "createRequest", value: { ...all, startRevision: BigInt(compactRevision + 1), prevKv: true } } });
  const events: Array<{ kv: { modRevision: number } }> = [];
  for (let seen = 1; events.at(-1)?.kv.modRevision !== finalRevision; seen++) {
    const responses = (await history.until(seen + 1, 10_000)) as Array<{ events: typeof events }>;
    events.push(...responses[seen]!.events);
  }
  history.close();
  scenario.record("watch from the compact revision + 1", events);
  const compacted = scenario.watch();
  compacted.send({ requestUnion: { case: "createRequest", value: { ...all, startRevision: BigInt(compactRevision - 1) } } });
  scenario.record("watch from below the compact revision", (await compacted.until(2, 10_000))[1]);
  compacted.close();
  const leases = (await target.client.call(etcdServices.Lease, "LeaseLeases", LeaseLeasesRequestSchema, {})) as LeaseLeasesResponse;
  scenario.record("lease ids", leases.leases.map((status) => status.ID.toString()));
  for (const { ID } of leases.leases) {
    // The remaining TTL runs down differently on each; the granted one and the keys must match.
    const { grantedTTL, keys } = (await target.client.call(etcdServices.Lease, "LeaseTimeToLive", LeaseTimeToLiveRequestSchema, { ID, keys: true })) as LeaseTimeToLiveResponse;
    scenario.record("lease", { grantedTTL, keys });
  }
  return scenario.log;
}
