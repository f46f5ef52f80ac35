// The one routine that writes a version of a key: the store's writer and
// `brain migrate` both store versions through it, so an imported data dir is
// exactly what brain would have written itself.
import type { KeyValue } from "./kv.js";
import { encodeKeyValue } from "./kv-wire.js";
import { revisionKey } from "./revision.js";

export interface VersionSink {
  put(key: Uint8Array, value: Uint8Array): void;
}

/** Stores `kv` as written at (main, sub); returns the stored row key and bytes. */
export function writeVersion(sink: VersionSink, kv: KeyValue, sub: number): { rowKey: Buffer; bytes: Buffer } {
  const rowKey = revisionKey(kv.modRevision, sub, false);
  const bytes = encodeKeyValue(kv);
  sink.put(rowKey, bytes);
  return { rowKey, bytes };
}

/**
 * Stores the delete of `key` at (main, sub). The row holds the KeyValue a
 * watch's DELETE event carries: the key and the delete's revision.
 */
export function writeTombstone(sink: VersionSink, key: Uint8Array, main: number, sub: number): { rowKey: Buffer; bytes: Buffer } {
  const rowKey = revisionKey(main, sub, true);
  const bytes = encodeKeyValue(tombstoneKeyValue(key, main));
  sink.put(rowKey, bytes);
  return { rowKey, bytes };
}

export function tombstoneKeyValue(key: Uint8Array, main: number): KeyValue {
  return { key, createRevision: 0, modRevision: main, version: 0, lease: 0n, value: new Uint8Array() };
}
