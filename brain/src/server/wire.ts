// Hand-written protobuf encoders for the two hot responses: RangeResponse
// (hundreds of KeyValues per list) and WatchResponse (the same events sent to
// many watchers). They produce exactly the bytes protobuf-es would (fields in
// number order, proto3 defaults omitted; wire.test.ts checks that), without
// building message objects first, and a watch event is encoded once however
// many watchers receive it.
import type { KeyValue } from "../mvcc/kv.js";
import { EncodedMessage, encodeKeyValue as encodeStoredKeyValue, encodeRangeResponse as encodeRangeRows } from "../mvcc/kv-wire.js";

// The MVCC layer stores KeyValues in wire format and builds Range responses
// itself (mvcc/kv-wire.ts); the server re-exports what it sends.
export { EncodedMessage };

export interface Header {
  clusterId: bigint;
  memberId: bigint;
  revision: number;
  raftTerm: number;
}

class Writer {
  private buffer = Buffer.allocUnsafe(256);
  length = 0;

  private reserve(extra: number): void {
    if (this.length + extra <= this.buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.length + extra));
    this.buffer.copy(grown, 0, 0, this.length);
    this.buffer = grown;
  }

  varint(value: number): void {
    this.reserve(10);
    let v = value;
    while (v > 0x7f) {
      this.buffer[this.length++] = (v % 128) | 0x80;
      v = Math.floor(v / 128);
    }
    this.buffer[this.length++] = v;
  }

  /** int64/uint64 as a varint; negative values take ten bytes (two's complement). */
  varint64(value: bigint): void {
    let v = BigInt.asUintN(64, value);
    this.reserve(10);
    while (v > 0x7fn) {
      this.buffer[this.length++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.buffer[this.length++] = Number(v);
  }

  bytes(data: Uint8Array): void {
    this.varint(data.length);
    this.reserve(data.length);
    this.buffer.set(data, this.length);
    this.length += data.length;
  }

  tag(field: number, wireType: 0 | 2): void {
    this.varint((field << 3) | wireType);
  }

  finish(): Uint8Array {
    return this.buffer.subarray(0, this.length);
  }
}

function uint(w: Writer, field: number, value: number): void {
  if (value === 0) return;
  w.tag(field, 0);
  w.varint(value);
}

function int64(w: Writer, field: number, value: bigint): void {
  if (value === 0n) return;
  w.tag(field, 0);
  w.varint64(value);
}

function bytesField(w: Writer, field: number, value: Uint8Array): void {
  if (value.length === 0) return;
  w.tag(field, 2);
  w.bytes(value);
}

function bool(w: Writer, field: number, value: boolean): void {
  if (!value) return;
  w.tag(field, 0);
  w.varint(1);
}

export function encodeHeader(header: Header): Uint8Array {
  const w = new Writer();
  int64(w, 1, header.clusterId);
  int64(w, 2, header.memberId);
  uint(w, 3, header.revision);
  uint(w, 4, header.raftTerm);
  return w.finish().slice();
}

export function encodeKeyValue(kv: KeyValue, keysOnly = false): Uint8Array {
  return encodeStoredKeyValue(kv, keysOnly);
}

export function encodeRangeResponse(
  header: Uint8Array,
  kvs: KeyValue[],
  more: boolean,
  count: number,
  keysOnly: boolean,
): EncodedMessage {
  return encodeRangeRows(header, kvs.map((kv) => encodeStoredKeyValue(kv, keysOnly)), more, count);
}

/** mvccpb.Event: type (PUT = 0 is the default), kv, prev_kv. */
export function encodeEvent(type: "put" | "delete", kv: KeyValue, prevKv: KeyValue | undefined): Uint8Array {
  const w = new Writer();
  uint(w, 1, type === "delete" ? 1 : 0);
  w.tag(2, 2);
  w.bytes(encodeKeyValue(kv));
  if (prevKv) {
    w.tag(3, 2);
    w.bytes(encodeKeyValue(prevKv));
  }
  return w.finish().slice();
}

export interface WatchResponseFields {
  header: Uint8Array;
  watchId: bigint;
  created?: boolean;
  canceled?: boolean;
  compactRevision?: number;
  cancelReason?: string;
  fragment?: boolean;
  /** Encoded mvccpb.Event messages. */
  events?: Uint8Array[];
}

export function encodeWatchResponse(fields: WatchResponseFields): EncodedMessage {
  const w = new Writer();
  w.tag(1, 2);
  w.bytes(fields.header);
  int64(w, 2, fields.watchId);
  bool(w, 3, fields.created ?? false);
  bool(w, 4, fields.canceled ?? false);
  uint(w, 5, fields.compactRevision ?? 0);
  bytesField(w, 6, new TextEncoder().encode(fields.cancelReason ?? ""));
  bool(w, 7, fields.fragment ?? false);
  for (const event of fields.events ?? []) {
    w.tag(11, 2);
    w.bytes(event);
  }
  return new EncodedMessage(w.finish());
}

/**
 * A WatchResponse carrying events that many watchers receive alike: the
 * header and the events are encoded once, and each watcher's message only
 * adds its watch id (field 2, between the two, keeping field order).
 */
export function encodeSharedWatchEvents(header: Uint8Array, events: Uint8Array[], fragment = false): (watchId: bigint) => EncodedMessage {
  const head = new Writer();
  head.tag(1, 2);
  head.bytes(header);
  const tail = new Writer();
  bool(tail, 7, fragment);
  for (const event of events) {
    tail.tag(11, 2);
    tail.bytes(event);
  }
  const headBytes = head.finish();
  const tailBytes = tail.finish();
  return (watchId) => {
    const id = new Writer();
    int64(id, 2, watchId);
    const idBytes = id.finish();
    const message = Buffer.allocUnsafe(headBytes.length + idBytes.length + tailBytes.length);
    message.set(headBytes, 0);
    message.set(idBytes, headBytes.length);
    message.set(tailBytes, headBytes.length + idBytes.length);
    return new EncodedMessage(message);
  };
}
