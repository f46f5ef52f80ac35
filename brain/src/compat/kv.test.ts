// KV semantics, compared field by field with the reference etcd over raw gRPC.
import { describe, expect, it } from "vitest";
import {
  CompactionRequestSchema,
  Compare_CompareResult as Result,
  Compare_CompareTarget as Target,
  DeleteRangeRequestSchema,
  LeaseGrantRequestSchema,
  PutRequestSchema,
  RangeRequest_SortOrder as Order,
  RangeRequest_SortTarget as SortBy,
  RangeRequestSchema,
  TxnRequestSchema,
  type RequestOp,
} from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { RequestOpSchema } from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import { brainTargets, bytes, differentialSuite, type Scenario } from "./differential.js";

type PutOptions = { lease?: bigint; prevKv?: boolean; ignoreValue?: boolean; ignoreLease?: boolean };
const put = (s: Scenario, name: string, value: string, extra: PutOptions = {}) =>
  s.call("KV", "Put", PutRequestSchema, { key: s.key(name), value: bytes(value), ...extra });
const range = (s: Scenario, request: MessageInitShape<typeof RangeRequestSchema>) => s.call("KV", "Range", RangeRequestSchema, request);
const prefixEnd = (s: Scenario) => bytes(`${s.prefix}0`); // "/" + 1
const opPut = (s: Scenario, name: string, value: string): MessageInitShape<typeof RequestOpSchema> => ({
  request: { case: "requestPut", value: { key: s.key(name), value: bytes(value) } },
});
const opRange = (s: Scenario, name: string): MessageInitShape<typeof RequestOpSchema> => ({
  request: { case: "requestRange", value: { key: s.key(name) } },
});
const opDelete = (s: Scenario, name: string, end?: string): MessageInitShape<typeof RequestOpSchema> => ({
  request: { case: "requestDeleteRange", value: { key: s.key(name), rangeEnd: end === undefined ? new Uint8Array() : s.key(end), prevKv: true } },
});

