import type { WriteOp } from "../storage/engine.js";
import {
  currentKey,
  encodeUint64,
  historyKey,
  leaseKey,
  logKey,
  metaKey,
} from "../storage/keys.js";
import { compareBytes, inRange, isEmptyRange, keyId, type KeyRange, type KeyValue, type WatchEvent } from "./kv.js";
import { encodeLogEntry, encodeRecord, EventKind, tombstoneRecord } from "./record.js";
import { metaNames, type StoreView } from "./store-view.js";

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

interface Staged {
  ops: WriteOp[];
  keys: Map<string, KeyValue | null>;
  events: WatchEvent[];
  leases: Map<bigint, LeaseChange>;
  revision: number | undefined;
}

const emptyStage = (): Staged => ({ ops: [], keys: new Map(), events: [], leases: new Map(), revision: undefined });

/**
 * The state a group of write requests is evaluated against: the committed
 * store (one view) plus everything earlier requests of the group wrote. Each
 * request stages its writes separately, so a request that fails leaves no
 * trace; `endRequest` folds a successful one into the group.
 */
export class WriteContext {
  private readonly group = emptyStage();
  private request = emptyStage();
  private groupRevision: number;
  private readonly committed: CommittedRevision[] = [];

  constructor(
    private readonly view: StoreView,
    revision: number,
    private readonly leaseExists: (id: bigint) => boolean,
  ) {
    this.groupRevision = revision;
  }

  /** The revision reads in this request see: the last one written so far. */
  get revision(): number {
    return this.request.revision ?? this.groupRevision;
  }

  beginRequest(): void {
    this.request = emptyStage();
  }

  abortRequest(): void {
    this.request = emptyStage();
  }

  endRequest(): void {
    const stage = this.request;
    this.group.ops.push(...stage.ops);
    for (const [id, kv] of stage.keys) this.group.keys.set(id, kv);
    for (const [id, change] of stage.leases) this.group.leases.set(id, change);
    if (stage.revision !== undefined) {
      this.groupRevision = stage.revision;
      this.committed.push({ revision: stage.revision, events: stage.events });
    }
    this.request = emptyStage();
  }

  /** Everything to write atomically, with the new revision recorded. */
  finish(): { ops: WriteOp[]; revisions: CommittedRevision[]; leases: LeaseChange[]; revision: number } {
    const ops = [...this.group.ops];
    if (this.committed.length > 0) {
      ops.push({ type: "put", key: metaKey(metaNames.revision), value: encodeUint64(this.groupRevision) });
    }
    return { ops, revisions: this.committed, leases: [...this.group.leases.values()], revision: this.groupRevision };
  }

  hasLease(id: bigint): boolean {
    const staged = this.request.leases.get(id) ?? this.group.leases.get(id);
    if (staged !== undefined) return staged.ttl !== undefined;
    return this.leaseExists(id);
  }

  async get(key: Uint8Array): Promise<KeyValue | undefined> {
    const id = keyId(key);
    const staged = this.request.keys.has(id) ? this.request.keys.get(id) : this.group.keys.get(id);
    if (staged !== undefined) return staged ?? undefined;
    return this.view.getCurrent(key);
  }

  /** Live keys in `range` now, including this group's and this request's writes. */
  async rangeCurrent(range: KeyRange): Promise<KeyValue[]> {
    if (isEmptyRange(range)) return [];
    if (range.single) {
      const kv = await this.get(range.start);
      return kv ? [kv] : [];
    }
    const byKey = new Map<string, KeyValue>();
    const { kvs } = await this.view.range(range, this.view.revision);
    for (const kv of kvs) byKey.set(keyId(kv.key), kv);
    for (const stage of [this.group, this.request]) {
      for (const [id, kv] of stage.keys) {
        if (kv === null) {
          byKey.delete(id);
        } else if (inRange(range, kv.key)) {
          byKey.set(id, kv);
        }
      }
    }
    return [...byKey.values()].sort((a, b) => compareBytes(a.key, b.key));
  }

  /** Reads at an older revision go to the committed store. */
  readAt(range: KeyRange, revision: number, limit?: number, countAll?: boolean) {
    return this.view.range(range, revision, limit, countAll);
  }

  private nextRevision(): { main: number; sub: number } {
    if (this.request.revision === undefined) this.request.revision = this.groupRevision + 1;
    return { main: this.request.revision, sub: this.request.events.length };
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
    const record = encodeRecord(kv);
    this.request.ops.push(
      { type: "put", key: currentKey(key), value: record },
      { type: "put", key: historyKey(key, at), value: record },
      { type: "put", key: logKey(at), value: encodeLogEntry(EventKind.Put, key) },
    );
    this.request.keys.set(keyId(key), kv);
    this.request.events.push({ type: "put", kv, prevKv: previous, sub: at.sub });
    return kv;
  }

  delete(previous: KeyValue): void {
    const at = this.nextRevision();
    const key = previous.key;
    this.request.ops.push(
      { type: "del", key: currentKey(key) },
      { type: "put", key: historyKey(key, at), value: tombstoneRecord(at.main) },
      { type: "put", key: logKey(at), value: encodeLogEntry(EventKind.Delete, key) },
    );
    this.request.keys.set(keyId(key), null);
    this.request.events.push({
      type: "delete",
      kv: { key, createRevision: 0, modRevision: at.main, version: 0, lease: 0n, value: new Uint8Array() },
      prevKv: previous,
      sub: at.sub,
    });
  }

  grantLease(id: bigint, ttl: number): void {
    this.request.ops.push({ type: "put", key: leaseKey(id), value: encodeUint64(ttl) });
    this.request.leases.set(id, { id, ttl });
  }

  revokeLease(id: bigint): void {
    this.request.ops.push({ type: "del", key: leaseKey(id) });
    this.request.leases.set(id, { id, ttl: undefined });
  }

  /** A write outside the key space (meta), staged with the request. */
  putMeta(name: string, value: Uint8Array): void {
    this.request.ops.push({ type: "put", key: metaKey(name), value });
  }
}
