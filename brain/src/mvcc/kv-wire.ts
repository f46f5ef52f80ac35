// mvccpb.KeyValue in wire format. Every version is stored as exactly the
// bytes a Range response carries for it, so a response is the header, the
// stored rows and two small fields concatenated into one buffer of the exact
// size. Encoders write what protobuf-es writes (fields in number order,
// proto3 defaults omitted); server/wire.test.ts checks that.
import type { KeyValue } from "./kv.js";

/** A response already in wire format; the transport sends it as is. */
export class EncodedMessage {
  constructor(readonly bytes: Uint8Array) {}
}

export function varintSize(value: number): number {
  let size = 1;
  let v = value;
  while (v > 0x7f) {
    v = Math.floor(v / 128);
    size++;
  }
  return size;
}

function int64Size(value: bigint): number {
  if (value < 0n) return 10;
  if (value <= 0x1fffffffffffffn) return varintSize(Number(value));
  let size = 1;
  let v = value;
  while (v > 0x7fn) {
    v >>= 7n;
    size++;
  }
  return size;
}

export function writeVarint(out: Uint8Array, at: number, value: number): number {
  let v = value;
  while (v > 0x7f) {
    out[at++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  out[at++] = v;
  return at;
}

function writeInt64(out: Uint8Array, at: number, value: bigint): number {
  if (value >= 0n && value <= 0x1fffffffffffffn) return writeVarint(out, at, Number(value));
  let v = BigInt.asUintN(64, value);
  while (v > 0x7fn) {
    out[at++] = Number(v & 0x7fn) | 0x80;
    v >>= 7n;
  }
  out[at++] = Number(v);
  return at;
}

function bytesFieldSize(length: number): number {
  return length === 0 ? 0 : 1 + varintSize(length) + length;
}

function uintFieldSize(value: number): number {
  return value === 0 ? 0 : 1 + varintSize(value);
}

/** Encoded size of a KeyValue (without keys_only). */
export function keyValueSize(kv: KeyValue, keysOnly = false): number {
  return (
    bytesFieldSize(kv.key.length) +
    uintFieldSize(kv.createRevision) +
    uintFieldSize(kv.modRevision) +
    uintFieldSize(kv.version) +
    (keysOnly ? 0 : bytesFieldSize(kv.value.length)) +
    (kv.lease === 0n ? 0 : 1 + int64Size(kv.lease))
  );
}

export function writeKeyValue(out: Uint8Array, start: number, kv: KeyValue, keysOnly = false): number {
  let at = start;
  if (kv.key.length > 0) {
    out[at++] = 0x0a;
    at = writeVarint(out, at, kv.key.length);
    out.set(kv.key, at);
    at += kv.key.length;
  }
  if (kv.createRevision !== 0) {
    out[at++] = 0x10;
    at = writeVarint(out, at, kv.createRevision);
  }
  if (kv.modRevision !== 0) {
    out[at++] = 0x18;
    at = writeVarint(out, at, kv.modRevision);
  }
  if (kv.version !== 0) {
    out[at++] = 0x20;
    at = writeVarint(out, at, kv.version);
  }
  if (!keysOnly && kv.value.length > 0) {
    out[at++] = 0x2a;
    at = writeVarint(out, at, kv.value.length);
    out.set(kv.value, at);
    at += kv.value.length;
  }
  if (kv.lease !== 0n) {
    out[at++] = 0x30;
    at = writeInt64(out, at, kv.lease);
  }
  return at;
}

export function encodeKeyValue(kv: KeyValue, keysOnly = false): Buffer {
  const out = Buffer.allocUnsafe(keyValueSize(kv, keysOnly));
  writeKeyValue(out, 0, kv, keysOnly);
  return out;
}

function readVarint(bytes: Uint8Array, state: { at: number }): number {
  let result = 0;
  let scale = 1;
  for (let shift = 0; shift < 64; shift += 7) {
    const byte = bytes[state.at++];
    if (byte === undefined) throw new Error("corrupt KeyValue: truncated varint");
    result += (byte & 0x7f) * scale;
    if (byte < 0x80) return result;
    scale *= 128;
  }
  throw new Error("corrupt KeyValue: varint too long");
}

function readInt64(bytes: Uint8Array, state: { at: number }): bigint {
  let result = 0n;
  for (let shift = 0n; shift < 70n; shift += 7n) {
    const byte = bytes[state.at++];
    if (byte === undefined) throw new Error("corrupt KeyValue: truncated varint");
    result |= BigInt(byte & 0x7f) << shift;
    if (byte < 0x80) return BigInt.asIntN(64, result);
  }
  throw new Error("corrupt KeyValue: varint too long");
}

const empty = new Uint8Array();

/** Decodes stored KeyValue bytes; key and value are views into `bytes`. */
export function decodeKeyValue(bytes: Uint8Array): KeyValue {
  const kv: KeyValue = { key: empty, value: empty, createRevision: 0, modRevision: 0, version: 0, lease: 0n };
  const state = { at: 0 };
  while (state.at < bytes.length) {
    const tag = bytes[state.at++]!;
    switch (tag) {
      case 0x0a:
      case 0x2a: {
        const length = readVarint(bytes, state);
        if (state.at + length > bytes.length) throw new Error("corrupt KeyValue: field past the end");
        const field = bytes.subarray(state.at, state.at + length);
        state.at += length;
        if (tag === 0x0a) kv.key = field;
        else kv.value = field;
        break;
      }
      case 0x10:
        kv.createRevision = readVarint(bytes, state);
        break;
      case 0x18:
        kv.modRevision = readVarint(bytes, state);
        break;
      case 0x20:
        kv.version = readVarint(bytes, state);
        break;
      case 0x30:
        kv.lease = readInt64(bytes, state);
        break;
      default:
        throw new Error(`corrupt KeyValue: unexpected tag ${tag}`);
    }
  }
  return kv;
}

/**
 * etcdserverpb.RangeResponse from an encoded header and encoded KeyValues,
 * in one buffer of the exact size.
 */
export function encodeRangeResponse(header: Uint8Array, kvs: readonly Uint8Array[], more: boolean, count: number): EncodedMessage {
  let size = 1 + varintSize(header.length) + header.length;
  for (const kv of kvs) size += 1 + varintSize(kv.length) + kv.length;
  if (more) size += 2;
  size += uintFieldSize(count);
  const out = Buffer.allocUnsafe(size);
  out[0] = 0x0a;
  let at = writeVarint(out, 1, header.length);
  out.set(header, at);
  at += header.length;
  for (const kv of kvs) {
    out[at++] = 0x12;
    at = writeVarint(out, at, kv.length);
    out.set(kv, at);
    at += kv.length;
  }
  if (more) {
    out[at++] = 0x18;
    out[at++] = 1;
  }
  if (count !== 0) {
    out[at++] = 0x20;
    writeVarint(out, at, count);
  }
  return new EncodedMessage(out);
}
