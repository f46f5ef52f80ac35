import type { KeyRecord } from "./record.js";

/** A key at one version: etcd's mvccpb.KeyValue in brain's own types. */
export interface KeyValue extends KeyRecord {
  key: Uint8Array;
}

export interface WatchEvent {
  type: "put" | "delete";
  /** For a delete: the key with mod_revision set to the delete's revision. */
  kv: KeyValue;
  prevKv?: KeyValue;
  /** Sub-revision within the main revision, for ordering. */
  sub: number;
}

/** Byte-wise order, as etcd compares keys. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const diff = a[i]! - b[i]!;
    if (diff !== 0) return diff;
  }
  return a.length - b.length;
}

/**
 * etcd's range convention: an empty `end` means the single key `start`; an
 * `end` of one zero byte means every key >= `start`.
 */
export interface KeyRange {
  start: Uint8Array;
  /** Exclusive; undefined = unbounded above. */
  end: Uint8Array | undefined;
  single: boolean;
}

export function keyRange(key: Uint8Array, rangeEnd: Uint8Array): KeyRange {
  if (rangeEnd.length === 0) return { start: key, end: undefined, single: true };
  if (rangeEnd.length === 1 && rangeEnd[0] === 0) return { start: key, end: undefined, single: false };
  return { start: key, end: rangeEnd, single: false };
}

export function inRange(range: KeyRange, key: Uint8Array): boolean {
  if (range.single) return compareBytes(key, range.start) === 0;
  return compareBytes(key, range.start) >= 0 && (range.end === undefined || compareBytes(key, range.end) < 0);
}

/** A range that can hold no key (etcd answers it with nothing, not an error). */
export function isEmptyRange(range: KeyRange): boolean {
  return !range.single && range.end !== undefined && compareBytes(range.start, range.end) >= 0;
}

/** Map key for byte strings (latin1 keeps one char per byte, so order is kept). */
export function keyId(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString("latin1");
}
