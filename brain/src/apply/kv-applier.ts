// etcd's KV semantics (Range, Put, DeleteRange, Txn, Compact) on brain's MVCC
// store. Requests and responses are etcd's own messages; validation, error
// messages and revision rules follow etcd's server.
import { create } from "@bufbuild/protobuf";
import {
  Compare_CompareResult,
  Compare_CompareTarget,
  DeleteRangeResponseSchema,
  PutResponseSchema,
  RangeRequest_SortOrder,
  RangeRequest_SortTarget,
  RangeResponseSchema,
  ResponseHeaderSchema,
  ResponseOpSchema,
  TxnResponseSchema,
  type Compare,
  type DeleteRangeRequest,
  type DeleteRangeResponse,
  type PutRequest,
  type PutResponse,
  type RangeRequest,
  type RangeResponse,
  type RequestOp,
  type ResponseHeader,
  type ResponseOp,
  type TxnRequest,
  type TxnResponse,
} from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import { KeyValueSchema, type KeyValue as KeyValueMessage } from "@wharf/proto/etcd/api/mvccpb/kv_pb.js";
import { errors } from "../errors.js";
import { compareBytes, inRange, isEmptyRange, keyRange, type KeyRange, type KeyValue } from "../mvcc/kv.js";
import { decodeKeyValue, encodeKeyValue, encodeRangeResponse, type EncodedMessage } from "../mvcc/kv-wire.js";
import type { MvccBackend } from "../mvcc/backend.js";
import type { KeyMeta, WriteContext } from "../mvcc/write-context.js";

export interface KvLimits {
  /** etcd's --max-txn-ops. */
  maxTxnOps: number;
}

export function toKeyValueMessage(kv: KeyValue, keysOnly = false): KeyValueMessage {
  return create(KeyValueSchema, {
    key: kv.key,
    value: keysOnly ? new Uint8Array() : kv.value,
    createRevision: BigInt(kv.createRevision),
    modRevision: BigInt(kv.modRevision),
    version: BigInt(kv.version),
    lease: kv.lease,
  });
}

/** Reads a Range request needs: either the committed store or a txn's view. */
interface RangeSource {
  revision: number;
  compactRevision: number;
  /** Stored KeyValue rows of live keys at `revision`, in key order, and the count. */
  read(range: KeyRange, revision: number, limit: number, countAll: boolean): { rows: Uint8Array[]; count: number };
}

export class KvApplier {
  constructor(
    private readonly store: MvccBackend,
    private readonly header: (revision: number) => ResponseHeader,
    private readonly headerBytes: (revision: number) => Uint8Array,
    private readonly limits: KvLimits,
  ) {}

  /** Range answers in wire format: lists are the hottest and largest responses. */
  /**
   * Looks up the key index and fetches the rows in one synchronous turn, at
   * the newest durable revision; rows are immutable, so that is consistent.
   */
  async range(request: RangeRequest): Promise<EncodedMessage> {
    checkRange(request);
    const store = this.store;
    if (!request.serializable) {
      // etcd's ReadIndex: a linearizable read waits for what is being committed.
      const pending = store.caughtUp();
      if (pending !== undefined) await pending;
    }
    const revision = store.revision;
    const source: RangeSource = {
      revision,
      compactRevision: store.compactRevision,
      read: (range, at, limit, countAll) => store.readRange(range, at, limit, countAll),
    };
    const outcome = executeRange(source, request);
    return encodeRangeResponse(this.headerBytes(revision), outcome.rows, outcome.more, outcome.count);
  }

  async put(request: PutRequest): Promise<PutResponse> {
    checkPut(request);
    return this.store.write(async (context) => {
      await checkPutPreconditions(context, request);
      const response = await executePut(context, request);
      response.header = this.header(context.revision);
      return response;
    });
  }

  async deleteRange(request: DeleteRangeRequest): Promise<DeleteRangeResponse> {
    checkDelete(request);
    return this.store.write(async (context) => {
      const response = await executeDelete(context, request);
      response.header = this.header(context.revision);
      return response;
    });
  }

  async txn(request: TxnRequest): Promise<TxnResponse> {
    checkTxn(request, this.limits.maxTxnOps);
    checkIntervals(request);
    return this.store.write(async (context) => {
      const branch = (await evaluateCompares(context, request.compare)) ? request.success : request.failure;
      await checkOps(context, this.store.compactRevision, branch);
      const response = await executeTxn(context, this.store.compactRevision, request, branch);
      response.header = this.header(context.revision);
      return response;
    });
  }
}

// --- validation (etcd's v3rpc checks, before anything is applied) ---

