// Records a history against a live etcd v3 server: concurrent sequential
// clients over several gRPC connections issue the workload's requests and
// log each with its call and return times (monotonic clock) and what came
// back; watches from revision 1 (the whole key space, and a prefix) log every event and progress notification,
// reconnecting from the revision after the last one seen when their stream
// breaks. A failed or timed-out request is logged as "may or may not have
// happened". Against several endpoints (the members of a replica set) the
// connections are spread over them, each pinned to one member; a client
// whose request failed, and a watch whose stream broke, carry on through a
// connection to the next member, as etcd's client moves to another endpoint.
import { create } from "@bufbuild/protobuf";
import type {
  RequestOpSchema} from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import {
  Compare_CompareResult,
  Compare_CompareTarget,
  DeleteRangeRequestSchema,
  PutRequestSchema,
  RangeRequestSchema,
  TxnRequestSchema,
  WatchRequestSchema,
  type DeleteRangeResponse,
  type PutResponse,
  type RangeResponse,
  type ResponseOp,
  type TxnResponse,
  type WatchRequest,
  type WatchResponse,
} from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import { Event_EventType, type KeyValue as KeyValueMessage } from "@wharf/proto/etcd/api/mvccpb/kv_pb.js";
import type { DescMessage, MessageInitShape } from "@bufbuild/protobuf";
import type { ClientDuplexStream } from "@grpc/grpc-js";
import { etcdServices, waitFor, type RawEtcdClient } from "@wharf/testkit";
import type { Compare, History, KeyRange, KeyValue, Operation, Request, Response, TxnOp, TxnOpResult, WatchHistory, WatchSegment } from "./history.js";
import { ClientWorkload, prefixEnd, type WorkloadOptions } from "./workload.js";

export interface RecordOptions extends WorkloadOptions {
  endpoint: string;
  /**
   * Every member's endpoint (`endpoint` is then ignored): connection i goes to
   * member i mod n. A client that moves to another member after a failure is
   * logged as a new client from then on, since only what one member answered
   * must never go back in revision (a serializable read elsewhere may be older).
   */
  endpoints?: string[];
  /** Opens a client on a connection of its own (testkit's rawEtcdClient with channel options). */
  connect: (endpoint: string, channelOptions: Record<string, number>) => RawEtcdClient;
  clients: number;
  connections: number;
  /** Requests in all, over all clients. */
  operations: number;
  /**
   * Watches from revision 1, started at these fractions of the run (a later one catches up from storage).
   * Default: the whole key space with prev_kv from the start, the whole key space without prev_kv a third of
   * the way in, and the "a/" keys with prev_kv two thirds of the way in.
   */
  watches?: WatchSpec[];
  /** Run once, when this many requests have been issued (e.g. kill and restart the server); returns when no process served. */
  fault?: { atOperation: number; inject: () => Promise<{ from: number; to: number }> };
  /** A request that takes longer is abandoned as "unknown". Default 10 s. */
  requestTimeoutMs?: number;
}

const encoder = (text: string) => Buffer.from(text, "latin1");
const decode = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");
const number = (value: bigint) => Number(value);

// Short reconnect backoffs: after a restart the clients should find the server again within ~0.2 s.
const channelOptions = {
  "grpc.use_local_subchannel_pool": 1,
  "grpc.initial_reconnect_backoff_ms": 50,
  "grpc.min_reconnect_backoff_ms": 50,
  "grpc.max_reconnect_backoff_ms": 200,
};

export interface WatchSpec {
  /** When to start, as a fraction of the requests issued. */
  at: number;
  prevKv: boolean;
  /** A key prefix (after the workload's prefix); undefined: the whole key space. */
  prefix?: string;
}

const defaultWatches: WatchSpec[] = [
  { at: 0, prevKv: true },
  { at: 1 / 3, prevKv: false },
  { at: 2 / 3, prevKv: true, prefix: "a/" },
];

