// gRPC over one HTTP/2 stream (the PROTOCOL-HTTP2 spec of grpc/grpc):
// length-prefixed messages in, responses and status trailers out. Unary calls
// take a short path (one buffer per answer); streaming calls are event
// emitters shaped like @grpc/grpc-js's server streams, with backpressure.
import { EventEmitter } from "node:events";
import { EncodedMessage } from "../wire.js";
import { ErrorCode } from "./frames.js";
import { grpcPrefix, type Stream, type StreamListener } from "./connection.js";
import { encodeIndexed, encodeLiteral, staticNameIndex } from "./hpack.js";

/** gRPC status codes. */
export const Code = {
  ok: 0,
  cancelled: 1,
  unknown: 2,
  invalidArgument: 3,
  deadlineExceeded: 4,
  notFound: 5,
  alreadyExists: 6,
  permissionDenied: 7,
  resourceExhausted: 8,
  failedPrecondition: 9,
  aborted: 10,
  outOfRange: 11,
  unimplemented: 12,
  internal: 13,
  unavailable: 14,
  dataLoss: 15,
  unauthenticated: 16,
} as const;

export class GrpcStatus extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/** ":status: 200" and "content-type: application/grpc", never indexed. */
export const responseHeaders = Buffer.concat([encodeIndexed(8), encodeLiteral(staticNameIndex("content-type"), "application/grpc")]);
export const okTrailers = encodeLiteral("grpc-status", "0");

/** grpc-message is percent-encoded UTF-8 (bytes outside 0x20..0x7e, and '%'). */
export function percentEncode(message: string): string {
  let out = "";
  for (const byte of Buffer.from(message, "utf8")) {
    out += byte < 0x20 || byte > 0x7e || byte === 0x25 ? `%${byte.toString(16).toUpperCase().padStart(2, "0")}` : String.fromCharCode(byte);
  }
  return out;
}

export function statusTrailers(code: number, message: string): Buffer {
  if (code === Code.ok) return okTrailers;
  return Buffer.concat([encodeLiteral("grpc-status", String(code)), encodeLiteral("grpc-message", percentEncode(message))]);
}

/** A response that is only trailers (an error before any message). */
export function trailersOnly(code: number, message: string): Buffer {
  return Buffer.concat([responseHeaders, statusTrailers(code, message)]);
}

/**
 * Splits DATA payloads into gRPC messages. A message wholly inside one
 * payload is handed out as a view of it (no copy); one spread over frames is
 * gathered into a buffer of its exact size, allocated only once its declared
 * length passed the limit.
 */
export class MessageReader {
  private header = Buffer.allocUnsafe(5);
  private headerHave = 0;
  private body: Buffer | undefined;
  private bodyHave = 0;

  constructor(
    private readonly maxLength: number,
    private readonly encoding: string,
  ) {}

  /** Calls `message` for each complete message; throws GrpcStatus on a bad one. */
  push(payload: Buffer, message: (bytes: Buffer) => void): void {
    let at = 0;
    const end = payload.length;
    while (at < end) {
      if (this.body) {
        const take = Math.min(this.body.length - this.bodyHave, end - at);
        payload.copy(this.body, this.bodyHave, at, at + take);
        this.bodyHave += take;
        at += take;
        if (this.bodyHave === this.body.length) {
          const whole = this.body;
          this.body = undefined;
          message(whole);
        }
        continue;
      }
      if (this.headerHave === 0 && end - at >= 5) {
        const length = this.check(payload[at]!, payload.readUInt32BE(at + 1));
        if (end - at - 5 >= length) {
          message(payload.subarray(at + 5, at + 5 + length));
          at += 5 + length;
          continue;
        }
        this.start(length);
        at += 5;
        continue;
      }
      const take = Math.min(5 - this.headerHave, end - at);
      payload.copy(this.header, this.headerHave, at, at + take);
      this.headerHave += take;
      at += take;
      if (this.headerHave === 5) {
        this.headerHave = 0;
        const length = this.check(this.header[0]!, this.header.readUInt32BE(1));
        if (length === 0) message(Buffer.alloc(0));
        else this.start(length);
      }
    }
  }