function checkRange(request: RangeRequest): void {
  if (request.key.length === 0) throw errors.emptyKey();
  if (!(request.sortOrder in RangeRequest_SortOrder)) throw errors.invalidSortOption();
  if (!(request.sortTarget in RangeRequest_SortTarget)) throw errors.invalidSortOption();
}

function checkPut(request: PutRequest): void {
  if (request.key.length === 0) throw errors.emptyKey();
  if (request.ignoreValue && request.value.length !== 0) throw errors.valueProvided();
  if (request.ignoreLease && request.lease !== 0n) throw errors.leaseProvided();
}

function checkDelete(request: DeleteRangeRequest): void {
  if (request.key.length === 0) throw errors.emptyKey();
}

function checkTxn(request: TxnRequest, maxTxnOps: number): void {
  const ops = Math.max(request.compare.length, request.success.length, request.failure.length);
  if (ops > maxTxnOps) throw errors.tooManyOps();
  for (const compare of request.compare) if (compare.key.length === 0) throw errors.emptyKey();
  for (const op of [...request.success, ...request.failure]) checkOp(op, maxTxnOps - ops);
}

function checkOp(op: RequestOp, maxTxnOps: number): void {
  switch (op.request.case) {
    case "requestRange":
      return checkRange(op.request.value);
    case "requestPut":
      return checkPut(op.request.value);
    case "requestDeleteRange":
      return checkDelete(op.request.value);
    case "requestTxn":
      return checkTxn(op.request.value, maxTxnOps);
    default:
      return;
  }
}

/**
 * etcd refuses a txn branch that writes one key twice (two puts, or a put
 * inside a deleted range); deleted ranges may overlap each other. A nested
 * txn's branches are checked against the enclosing writes, not each other.
 */
function checkIntervals(request: TxnRequest): void {
  collectWrites(request.success);
  collectWrites(request.failure);
}

interface Writes {
  puts: Uint8Array[];
  deletes: KeyRange[];
}

function collectWrites(ops: RequestOp[]): Writes {
  const writes: Writes = { puts: [], deletes: [] };
  for (const op of ops) {
    if (op.request.case === "requestDeleteRange") {
      const range = keyRange(op.request.value.key, op.request.value.rangeEnd);
      writes.deletes.push(range);
    }
  }
  const conflicts = (key: Uint8Array, against: Writes) =>
    against.puts.some((put) => compareBytes(put, key) === 0) || against.deletes.some((range) => inRange(range, key));
  for (const op of ops) {
    if (op.request.case === "requestPut") {
      const key = op.request.value.key;
      if (conflicts(key, writes)) throw errors.duplicateKey();
      writes.puts.push(key);
    } else if (op.request.case === "requestTxn") {
      const nested = [collectWrites(op.request.value.success), collectWrites(op.request.value.failure)];
      for (const inner of nested) {
        for (const key of inner.puts) if (conflicts(key, writes)) throw errors.duplicateKey();
        for (const range of inner.deletes) {
          if (writes.puts.some((put) => inRange(range, put))) throw errors.duplicateKey();
        }
      }
      for (const inner of nested) {
        writes.puts.push(...inner.puts);
        writes.deletes.push(...inner.deletes);
      }
    }
  }
  return writes;
}

/** Checks the chosen branch against state: leases, ignore_* keys, revisions. */
async function checkOps(context: WriteContext, compactRevision: number, ops: RequestOp[]): Promise<void> {
  for (const op of ops) {
    switch (op.request.case) {
      case "requestPut":
        await checkPutPreconditions(context, op.request.value);
        break;
      case "requestRange": {
        const revision = Number(op.request.value.revision);
        if (revision > context.revision) throw errors.futureRevision();
        if (revision > 0 && revision < compactRevision) throw errors.compacted();
        break;
      }
      case "requestTxn": {
        const nested = op.request.value;
        const branch = (await evaluateCompares(context, nested.compare)) ? nested.success : nested.failure;
        await checkOps(context, compactRevision, branch);
        break;
      }
      default:
        break;
    }
  }
}

async function checkPutPreconditions(context: WriteContext, request: PutRequest): Promise<void> {
  if (request.ignoreValue || request.ignoreLease) {
    if (context.meta(request.key) === undefined) throw errors.keyNotFound();
  }
  if (request.lease !== 0n && !context.hasLease(request.lease)) throw errors.leaseNotFound();
}

// --- execution ---

interface RangeOutcome {
  /** Encoded KeyValues, keys_only applied. */
  rows: Uint8Array[];
  more: boolean;
  count: number;
}

function toRangeResponse(outcome: RangeOutcome): RangeResponse {
  return create(RangeResponseSchema, {
    kvs: outcome.rows.map((row) => toKeyValueMessage(decodeKeyValue(row))),
    more: outcome.more,
    count: BigInt(outcome.count),
  });
}

