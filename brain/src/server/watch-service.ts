// The Watch RPC: one bidi stream per client carrying many watchers.
import {
  WatchCreateRequest_FilterType,
  type ResponseHeader,
  type WatchCreateRequest,
  type WatchRequest,
} from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import { keyRange, type WatchEvent } from "../mvcc/kv.js";
import type { MvccBackend } from "../mvcc/backend.js";
import type { Watcher, WatchDelivery, WatchHub } from "../watch/watch-hub.js";
import { encodeEvent, encodeSharedWatchEvents, encodeWatchResponse, type EncodedMessage } from "./wire.js";

/** clientv3.InvalidWatchID: stream-wide progress, or a create that failed. */
const streamProgressId = -1n;

export interface WatchServiceOptions {
  /** Interval of progress notifications for watchers that asked for them. */
  progressNotifyIntervalMs: number;
  /** Responses above this size are split when the watcher allows fragments. */
  maxResponseBytes: number;
}

/**
 * The Watch call as the watch logic uses it (@grpc/grpc-js's server duplex
 * stream has this shape, and so does brain's own transport's).
 */
export interface WatchCall {
  on(event: "data", listener: (request: WatchRequest) => void): unknown;
  on(event: "end" | "error" | "cancelled" | "drain", listener: () => void): unknown;
  /**
   * Queues a response; false when the call's output is above its high-water
   * mark: then the watchers with more to send wait, out of the live fan-out,
   * for "drain", so a client that stops reading costs bounded memory.
   */
  write(message: EncodedMessage): boolean;
  end(): void;
  /** For transports that do not withhold flow control from a full call themselves: stop and restart reading requests. */
  pause?(): unknown;
  resume?(): unknown;
}

export function watchStreamHandler(
  store: MvccBackend,
  hub: WatchHub,
  header: (revision: number) => ResponseHeader,
  headerBytes: (revision: number) => Uint8Array,
  options: WatchServiceOptions,
): (call: WatchCall) => void {
  const encoder = new DeliveryEncoder(headerBytes);
  return (call) => new WatchStream(call, store, hub, encoder, options).start();
}

/**
 * Encodes deliveries. A live delivery is one object shared by a group of
 * watchers with the same options, so its events and header are encoded once
 * for the group; each watcher's message only adds its id.
 */
class DeliveryEncoder {
  private readonly shared = new WeakMap<WatchDelivery, { size: number; message: (watchId: bigint) => EncodedMessage; events: Uint8Array[] }>();
  /** Per fan-out pass only: kept longer, the encoded forms would double what the event ring holds. */
  private readonly events = new Map<WatchEvent, { plain?: Uint8Array; withPrevKv?: Uint8Array }>();
  private clearScheduled = false;
  private lastHeader: { revision: number; bytes: Uint8Array } | undefined;

  constructor(private readonly headerBytes: (revision: number) => Uint8Array) {}

  header(revision: number): Uint8Array {
    if (this.lastHeader?.revision !== revision) this.lastHeader = { revision, bytes: this.headerBytes(revision) };
    return this.lastHeader.bytes;
  }

  encoded(delivery: WatchDelivery): { size: number; message: (watchId: bigint) => EncodedMessage; events: Uint8Array[] } {
    let entry = this.shared.get(delivery);
    if (!entry) {
      const events = delivery.events.map((event) => this.event(event, delivery.prevKv));
      const size = events.reduce((total, event) => total + event.length, 0);
      entry = { size, events, message: encodeSharedWatchEvents(this.header(delivery.revision), events) };
      this.shared.set(delivery, entry);
    }
    return entry;
  }

  // Events shared by groups with different ranges but the same prev_kv form
  // (and by ring catch-ups) are encoded once per form.
  private event(event: WatchEvent, withPrevKv: boolean): Uint8Array {
    let forms = this.events.get(event);
    if (!forms) {
      this.events.set(event, (forms = {}));
      if (!this.clearScheduled) {
        this.clearScheduled = true;
        setImmediate(() => {
          this.events.clear();
          this.clearScheduled = false;
        });
      }
    }
    if (withPrevKv) return (forms.withPrevKv ??= encodeEvent(event.type, event.kv, event.prevKv));
    return (forms.plain ??= encodeEvent(event.type, event.kv, undefined));
  }
}

interface StreamWatcher {
  id: bigint;
  watcher: Watcher;
  progressNotify: boolean;
  fragment: boolean;
  /** Events went out since the last progress tick (etcd then skips the notification). */
  sentSinceTick: boolean;
}

class WatchStream {
  private readonly watchers = new Map<bigint, StreamWatcher>();
  /** Watchers whose deliveries the full stream refused; resumed when it drains. */
  private readonly stalled = new Set<StreamWatcher>();
  private nextId = 0n;
  private progressPending = false;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** The last write found the call above its high-water mark; no "drain" since. */
  private full = false;

  constructor(
    private readonly call: WatchCall,
    private readonly store: MvccBackend,
    private readonly hub: WatchHub,
    private readonly encoder: DeliveryEncoder,
    private readonly options: WatchServiceOptions,
  ) {}

