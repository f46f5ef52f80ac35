// What a recorded client history holds: etcd KV requests and responses in a
// plain form the checker can compare cheaply. Keys and values are byte
// strings decoded as latin1 (one char per byte, so order and equality are the
// bytes' own), revisions are plain numbers (a test history stays far below
// 2^53).

export interface KeyValue {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
  version: number;
}

/** A key range as etcd reads it: `end` undefined is the single key, "\0" is every key from `key` on. */
export interface KeyRange {
  key: string;
  end?: string;
}

export type CompareTarget = "value" | "version" | "create" | "mod";
export type CompareResult = "equal" | "greater" | "less" | "not_equal";

export interface Compare {
  key: string;
  target: CompareTarget;
  result: CompareResult;
  /** A string for `value`, a number for the others. */
  operand: string | number;
}

export interface RangeRequest extends KeyRange {
  type: "range";
  limit?: number;
  /** A read at this past revision (0/undefined: the current one). */
  revision?: number;
  serializable?: boolean;
}

export interface PutRequest {
  type: "put";
  key: string;
  value: string;
  prevKv?: boolean;
}

export interface DeleteRequest extends KeyRange {
  type: "delete";
  prevKv?: boolean;
}

export type TxnOp = Omit<RangeRequest, "revision" | "serializable"> | PutRequest | DeleteRequest;

export interface TxnRequest {
  type: "txn";
  compare: Compare[];
  success: TxnOp[];
  failure: TxnOp[];
}

export type Request = RangeRequest | PutRequest | DeleteRequest | TxnRequest;

export interface RangeResult {
  type: "range";
  kvs: KeyValue[];
  count: number;
  more: boolean;
}

export interface PutResult {
  type: "put";
  prevKv?: KeyValue;
}

export interface DeleteResult {
  type: "delete";
  deleted: number;
  prevKvs: KeyValue[];
}

export type TxnOpResult = RangeResult | PutResult | DeleteResult;

export interface TxnResult {
  type: "txn";
  succeeded: boolean;
  responses: TxnOpResult[];
}

/** A response with the revision of its header. */
export type Response = (RangeResult | PutResult | DeleteResult | TxnResult) & { revision: number };

export interface Operation {
  /** Which sequential client issued it (serializable reads are checked for per-client monotonic revisions). */
  client: number;
  /** Monotonic clock, milliseconds, taken before the request left. */
  call: number;
  /** Taken after the response arrived; Infinity when the outcome is unknown. */
  return: number;
  request: Request;
  /** undefined: the call failed or timed out, so it may or may not have taken effect. */
  response?: Response;
  error?: string;
  /** When the client saw the failure (an operation wholly inside a downtime did not happen). */
  failedAt?: number;
  /** Which server answered (or not), when the history was recorded against several: its endpoint's index. */
  member?: number;
}

export interface WatchEvent {
  type: "put" | "delete";
  /** For a delete: the key and the deleting revision (value empty, version 0, as etcd sends it). */
  kv: KeyValue;
  prevKv?: KeyValue;
}

/**
 * One watch stream's worth of responses: a reconnect starts a new segment at the revision after the last one
 * seen. A response without events is a progress notification: every event at or below its revision was sent.
 */
export interface WatchSegment {
  startRevision: number;
  responses: Array<{ revision: number; events: WatchEvent[] }>;
  /** Why the stream ended early (error, cancel), if it did. */
  ended?: string;
  /** Which server the stream was open on, when there were several: its endpoint's index. */
  member?: number;
}

/** A watch from revision 1, possibly over several streams (reconnects). */
export interface WatchHistory {
  name: string;
  /** The keys watched; undefined: the whole key space. */
  range?: KeyRange;
  prevKv: boolean;
  segments: WatchSegment[];
}

export interface History {
  operations: Operation[];
  watches: WatchHistory[];
  /** Spans when no server process existed: an operation wholly inside one cannot have taken effect. */
  downtimes?: Array<{ from: number; to: number }>;
}

/** Whether a write request (or a txn with a write in either branch) could change the store. */
export function mayWrite(request: Request): boolean {
  if (request.type === "range") return false;
  if (request.type !== "txn") return true;
  return [...request.success, ...request.failure].some((op) => op.type !== "range");
}
