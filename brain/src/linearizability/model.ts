// etcd's KV semantics as a pure function of a small state: key → {value,
// createRevision, modRevision, version} plus the store's revision. The
// checker replays requests on it and compares what etcd would have answered
// with what the server did. Rules followed (etcd's server/etcdserver/txn and
// mvcc): every Put makes a new revision, a DeleteRange only when it deleted
// something, a Txn once for all its writes (its ranges see its own earlier
// writes); a compare on a missing key sees version/create/mod 0 and fails on
// value.
import type { Compare, KeyRange, KeyValue, Request, Response, TxnOp, TxnOpResult } from "./history.js";

export interface Entry {
  value: string;
  createRevision: number;
  modRevision: number;
  version: number;
  /** The operation that wrote this version (for explanations only; not part of equality). */
  writer: number;
}

export interface State {
  revision: number;
  /** Indexed like `KeySpace.keys`; undefined: the key does not exist. */
  entries: ReadonlyArray<Entry | undefined>;
  /** A hash of revision and entries, kept incrementally for memoization. */
  hash: number;
}

/** A watch event the model expects: what the store changed at one revision. */
export interface Change {
  type: "put" | "delete";
  kv: KeyValue;
  prevKv?: KeyValue;
}

export interface Outcome {
  state: State;
  response: Response;
  changes: Change[];
}

/** Every key a history can write, in byte order, so a key range is a run of indices. */
export class KeySpace {
  readonly keys: string[];
  private readonly ranges = new Map<string, number[]>();
  private readonly positions = new Map<string, number>();

  constructor(keys: Iterable<string>) {
    this.keys = [...new Set(keys)].sort(compareBytes);
    this.keys.forEach((key, index) => this.positions.set(key, index));
  }

  indexOf(key: string): number | undefined {
    return this.positions.get(key);
  }

  /** Indices of the keys in `range`, in key order. */
  indices(range: KeyRange): number[] {
    const id = range.end === undefined ? range.key : `${range.key}\u0001${range.end}`;
    let found = this.ranges.get(id);
    if (!found) {
      found = [];
      for (let i = 0; i < this.keys.length; i++) {
        if (inRange(this.keys[i]!, range)) found.push(i);
      }
      this.ranges.set(id, found);
    }
    return found;
  }

  initialState(): State {
    return { revision: 1, entries: new Array<Entry | undefined>(this.keys.length).fill(undefined), hash: hashRevision(1) };
  }
}

