import { create, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { RangeResponseSchema, ResponseHeaderSchema, WatchResponseSchema } from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import { Event_EventType, EventSchema, KeyValueSchema } from "@wharf/proto/etcd/api/mvccpb/kv_pb.js";
import type { KeyValue } from "../mvcc/kv.js";
import { encodeEvent, encodeHeader, encodeRangeResponse, encodeSharedWatchEvents, encodeWatchResponse } from "./wire.js";

const kvs: KeyValue[] = [
  { key: Uint8Array.of(1, 2, 3), value: new Uint8Array(300).fill(7), createRevision: 5, modRevision: 2 ** 40, version: 3, lease: 0n },
  { key: new TextEncoder().encode("/registry/pods/default/x"), value: new Uint8Array(), createRevision: 1, modRevision: 1, version: 1, lease: 0x7fffffffffffffffn },
  { key: Uint8Array.of(0), value: Uint8Array.of(0), createRevision: 0, modRevision: 0, version: 0, lease: -1n },
];
const header = { clusterId: 0xfedcba9876543210n, memberId: 1n, revision: 123456789, raftTerm: 2 };
const kvMessage = (kv: KeyValue, keysOnly = false) =>
  create(KeyValueSchema, {
    key: kv.key,
    value: keysOnly ? new Uint8Array() : kv.value,
    createRevision: BigInt(kv.createRevision),
    modRevision: BigInt(kv.modRevision),
    version: BigInt(kv.version),
    lease: kv.lease,
  });
const headerMessage = create(ResponseHeaderSchema, { ...header, revision: BigInt(header.revision), raftTerm: 2n });

describe("hand-written encoders write what protobuf-es writes", () => {
  it("RangeResponse, with and without keys_only", () => {
    for (const keysOnly of [false, true]) {
      for (const [more, count] of [[false, 0], [true, 3], [false, 2 ** 33]] as const) {
        const expected = toBinary(RangeResponseSchema, create(RangeResponseSchema, { header: headerMessage, kvs: kvs.map((kv) => kvMessage(kv, keysOnly)), more, count: BigInt(count) }));
        const actual = encodeRangeResponse(encodeHeader(header), kvs, more, count, keysOnly).bytes;
        expect(Buffer.from(actual).equals(Buffer.from(expected))).toBe(true);
      }
    }
  });

  it("WatchResponse with events, ids (including -1) and flags", () => {
    const events = [
      { type: "put" as const, kv: kvs[0]!, prev: kvs[1] },
      { type: "delete" as const, kv: kvs[2]!, prev: undefined },
    ];
    for (const watchId of [0n, 7n, -1n]) {
      const expected = toBinary(
        WatchResponseSchema,
        create(WatchResponseSchema, {
          header: headerMessage,
          watchId,
          created: watchId === 7n,
          canceled: watchId === -1n,
          compactRevision: watchId === -1n ? 99n : 0n,
          cancelReason: watchId === -1n ? "gone" : "",
          fragment: watchId === 0n,
          events: events.map((event) =>
            create(EventSchema, {
              type: event.type === "put" ? Event_EventType.Put : Event_EventType.Delete,
              kv: kvMessage(event.kv),
              prevKv: event.prev ? kvMessage(event.prev) : undefined,
            }),
          ),
        }),
      );
      const actual = encodeWatchResponse({
        header: encodeHeader(header),
        watchId,
        created: watchId === 7n,
        canceled: watchId === -1n,
        compactRevision: watchId === -1n ? 99 : 0,
        cancelReason: watchId === -1n ? "gone" : "",
        fragment: watchId === 0n,
        events: events.map((event) => encodeEvent(event.type, event.kv, event.prev)),
      }).bytes;
      expect(Buffer.from(actual).equals(Buffer.from(expected))).toBe(true);
    }
  });

  it("a WatchResponse shared by many watchers differs from the single one in nothing", () => {
    const events = [encodeEvent("put", kvs[0]!, kvs[1]), encodeEvent("delete", kvs[2]!, undefined)];
    for (const fragment of [false, true]) {
      const shared = encodeSharedWatchEvents(encodeHeader(header), events, fragment);
      for (const watchId of [0n, 1n, 300n, -1n]) {
        const expected = encodeWatchResponse({ header: encodeHeader(header), watchId, fragment, events }).bytes;
        expect(Buffer.from(shared(watchId).bytes).equals(Buffer.from(expected))).toBe(true);
      }
    }
  });
});