  /** True between messages: nothing partial is held. */
  get idle(): boolean {
    return this.headerHave === 0 && this.body === undefined;
  }

  private start(length: number): void {
    this.body = Buffer.allocUnsafe(length);
    this.bodyHave = 0;
    if (length === 0) this.body = undefined;
  }

  private check(flag: number, length: number): number {
    if (flag === 1) {
      if (!this.encoding || this.encoding === "identity") {
        throw new GrpcStatus(Code.internal, "grpc: compressed flag set with identity or empty encoding");
      }
      throw new GrpcStatus(Code.unimplemented, `grpc: Decompressor is not installed for grpc-encoding "${this.encoding}"`);
    }
    if (flag !== 0) throw new GrpcStatus(Code.internal, `grpc: invalid message flag ${flag}`);
    if (length > this.maxLength) {
      throw new GrpcStatus(Code.resourceExhausted, `grpc: received message larger than max (${length} vs. ${this.maxLength})`);
    }
    return length;
  }
}

export type UnaryHandler = (message: Buffer) => Promise<Uint8Array>;

/** A unary call: one request message, then one answer in one buffer. */
export class UnaryCall implements StreamListener {
  private request: Buffer | undefined;
  private dispatched = false;

  constructor(
    private readonly stream: Stream,
    private readonly reader: MessageReader,
    private readonly handler: UnaryHandler,
  ) {}

  data(payload: Buffer, endStream: boolean): void {
    if (this.dispatched) return;
    try {
      this.reader.push(payload, (message) => {
        if (this.request) throw new GrpcStatus(Code.unimplemented, "grpc: more than one request message for a unary RPC");
        // A view of the socket's chunk: node hands every read a fresh buffer.
        this.request = message;
      });
    } catch (error) {
      return this.fail(error);
    }
    this.stream.consumed(payload.length);
    if (!endStream) return;
    if (!this.request || !this.reader.idle) return this.fail(new GrpcStatus(Code.internal, "grpc: request stream ended without a whole message"));
    this.dispatched = true;
    this.handler(this.request).then(
      (response) => this.stream.respondWhole(responseHeaders, response, okTrailers),
      (error: unknown) => this.fail(error),
    );
  }

  reset(): void {
    // The answer, if one comes, is dropped by the closed stream.
  }

  private fail(error: unknown): void {
    this.dispatched = true;
    const { code, message } = toStatus(error);
    this.stream.respond(trailersOnly(code, message), true);
  }
}

export function toStatus(error: unknown): { code: number; message: string } {
  if (error instanceof GrpcStatus) return { code: error.code, message: error.message };
  const coded = error as { code?: unknown; message?: unknown };
  if (error instanceof Error && typeof coded.code === "number") return { code: coded.code, message: error.message };
  return { code: Code.internal, message: error instanceof Error ? error.message : String(error) };
}

// Output queued per streaming call before write() asks the caller to wait,
// and the point where a call that ignores it is cancelled (memory bound).
const highWater = 1 << 20;
const hardLimit = 64 << 20;

/**
 * A server-streaming or bidi call, with @grpc/grpc-js's surface: events
 * "data" (a request), "end" (the client finished sending), "cancelled" (the
 * client or connection went away), "drain" (write() may go on); write()
 * returns false above the high-water mark and calls its callback once the
 * message has gone to the socket (within the client's windows); pause()
 * stops reading requests. While a call's output is above the high-water mark
 * or it is paused, its requests are not acknowledged (no WINDOW_UPDATE), so a
 * client that does not read cannot make the server buffer without bound; a
 * call that ignores all this is cancelled at a hard limit.
 */
export class ServerCall<Req = unknown, Res = unknown> extends EventEmitter implements StreamListener {
  /** The request of a server-streaming call. */
  request!: Req;
  cancelled = false;
  private headersSent = false;
  private ended = false;
  private owedWindow = 0;
  private waitingDrain = false;
  private paused = false;
  private readonly held: Req[] = [];
  private heldEnd = false;
  /** Write callbacks with the stream's enqueued-byte count their message reaches. */
  private readonly callbacks: Array<[number, () => void]> = [];
  private callbacksScheduled = false;

