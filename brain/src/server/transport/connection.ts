// One HTTP/2 connection (RFC 9113), server side, over a net or tls socket:
// frame parsing, HPACK decoding of request headers, flow control in both
// directions, and corked output (all frames written in one event-loop turn
// leave in one socket write). It knows nothing of gRPC: a request stream is
// handed to `onStream`, which answers through the Stream object.
import type { Socket } from "node:net";
import {
  ConnectionError,
  defaultMaxFrameSize,
  defaultWindow,
  ErrorCode,
  Flag,
  frame,
  frameHeaderBytes,
  FrameType,
  goawayFrame,
  maxFrameSizeLimit,
  maxWindow,
  preface,
  rstStreamFrame,
  Setting,
  settingsFrame,
  StreamError,
  windowUpdateFrame,
  writeFrameHeader,
} from "./frames.js";
import { HpackDecoder, HpackError } from "./hpack.js";

export interface ConnectionLimits {
  /** SETTINGS_MAX_CONCURRENT_STREAMS; streams beyond it are refused. */
  maxConcurrentStreams: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE (RFC 9113 §6.5.2 accounting). */
  maxHeaderListSize: number;
  /** Our receive window per stream (SETTINGS_INITIAL_WINDOW_SIZE). */
  streamWindow: number;
  /** Our receive window for the whole connection. */
  connectionWindow: number;
  /** Client RST_STREAMs per second before the connection is refused (rapid reset). */
  maxResetsPerSecond: number;
}

export const defaultLimits: ConnectionLimits = {
  maxConcurrentStreams: 1000,
  maxHeaderListSize: 64 * 1024,
  streamWindow: 1 << 20,
  connectionWindow: 8 << 20,
  maxResetsPerSecond: 400,
};

/** The request headers a handler needs; everything else is validated and dropped. */
export interface RequestHead {
  method: string;
  path: string;
  contentType: string;
  grpcEncoding: string;
}

export interface StreamListener {
  /** A DATA payload (padding removed); `endStream` when the client finished sending. */
  data(payload: Buffer, endStream: boolean): void;
  /** The stream ended abnormally: RST_STREAM from the client, or the connection went away. */
  reset(): void;
  /** DATA went out (`Stream.sentBytes` grew) or the queue emptied. */
  drain?(): void;
}

// Output bytes held per connection before DATA stops being sent, whatever the
// peer's windows say (a client that grants windows but does not read).
const socketHighWater = 4 << 20;
// A client that makes us queue this much unread control traffic is dropped.
const socketHardLimit = 64 << 20;

export class Stream {
  listener: StreamListener | undefined;
  sendWindow: number;
  /** Bytes received and not yet given back with WINDOW_UPDATE. */
  private unacked = 0;
  private recvWindow: number;
  remoteClosed = false;
  closed = false;
  private readonly queue: Buffer[] = [];
  /** Bytes of DATA payload waiting for window. */
  queuedBytes = 0;
  /** DATA payload bytes queued and sent so far, for write callbacks. */
  enqueuedBytes = 0;
  sentBytes = 0;
  private trailers: Buffer | undefined;

  constructor(
    readonly id: number,
    private readonly connection: Connection,
    sendWindow: number,
    recvWindow: number,
  ) {
    this.sendWindow = sendWindow;
    this.recvWindow = recvWindow;
  }

  /** Accounts a received DATA frame against our window; false if the peer overran it. */
  receive(length: number): boolean {
    if (length > this.recvWindow) return false;
    this.recvWindow -= length;
    return true;
  }

  /** The listener has taken `length` bytes: give window back, in batches. */
  consumed(length: number): void {
    if (this.closed || this.remoteClosed) return;
    this.unacked += length;
    if (this.unacked >= this.connection.limits.streamWindow / 2) {
      this.recvWindow += this.unacked;
      this.connection.write(windowUpdateFrame(this.id, this.unacked));
      this.unacked = 0;
    }
  }

  /** HEADERS (one frame: our blocks are small) and maybe the first DATA and trailers. */
  respond(headerBlock: Buffer, endStream: boolean): void {
    if (this.closed) return;
    this.connection.write(frame(FrameType.headers, Flag.endHeaders | (endStream ? Flag.endStream : 0), this.id, headerBlock));
    if (endStream) this.connection.closeStream(this, false);
  }