  start(): void {
    this.call.on("data", (request: WatchRequest) => this.handle(request));
    this.call.on("end", () => this.close(true));
    this.call.on("error", () => this.close(false));
    this.call.on("cancelled", () => this.close(false));
    this.call.on("drain", () => this.drained());
    this.timer = setInterval(() => this.notifyProgress(), this.options.progressNotifyIntervalMs);
    this.timer.unref();
  }

  private close(endStream: boolean): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    for (const { watcher } of this.watchers.values()) this.hub.remove(watcher);
    this.watchers.clear();
    this.stalled.clear();
    if (endStream) this.call.end();
  }

  /**
   * Queues a response. Control responses (created, canceled, progress) are
   * always queued: they are small, and while the call is full its requests
   * are not read, so no more of them come.
   */
  private send(message: EncodedMessage): void {
    if (this.closed) return;
    if (!this.call.write(message) && !this.full) {
      this.full = true;
      this.call.pause?.();
    }
  }

  private drained(): void {
    if (!this.full || this.closed) return;
    this.full = false;
    this.call.resume?.();
    const stalled = [...this.stalled];
    this.stalled.clear();
    for (const entry of stalled) {
      if (this.full) {
        this.stalled.add(entry);
        continue;
      }
      this.hub.resume(entry.watcher);
    }
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
        encodeWatchResponse({
          header: this.encoder.header(current),
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
      sentSinceTick: false,
      watcher: undefined as unknown as Watcher,
    };
    this.watchers.set(id, entry);
    this.send(encodeWatchResponse({ header: this.encoder.header(current), watchId: id, created: true }));
    entry.watcher = this.hub.add(
      {
        range: keyRange(key, request.rangeEnd),
        startRevision: start,
        noPut: request.filters.includes(WatchCreateRequest_FilterType.Noput),
        noDelete: request.filters.includes(WatchCreateRequest_FilterType.Nodelete),
        prevKv: request.prevKv,
      },
      {
        deliver: (delivery) => this.deliver(entry, delivery),
        compacted: (compactRevision) => {
          this.watchers.delete(id);
          this.stalled.delete(entry);
          // etcd leaves the revision of this response unset.
          this.send(encodeWatchResponse({ header: this.encoder.header(0), watchId: id, canceled: true, compactRevision }));
          if (this.progressPending) this.requestProgress();
        },
        synced: () => {
          if (this.progressPending) this.requestProgress();
        },
      },
    );
  }

  private cancel(id: bigint): void {
    const entry = this.watchers.get(id);
    if (!entry) return;
    this.hub.remove(entry.watcher);
    this.watchers.delete(id);
    this.stalled.delete(entry);
    this.send(encodeWatchResponse({ header: this.encoder.header(this.store.revision), watchId: id, canceled: true }));
    // The watcher a pending progress request waited for may be this one.
    if (this.progressPending) this.requestProgress();
  }

  private allSynced(): boolean {
    for (const { watcher } of this.watchers.values()) if (!this.hub.isSynced(watcher)) return false;
    return true;
  }

  /**
   * WatchProgressRequest: answered once every watcher on the stream is
   * synced and the hub has handed out everything it has received, with the
   * hub's revision: no event at or below it can follow on this stream.
   */
  private requestProgress(): void {
    this.progressPending = true;
    this.hub.whenPublished(() => {
      if (this.closed || !this.progressPending || !this.allSynced()) return;
      this.progressPending = false;
      this.send(encodeWatchResponse({ header: this.encoder.header(this.hub.revision), watchId: streamProgressId }));
    });
  }

  /** The periodic notification, to synced watchers that asked and got no events since the last tick. */
  private notifyProgress(): void {
    this.hub.whenPublished(() => {
      if (this.closed || this.full) return;
      const header = this.encoder.header(this.hub.revision);
      for (const entry of this.watchers.values()) {
        if (!entry.progressNotify) continue;
        const quiet = !entry.sentSinceTick;
        entry.sentSinceTick = false;
        if (quiet && this.hub.isSynced(entry.watcher)) this.send(encodeWatchResponse({ header, watchId: entry.id }));
      }
    });
  }

  private deliver(entry: StreamWatcher, delivery: WatchDelivery): boolean {
    if (this.closed) return true;
    if (this.full) {
      this.stalled.add(entry);
      return false;
    }
    entry.sentSinceTick = true;
    const encoded = this.encoder.encoded(delivery);
    if (!entry.fragment || encoded.events.length <= 1 || encoded.size <= this.options.maxResponseBytes) {
      this.send(encoded.message(entry.id));
      return true;
    }
    // Split into fragments no larger than the limit (at least one event each);
    // every fragment but the last is flagged.
    const header = this.encoder.header(delivery.revision);
    let batch: Uint8Array[] = [];
    let batchSize = 0;
    const flush = (last: boolean) => {
      this.send(encodeWatchResponse({ header, watchId: entry.id, events: batch, fragment: !last }));
      batch = [];
      batchSize = 0;
    };
    for (const event of encoded.events) {
      if (batch.length > 0 && batchSize + event.length > this.options.maxResponseBytes) flush(false);
      batch.push(event);
      batchSize += event.length;
    }
    flush(true);
    return true;
  }
}
