import { leaseKey, metaKey, encodeUint64 } from "../storage/keys.js";
import type { KeyIndex, TreeIndex } from "./key-index.js";
import { keyId, type KeyRange, type KeyValue, type WatchEvent } from "./kv.js";
import { decodeKeyValue } from "./kv-wire.js";
import { metaNames } from "./meta.js";
import { revisionKey } from "./revision.js";
import { writeTombstone, writeVersion } from "./version-writer.js";

/** What one committed revision changed, in order. */
export interface CommittedRevision {
  revision: number;
  events: WatchEvent[];
}

export interface LeaseChange {
  id: bigint;
  /** Granted TTL in seconds; undefined when the lease was revoked. */
  ttl: number | undefined;
}

/** A key's state at the newest revision, from the index alone (no value). */
export interface KeyMeta {
  createRevision: number;
  modRevision: number;
  version: number;
  lease: bigint;
}

/** Reads of stored rows and index ranges the writer needs from the store. */
export interface WriterReads {
  readonly index: TreeIndex;
  /** Stored rows by row key; `pending` holds this group's rows not yet written. */
  fetchRows(rowKeys: Uint8Array[], pending: Map<string, Uint8Array>): Uint8Array[];
  readRange(
    range: KeyRange,
    revision: number,
    limit: number,
    countAll: boolean,
    pending: Map<string, Uint8Array>,
  ): { rows: Uint8Array[]; count: number };
}

export interface GroupResult {
  ops: Array<{ key: Uint8Array; value: Uint8Array | undefined }>;
  revisions: CommittedRevision[];
  leases: LeaseChange[];
  revision: number;
}

/**
 * The state a group of write requests is evaluated against: the key index,
 * which already holds every write of the group so far (each request's writes
 * go into it as they are made; a failed request or group is rolled back), and
 * the group's rows not yet in storage. Nothing here reads storage except to
 * fetch a value someone asked for.
 */
export class WriteContext {
  private readonly ops: GroupResult["ops"] = [];
  private readonly pending = new Map<string, Uint8Array>();
  private readonly committed: CommittedRevision[] = [];
  private readonly leases = new Map<bigint, LeaseChange>();
  private groupRevision: number;
  // The current request's part, undone by abortRequest.
  private requestRevision: number | undefined;
  private requestEvents: WatchEvent[] = [];
  private requestLeases = new Map<bigint, LeaseChange>();
  private requestPending: string[] = [];
  private opsMark = 0;
  private indexMark = 0;

  constructor(
    private readonly reads: WriterReads,
    revision: number,
    private readonly leaseExists: (id: bigint) => boolean,
  ) {
    this.groupRevision = revision;
  }

  /** The revision reads in this request see: the last one written so far. */
  get revision(): number {
    return this.requestRevision ?? this.groupRevision;
  }

  beginRequest(): void {
    this.requestRevision = undefined;
    this.requestEvents = [];
    this.requestLeases = new Map();
    this.requestPending = [];
    this.opsMark = this.ops.length;
    this.indexMark = this.reads.index.mark();
  }

  abortRequest(): void {
    this.ops.length = this.opsMark;
    for (const id of this.requestPending) this.pending.delete(id);
    this.reads.index.rollback(this.indexMark);
    this.beginRequest();
  }

  endRequest(): void {
    for (const [id, change] of this.requestLeases) this.leases.set(id, change);
    if (this.requestRevision !== undefined) {
      this.groupRevision = this.requestRevision;
      this.committed.push({ revision: this.requestRevision, events: this.requestEvents });
    }
    this.beginRequest();
  }

  /** Everything to write atomically, with the new revision recorded. */
  finish(): GroupResult {
    if (this.committed.length > 0) {
      this.ops.push({ key: metaKey(metaNames.revision), value: encodeUint64(this.groupRevision) });
    }
    return { ops: this.ops, revisions: this.committed, leases: [...this.leases.values()], revision: this.groupRevision };
  }

  hasLease(id: bigint): boolean {
    const staged = this.requestLeases.get(id) ?? this.leases.get(id);
    if (staged !== undefined) return staged.ttl !== undefined;
    return this.leaseExists(id);
  }