  /**
   * Sends DATA within the windows; the rest waits for WINDOW_UPDATE. The
   * chunks are written as given (a gRPC prefix and its message may be two).
   */
  sendData(chunks: Buffer[]): void {
    if (this.closed) return;
    for (const chunk of chunks) {
      this.queue.push(chunk);
      this.queuedBytes += chunk.length;
      this.enqueuedBytes += chunk.length;
    }
    this.flush();
  }

  /** Trailers (END_STREAM) after every queued DATA byte. */
  end(trailerBlock: Buffer): void {
    if (this.closed) return;
    this.trailers = trailerBlock;
    this.flush();
  }

  /** Ends the stream with RST_STREAM; queued output is dropped. */
  reset(code: number): void {
    if (this.closed) return;
    this.connection.write(rstStreamFrame(this.id, code));
    this.connection.closeStream(this, true, true);
  }

  /**
   * Fast path of a whole unary answer: HEADERS, one DATA frame holding
   * prefix + message, trailers, in one buffer. Falls back to the queue when
   * the message does not fit the windows or one frame.
   */
  respondWhole(headerBlock: Buffer, message: Uint8Array, trailerBlock: Buffer): void {
    if (this.closed) return;
    const connection = this.connection;
    const dataLength = 5 + message.length;
    if (
      this.queue.length > 0 ||
      dataLength > this.sendWindow ||
      dataLength > connection.sendWindow ||
      dataLength > connection.peerMaxFrameSize ||
      !connection.canSendData()
    ) {
      this.respond(headerBlock, false);
      this.sendData([grpcPrefix(message.length), Buffer.from(message.buffer, message.byteOffset, message.byteLength)]);
      this.end(trailerBlock);
      return;
    }
    const out = Buffer.allocUnsafe(3 * frameHeaderBytes + headerBlock.length + dataLength + trailerBlock.length);
    let at = writeFrameHeader(out, 0, headerBlock.length, FrameType.headers, Flag.endHeaders, this.id);
    at += headerBlock.copy(out, at);
    at = writeFrameHeader(out, at, dataLength, FrameType.data, 0, this.id);
    out[at] = 0;
    out.writeUInt32BE(message.length, at + 1);
    out.set(message, at + 5);
    at += dataLength;
    at = writeFrameHeader(out, at, trailerBlock.length, FrameType.headers, Flag.endHeaders | Flag.endStream, this.id);
    trailerBlock.copy(out, at);
    this.sendWindow -= dataLength;
    connection.sendWindow -= dataLength;
    connection.write(out);
    connection.closeStream(this, false);
  }

  /** Sends what the windows allow; true when nothing is left waiting. */
  flush(): boolean {
    const connection = this.connection;
    const sentBefore = this.sentBytes;
    while (this.queue.length > 0) {
      const allowed = Math.min(this.sendWindow, connection.sendWindow, connection.peerMaxFrameSize);
      if (allowed <= 0 || !connection.canSendData()) {
        connection.blocked.add(this);
        if (this.sentBytes > sentBefore) this.listener?.drain?.();
        return false;
      }
      // Gather up to `allowed` bytes into one frame.
      let length = 0;
      const parts: Buffer[] = [];
      while (this.queue.length > 0 && length < allowed) {
        const head = this.queue[0]!;
        const take = Math.min(head.length, allowed - length);
        if (take === head.length) {
          parts.push(head);
          this.queue.shift();
        } else {
          parts.push(head.subarray(0, take));
          this.queue[0] = head.subarray(take);
        }
        length += take;
      }
      const out = Buffer.allocUnsafe(frameHeaderBytes + length);
      let at = writeFrameHeader(out, 0, length, FrameType.data, 0, this.id);
      for (const part of parts) at += part.copy(out, at);
      this.sendWindow -= length;
      connection.sendWindow -= length;
      this.queuedBytes -= length;
      this.sentBytes += length;
      connection.write(out);
    }
    connection.blocked.delete(this);
    if (this.trailers) {
      connection.write(frame(FrameType.headers, Flag.endHeaders | Flag.endStream, this.id, this.trailers));
      this.trailers = undefined;
      connection.closeStream(this, false);
      return true;
    }
    this.listener?.drain?.();
    return true;
  }