  constructor(
    private readonly stream: Stream,
    private readonly reader: MessageReader,
    private readonly decode: (bytes: Buffer) => Req,
    private readonly encode: (message: Res) => Uint8Array,
  ) {
    super();
  }

  data(payload: Buffer, endStream: boolean): void {
    if (this.ended) return;
    try {
      this.reader.push(payload, (bytes) => this.deliver(this.decode(bytes)));
    } catch (error) {
      this.destroy(error instanceof Error ? error : new Error(String(error)));
      return;
    }
    if (this.paused || this.stream.queuedBytes > highWater) this.owedWindow += payload.length;
    else this.stream.consumed(payload.length);
    if (endStream) {
      if (this.paused) this.heldEnd = true;
      else this.emit("end");
    }
  }

  private deliver(request: Req): void {
    if (this.paused) this.held.push(request);
    else this.emit("data", request);
  }

  /** Stops "data" events; what arrives meanwhile is held (bounded by the stream window, which is not given back). */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    while (this.held.length > 0 && !this.paused && !this.ended) this.emit("data", this.held.shift()!);
    if (this.paused || this.ended) return;
    if (this.heldEnd) {
      this.heldEnd = false;
      this.emit("end");
    }
    this.giveWindowBack();
  }

  reset(): void {
    if (this.ended) return;
    this.ended = true;
    this.cancelled = true;
    this.emit("cancelled");
  }

  drain(): void {
    if (this.callbacks.length > 0) this.scheduleCallbacks();
    if (this.stream.queuedBytes > highWater / 2) return;
    this.giveWindowBack();
    if (this.waitingDrain) {
      this.waitingDrain = false;
      this.emit("drain");
    }
  }

  private giveWindowBack(): void {
    if (this.paused || this.owedWindow === 0 || this.stream.queuedBytes > highWater) return;
    this.stream.consumed(this.owedWindow);
    this.owedWindow = 0;
  }

  // Callbacks run on the next tick, never inside write(), as grpc-js does.
  private scheduleCallbacks(): void {
    if (this.callbacksScheduled) return;
    this.callbacksScheduled = true;
    process.nextTick(() => {
      this.callbacksScheduled = false;
      const sent = this.stream.sentBytes;
      while (this.callbacks.length > 0 && this.callbacks[0]![0] <= sent) this.callbacks.shift()![1]();
    });
  }

  write(message: Res | EncodedMessage, callback?: () => void): boolean {
    if (this.ended) return false;
    const bytes = message instanceof EncodedMessage ? message.bytes : this.encode(message);
    if (!this.headersSent) {
      this.headersSent = true;
      this.stream.respond(responseHeaders, false);
    }
    this.stream.sendData([grpcPrefix(bytes.length), Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)]);
    if (callback) {
      this.callbacks.push([this.stream.enqueuedBytes, callback]);
      if (this.stream.sentBytes >= this.stream.enqueuedBytes) this.scheduleCallbacks();
    }
    if (this.stream.queuedBytes > hardLimit) {
      // The client grants no window and we were not asked to wait: cancel the call.
      this.ended = true;
      this.cancelled = true;
      this.callbacks.length = 0;
      this.stream.reset(ErrorCode.enhanceYourCalm);
      this.emit("cancelled");
      return false;
    }
    if (this.stream.queuedBytes > highWater) {
      this.waitingDrain = true;
      return false;
    }
    return true;
  }

  /** OK trailers, after every queued message. */
  end(): void {
    this.finish(Code.ok, "");
  }

  /** Ends the call with the error's status (or CANCELLED). */
  destroy(error?: Error): void {
    const status = error ? toStatus(error) : { code: Code.cancelled, message: "cancelled" };
    this.finish(status.code, status.message);
  }

  private finish(code: number, message: string): void {
    if (this.ended) return;
    this.ended = true;
    if (this.headersSent) this.stream.end(statusTrailers(code, message));
    else this.stream.respond(trailersOnly(code, message), true);
  }
}
