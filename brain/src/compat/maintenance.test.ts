// Maintenance RPCs, watch fragments and progress notifications, and auto
// compaction: compared with etcd where the answer is defined by etcd, checked
// against brain's own contract where brain's layout makes the numbers differ.
import { execFile } from "node:child_process";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import {
  DefragmentRequestSchema,
  HashKVRequestSchema,
  PutRequestSchema,
  RangeRequestSchema,
  TxnRequestSchema,
  WatchRequestSchema,
  type WatchRequest,
  type WatchResponse,
} from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import { create } from "@bufbuild/protobuf";
import { etcdServices, makeWorkDir, rawEtcdClient, removeWorkDir, startBrainProcess, toolPath, waitFor } from "@wharf/testkit";
import { brainTargets, bytes, differentialSuite } from "./differential.js";

const run = promisify(execFile);

describe.each(brainTargets)("%s", (target) => {
  const { pair, same } = differentialSuite([], target);

  describe("Maintenance against the reference etcd", () => {
    it("defragment answers with a header", () =>
      same(async (s) => {
        await s.call("Maintenance", "Defragment", DefragmentRequestSchema, {});
      }));

    it("HashKV refuses a future revision", () =>
      same(async (s) => {
        await s.call("Maintenance", "HashKV", HashKVRequestSchema, { revision: s.revision(1000) });
      }));

    it("a watch with fragment=true splits a revision larger than the request limit", () =>
      same(async (s) => {
        // Each request stays under the 1.5 MiB limit; with prev_kv the second
        // revision's events carry 2.8 MiB, which etcd splits.
        const big = (fill: string) => bytes(fill.repeat(700 * 1024));
        for (const name of ["a", "b"]) await s.call("KV", "Put", PutRequestSchema, { key: s.key(name), value: big("x") });
        const watch = s.watch();
        watch.send({
          requestUnion: { case: "createRequest", value: { key: s.key(""), rangeEnd: bytes(`${s.prefix}0`), fragment: true, prevKv: true, startRevision: s.revision(3) } },
        });
        await watch.until(1);
        await s.call("KV", "Txn", TxnRequestSchema, {
          success: ["a", "b"].map((name) => ({ request: { case: "requestPut" as const, value: { key: s.key(name), value: big("y") } } })),
        });
        const responses = (await watch.until(3)) as Array<{ fragment: boolean; events: unknown[] }>;
        s.record("fragments", responses.slice(1).map((response) => ({ fragment: response.fragment, events: response.events.length })));
        watch.close();
      }));
  });

  describe("brain's own maintenance contract", () => {
    it("HashKV is stable for a revision and moves with writes; etcdctl snapshot save accepts the stream", async () => {
      const client = pair().brain.client;
      const hash = async (revision: bigint) =>
        ((await client.call(etcdServices.Maintenance, "HashKV", HashKVRequestSchema, { revision })) as unknown as { hash: number }).hash;
      const put = (await client.call(etcdServices.KV, "Put", PutRequestSchema, { key: bytes("hash/a"), value: bytes("1") })) as unknown as {
        header: { revision: bigint };
      };
      const at = put.header.revision;
      const first = await hash(at);
      expect(await hash(at)).toBe(first);
      await client.call(etcdServices.KV, "Put", PutRequestSchema, { key: bytes("hash/a"), value: bytes("2") });
      expect(await hash(at)).toBe(first);
      expect(await hash(0n)).not.toBe(first);
      // Every member of a replica set hashes a revision alike, once it has applied it.
      for (const endpoint of pair().replicas?.endpoints ?? []) {
        const member = rawEtcdClient(endpoint);
        try {
          await waitFor(
            async () => ((await member.call(etcdServices.KV, "Range", RangeRequestSchema, { key: bytes("hash/a"), serializable: true })) as unknown as { header: { revision: bigint } }).header.revision > at,
            10_000,
            `${endpoint} to apply revision ${at + 1n}`,
          );
          expect(((await member.call(etcdServices.Maintenance, "HashKV", HashKVRequestSchema, { revision: at })) as unknown as { hash: number }).hash, endpoint).toBe(first);
        } finally {
          member.close();
        }
      }

      const dir = await makeWorkDir("snapshot");
      try {
        const file = join(dir, "brain.snapshot");
        const { stdout } = await run(toolPath("etcdctl"), [`--endpoints=${pair().brain.endpoint}`, "snapshot", "save", file]);
        expect(stdout).toContain("Snapshot saved at");
        expect((await stat(file)).size).toBeGreaterThan(32);
      } finally {
        await removeWorkDir(dir);
      }
    });
  });
});

describe("brain's progress notifications and auto compaction", () => {
  it("sends progress notifications at the configured interval and compacts by period", async () => {
    const brain = await startBrainProcess({
      extraArgs: ["--watch-progress-notify-interval=500ms", "--auto-compaction-mode=periodic", "--auto-compaction-retention=1s"],
    });
    const client = rawEtcdClient(brain.endpoint);
    try {
      const stream = client.stream<WatchRequest, WatchResponse>(etcdServices.Watch, "Watch");
      stream.on("error", () => undefined);
      const progress: bigint[] = [];
      stream.on("data", (response: WatchResponse) => {
        if (!response.created && response.events.length === 0) progress.push(response.header!.revision);
      });
      stream.write(create(WatchRequestSchema, { requestUnion: { case: "createRequest", value: { key: bytes("quiet"), progressNotify: true } } }));
      for (let i = 0; i < 5; i++) await client.call(etcdServices.KV, "Put", PutRequestSchema, { key: bytes("noise"), value: bytes(String(i)) });
      await new Promise((resolve) => setTimeout(resolve, 2500));
      expect(progress.length).toBeGreaterThanOrEqual(2);
      expect(progress.at(-1)).toBe(6n);
      stream.cancel();

      // The revisions written more than a second ago are compacted by now.
      const failure = await client
        .call(etcdServices.KV, "Range", RangeRequestSchema, { key: bytes("noise"), revision: 2n })
        .catch((error: { details: string }) => error.details);
      expect(failure).toBe("etcdserver: mvcc: required revision has been compacted");
    } finally {
      client.close();
      await brain.stop();
    }
  });
});
