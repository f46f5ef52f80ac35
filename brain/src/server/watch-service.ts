// The Watch RPC: one bidi stream per client carrying many watchers.
import { create } from "@bufbuild/protobuf";
import type { ServerDuplexStream } from "@grpc/grpc-js";
import {
  WatchCreateRequest_FilterType,
  WatchResponseSchema,
  type ResponseHeader,
  type WatchCreateRequest,
  type WatchRequest,
  type WatchResponse,
} from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import { keyRange, type WatchEvent } from "../mvcc/kv.js";
import type { MvccStore } from "../mvcc/store.js";
import type { Watcher, WatchHub } from "../watch/watch-hub.js";
import { encodeEvent, encodeWatchResponse, type EncodedMessage } from "./wire.js";

/** clientv3.InvalidWatchID: stream-wide progress, or a create that failed. */
const streamProgressId = -1n;

export interface WatchServiceOptions {
  /** Interval of progress notifications for watchers that asked for them. */
  progressNotifyIntervalMs: number;
  /** Responses above this size are split when the watcher allows fragments. */
  maxResponseBytes: number;
}

export function watchStreamHandler(
  store: MvccStore,
  hub: WatchHub,
  header: (revision: number) => ResponseHeader,
  headerBytes: (revision: number) => Uint8Array,
  options: WatchServiceOptions,
): (call: ServerDuplexStream<WatchRequest, WatchResponse | EncodedMessage>) => void {
  return (call) => new WatchStream(call, store, hub, header, headerBytes, options).start();
}

// An event goes to every watcher that matches it; encode it once per form.
const encodedEvents = new WeakMap<WatchEvent, { plain?: Uint8Array; withPrevKv?: Uint8Array }>();

function encodedEvent(event: WatchEvent, withPrevKv: boolean): Uint8Array {
  let forms = encodedEvents.get(event);
  if (!forms) encodedEvents.set(event, (forms = {}));
  if (withPrevKv) return (forms.withPrevKv ??= encodeEvent(event.type, event.kv, event.prevKv));
  return (forms.plain ??= encodeEvent(event.type, event.kv, undefined));
}

interface StreamWatcher {
  id: bigint;
  watcher: Watcher;
  progressNotify: boolean;
  fragment: boolean;
  prevKv: boolean;
}