export async function recordHistory(options: RecordOptions): Promise<History> {
  const endpoints = options.endpoints ?? [options.endpoint];
  const connections = Array.from({ length: options.connections }, (_, i) =>
    options.connect(endpoints[i % endpoints.length]!, channelOptions),
  );
  // The next connection on another member (the same one when there is one member).
  const failover = (connection: number) => (endpoints.length > 1 ? (connection + 1) % connections.length : connection);
  const memberOf = (connection: number) => (endpoints.length > 1 ? { member: connection % endpoints.length } : {});
  const operations: Operation[] = [];
  const downtimes: History["downtimes"] = [];
  const watchers: Watcher[] = [];
  const timeoutMs = options.requestTimeoutMs ?? 10_000;
  let progressTimer: NodeJS.Timeout | undefined;
  try {
    // The model starts from an empty store at revision 1.
    const first = await send(connections[0]!, { type: "range", key: "\0", end: "\0" }, timeoutMs);
    if (first.revision !== 1 || first.type !== "range" || first.count !== 0) {
      throw new Error(`the server is not empty (revision ${first.revision}): the model needs a fresh store`);
    }
    const specs = options.watches ?? defaultWatches;
    const startWatches = () => {
      while (watchers.length < specs.length && issued >= specs[watchers.length]!.at * options.operations) {
        const spec = specs[watchers.length]!;
        const range = spec.prefix === undefined ? undefined : { key: options.prefix + spec.prefix, end: prefixEnd(options.prefix + spec.prefix) };
        watchers.push(new Watcher(`w${watchers.length}`, connections, watchers.length % connections.length, failover, memberOf, spec.prevKv, range));
      }
    };
    let issued = 0;
    startWatches();
    // Progress requests now and then: each answer promises that every event up to its revision was sent.
    progressTimer = setInterval(() => watchers.forEach((watcher) => watcher.requestProgress()), 200);
    let faultDone: Promise<void> | undefined;
    // Ids of clients that moved to another member; the final read is client `options.clients`.
    let nextSession = options.clients + 1;
    const client = async (id: number) => {
      const workload = new ClientWorkload(id, options);
      let at = id % connections.length;
      let session = id;
      let backoff = 0;
      while (issued < options.operations) {
        issued++;
        startWatches();
        if (options.fault && !faultDone && issued >= options.fault.atOperation) {
          faultDone = options.fault.inject().then((downtime) => void downtimes.push(downtime));
        }
        const request = workload.next();
        const call = performance.now();
        try {
          const response = await send(connections[at]!, request, timeoutMs);
          operations.push({ client: session, call, return: performance.now(), request, response, ...memberOf(at) });
          workload.observe(request, response);
          backoff = 0;
        } catch (error) {
          operations.push({ client: session, call, return: Infinity, failedAt: performance.now(), request, error: describeError(error), ...memberOf(at) });
          if (failover(at) !== at) {
            at = failover(at);
            session = nextSession++;
          }
          // Back off while the server is away, so the history does not fill with failed requests.
          backoff = Math.min(400, backoff ? backoff * 2 : 25);
          await new Promise((resolve) => setTimeout(resolve, backoff));
        }
      }
    };
    await Promise.all(Array.from({ length: options.clients }, (_, id) => client(id)));
    await faultDone;
    // A last read of everything pins the final revision; retried until the server answers.
    let finalRevision = 0;
    let finalAt = 0;
    await waitFor(
      async () => {
        const request: Request = { type: "range", key: "\0", end: "\0" };
        const call = performance.now();
        try {
          const response = await send(connections[finalAt]!, request, timeoutMs);
          operations.push({ client: options.clients, call, return: performance.now(), request, response });
          finalRevision = response.revision;
          return true;
        } catch (error) {
          operations.push({ client: options.clients, call, return: Infinity, failedAt: performance.now(), request, error: describeError(error) });
          finalAt = failover(finalAt);
          return false;
        }
      },
      30_000,
      "the server to answer the final read",
    );
    // Every watch must reach the final revision; if one does not, the checker reports where it stopped.
    // (A prefix watch may have no event at the final revision: a progress notification tells it is there.)
    await waitFor(
      async () => {
        watchers.forEach((watcher) => watcher.requestProgress());
        return watchers.every((watcher) => watcher.lastRevision >= finalRevision);
      },
      10_000,
      "the watches to reach the final revision",
      100,
    ).catch(() => undefined);
    clearInterval(progressTimer);
    return { operations, watches: watchers.map((watcher) => watcher.history), downtimes };
  } finally {
    clearInterval(progressTimer);
    for (const watcher of watchers) watcher.stop();
    for (const connection of connections) connection.close();
  }
}