  /** Applies a change of the peer's SETTINGS_INITIAL_WINDOW_SIZE (may go negative, §6.9.2). */
  adjustSendWindow(delta: number): void {
    this.sendWindow += delta;
    if (this.sendWindow > maxWindow) throw new ConnectionError(ErrorCode.flowControl, "stream window above 2^31-1");
  }

  windowUpdate(increment: number): void {
    if (this.sendWindow + increment > maxWindow) throw new StreamError(this.id, ErrorCode.flowControl, "stream window above 2^31-1");
    this.sendWindow += increment;
  }
}

export function grpcPrefix(length: number): Buffer {
  const prefix = Buffer.allocUnsafe(5);
  prefix[0] = 0;
  prefix.writeUInt32BE(length, 1);
  return prefix;
}

interface PendingHeaders {
  streamId: number;
  endStream: boolean;
  fragments: Buffer[];
  length: number;
}

export class Connection {
  readonly streams = new Map<number, Stream>();
  readonly blocked = new Set<Stream>();
  sendWindow = defaultWindow;
  peerMaxFrameSize = defaultMaxFrameSize;
  private peerInitialWindow = defaultWindow;
  private recvWindow = defaultWindow;
  private unackedConnection = 0;
  private lastStreamId = 0;
  private inbound: Buffer | undefined;
  private prefaceSeen = false;
  private settingsSeen = false;
  private pendingHeaders: PendingHeaders | undefined;
  private readonly decoder = new HpackDecoder();
  private output: Buffer[] = [];
  private outputBytes = 0;
  private outputScheduled = false;
  private goingAway = false;
  private dead = false;
  private resetWindowStart = 0;
  private resetsInWindow = 0;

