// Key layout of brain's MVCC store in the engine's single ordered keyspace
// (format version 2, etcd's key bucket):
//
//   k ‖ main u64 ‖ sub u64 [‖ t]     → mvccpb.KeyValue   every version, once; `t` marks a delete
//   l ‖ leaseId                      → lease             granted leases
//   m ‖ name                         → meta              revision, format version, compaction, identity
//
// The key table in revision order is the watch log; which revision holds a
// key's version at R comes from the in-memory key index (mvcc/key-index.ts).
// Each version is stored as the bytes a Range response sends for it.
//
// Format version 1 (no format version in meta) kept the current version,
// every version and the revision log in three tables; they are read only to
// upgrade such a data dir in place (mvcc/upgrade-v1.ts):
//
//   c ‖ key                          → record   current version of each live key
//   h ‖ esc(key) ‖ 00 01 ‖ ¬rev      → record   every version (and tombstone) of a key, newest first
//   r ‖ rev                          → event    the revision log

export const enum Table {
  Current = 0x63, // c (format 1)
  History = 0x68, // h (format 1)
  Key = 0x6b, // k
  Lease = 0x6c, // l
  Meta = 0x6d, // m
  Log = 0x72, // r (format 1)
}

export interface Revision {
  main: number;
  sub: number;
}

const revisionBytes = 16;

function writeUint64(target: Uint8Array, offset: number, value: number): void {
  const view = new DataView(target.buffer, target.byteOffset, target.byteLength);
  view.setBigUint64(offset, BigInt(value));
}

function readUint64(source: Uint8Array, offset: number): number {
  const view = new DataView(source.buffer, source.byteOffset, source.byteLength);
  return Number(view.getBigUint64(offset));
}

export function tableStart(table: Table): Uint8Array {
  return Uint8Array.of(table);
}

export function tableEnd(table: Table): Uint8Array {
  return Uint8Array.of(table + 1);
}

export function currentKey(key: Uint8Array): Uint8Array {
  const out = new Uint8Array(key.length + 1);
  out[0] = Table.Current;
  out.set(key, 1);
  return out;
}

export function userKeyOfCurrent(storageKey: Uint8Array): Uint8Array {
  return storageKey.subarray(1);
}

// Order-preserving escape: 00 → 00 FF, and every key ends with 00 01, which
// sorts below any escaped continuation. So esc(a) < esc(b) iff a < b, and all
// versions of one key are contiguous.
function escapedLength(key: Uint8Array): number {
  let length = key.length + 2;
  for (const byte of key) if (byte === 0) length++;
  return length;
}

function writeEscaped(target: Uint8Array, offset: number, key: Uint8Array): number {
  let at = offset;
  for (const byte of key) {
    target[at++] = byte;
    if (byte === 0) target[at++] = 0xff;
  }
  target[at++] = 0x00;
  target[at++] = 0x01;
  return at;
}

/**
 * Prefix shared by every history entry of `key`. It also bounds ranges: the
 * entries of keys in [a, b) are exactly those in [historyPrefix(a), historyPrefix(b)).
 */
export function historyPrefix(key: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + escapedLength(key));
  out[0] = Table.History;
  writeEscaped(out, 1, key);
  return out;
}

/** History entry of `key` at `revision`; newer revisions sort first. */
export function historyKey(key: Uint8Array, revision: Revision): Uint8Array {
  const prefix = historyPrefix(key);
  const out = new Uint8Array(prefix.length + revisionBytes);
  out.set(prefix, 0);
  writeUint64(out, prefix.length, Number.MAX_SAFE_INTEGER - revision.main);
  writeUint64(out, prefix.length + 8, Number.MAX_SAFE_INTEGER - revision.sub);
  return out;
}

/** Splits a history entry key into the user key and its revision. */
export function parseHistoryKey(storageKey: Uint8Array): { key: Uint8Array; revision: Revision } {
  const end = storageKey.length - revisionBytes - 2; // before the 00 01 terminator
  const key: number[] = [];
  for (let i = 1; i < end; i++) {
    const byte = storageKey[i]!;
    key.push(byte);
    if (byte === 0) i++; // skip the FF escape
  }
  const at = storageKey.length - revisionBytes;
  return {
    key: Uint8Array.from(key),
    revision: {
      main: Number.MAX_SAFE_INTEGER - readUint64(storageKey, at),
      sub: Number.MAX_SAFE_INTEGER - readUint64(storageKey, at + 8),
    },
  };
}

/** Sorts after every history entry of `key`: the next key's entries start here. */
export function historyAfter(key: Uint8Array): Uint8Array {
  const prefix = historyPrefix(key);
  const out = new Uint8Array(prefix.length + revisionBytes);
  out.set(prefix, 0);
  out.fill(0xff, prefix.length);
  return out;
}

export function logKey(revision: Revision): Uint8Array {
  const out = new Uint8Array(1 + revisionBytes);
  out[0] = Table.Log;
  writeUint64(out, 1, revision.main);
  writeUint64(out, 9, revision.sub);
  return out;
}

export function parseLogKey(storageKey: Uint8Array): Revision {
  return { main: readUint64(storageKey, 1), sub: readUint64(storageKey, 9) };
}

export function leaseKey(id: bigint): Uint8Array {
  const out = new Uint8Array(9);
  out[0] = Table.Lease;
  new DataView(out.buffer).setBigInt64(1, id);
  return out;
}

export function parseLeaseKey(storageKey: Uint8Array): bigint {
  return new DataView(storageKey.buffer, storageKey.byteOffset, storageKey.byteLength).getBigInt64(1);
}

export function metaKey(name: string): Uint8Array {
  const out = new Uint8Array(1 + name.length);
  out[0] = Table.Meta;
  out.set(new TextEncoder().encode(name), 1);
  return out;
}

export function encodeUint64(value: number): Uint8Array {
  const out = new Uint8Array(8);
  writeUint64(out, 0, value);
  return out;
}

export function decodeUint64(bytes: Uint8Array): number {
  return readUint64(bytes, 0);
}
