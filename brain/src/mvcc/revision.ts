// etcd's revision: a main revision (one per write transaction) and a sub
// revision (the order of changes inside it). Stored keys of the key table are
// the revision in big-endian, so the table's order is revision order, and a
// delete's key carries a tombstone mark (etcd's revision.go and key bucket).
import { Table } from "../storage/keys.js";

export interface Revision {
  main: number;
  sub: number;
}

export function compareRevisions(a: Revision, b: Revision): number {
  return a.main - b.main || a.sub - b.sub;
}

/** Table byte, main u64, sub u64, then the tombstone mark on deletes. */
export const revisionKeyBytes = 17;
const tombstoneMark = 0x74; // t

function writeUint64(target: Uint8Array, offset: number, value: number): void {
  const high = Math.floor(value / 0x1_0000_0000);
  const low = value >>> 0;
  target[offset] = high >>> 24;
  target[offset + 1] = high >>> 16;
  target[offset + 2] = high >>> 8;
  target[offset + 3] = high;
  target[offset + 4] = low >>> 24;
  target[offset + 5] = low >>> 16;
  target[offset + 6] = low >>> 8;
  target[offset + 7] = low;
}

function readUint64(source: Uint8Array, offset: number): number {
  const high = ((source[offset]! << 24) | (source[offset + 1]! << 16) | (source[offset + 2]! << 8) | source[offset + 3]!) >>> 0;
  const low = ((source[offset + 4]! << 24) | (source[offset + 5]! << 16) | (source[offset + 6]! << 8) | source[offset + 7]!) >>> 0;
  return high * 0x1_0000_0000 + low;
}

/** The stored key of the version written at `revision`. */
export function revisionKey(main: number, sub: number, tombstone: boolean): Buffer {
  const out = Buffer.allocUnsafe(tombstone ? revisionKeyBytes + 1 : revisionKeyBytes);
  out[0] = Table.Key;
  writeUint64(out, 1, main);
  writeUint64(out, 9, sub);
  if (tombstone) out[revisionKeyBytes] = tombstoneMark;
  return out;
}

export function parseRevisionKey(storageKey: Uint8Array): { main: number; sub: number; tombstone: boolean } {
  if (storageKey.length < revisionKeyBytes || storageKey[0] !== Table.Key) {
    throw new Error(`corrupt revision key of ${storageKey.length} bytes`);
  }
  return {
    main: readUint64(storageKey, 1),
    sub: readUint64(storageKey, 9),
    tombstone: storageKey.length > revisionKeyBytes && storageKey[revisionKeyBytes] === tombstoneMark,
  };
}