function executeRange(source: RangeSource, request: RangeRequest): RangeOutcome {
  const requested = Number(request.revision);
  if (requested > source.revision) throw errors.futureRevision();
  if (requested > 0 && requested < source.compactRevision) throw errors.compacted();
  const revision = requested > 0 ? requested : source.revision;
  const range = keyRange(request.key, request.rangeEnd);
  const limit = Number(request.limit);

  let sortOrder = request.sortOrder;
  if (request.sortTarget !== RangeRequest_SortTarget.Key && sortOrder === RangeRequest_SortOrder.None) {
    sortOrder = RangeRequest_SortOrder.Ascend;
  }
  const filtered =
    request.minModRevision !== 0n ||
    request.maxModRevision !== 0n ||
    request.minCreateRevision !== 0n ||
    request.maxCreateRevision !== 0n;
  const needsAll = filtered || (sortOrder !== RangeRequest_SortOrder.None && !(sortOrder === RangeRequest_SortOrder.Ascend && request.sortTarget === RangeRequest_SortTarget.Key));
  // One more than the limit tells whether there is more.
  const fetch = request.countOnly ? 0 : limit > 0 && !needsAll ? limit + 1 : Number.POSITIVE_INFINITY;
  const result = isEmptyRange(range) ? { rows: [], count: 0 } : source.read(range, revision, fetch, true);
  if (request.countOnly) return { rows: [], more: false, count: result.count };
  if (!needsAll && !request.keysOnly) {
    // The common case: the stored rows are the response's KeyValues.
    const more = limit > 0 && result.rows.length > limit;
    return { rows: more ? result.rows.slice(0, limit) : result.rows, more, count: result.count };
  }

  let kvs = result.rows.map(decodeKeyValue);
  if (filtered) {
    const within = (value: number, min: bigint, max: bigint) =>
      (min === 0n || value >= Number(min)) && (max === 0n || value <= Number(max));
    kvs = kvs.filter(
      (kv) =>
        within(kv.modRevision, request.minModRevision, request.maxModRevision) &&
        within(kv.createRevision, request.minCreateRevision, request.maxCreateRevision),
    );
  }
  if (sortOrder !== RangeRequest_SortOrder.None) kvs = sortKvs(kvs, request.sortTarget, sortOrder);
  let more = false;
  if (limit > 0 && kvs.length > limit) {
    kvs = kvs.slice(0, limit);
    more = true;
  }
  return { rows: kvs.map((kv) => encodeKeyValue(kv, request.keysOnly)), more, count: result.count };
}

function sortKvs(kvs: KeyValue[], target: RangeRequest_SortTarget, order: RangeRequest_SortOrder): KeyValue[] {
  const byTarget: Record<RangeRequest_SortTarget, (a: KeyValue, b: KeyValue) => number> = {
    [RangeRequest_SortTarget.Key]: (a, b) => compareBytes(a.key, b.key),
    [RangeRequest_SortTarget.Version]: (a, b) => a.version - b.version,
    [RangeRequest_SortTarget.Create]: (a, b) => a.createRevision - b.createRevision,
    [RangeRequest_SortTarget.Mod]: (a, b) => a.modRevision - b.modRevision,
    [RangeRequest_SortTarget.Value]: (a, b) => compareBytes(a.value, b.value),
  };
  const compare = byTarget[target];
  // The list is in key order and the sort is stable, so ties stay in key
  // order in both directions, as etcd returns them.
  const direction = order === RangeRequest_SortOrder.Descend ? -1 : 1;
  return [...kvs].sort((a, b) => direction * compare(a, b));
}

async function executePut(context: WriteContext, request: PutRequest): Promise<PutResponse> {
  const previous = await context.get(request.key);
  const value = request.ignoreValue && previous ? previous.value : request.value;
  const lease = request.ignoreLease && previous ? previous.lease : request.lease;
  context.put(request.key, value, lease, previous);
  return create(PutResponseSchema, { prevKv: request.prevKv && previous ? toKeyValueMessage(previous) : undefined });
}

async function executeDelete(context: WriteContext, request: DeleteRangeRequest): Promise<DeleteRangeResponse> {
  const range = keyRange(request.key, request.rangeEnd);
  const doomed = isEmptyRange(range) ? [] : context.liveKeys(range).map((index) => context.current(index)!);
  for (const kv of doomed) context.delete(kv);
  return create(DeleteRangeResponseSchema, {
    deleted: BigInt(doomed.length),
    prevKvs: request.prevKv ? doomed.map((kv) => toKeyValueMessage(kv)) : [],
  });
}