export function compareBytes(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function inRange(key: string, range: KeyRange): boolean {
  if (range.end === undefined || range.end === "") return key === range.key;
  if (key < range.key) return false;
  return range.end === "\0" || key < range.end;
}

/** The keys of every request in `requests`, written or read: the model's universe. */
export function keysOf(requests: Iterable<Request>): string[] {
  const keys: string[] = [];
  const visit = (op: TxnOp) => {
    if (op.type === "put") keys.push(op.key);
  };
  for (const request of requests) {
    if (request.type === "txn") {
      request.success.forEach(visit);
      request.failure.forEach(visit);
    } else visit(request);
  }
  return keys;
}

/** Applies `request` (issued as operation `writer`) to `state`: etcd's answer and the next state. */
export function apply(space: KeySpace, state: State, request: Request, writer: number): Outcome {
  const next = new Writer(space, state, writer);
  if (request.type === "txn") {
    const succeeded = request.compare.every((compare) => holds(space, state, compare));
    const responses = (succeeded ? request.success : request.failure).map((op) => next.run(op));
    return next.finish({ type: "txn", succeeded, responses });
  }
  if (request.type === "range" && request.revision) {
    // A read of the past: the model keeps no history; its content is checked against the replay instead.
    return next.finish({ type: "range", kvs: [], count: 0, more: false });
  }
  return next.finish(next.run(request));
}

/** Whether a write request, if it ran on `state`, would change the store. */
export function changesStore(space: KeySpace, state: State, request: Request): boolean {
  if (request.type === "range") return false;
  if (request.type === "put") return true;
  const exists = (op: TxnOp) =>
    op.type === "put" || (op.type === "delete" && space.indices(op).some((index) => state.entries[index] !== undefined));
  if (request.type === "delete") return exists(request);
  const succeeded = request.compare.every((compare) => holds(space, state, compare));
  return (succeeded ? request.success : request.failure).some(exists);
}

export function holds(space: KeySpace, state: State, compare: Compare): boolean {
  const index = space.indexOf(compare.key);
  const entry = index === undefined ? undefined : state.entries[index];
  let order: number;
  switch (compare.target) {
    case "value":
      if (!entry) return false;
      order = compareBytes(entry.value, compare.operand as string);
      break;
    case "version":
      order = Math.sign((entry?.version ?? 0) - (compare.operand as number));
      break;
    case "create":
      order = Math.sign((entry?.createRevision ?? 0) - (compare.operand as number));
      break;
    case "mod":
      order = Math.sign((entry?.modRevision ?? 0) - (compare.operand as number));
      break;
  }
  switch (compare.result) {
    case "equal":
      return order === 0;
    case "not_equal":
      return order !== 0;
    case "greater":
      return order > 0;
    case "less":
      return order < 0;
  }
}

export function toKeyValue(space: KeySpace, index: number, entry: Entry): KeyValue {
  return {
    key: space.keys[index]!,
    value: entry.value,
    createRevision: entry.createRevision,
    modRevision: entry.modRevision,
    version: entry.version,
  };
}

/** A copy-on-write view of one state while a request runs on it. */
class Writer {
  private entries: Array<Entry | undefined> | undefined;
  private hash: number;
  private readonly changes: Change[] = [];
  private readonly revision: number;

  constructor(
    private readonly space: KeySpace,
    private readonly base: State,
    private readonly writer: number,
  ) {
    this.hash = base.hash;
    this.revision = base.revision + 1;
  }

  private get(index: number): Entry | undefined {
    return (this.entries ?? this.base.entries)[index];
  }

  private set(index: number, entry: Entry | undefined): void {
    this.entries ??= [...this.base.entries];
    this.hash = (this.hash - hashEntry(index, this.entries[index]) + hashEntry(index, entry)) | 0;
    this.entries[index] = entry;
  }

  run(op: TxnOp): TxnOpResult {
    const { space } = this;
    if (op.type === "range") {
      const kvs: KeyValue[] = [];
      for (const index of space.indices(op)) {
        const entry = this.get(index);
        if (entry) kvs.push(toKeyValue(space, index, entry));
      }
      const count = kvs.length;
      const limit = op.limit ?? 0;
      const more = limit > 0 && count > limit;
      return { type: "range", kvs: more ? kvs.slice(0, limit) : kvs, count, more };
    }
    if (op.type === "put") {
      const index = space.indexOf(op.key)!;
      const previous = this.get(index);
      const entry: Entry = {
        value: op.value,
        createRevision: previous ? previous.createRevision : this.revision,
        modRevision: this.revision,
        version: previous ? previous.version + 1 : 1,
        writer: this.writer,
      };
      this.set(index, entry);
      const prevKv = previous ? toKeyValue(space, index, previous) : undefined;
      this.changes.push({ type: "put", kv: toKeyValue(space, index, entry), ...(prevKv ? { prevKv } : {}) });
      return op.prevKv && prevKv ? { type: "put", prevKv } : { type: "put" };
    }
    const prevKvs: KeyValue[] = [];
    for (const index of space.indices(op)) {
      const previous = this.get(index);
      if (!previous) continue;
      const prevKv = toKeyValue(space, index, previous);
      prevKvs.push(prevKv);
      this.set(index, undefined);
      this.changes.push({
        type: "delete",
        kv: { key: prevKv.key, value: "", createRevision: 0, modRevision: this.revision, version: 0 },
        prevKv,
      });
    }
    return { type: "delete", deleted: prevKvs.length, prevKvs: op.prevKv ? prevKvs : [] };
  }

  finish(result: TxnOpResult | { type: "txn"; succeeded: boolean; responses: TxnOpResult[] }): Outcome {
    if (!this.entries) return { state: this.base, response: { ...result, revision: this.base.revision }, changes: [] };
    const hash = (this.hash - hashRevision(this.base.revision) + hashRevision(this.revision)) | 0;
    const state: State = { revision: this.revision, entries: this.entries, hash };
    return { state, response: { ...result, revision: this.revision }, changes: this.changes };
  }
}

function mix(value: number): number {
  let h = value | 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) | 0;
}

function hashRevision(revision: number): number {
  return mix(revision ^ 0x5bd1e995);
}

function hashEntry(index: number, entry: Entry | undefined): number {
  if (!entry) return 0;
  // modRevision pins the version written (one write per key per revision); the rest guards against a bad server.
  return mix(mix(index * 0x9e3779b1 + entry.modRevision) ^ mix(entry.createRevision * 31 + entry.version) ^ entry.value.length);
}

/** Exact equality of two states (the hash only narrows the candidates). */
export function sameState(a: State, b: State): boolean {
  if (a === b) return true;
  if (a.revision !== b.revision || a.hash !== b.hash) return false;
  for (let i = 0; i < a.entries.length; i++) {
    const x = a.entries[i];
    const y = b.entries[i];
    if (x === y) continue;
    if (!x || !y) return false;
    if (x.value !== y.value || x.modRevision !== y.modRevision || x.createRevision !== y.createRevision || x.version !== y.version) {
      return false;
    }
  }
  return true;
}