function describeError(error: unknown): string {
  const { code, details, message } = error as { code?: number; details?: string; message?: string };
  return code !== undefined ? `gRPC ${code}: ${details ?? message}` : String(message ?? error);
}

async function send(client: RawEtcdClient, request: Request, timeoutMs: number): Promise<Response> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no response in ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([call(client, request), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function call(client: RawEtcdClient, request: Request): Promise<Response> {
  const { KV } = etcdServices;
  switch (request.type) {
    case "range": {
      const response = (await client.call(KV, "Range", RangeRequestSchema, rangeRequest(request))) as unknown as RangeResponse;
      return { ...rangeResult(response), revision: number(response.header!.revision) };
    }
    case "put": {
      const response = (await client.call(KV, "Put", PutRequestSchema, putRequest(request))) as unknown as PutResponse;
      return { ...putResult(response), revision: number(response.header!.revision) };
    }
    case "delete": {
      const response = (await client.call(KV, "DeleteRange", DeleteRangeRequestSchema, deleteRequest(request))) as unknown as DeleteRangeResponse;
      return { ...deleteResult(response), revision: number(response.header!.revision) };
    }
    case "txn": {
      const response = (await client.call(KV, "Txn", TxnRequestSchema, {
        compare: request.compare.map(compareMessage),
        success: request.success.map(requestOp),
        failure: request.failure.map(requestOp),
      })) as unknown as TxnResponse;
      return {
        type: "txn",
        succeeded: response.succeeded,
        responses: response.responses.map(responseOp),
        revision: number(response.header!.revision),
      };
    }
  }
}

type Init<T extends DescMessage> = MessageInitShape<T>;

function rangeRequest(request: Extract<TxnOp, { type: "range" }> & { revision?: number; serializable?: boolean }): Init<typeof RangeRequestSchema> {
  return {
    key: encoder(request.key),
    ...(request.end !== undefined ? { rangeEnd: encoder(request.end) } : {}),
    ...(request.limit ? { limit: BigInt(request.limit) } : {}),
    ...(request.revision ? { revision: BigInt(request.revision) } : {}),
    ...(request.serializable ? { serializable: true } : {}),
  };
}

function putRequest(request: Extract<TxnOp, { type: "put" }>): Init<typeof PutRequestSchema> {
  return { key: encoder(request.key), value: encoder(request.value), prevKv: request.prevKv ?? false };
}

function deleteRequest(request: Extract<TxnOp, { type: "delete" }>): Init<typeof DeleteRangeRequestSchema> {
  return { key: encoder(request.key), ...(request.end !== undefined ? { rangeEnd: encoder(request.end) } : {}), prevKv: request.prevKv ?? false };
}

function requestOp(op: TxnOp): Init<typeof RequestOpSchema> {
  switch (op.type) {
    case "range":
      return { request: { case: "requestRange", value: rangeRequest(op) } };
    case "put":
      return { request: { case: "requestPut", value: putRequest(op) } };
    case "delete":
      return { request: { case: "requestDeleteRange", value: deleteRequest(op) } };
  }
}

function compareMessage(compare: Compare) {
  const result = {
    equal: Compare_CompareResult.Equal,
    greater: Compare_CompareResult.Greater,
    less: Compare_CompareResult.Less,
    not_equal: Compare_CompareResult.NotEqual,
  }[compare.result];
  const key = encoder(compare.key);
  switch (compare.target) {
    case "value":
      return { result, key, target: Compare_CompareTarget.Value, targetUnion: { case: "value" as const, value: encoder(compare.operand as string) } };
    case "version":
      return { result, key, target: Compare_CompareTarget.Version, targetUnion: { case: "version" as const, value: BigInt(compare.operand) } };
    case "create":
      return { result, key, target: Compare_CompareTarget.Create, targetUnion: { case: "createRevision" as const, value: BigInt(compare.operand) } };
    case "mod":
      return { result, key, target: Compare_CompareTarget.Mod, targetUnion: { case: "modRevision" as const, value: BigInt(compare.operand) } };
  }
}

function keyValue(kv: KeyValueMessage): KeyValue {
  return {
    key: decode(kv.key),
    value: decode(kv.value),
    createRevision: number(kv.createRevision),
    modRevision: number(kv.modRevision),
    version: number(kv.version),
  };
}

function rangeResult(response: RangeResponse): TxnOpResult {
  return { type: "range", kvs: response.kvs.map(keyValue), count: number(response.count), more: response.more };
}

function putResult(response: PutResponse): TxnOpResult {
  return response.prevKv ? { type: "put", prevKv: keyValue(response.prevKv) } : { type: "put" };
}

function deleteResult(response: DeleteRangeResponse): TxnOpResult {
  return { type: "delete", deleted: number(response.deleted), prevKvs: response.prevKvs.map(keyValue) };
}

function responseOp(op: ResponseOp): TxnOpResult {
  switch (op.response.case) {
    case "responseRange":
      return rangeResult(op.response.value);
    case "responsePut":
      return putResult(op.response.value);
    case "responseDeleteRange":
      return deleteResult(op.response.value);
    default:
      throw new Error(`unexpected txn response ${op.response.case}`);
  }
}

/** One watch from revision 1, resumed after the last revision seen whenever its stream breaks. */
class Watcher {
  readonly history: WatchHistory;
  lastRevision = 0;
  private stopped = false;
  private stream: ClientDuplexStream<WatchRequest, WatchResponse> | undefined;
  private created = false;

  constructor(
    name: string,
    private readonly connections: RawEtcdClient[],
    /** The connection in use; a broken stream resumes on `failover(at)`. */
    private at: number,
    private readonly failover: (at: number) => number,
    private readonly memberOf: (at: number) => { member?: number },
    private readonly prevKv: boolean,
    private readonly range: KeyRange | undefined,
  ) {
    this.history = { name, prevKv, ...(range ? { range } : {}), segments: [] };
    this.open();
  }

  requestProgress(): void {
    if (this.created && !this.stopped) this.stream?.write(create(WatchRequestSchema, { requestUnion: { case: "progressRequest", value: {} } }));
  }

  private open(): void {
    if (this.stopped) return;
    const segment: WatchSegment = { startRevision: this.lastRevision + 1, responses: [], ...this.memberOf(this.at) };
    this.history.segments.push(segment);
    const stream = this.connections[this.at]!.stream<WatchRequest, WatchResponse>(etcdServices.Watch, "Watch");
    this.stream = stream;
    this.created = false;
    let ended = false;
    const end = (reason: string) => {
      if (ended) return;
      ended = true;
      this.created = false;
      segment.ended = reason;
      stream.removeAllListeners("data");
      stream.cancel();
      this.at = this.failover(this.at);
      if (!this.stopped) setTimeout(() => this.open(), 100);
    };
    stream.on("data", (response: WatchResponse) => {
      if (response.canceled) return end(`canceled: ${response.cancelReason} (compact revision ${response.compactRevision})`);
      if (response.created) {
        this.created = true;
        return;
      }
      if (response.events.length === 0) {
        const revision = number(response.header?.revision ?? 0n);
        if (response.compactRevision === 0n && revision > 0) {
          segment.responses.push({ revision, events: [] });
          this.lastRevision = Math.max(this.lastRevision, revision);
        }
        return;
      }
      const events = response.events.map((event) => ({
        type: event.type === Event_EventType.Delete ? ("delete" as const) : ("put" as const),
        kv: keyValue(event.kv!),
        ...(event.prevKv ? { prevKv: keyValue(event.prevKv) } : {}),
      }));
      segment.responses.push({ revision: number(response.header!.revision), events });
      this.lastRevision = Math.max(this.lastRevision, events[events.length - 1]!.kv.modRevision);
    });
    stream.on("error", (error) => end(describeError(error)));
    stream.on("end", () => end("stream ended"));
    stream.write(
      create(WatchRequestSchema, {
        requestUnion: {
          case: "createRequest",
          value: {
            key: encoder(this.range?.key ?? "\0"),
            rangeEnd: encoder(this.range?.end ?? "\0"),
            startRevision: BigInt(segment.startRevision),
            prevKv: this.prevKv,
          },
        },
      }),
    );
  }

  stop(): void {
    this.stopped = true;
    this.stream?.removeAllListeners("data");
    this.stream?.on("error", () => undefined);
    this.stream?.cancel();
  }
}