  constructor(
    private readonly socket: Socket,
    readonly limits: ConnectionLimits,
    private readonly onStream: (stream: Stream, head: RequestHead, endStream: boolean) => void,
    private readonly onClose: (connection: Connection) => void,
  ) {
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => this.receive(chunk));
    socket.on("error", () => this.teardown());
    socket.on("close", () => this.teardown());
    socket.on("drain", () => this.unblock());
    this.write(
      settingsFrame([
        [Setting.maxConcurrentStreams, limits.maxConcurrentStreams],
        [Setting.initialWindowSize, limits.streamWindow],
        [Setting.maxHeaderListSize, limits.maxHeaderListSize],
        [Setting.enablePush, 0],
      ]),
    );
    if (limits.connectionWindow > defaultWindow) {
      this.write(windowUpdateFrame(0, limits.connectionWindow - defaultWindow));
      this.recvWindow = limits.connectionWindow;
    }
  }

  get openStreams(): number {
    return this.streams.size;
  }

  /** Queues bytes for the socket; one write per event-loop turn. */
  write(bytes: Buffer): void {
    if (this.dead) return;
    this.output.push(bytes);
    this.outputBytes += bytes.length;
    if (!this.outputScheduled) {
      this.outputScheduled = true;
      setImmediate(() => this.flushOutput());
    }
  }

  private flushOutput(): void {
    this.outputScheduled = false;
    if (this.dead || this.output.length === 0) return;
    const bytes = this.output.length === 1 ? this.output[0]! : Buffer.concat(this.output, this.outputBytes);
    this.output = [];
    this.outputBytes = 0;
    const below = this.socket.write(bytes);
    // Streams that stopped for corked output resume now if the socket took it
    // all at once (then no "drain" event comes).
    if (below && this.blocked.size > 0) setImmediate(() => this.unblock());
    // DATA stops at the high-water mark, so only control frames (PING and
    // SETTINGS acks, resets) pile up here: a client that provokes them and never reads.
    if (this.socket.writableLength > socketHardLimit) this.teardown();
  }

  /** DATA may go out: what waits for the socket, corked or not, is under the high-water mark. */
  canSendData(): boolean {
    return this.socket.writableLength + this.outputBytes < socketHighWater;
  }

  private unblock(): void {
    if (this.dead) return;
    for (const stream of [...this.blocked]) stream.flush();
  }

  /**
   * `notify`: the stream ended abnormally and its listener is told. A stream
   * we finish while the client is still sending is closed with
   * RST_STREAM(NO_ERROR) (§8.1) so the client stops.
   */
  closeStream(stream: Stream, notify: boolean, resetSent = false): void {
    if (stream.closed) return;
    stream.closed = true;
    if (!notify && !resetSent && !stream.remoteClosed) this.write(rstStreamFrame(stream.id, ErrorCode.noError));
    this.streams.delete(stream.id);
    this.blocked.delete(stream);
    if (notify) stream.listener?.reset();
    if (this.goingAway && this.streams.size === 0) this.finish();
  }

  /** Graceful: GOAWAY, no new streams, the socket ends once open streams finish. */
  shutdown(): void {
    if (this.goingAway || this.dead) return;
    this.goingAway = true;
    this.write(goawayFrame(this.lastStreamId, ErrorCode.noError));
    if (this.streams.size === 0) this.finish();
  }

  /** Immediate: every open stream is reset. */
  destroy(): void {
    if (this.dead) return;
    this.write(goawayFrame(this.lastStreamId, ErrorCode.noError));
    this.flushOutput();
    this.teardown();
  }

  private finish(): void {
    this.flushOutput();
    this.dead = true;
    this.socket.end();
    this.teardown();
  }

  private teardown(): void {
    if (!this.dead) {
      this.dead = true;
      this.socket.destroy();
    }
    if (this.streams.size > 0) {
      for (const stream of [...this.streams.values()]) this.closeStream(stream, true);
    }
    this.inbound = undefined;
    this.onClose(this);
  }

  private fail(error: ConnectionError): void {
    if (this.dead) return;
    this.write(goawayFrame(this.lastStreamId, error.code, error.message));
    this.flushOutput();
    this.dead = true;
    this.socket.end();
    this.teardown();
  }

  private receive(chunk: Buffer): void {
    if (this.dead) return;
    const data = this.inbound ? Buffer.concat([this.inbound, chunk]) : chunk;
    this.inbound = undefined;
    let offset = 0;
    try {
      if (!this.prefaceSeen) {
        const have = Math.min(data.length, preface.length);
        if (data.compare(preface, 0, have, 0, have) !== 0) throw new ConnectionError(ErrorCode.protocol, "bad connection preface");
        if (data.length < preface.length) {
          this.inbound = data;
          return;
        }
        this.prefaceSeen = true;
        offset = preface.length;
      }
      const maxFrame = defaultMaxFrameSize;
      while (data.length - offset >= frameHeaderBytes) {
        const length = (data[offset]! << 16) | (data[offset + 1]! << 8) | data[offset + 2]!;
        if (length > maxFrame) throw new ConnectionError(ErrorCode.frameSize, `frame of ${length} bytes above ${maxFrame}`);
        if (data.length - offset < frameHeaderBytes + length) break;
        const type = data[offset + 3]!;
        const flags = data[offset + 4]!;
        const streamId = data.readUInt32BE(offset + 5) & 0x7fffffff;
        const start = offset + frameHeaderBytes;
        offset = start + length;
        try {
          this.frame(type, flags, streamId, data, start, offset);
        } catch (error) {
          if (!(error instanceof StreamError)) throw error;
          const stream = this.streams.get(error.streamId);
          this.write(rstStreamFrame(error.streamId, error.code));
          if (stream) this.closeStream(stream, true, true);
        }
        if (this.dead) return;
      }
    } catch (error) {
      if (error instanceof ConnectionError) return this.fail(error);
      if (error instanceof HpackError) return this.fail(new ConnectionError(ErrorCode.compression, error.message));
      throw error;
    }
    if (offset < data.length) this.inbound = offset === 0 ? data : data.subarray(offset);
    // Whole frames leave no reference to the chunk; a partial one keeps a copy of its bytes only.
    if (this.inbound && this.inbound.length < data.length / 2) this.inbound = Buffer.from(this.inbound);
  }

  private frame(type: number, flags: number, streamId: number, data: Buffer, start: number, end: number): void {
    const length = end - start;
    if (this.pendingHeaders && (type !== FrameType.continuation || streamId !== this.pendingHeaders.streamId)) {
      throw new ConnectionError(ErrorCode.protocol, "expected CONTINUATION");
    }
    if (!this.settingsSeen && type !== FrameType.settings) throw new ConnectionError(ErrorCode.protocol, "first frame is not SETTINGS");
    switch (type) {
      case FrameType.data:
        return this.dataFrame(flags, streamId, data, start, end);
      case FrameType.headers:
        return this.headersFrame(flags, streamId, data, start, end);
      case FrameType.continuation:
        return this.continuationFrame(flags, streamId, data, start, end);
      case FrameType.priority:
        if (streamId === 0) throw new ConnectionError(ErrorCode.protocol, "PRIORITY on stream 0");
        if (length !== 5) throw new StreamError(streamId, ErrorCode.frameSize, "PRIORITY length");
        return;
      case FrameType.rstStream:
        return this.rstStreamFrame(streamId, data, start, length);
      case FrameType.settings:
        return this.settingsFrame(flags, streamId, data, start, length);
      case FrameType.pushPromise:
        throw new ConnectionError(ErrorCode.protocol, "PUSH_PROMISE from a client");
      case FrameType.ping:
        if (streamId !== 0) throw new ConnectionError(ErrorCode.protocol, "PING on a stream");
        if (length !== 8) throw new ConnectionError(ErrorCode.frameSize, "PING length");
        if (!(flags & Flag.ack)) this.write(frame(FrameType.ping, Flag.ack, 0, data.subarray(start, end)));
        return;
      case FrameType.goaway:
        if (streamId !== 0) throw new ConnectionError(ErrorCode.protocol, "GOAWAY on a stream");
        this.shutdown();
        return;
      case FrameType.windowUpdate:
        return this.windowUpdateFrame(streamId, data, start, length);
      default:
        // Unknown frame types are ignored (§5.5).
        return;
    }
  }

  private settingsFrame(flags: number, streamId: number, data: Buffer, start: number, length: number): void {
    if (streamId !== 0) throw new ConnectionError(ErrorCode.protocol, "SETTINGS on a stream");
    if (flags & Flag.ack) {
      if (length !== 0) throw new ConnectionError(ErrorCode.frameSize, "SETTINGS ack with a payload");
      return;
    }
    if (length % 6 !== 0) throw new ConnectionError(ErrorCode.frameSize, "SETTINGS length");
    this.settingsSeen = true;
    for (let at = start; at < start + length; at += 6) {
      const id = data.readUInt16BE(at);
      const value = data.readUInt32BE(at + 2);
      switch (id) {
        case Setting.enablePush:
          if (value > 1) throw new ConnectionError(ErrorCode.protocol, "ENABLE_PUSH above 1");
          break;
        case Setting.initialWindowSize: {
          if (value > maxWindow) throw new ConnectionError(ErrorCode.flowControl, "INITIAL_WINDOW_SIZE above 2^31-1");
          const delta = value - this.peerInitialWindow;
          this.peerInitialWindow = value;
          for (const stream of this.streams.values()) stream.adjustSendWindow(delta);
          break;
        }
        case Setting.maxFrameSize:
          if (value < defaultMaxFrameSize || value > maxFrameSizeLimit) throw new ConnectionError(ErrorCode.protocol, "MAX_FRAME_SIZE out of range");
          this.peerMaxFrameSize = value;
          break;
        default:
          // HEADER_TABLE_SIZE: our encoder never indexes, so any size is fine.
          break;
      }
    }
    this.write(frame(FrameType.settings, Flag.ack, 0));
    this.unblock();
  }

  private windowUpdateFrame(streamId: number, data: Buffer, start: number, length: number): void {
    if (length !== 4) throw new ConnectionError(ErrorCode.frameSize, "WINDOW_UPDATE length");
    const increment = data.readUInt32BE(start) & 0x7fffffff;
    if (streamId === 0) {
      if (increment === 0) throw new ConnectionError(ErrorCode.protocol, "WINDOW_UPDATE of 0");
      if (this.sendWindow + increment > maxWindow) throw new ConnectionError(ErrorCode.flowControl, "connection window above 2^31-1");
      this.sendWindow += increment;
      this.unblock();
      return;
    }
    if (streamId > this.lastStreamId) throw new ConnectionError(ErrorCode.protocol, "WINDOW_UPDATE on an idle stream");
    const stream = this.streams.get(streamId);
    if (increment === 0) throw new StreamError(streamId, ErrorCode.protocol, "WINDOW_UPDATE of 0");
    if (!stream) return;
    stream.windowUpdate(increment);
    stream.flush();
  }

  private rstStreamFrame(streamId: number, data: Buffer, start: number, length: number): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.protocol, "RST_STREAM on stream 0");
    if (length !== 4) throw new ConnectionError(ErrorCode.frameSize, "RST_STREAM length");
    if (streamId > this.lastStreamId) throw new ConnectionError(ErrorCode.protocol, "RST_STREAM on an idle stream");
    void data.readUInt32BE(start);
    const stream = this.streams.get(streamId);
    if (!stream) return;
    // Rapid reset (CVE-2023-44487): streams opened and reset faster than any
    // client needs make the server work for nothing.
    const now = performance.now();
    if (now - this.resetWindowStart > 1000) {
      this.resetWindowStart = now;
      this.resetsInWindow = 0;
    }
    if (++this.resetsInWindow > this.limits.maxResetsPerSecond) {
      this.closeStream(stream, true);
      throw new ConnectionError(ErrorCode.enhanceYourCalm, "too many stream resets");
    }
    this.closeStream(stream, true);
  }

  private dataFrame(flags: number, streamId: number, data: Buffer, start: number, end: number): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.protocol, "DATA on stream 0");
    const length = end - start;
    // Flow control counts the whole payload, padding included (§6.9).
    if (length > this.recvWindow) throw new ConnectionError(ErrorCode.flowControl, "DATA beyond the connection window");
    this.recvWindow -= length;
    this.unackedConnection += length;
    // The connection window is given back on receipt: each stream's own window
    // bounds what it may buffer.
    if (this.unackedConnection >= this.limits.connectionWindow / 2) {
      this.write(windowUpdateFrame(0, this.unackedConnection));
      this.recvWindow += this.unackedConnection;
      this.unackedConnection = 0;
    }
    let payloadStart = start;
    let payloadEnd = end;
    if (flags & Flag.padded) {
      if (length < 1) throw new ConnectionError(ErrorCode.frameSize, "padded DATA without a pad length");
      const pad = data[start]!;
      if (pad >= length) throw new ConnectionError(ErrorCode.protocol, "padding beyond the DATA frame");
      payloadStart = start + 1;
      payloadEnd = end - pad;
    }
    if (streamId > this.lastStreamId) throw new ConnectionError(ErrorCode.protocol, "DATA on an idle stream");
    const stream = this.streams.get(streamId);
    if (!stream || stream.remoteClosed) throw new StreamError(streamId, ErrorCode.streamClosed, "DATA on a closed stream");
    if (!stream.receive(length)) throw new StreamError(streamId, ErrorCode.flowControl, "DATA beyond the stream window");
    const endStream = (flags & Flag.endStream) !== 0;
    if (endStream) stream.remoteClosed = true;
    // Padding is consumed at once; the payload when the listener takes it.
    if (payloadEnd - payloadStart < length) stream.consumed(length - (payloadEnd - payloadStart));
    stream.listener?.data(data.subarray(payloadStart, payloadEnd), endStream);
  }

  private headersFrame(flags: number, streamId: number, data: Buffer, start: number, end: number): void {
    if (streamId === 0 || streamId % 2 === 0) throw new ConnectionError(ErrorCode.protocol, "HEADERS on an invalid stream id");
    let blockStart = start;
    let blockEnd = end;
    if (flags & Flag.padded) {
      if (end - start < 1) throw new ConnectionError(ErrorCode.frameSize, "padded HEADERS without a pad length");
      const pad = data[start]!;
      blockStart++;
      blockEnd -= pad;
    }
    if (flags & Flag.priority) blockStart += 5;
    if (blockStart > blockEnd) throw new ConnectionError(ErrorCode.protocol, "padding beyond the HEADERS frame");
    this.pendingHeaders = { streamId, endStream: (flags & Flag.endStream) !== 0, fragments: [], length: 0 };
    this.addFragment(data.subarray(blockStart, blockEnd));
    if (flags & Flag.endHeaders) this.headerBlockDone();
  }

  private continuationFrame(flags: number, streamId: number, data: Buffer, start: number, end: number): void {
    if (!this.pendingHeaders || this.pendingHeaders.streamId !== streamId) throw new ConnectionError(ErrorCode.protocol, "CONTINUATION without HEADERS");
    this.addFragment(data.subarray(start, end));
    if (flags & Flag.endHeaders) this.headerBlockDone();
  }

  private addFragment(fragment: Buffer): void {
    const pending = this.pendingHeaders!;
    pending.length += fragment.length;
    // A block this much larger than the list we accept is a CONTINUATION flood.
    if (pending.length > 2 * this.limits.maxHeaderListSize + 1024) {
      throw new ConnectionError(ErrorCode.enhanceYourCalm, "header block too large");
    }
    // Copy: the fragment's chunk may be reused before the block completes.
    pending.fragments.push(Buffer.from(fragment));
  }

  private headerBlockDone(): void {
    const { streamId, endStream, fragments } = this.pendingHeaders!;
    this.pendingHeaders = undefined;
    const block = fragments.length === 1 ? fragments[0]! : Buffer.concat(fragments);
    const head: RequestHead = { method: "", path: "", contentType: "", grpcEncoding: "" };
    let malformed = "";
    let regular = false;
    const listSize = this.decoder.decode(block, this.limits.maxHeaderListSize, (name, value) => {
      if (name.charCodeAt(0) === 58 /* ':' */) {
        if (regular) malformed ||= "pseudo-header after a regular header";
        if (name === ":path") head.path = value;
        else if (name === ":method") head.method = value;
        else if (name !== ":scheme" && name !== ":authority") malformed ||= `pseudo-header ${name}`;
        return;
      }
      regular = true;
      if (name === "content-type") head.contentType = value;
      else if (name === "grpc-encoding") head.grpcEncoding = value;
      else if (name === "connection" || name === "transfer-encoding" || name === "keep-alive" || name === "upgrade") malformed ||= `connection-specific header ${name}`;
      else if (name === "te" && value !== "trailers") malformed ||= "te other than trailers";
      else if (name !== name.toLowerCase()) malformed ||= "uppercase header name";
    });

    const existing = this.streams.get(streamId);
    if (existing || streamId <= this.lastStreamId) {
      // Trailers from the client: they must end the stream.
      if (!existing || existing.remoteClosed) throw new ConnectionError(ErrorCode.streamClosed, "HEADERS on a closed stream");
      if (!endStream) throw new StreamError(streamId, ErrorCode.protocol, "trailers without END_STREAM");
      existing.remoteClosed = true;
      existing.listener?.data(Buffer.alloc(0), true);
      return;
    }
    this.lastStreamId = streamId;
    if (this.goingAway) {
      this.write(rstStreamFrame(streamId, ErrorCode.refusedStream));
      return;
    }
    if (listSize > this.limits.maxHeaderListSize) throw new StreamError(streamId, ErrorCode.frameSize, "header list too large");
    if (this.streams.size >= this.limits.maxConcurrentStreams) throw new StreamError(streamId, ErrorCode.refusedStream, "too many concurrent streams");
    if (malformed || !head.path || !head.method) throw new StreamError(streamId, ErrorCode.protocol, malformed || "missing pseudo-header");
    const stream = new Stream(streamId, this, this.peerInitialWindow, this.limits.streamWindow);
    this.streams.set(streamId, stream);
    if (endStream) stream.remoteClosed = true;
    this.onStream(stream, head, endStream);
  }
}
