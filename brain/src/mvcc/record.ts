// The value stored for each version of a key (in the current and history
// tables): etcd's KeyValue minus the key, which the storage key carries.
//
//   flags u8 | create_revision u64 | mod_revision u64 | version u64 | lease i64 | value…
//
// A tombstone (flag bit 0) marks a delete in the history table.

export interface KeyRecord {
  createRevision: number;
  modRevision: number;
  version: number;
  lease: bigint;
  value: Uint8Array;
}

export interface StoredRecord extends KeyRecord {
  tombstone: boolean;
}

const headerBytes = 1 + 8 * 4;

export function encodeRecord(record: KeyRecord, tombstone = false): Uint8Array {
  const out = new Uint8Array(headerBytes + record.value.length);
  const view = new DataView(out.buffer);
  view.setUint8(0, tombstone ? 1 : 0);
  view.setBigUint64(1, BigInt(record.createRevision));
  view.setBigUint64(9, BigInt(record.modRevision));
  view.setBigUint64(17, BigInt(record.version));
  view.setBigInt64(25, record.lease);
  out.set(record.value, headerBytes);
  return out;
}

// Revisions and versions stay below 2^53, so two 32-bit reads make a number
// without BigInt; this runs for every key a range returns.
function readUint53(view: DataView, offset: number): number {
  return view.getUint32(offset) * 0x1_0000_0000 + view.getUint32(offset + 4);
}

export function decodeRecord(bytes: Uint8Array): StoredRecord {
  if (bytes.length < headerBytes) throw new Error(`corrupt record: ${bytes.length} bytes, want at least ${headerBytes}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const leaseHigh = view.getUint32(25);
  const leaseLow = view.getUint32(29);
  return {
    tombstone: (view.getUint8(0) & 1) === 1,
    createRevision: readUint53(view, 1),
    modRevision: readUint53(view, 9),
    version: readUint53(view, 17),
    lease: leaseHigh === 0 && leaseLow === 0 ? 0n : view.getBigInt64(25),
    value: bytes.subarray(headerBytes),
  };
}

export function tombstoneRecord(modRevision: number): Uint8Array {
  return encodeRecord({ createRevision: 0, modRevision, version: 0, lease: 0n, value: new Uint8Array() }, true);
}

// Revision log entries: what happened at a revision, and to which key.
export const enum EventKind {
  Put = 0,
  Delete = 1,
}

export function encodeLogEntry(kind: EventKind, key: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + key.length);
  out[0] = kind;
  out.set(key, 1);
  return out;
}

export function decodeLogEntry(bytes: Uint8Array): { kind: EventKind; key: Uint8Array } {
  return { kind: bytes[0] === EventKind.Delete ? EventKind.Delete : EventKind.Put, key: bytes.subarray(1) };
}