  /** The key's newest version, value included. */
  get(key: Uint8Array): KeyValue | undefined {
    const index = this.reads.index.get(key);
    return index === undefined ? undefined : this.current(index);
  }

  /** The key's create/mod revision, version and lease, from the index only. */
  meta(key: Uint8Array): KeyMeta | undefined {
    const index = this.reads.index.get(key);
    return index?.live === undefined ? undefined : this.metaOf(index);
  }

  /** A live key's create/mod revision, version and lease. */
  metaOf(index: KeyIndex): KeyMeta {
    const generation = index.live!;
    return {
      createRevision: generation.created,
      modRevision: generation.mains[generation.mains.length - 1]!,
      version: generation.version,
      lease: index.lease,
    };
  }

  /** Live keys in `range` at the newest revision, in key order. */
  liveKeys(range: KeyRange): KeyIndex[] {
    const found: KeyIndex[] = [];
    if (range.single) {
      const index = this.reads.index.get(range.start);
      if (index?.live !== undefined) found.push(index);
      return found;
    }
    this.reads.index.forRange(keyId(range.start), range.end === undefined ? undefined : keyId(range.end), (index) => {
      if (index.live !== undefined) found.push(index);
      return true;
    });
    return found;
  }

  /** The newest versions of live keys, values included. */
  current(index: KeyIndex): KeyValue | undefined {
    const generation = index.live;
    if (generation === undefined) return undefined;
    const last = generation.mains.length - 1;
    const [row] = this.reads.fetchRows([revisionKey(generation.mains[last]!, generation.subs[last]!, false)], this.pending);
    return decodeKeyValue(row!);
  }

  /** Rows of `range` at `revision` (at most the newest), with the group's own writes. */
  readRange(range: KeyRange, revision: number, limit: number, countAll: boolean): { rows: Uint8Array[]; count: number } {
    return this.reads.readRange(range, revision, limit, countAll, this.pending);
  }

  private nextRevision(): { main: number; sub: number } {
    if (this.requestRevision === undefined) this.requestRevision = this.groupRevision + 1;
    return { main: this.requestRevision, sub: this.requestEvents.length };
  }

  private stage(row: { rowKey: Buffer; bytes: Buffer }): void {
    this.ops.push({ key: row.rowKey, value: row.bytes });
    const id = row.rowKey.toString("latin1");
    this.pending.set(id, row.bytes);
    this.requestPending.push(id);
  }

  put(key: Uint8Array, value: Uint8Array, lease: bigint, previous: KeyValue | undefined): KeyValue {
    const at = this.nextRevision();
    const kv: KeyValue = {
      key,
      value,
      lease,
      createRevision: previous ? previous.createRevision : at.main,
      modRevision: at.main,
      version: previous ? previous.version + 1 : 1,
    };
    this.stage(writeVersion(this.opSink, kv, at.sub));
    this.reads.index.put(key, at.main, at.sub, lease);
    this.requestEvents.push({ type: "put", kv, prevKv: previous, sub: at.sub });
    return kv;
  }

  delete(previous: KeyValue): void {
    const at = this.nextRevision();
    const key = previous.key;
    const row = writeTombstone(this.opSink, key, at.main, at.sub);
    this.stage(row);
    this.reads.index.tombstone(key, at.main, at.sub);
    this.requestEvents.push({
      type: "delete",
      kv: { key, createRevision: 0, modRevision: at.main, version: 0, lease: 0n, value: new Uint8Array() },
      prevKv: previous,
      sub: at.sub,
    });
  }

  // writeVersion's sink; stage() records the row itself.
  private readonly opSink = { put: () => undefined };

  grantLease(id: bigint, ttl: number): void {
    this.ops.push({ key: leaseKey(id), value: encodeUint64(ttl) });
    this.requestLeases.set(id, { id, ttl });
  }

  revokeLease(id: bigint): void {
    this.ops.push({ key: leaseKey(id), value: undefined });
    this.requestLeases.set(id, { id, ttl: undefined });
  }

  /** A write outside the key space (meta), staged with the request. */
  putMeta(name: string, value: Uint8Array): void {
    this.ops.push({ key: metaKey(name), value });
  }
}