describe.each(brainTargets)("%s", (target) => {
  const { same } = differentialSuite([], target);

  describe("KV against the reference etcd", () => {
    it("put, overwrite and get: versions, revisions, prev_kv", () =>
      same(async (s) => {
        await put(s, "a", "1");
        await put(s, "a", "2", { prevKv: true });
        await range(s, { key: s.key("a") });
        await range(s, { key: s.key("missing") });
      }));

    it("range over a prefix: limit, more, count, keys_only, count_only", () =>
      same(async (s) => {
        for (const name of ["c", "a", "e", "b", "d"]) await put(s, name, `value-${name}`);
        const all = { key: s.key(""), rangeEnd: prefixEnd(s) };
        await range(s, all);
        await range(s, { ...all, limit: 2n });
        await range(s, { ...all, limit: 5n });
        await range(s, { ...all, limit: 6n });
        await range(s, { ...all, keysOnly: true });
        await range(s, { ...all, countOnly: true });
        await range(s, { key: s.key("b"), rangeEnd: s.key("d") });
        // range_end below key: nothing, not an error.
        await range(s, { key: s.key("d"), rangeEnd: s.key("b") });
        // "\0" as range_end: every key from key on.
        await range(s, { key: s.key("d"), rangeEnd: Uint8Array.of(0), limit: 2n });
      }));

    it("sorting by every target and order", () =>
      same(async (s) => {
        await put(s, "x", "3");
        await put(s, "y", "1");
        await put(s, "z", "2");
        await put(s, "x", "0");
        const all = { key: s.key(""), rangeEnd: prefixEnd(s) };
        for (const sortTarget of [SortBy.Key, SortBy.Version, SortBy.Create, SortBy.Mod, SortBy.Value]) {
          for (const sortOrder of [Order.None, Order.Ascend, Order.Descend]) {
            await range(s, { ...all, sortTarget, sortOrder, limit: 2n });
          }
        }
      }));

    it("reads at a past revision, revision filters, future and compacted revisions", () =>
      same(async (s) => {
        await put(s, "k", "v1"); // +1
        await put(s, "k", "v2"); // +2
        await put(s, "j", "w1"); // +3
        await s.call("KV", "DeleteRange", DeleteRangeRequestSchema, { key: s.key("k") }); // +4
        await put(s, "k", "v3"); // +5
        const all = { key: s.key(""), rangeEnd: prefixEnd(s) };
        for (const at of [1, 2, 3, 4, 5]) await range(s, { ...all, revision: s.revision(at) });
        await range(s, { ...all, revision: s.revision(2), limit: 1n });
        await range(s, { ...all, minModRevision: s.revision(3) });
        await range(s, { ...all, maxModRevision: s.revision(3) });
        await range(s, { ...all, minCreateRevision: s.revision(4) });
        await range(s, { ...all, maxCreateRevision: s.revision(4) });
        await range(s, { ...all, revision: s.revision(50) });
        await range(s, { ...all, serializable: true });
      }));

    it("delete ranges with prev_kv; deleting nothing keeps the revision", () =>
      same(async (s) => {
        for (const name of ["a", "b", "c"]) await put(s, name, name);
        await s.call("KV", "DeleteRange", DeleteRangeRequestSchema, { key: s.key("a"), rangeEnd: s.key("c"), prevKv: true });
        await s.call("KV", "DeleteRange", DeleteRangeRequestSchema, { key: s.key("zzz") });
        await s.call("KV", "DeleteRange", DeleteRangeRequestSchema, { key: s.key(""), rangeEnd: prefixEnd(s) });
        await range(s, { key: s.key(""), rangeEnd: prefixEnd(s) });
      }));

    it("put with ignore_value, ignore_lease and leases", () =>
      same(async (s) => {
        const leaseId = BigInt(0x1000 + s.prefix.length);
        await s.call("Lease", "LeaseGrant", LeaseGrantRequestSchema, { ID: leaseId + BigInt(Date.now() % 1000) * 0n, TTL: 60n });
        await put(s, "a", "1", { lease: leaseId });
        await put(s, "a", "", { ignoreValue: true });
        await put(s, "a", "2", { ignoreLease: true });
        await range(s, { key: s.key("a") });
        await put(s, "missing", "", { ignoreValue: true });
        await put(s, "missing", "x", { ignoreLease: true });
        await put(s, "a", "x", { ignoreValue: true });
        await put(s, "a", "x", { ignoreLease: true, lease: 5n });
        await put(s, "a", "x", { lease: 999_999n });
      }));

    it("rejects empty keys and invalid sort options like etcd", () =>
      same(async (s) => {
        await s.call("KV", "Put", PutRequestSchema, { key: new Uint8Array(), value: bytes("x") });
        await range(s, { key: new Uint8Array() });
        await s.call("KV", "DeleteRange", DeleteRangeRequestSchema, { key: new Uint8Array() });
        await range(s, { key: s.key("a"), sortOrder: 7 as Order });
        await range(s, { key: s.key("a"), sortTarget: 9 as SortBy });
      }));

    it("txn: compares on every target, both branches, read-your-writes", () =>
      same(async (s) => {
        await put(s, "a", "1");
        await put(s, "b", "2");
        const compares = [
          { target: Target.Value, key: s.key("a"), targetUnion: { case: "value" as const, value: bytes("1") } },
          { target: Target.Version, key: s.key("a"), targetUnion: { case: "version" as const, value: 1n } },
          { target: Target.Create, key: s.key("a"), targetUnion: { case: "createRevision" as const, value: s.revision(1) } },
          { target: Target.Mod, key: s.key("b"), targetUnion: { case: "modRevision" as const, value: s.revision(2) } },
          { target: Target.Lease, key: s.key("a"), targetUnion: { case: "lease" as const, value: 0n } },
          { target: Target.Version, key: s.key("nope"), targetUnion: { case: "version" as const, value: 0n } },
          { target: Target.Value, key: s.key("nope"), targetUnion: { case: "value" as const, value: bytes("") } },
          { target: Target.Version, key: s.key(""), rangeEnd: prefixEnd(s), targetUnion: { case: "version" as const, value: 0n } },
        ];
        for (const compare of compares) {
          for (const result of [Result.Equal, Result.Greater, Result.Less, Result.NotEqual]) {
            await s.call("KV", "Txn", TxnRequestSchema, {
              compare: [{ ...compare, result }],
              success: [opRange(s, "a")],
              failure: [opRange(s, "b")],
            });
          }
        }
        await s.call("KV", "Txn", TxnRequestSchema, {
          compare: [{ target: Target.Value, result: Result.Equal, key: s.key("a"), targetUnion: { case: "value", value: bytes("1") } }],
          success: [opPut(s, "a", "10"), opRange(s, "a"), opDelete(s, "b"), opRange(s, "b"), opPut(s, "c", "3")],
        });
        await range(s, { key: s.key(""), rangeEnd: prefixEnd(s) });
      }));

    it("txn: nested txns, empty txns, too many ops, duplicate keys", () =>
      same(async (s) => {
        await put(s, "a", "1");
        const nested: MessageInitShape<typeof RequestOpSchema> = {
          request: {
            case: "requestTxn",
            value: {
              compare: [{ target: Target.Version, result: Result.Greater, key: s.key("a"), targetUnion: { case: "version", value: 0n } }],
              success: [opPut(s, "n1", "x"), opRange(s, "a")],
              failure: [opPut(s, "n2", "y")],
            },
          },
        };
        await s.call("KV", "Txn", TxnRequestSchema, { success: [nested, opPut(s, "b", "2")] });
        await s.call("KV", "Txn", TxnRequestSchema, {});
        const many: Array<MessageInitShape<typeof RequestOpSchema>> = Array.from({ length: 129 }, (_, i) => opPut(s, `m${i}`, "x"));
        await s.call("KV", "Txn", TxnRequestSchema, { success: many });
        await s.call("KV", "Txn", TxnRequestSchema, { success: many.slice(0, 128) });
        await s.call("KV", "Txn", TxnRequestSchema, { success: [opPut(s, "d", "1"), opPut(s, "d", "2")] });
        await s.call("KV", "Txn", TxnRequestSchema, { success: [opDelete(s, "a", "z"), opPut(s, "d", "2")] });
        await s.call("KV", "Txn", TxnRequestSchema, { success: [opDelete(s, "a", "c"), opDelete(s, "b", "d")] });
        await s.call("KV", "Txn", TxnRequestSchema, {
          success: [opPut(s, "e", "1"), { request: { case: "requestTxn", value: { success: [opPut(s, "e", "2")] } } }],
        });
        await s.call("KV", "Txn", TxnRequestSchema, {
          success: [{ request: { case: "requestTxn", value: { success: [opPut(s, "f", "1")], failure: [opPut(s, "f", "2")] } } }],
        });
        await range(s, { key: s.key(""), rangeEnd: prefixEnd(s), countOnly: true });
        await s.call("KV", "Txn", TxnRequestSchema, { success: [{ request: { case: "requestPut", value: { key: s.key("g"), lease: 424242n } } }] });
        await s.call("KV", "Txn", TxnRequestSchema, {
          success: [{ request: { case: "requestRange", value: { key: s.key("a"), revision: s.revision(1000) } } }],
        });
      }));

    it("compaction: compacted and future revisions", () =>
      same(async (s) => {
        await put(s, "a", "1");
        await put(s, "a", "2");
        await put(s, "a", "3");
        await s.call("KV", "Compact", CompactionRequestSchema, { revision: s.revision(2), physical: true });
        await range(s, { key: s.key("a"), revision: s.revision(1) });
        await range(s, { key: s.key("a"), revision: s.revision(2) });
        await range(s, { key: s.key("a"), revision: s.revision(3) });
        await s.call("KV", "Compact", CompactionRequestSchema, { revision: s.revision(2) });
        await s.call("KV", "Compact", CompactionRequestSchema, { revision: s.revision(1) });
        await s.call("KV", "Compact", CompactionRequestSchema, { revision: s.revision(100) });
        await s.call("KV", "Txn", TxnRequestSchema, {
          success: [{ request: { case: "requestRange", value: { key: s.key("a"), revision: s.revision(1) } } }],
        });
      }));

    it("refuses a request over the size limit with etcd's error", () =>
      same(async (s) => {
        const big = "x".repeat(1.6 * 1024 * 1024);
        const seen = await put(s, "big", big);
        expect("error" in seen).toBe(true);
        await range(s, { key: s.key("big") });
        await put(s, "ok", "x".repeat(1024 * 1024));
        await range(s, { key: s.key("ok"), keysOnly: true });
      }));
  });
});

export type { RequestOp };
