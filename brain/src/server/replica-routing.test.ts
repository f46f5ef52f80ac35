// The revision a forwarded answer carries, read off the wire.
import { describe, expect, it } from "vitest";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  CompactionResponseSchema,
  LeaseGrantResponseSchema,
  PutResponseSchema,
  TxnResponseSchema,
} from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import { responseRevision } from "./replica-routing.js";

const header = { clusterId: 0xffff_ffff_ffff_fffen, memberId: 0x7fff_ffff_ffff_ffffn, revision: 9_007_199_254_740_991n, raftTerm: 300n };

describe("responseRevision", () => {
  it("reads header.revision of any KV or Lease answer", () => {
    expect(responseRevision(toBinary(PutResponseSchema, create(PutResponseSchema, { header, prevKv: { key: new Uint8Array(300), modRevision: 5n } })))).toBe(
      Number.MAX_SAFE_INTEGER,
    );
    expect(responseRevision(toBinary(CompactionResponseSchema, create(CompactionResponseSchema, { header: { ...header, revision: 42n } })))).toBe(42);
    expect(responseRevision(toBinary(LeaseGrantResponseSchema, create(LeaseGrantResponseSchema, { ID: 7n, TTL: 10n, header: { revision: 130n } })))).toBe(130);
  });

  it("finds the header wherever it is in the message, past other fields", () => {
    // A Txn answer whose responses come first on the wire: protobuf allows any field order.
    const txn = toBinary(TxnResponseSchema, create(TxnResponseSchema, { succeeded: true, responses: [{ response: { case: "responsePut", value: { header: { revision: 3n } } } }] }));
    const reordered = new Uint8Array([...txn, ...toBinary(TxnResponseSchema, create(TxnResponseSchema, { header: { revision: 77n } }))]);
    expect(responseRevision(reordered)).toBe(77);
  });

  it("is 0 without a header", () => {
    expect(responseRevision(new Uint8Array())).toBe(0);
    expect(responseRevision(toBinary(TxnResponseSchema, create(TxnResponseSchema, { succeeded: true })))).toBe(0);
  });
});