class WatchStream {
  private readonly watchers = new Map<bigint, StreamWatcher>();
  private nextId = 0n;
  private progressPending = false;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly call: ServerDuplexStream<WatchRequest, WatchResponse | EncodedMessage>,
    private readonly store: MvccStore,
    private readonly hub: WatchHub,
    private readonly header: (revision: number) => ResponseHeader,
    private readonly headerBytes: (revision: number) => Uint8Array,
    private readonly options: WatchServiceOptions,
  ) {}

  start(): void {
    this.call.on("data", (request: WatchRequest) => this.handle(request));
    this.call.on("end", () => this.close(true));
    this.call.on("error", () => this.close(false));
    this.call.on("cancelled", () => this.close(false));
    this.timer = setInterval(() => this.notifyProgress(), this.options.progressNotifyIntervalMs);
    this.timer.unref();
  }

  private close(endStream: boolean): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    for (const { watcher } of this.watchers.values()) this.hub.remove(watcher);
    this.watchers.clear();
    if (endStream) this.call.end();
  }

  private send(response: WatchResponse | EncodedMessage): void {
    if (!this.closed) this.call.write(response);
  }

  private handle(request: WatchRequest): void {
    switch (request.requestUnion.case) {
      case "createRequest":
        return this.create(request.requestUnion.value);
      case "cancelRequest":
        return this.cancel(request.requestUnion.value.watchId);
      case "progressRequest":
        return this.requestProgress();
      default:
        return;
    }
  }

  private create(request: WatchCreateRequest): void {
    const current = this.store.revision;
    let id = request.watchId;
    if (id !== 0n && this.watchers.has(id)) {
      this.send(
        create(WatchResponseSchema, {
          header: this.header(current),
          watchId: streamProgressId,
          created: true,
          canceled: true,
          cancelReason: "mvcc: duplicate watch ID provided on the WatchStream",
        }),
      );
      return;
    }
    if (id === 0n) {
      while (this.watchers.has(this.nextId)) this.nextId++;
      id = this.nextId++;
    }
    // etcd reads an empty key as "\0", the smallest key.
    const key = request.key.length === 0 ? Uint8Array.of(0) : request.key;
    const start = request.startRevision > 0n ? Number(request.startRevision) : current + 1;
    const entry: StreamWatcher = {
      id,
      progressNotify: request.progressNotify,
      fragment: request.fragment,
      prevKv: request.prevKv,
      watcher: undefined as unknown as Watcher,
    };
    this.watchers.set(id, entry);
    this.send(create(WatchResponseSchema, { header: this.header(current), watchId: id, created: true }));
    entry.watcher = this.hub.add(
      {
        range: keyRange(key, request.rangeEnd),
        startRevision: start,
        noPut: request.filters.includes(WatchCreateRequest_FilterType.Noput),
        noDelete: request.filters.includes(WatchCreateRequest_FilterType.Nodelete),
        prevKv: request.prevKv,
      },
      {
        deliver: ({ events, revision }) => this.sendEvents(entry, events, revision),
        compacted: (compactRevision) => {
          this.watchers.delete(id);
          this.send(
            create(WatchResponseSchema, {
              // etcd leaves the revision of this response unset.
              header: this.header(0),
              watchId: id,
              canceled: true,
              compactRevision: BigInt(compactRevision),
            }),
          );
        },
        synced: () => {
          if (this.progressPending && this.allSynced()) this.sendStreamProgress();
        },
      },
    );
  }

  private cancel(id: bigint): void {
    const entry = this.watchers.get(id);
    if (!entry) return;
    this.hub.remove(entry.watcher);
    this.watchers.delete(id);
    this.send(create(WatchResponseSchema, { header: this.header(this.store.revision), watchId: id, canceled: true }));
  }

  private allSynced(): boolean {
    for (const { watcher } of this.watchers.values()) if (!watcher.synced) return false;
    return true;
  }

  /** WatchProgressRequest: answered once every watcher on the stream is synced. */
  private requestProgress(): void {
    if (this.allSynced()) this.sendStreamProgress();
    else this.progressPending = true;
  }

  private sendStreamProgress(): void {
    this.progressPending = false;
    this.send(create(WatchResponseSchema, { header: this.header(this.store.revision), watchId: streamProgressId }));
  }

  private notifyProgress(): void {
    for (const entry of this.watchers.values()) {
      if (entry.progressNotify && entry.watcher.synced) {
        this.send(create(WatchResponseSchema, { header: this.header(this.store.revision), watchId: entry.id }));
      }
    }
  }

  private sendEvents(entry: StreamWatcher, events: WatchEvent[], revision: number): void {
    const header = this.headerBytes(revision);
    const encoded = events.map((event) => encodedEvent(event, entry.prevKv));
    const size = encoded.reduce((total, event) => total + event.length, 0);
    if (!entry.fragment || encoded.length <= 1 || size <= this.options.maxResponseBytes) {
      this.send(encodeWatchResponse({ header, watchId: entry.id, events: encoded }));
      return;
    }
    // Split into fragments no larger than the limit (at least one event each);
    // every fragment but the last is flagged.
    let batch: Uint8Array[] = [];
    let batchSize = 0;
    const flush = (last: boolean) => {
      this.send(encodeWatchResponse({ header, watchId: entry.id, events: batch, fragment: !last }));
      batch = [];
      batchSize = 0;
    };
    for (const event of encoded) {
      if (batch.length > 0 && batchSize + event.length > this.options.maxResponseBytes) flush(false);
      batch.push(event);
      batchSize += event.length;
    }
    flush(true);
  }
}