async function evaluateCompares(context: WriteContext, compares: Compare[]): Promise<boolean> {
  for (const compare of compares) {
    if (!(await evaluateCompare(context, compare))) return false;
  }
  return true;
}

const absent: KeyMeta = { createRevision: 0, modRevision: 0, version: 0, lease: 0n };

/** Compares revisions, versions and leases from the key index; only a value compare reads values. */
async function evaluateCompare(context: WriteContext, compare: Compare): Promise<boolean> {
  const range = keyRange(compare.key, compare.rangeEnd);
  if (isEmptyRange(range)) return compare.target !== Compare_CompareTarget.Value && compareKv(compare, absent);
  if (compare.target === Compare_CompareTarget.Value) {
    // A missing key has no value to compare.
    const kvs = context.liveKeys(range).map((index) => context.current(index)!);
    return kvs.length > 0 && kvs.every((kv) => compareKv(compare, kv));
  }
  if (range.single) return compareKv(compare, context.meta(compare.key) ?? absent);
  const metas = context.liveKeys(range).map((index) => context.metaOf(index));
  // A missing key compares as all zeroes.
  if (metas.length === 0) return compareKv(compare, absent);
  return metas.every((meta) => compareKv(compare, meta));
}

function compareKv(compare: Compare, kv: KeyMeta & { value?: Uint8Array }): boolean {
  const union = compare.targetUnion;
  let result: number;
  switch (compare.target) {
    case Compare_CompareTarget.Value:
      result = compareBytes(kv.value ?? new Uint8Array(), union.case === "value" ? union.value : new Uint8Array());
      break;
    case Compare_CompareTarget.Version:
      result = compareNumbers(BigInt(kv.version), union.case === "version" ? union.value : 0n);
      break;
    case Compare_CompareTarget.Create:
      result = compareNumbers(BigInt(kv.createRevision), union.case === "createRevision" ? union.value : 0n);
      break;
    case Compare_CompareTarget.Mod:
      result = compareNumbers(BigInt(kv.modRevision), union.case === "modRevision" ? union.value : 0n);
      break;
    case Compare_CompareTarget.Lease:
      result = compareNumbers(kv.lease, union.case === "lease" ? union.value : 0n);
      break;
    default:
      return false;
  }
  switch (compare.result) {
    case Compare_CompareResult.Equal:
      return result === 0;
    case Compare_CompareResult.Greater:
      return result > 0;
    case Compare_CompareResult.Less:
      return result < 0;
    case Compare_CompareResult.NotEqual:
      return result !== 0;
    default:
      return false;
  }
}

function compareNumbers(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

async function executeTxn(
  context: WriteContext,
  compactRevision: number,
  request: TxnRequest,
  branch: RequestOp[],
): Promise<TxnResponse> {
  const succeeded = branch === request.success;
  const responses: ResponseOp[] = [];
  for (const op of branch) responses.push(await executeOp(context, compactRevision, op));
  return create(TxnResponseSchema, { succeeded, responses });
}

/** Sub-responses of a txn carry only a revision; a nested txn's carries none. */
function subHeader(revision: number): ResponseHeader {
  return create(ResponseHeaderSchema, { revision: BigInt(revision) });
}

async function executeOp(context: WriteContext, compactRevision: number, op: RequestOp): Promise<ResponseOp> {
  switch (op.request.case) {
    case "requestRange": {
      // Reads inside a txn see the txn's own earlier writes.
      const source: RangeSource = {
        revision: context.revision,
        compactRevision,
        read: (range, revision, limit, countAll) => context.readRange(range, revision, limit, countAll),
      };
      const response = toRangeResponse(executeRange(source, op.request.value));
      response.header = subHeader(context.revision);
      return create(ResponseOpSchema, { response: { case: "responseRange", value: response } });
    }
    case "requestPut": {
      const response = await executePut(context, op.request.value);
      response.header = subHeader(context.revision);
      return create(ResponseOpSchema, { response: { case: "responsePut", value: response } });
    }
    case "requestDeleteRange": {
      const response = await executeDelete(context, op.request.value);
      response.header = subHeader(context.revision);
      return create(ResponseOpSchema, { response: { case: "responseDeleteRange", value: response } });
    }
    case "requestTxn": {
      const nested = op.request.value;
      const branch = (await evaluateCompares(context, nested.compare)) ? nested.success : nested.failure;
      const response = await executeTxn(context, compactRevision, nested, branch);
      response.header = subHeader(0);
      return create(ResponseOpSchema, { response: { case: "responseTxn", value: response } });
    }
    default:
      return create(ResponseOpSchema, {});
  }
}
