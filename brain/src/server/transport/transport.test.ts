// brain's HTTP/2 transport under hostile clients, over real sockets: each
// malformed or abusive input gets the error code RFC 9113 asks for (compared
// with etcd's grpc-go where both must agree), the server never crashes, and
// other connections keep being served throughout.
import { connect, type Socket } from "node:net";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { KV, PutRequestSchema, RangeRequestSchema, WatchCreateRequestSchema, type PutResponse, type RangeResponse, WatchRequestSchema, WatchResponseSchema } from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { rawEtcdClient, startBrainProcess, waitFor, type Brain, type RawEtcdClient } from "@wharf/testkit";
import { ErrorCode, Flag, frame, FrameType, preface, rstStreamFrame, Setting, settingsFrame, windowUpdateFrame } from "./frames.js";
import { MessageReader } from "./grpc-call.js";
import { GrpcServer } from "./grpc-server.js";
import { encodeIndexed, encodeLiteral, HpackDecoder, staticNameIndex } from "./hpack.js";

interface Frame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

/** A hand-driven HTTP/2 client: sends exactly the bytes given, records every frame received. */
class RawH2 {
  readonly frames: Frame[] = [];
  closed = false;
  received = 0;
  private buffer = Buffer.alloc(0);

  private constructor(readonly socket: Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.received += chunk.length;
      this.buffer = Buffer.concat([this.buffer, chunk]);
      while (this.buffer.length >= 9) {
        const length = this.buffer.readUIntBE(0, 3);
        if (this.buffer.length < 9 + length) break;
        this.frames.push({ type: this.buffer[3]!, flags: this.buffer[4]!, streamId: this.buffer.readUInt32BE(5) & 0x7fffffff, payload: this.buffer.subarray(9, 9 + length) });
        this.buffer = this.buffer.subarray(9 + length);
      }
    });
    socket.on("error", () => undefined);
    socket.on("close", () => (this.closed = true));
  }

  static async open(endpoint: string, settings: Array<[number, number]> = []): Promise<RawH2> {
    const url = new URL(endpoint);
    const socket = connect(Number(url.port), url.hostname);
    await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
    const client = new RawH2(socket);
    client.send(Buffer.concat([preface, settingsFrame(settings)]));
    await client.waitFrame((f) => f.type === FrameType.settings && !(f.flags & Flag.ack), "the server's SETTINGS");
    client.send(frame(FrameType.settings, Flag.ack, 0));
    return client;
  }

  send(bytes: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(bytes);
  }

  setting(id: number, fallback: number): number {
    const settings = this.frames.find((f) => f.type === FrameType.settings && !(f.flags & Flag.ack))!.payload;
    for (let at = 0; at < settings.length; at += 6) if (settings.readUInt16BE(at) === id) return settings.readUInt32BE(at + 2);
    return fallback;
  }

  async waitFrame(match: (f: Frame) => boolean, what: string, timeoutMs = 10_000): Promise<Frame> {
    await waitFor(async () => this.frames.some(match), timeoutMs, () => `${what}; got ${this.describe()}`, 10);
    return this.frames.find(match)!;
  }

  /** The connection-level error: GOAWAY's code, or "closed" if the server just hung up. */
  async connectionError(): Promise<number | "closed"> {
    await waitFor(async () => this.closed || this.frames.some((f) => f.type === FrameType.goaway && f.payload.readUInt32BE(4) !== 0), 10_000, () => `GOAWAY or close; got ${this.describe()}`, 10);
    const goaway = this.frames.find((f) => f.type === FrameType.goaway && f.payload.readUInt32BE(4) !== 0);
    return goaway ? goaway.payload.readUInt32BE(4) : "closed";
  }

  /** The first error on `streamId`: RST_STREAM's code, or the connection's GOAWAY code. */
  async streamError(streamId: number): Promise<number> {
    const failure = await this.waitFrame((f) => (f.type === FrameType.rstStream && f.streamId === streamId) || (f.type === FrameType.goaway && f.payload.readUInt32BE(4) !== 0), `an error for stream ${streamId}`);
    return failure.type === FrameType.rstStream ? failure.payload.readUInt32BE(0) : failure.payload.readUInt32BE(4);
  }

  /** Still alive: answers a PING. */
  async ping(): Promise<void> {
    const data = Buffer.from("pingpong");
    this.send(frame(FrameType.ping, 0, 0, data));
    await this.waitFrame((f) => f.type === FrameType.ping && (f.flags & Flag.ack) !== 0 && f.payload.equals(data), "PING ack");
  }

  close(): void {
    this.socket.destroy();
  }

  private describe(): string {
    return JSON.stringify(this.frames.slice(-5).map((f) => ({ type: f.type, flags: f.flags, stream: f.streamId, length: f.payload.length })));
  }
}

function requestHeaders(path: string): Buffer {
  return Buffer.concat([
    encodeIndexed(3), // :method POST
    encodeIndexed(6), // :scheme http
    encodeLiteral(staticNameIndex(":path"), path),
    encodeLiteral(staticNameIndex(":authority"), "localhost"),
    encodeLiteral(staticNameIndex("content-type"), "application/grpc"),
    encodeLiteral("te", "trailers"),
  ]);
}

function grpcMessage(bytes: Uint8Array): Buffer {
  const out = Buffer.alloc(5 + bytes.length);
  out.writeUInt32BE(bytes.length, 1);
  out.set(bytes, 5);
  return out;
}

const rangeBody = () => grpcMessage(toBinary(RangeRequestSchema, create(RangeRequestSchema, { key: Buffer.from("k") })));

let brain: Brain;
let brainClient: RawEtcdClient;
const etcdEndpoint = inject("referenceEtcd").endpoint;

beforeAll(async () => {
  brain = await startBrainProcess();
  brainClient = rawEtcdClient(brain.endpoint);
});
afterAll(async () => {
  brainClient?.close();
  await brain?.stop();
});

/** The server is alive and answers another connection's Range. */
async function stillServing(): Promise<void> {
  const response = (await brainClient.call(KV, "Range", RangeRequestSchema, { key: Buffer.from("k") })) as unknown as RangeResponse;
  expect(response.header?.revision).toBeGreaterThan(0n);
  expect(brain.process.child.exitCode).toBeNull();
}

/**
 * brain must send the RFC's GOAWAY code; grpc-go (etcd) closes the connection
 * on these errors without a GOAWAY, which the RFC allows, or sends the same code.
 */
function expectConnectionError(target: string, seen: number | "closed", code: number): void {
  if (target === "brain") expect([target, seen]).toEqual([target, code]);
  else expect([target, seen === "closed" || seen === code]).toEqual([target, true]);
}

const targets = () => [
  { name: "brain", endpoint: brain.endpoint },
  { name: "etcd", endpoint: etcdEndpoint },
];

describe("transport: answers like etcd to malformed input", () => {
  const hpackCases: Array<[string, Buffer]> = [
    ["an index beyond the tables", Buffer.concat([requestHeaders("/etcdserverpb.KV/Range"), Buffer.from([0xff, 0x80, 0x01])])],
    ["a table size above SETTINGS_HEADER_TABLE_SIZE", Buffer.concat([Buffer.from([0x3f, 0xe2, 0x1f]), requestHeaders("/etcdserverpb.KV/Range")])],
    ["Huffman padding of zeros", Buffer.concat([requestHeaders("/etcdserverpb.KV/Range"), Buffer.from([0x00, 0x81, 0x00, 0x01, 0x61])])],
    ["EOS inside a Huffman string", Buffer.concat([requestHeaders("/etcdserverpb.KV/Range"), Buffer.from([0x00, 0x84, 0xff, 0xff, 0xff, 0xff, 0x01, 0x61])])],
  ];
  for (const [what, block] of hpackCases) {
    it(`bad HPACK, ${what}: GOAWAY(COMPRESSION_ERROR)`, async () => {
      for (const target of targets()) {
        const client = await RawH2.open(target.endpoint);
        client.send(frame(FrameType.headers, Flag.endHeaders, 1, block));
        expectConnectionError(target.name, await client.connectionError(), ErrorCode.compression);
        client.close();
      }
      await stillServing();
    });
  }

  it("a frame above SETTINGS_MAX_FRAME_SIZE: GOAWAY(FRAME_SIZE_ERROR)", async () => {
    for (const target of targets()) {
      const client = await RawH2.open(target.endpoint);
      client.send(frame(FrameType.headers, Flag.endHeaders, 1, Buffer.alloc(16385)));
      expectConnectionError(target.name, await client.connectionError(), ErrorCode.frameSize);
      client.close();
    }
    await stillServing();
  });

  // Not compared with etcd: grpc-go reads a message's bytes as they come and
  // gives the window back at once, so whether a burst overruns it is a race.
  it("DATA beyond the window: RST_STREAM(FLOW_CONTROL_ERROR), for a bidi call paused by its unread answers", async () => {
    // brain gives a request's window back once read, except while the call's
    // answers wait unread: here the client grants no window at all (0), so
    // echoed answers pile up, brain stops acknowledging, and sending on is a violation.
    const server = new GrpcServer({ maxReceiveMessageLength: 1 << 20 });
    server.route("/test.Echo/Echo", {
      kind: "bidi_streaming",
      decode: (bytes) => Buffer.from(bytes),
      encode: (response) => response as Uint8Array,
      handle: (call) => call.on("data", (request: Buffer) => call.write(request)),
    });
    const port = await server.listen("127.0.0.1", 0);
    try {
      const client = await RawH2.open(`http://127.0.0.1:${port}`, [[Setting.initialWindowSize, 0]]);
      const streamWindow = client.setting(Setting.initialWindowSize, 65535);
      client.send(frame(FrameType.headers, Flag.endHeaders, 1, requestHeaders("/test.Echo/Echo")));
      const message = grpcMessage(Buffer.alloc(16384 - 5, 0x64));
      for (let sent = 0; sent < 4 * streamWindow && !client.closed; sent += message.length) client.send(frame(FrameType.data, 0, 1, message));
      expect(await client.streamError(1)).toBe(ErrorCode.flowControl);
      await client.ping();
      client.close();
    } finally {
      await server.close(100);
    }
    await stillServing();
  });

  it("a preface that is not HTTP/2: GOAWAY(PROTOCOL_ERROR) and close (etcd serves HTTP/1.1 there, so brain only)", async () => {
    const url = new URL(brain.endpoint);
    const socket = connect(Number(url.port), url.hostname);
    socket.on("error", () => undefined);
    let received = Buffer.alloc(0);
    socket.on("data", (chunk: Buffer) => (received = Buffer.concat([received, chunk])));
    socket.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    await new Promise((resolve) => socket.on("close", resolve));
    const goaway = received.indexOf(Buffer.from([FrameType.goaway, 0, 0, 0, 0, 0]), 0);
    expect(goaway).toBeGreaterThan(0);
    expect(received.readUInt32BE(goaway + 10)).toBe(ErrorCode.protocol);
    await stillServing();
  });

  it("a request that is not gRPC gets a clear status, as from grpc-go", async () => {
    for (const target of targets()) {
      const client = await RawH2.open(target.endpoint);
      client.send(frame(FrameType.headers, Flag.endHeaders | Flag.endStream, 1, requestHeaders("/etcdserverpb.KV/Nope")));
      client.send(frame(FrameType.headers, Flag.endHeaders | Flag.endStream, 3, requestHeaders("/nope.Service/Call")));
      await client.waitFrame((f) => f.type === FrameType.headers && f.streamId === 3, "an answer on stream 3");
      await client.waitFrame((f) => f.type === FrameType.headers && f.streamId === 1, "an answer on stream 1");
      // Header blocks decoded in arrival order through one HPACK table, as a client would.
      const decoder = new HpackDecoder();
      const fields = new Map<number, string[]>();
      for (const f of client.frames.filter((f) => f.type === FrameType.headers)) {
        decoder.decode(f.payload, 1 << 20, (name, value) => fields.set(f.streamId, [...(fields.get(f.streamId) ?? []), `${name}: ${value}`]));
      }
      const text = (id: number) => (fields.get(id) ?? []).join("\n");
      expect([target.name, text(1)]).toEqual([target.name, expect.stringContaining("unknown method Nope for service etcdserverpb.KV")]);
      expect([target.name, text(3)]).toEqual([target.name, expect.stringContaining("unknown service nope.Service")]);
      for (const id of [1, 3]) expect([target.name, text(id)]).toEqual([target.name, expect.stringContaining("grpc-status: 12")]);
      client.close();
    }
  });
});

describe("transport: floods and abuse leave the server serving", () => {
  it("streams beyond SETTINGS_MAX_CONCURRENT_STREAMS are refused (REFUSED_STREAM), the connection lives on", async () => {
    const client = await RawH2.open(brain.endpoint);
    const max = client.setting(Setting.maxConcurrentStreams, Infinity);
    expect(max).toBeLessThan(10_000);
    const headers: Buffer[] = [];
    for (let i = 0; i <= max; i++) headers.push(frame(FrameType.headers, Flag.endHeaders, 2 * i + 1, requestHeaders("/etcdserverpb.KV/Range")));
    client.send(Buffer.concat(headers));
    const refused = 2 * max + 1;
    expect(await client.streamError(refused)).toBe(ErrorCode.refusedStream);
    await client.ping();
    // The open streams still complete.
    client.send(frame(FrameType.data, Flag.endStream, 1, rangeBody()));
    await client.waitFrame((f) => f.streamId === 1 && f.type === FrameType.headers && (f.flags & Flag.endStream) !== 0, "stream 1's trailers");
    client.close();
    await stillServing();
  });

  it("a CONTINUATION flood ends the connection before it costs memory", async () => {
    const client = await RawH2.open(brain.endpoint);
    const limit = client.setting(Setting.maxHeaderListSize, 0);
    expect(limit).toBeGreaterThan(0);
    client.send(frame(FrameType.headers, 0, 1, requestHeaders("/etcdserverpb.KV/Range")));
    const filler = Buffer.alloc(16384, 0x82); // ":method: GET" again and again
    for (let sent = 0; sent < 4 * limit && !client.closed; sent += filler.length) client.send(frame(FrameType.continuation, 0, 1, filler));
    expect(await client.connectionError()).toBe(ErrorCode.enhanceYourCalm);
    client.close();
    await stillServing();
  });

  it("a header list above SETTINGS_MAX_HEADER_LIST_SIZE resets that stream only", async () => {
    const client = await RawH2.open(brain.endpoint);
    const limit = client.setting(Setting.maxHeaderListSize, 0);
    const big = Buffer.concat([requestHeaders("/etcdserverpb.KV/Range"), encodeLiteral("x-big", "v".repeat(limit))]);
    const fragments = [];
    for (let at = 0; at < big.length; at += 16384) fragments.push(big.subarray(at, at + 16384));
    fragments.forEach((fragment, index) =>
      client.send(frame(index === 0 ? FrameType.headers : FrameType.continuation, index === fragments.length - 1 ? Flag.endHeaders | Flag.endStream : 0, 1, fragment)),
    );
    expect(await client.streamError(1)).not.toBe(ErrorCode.noError);
    await client.ping();
    client.close();
    await stillServing();
  });

  it("rapid reset (streams opened and cancelled at once) gets GOAWAY(ENHANCE_YOUR_CALM)", async () => {
    const client = await RawH2.open(brain.endpoint);
    const burst: Buffer[] = [];
    for (let i = 0; i < 2000; i++) {
      const id = 2 * i + 1;
      burst.push(frame(FrameType.headers, Flag.endHeaders, id, requestHeaders("/etcdserverpb.KV/Range")), rstStreamFrame(id, ErrorCode.cancel));
    }
    client.send(Buffer.concat(burst));
    expect(await client.connectionError()).toBe(ErrorCode.enhanceYourCalm);
    client.close();
    await stillServing();
  });

  it("a watch client that stops reading: its watcher leaves the live fan-out, other clients are served, and what it gets afterwards is gapless", async () => {
    const client = await RawH2.open(brain.endpoint);
    client.send(frame(FrameType.headers, Flag.endHeaders, 1, requestHeaders("/etcdserverpb.Watch/Watch")));
    const watch = create(WatchRequestSchema, {
      requestUnion: { case: "createRequest", value: create(WatchCreateRequestSchema, { key: Buffer.from("flood/"), rangeEnd: Buffer.from("flood0") }) },
    });
    client.send(frame(FrameType.data, 0, 1, grpcMessage(toBinary(WatchRequestSchema, watch))));
    await client.waitFrame((f) => f.streamId === 1 && f.type === FrameType.data, "the watch's created response");
    // From now on nothing is read: neither WINDOW_UPDATE nor the socket.
    client.socket.pause();
    const value = Buffer.alloc(1 << 20, 0x61);
    let lastRevision = 0n;
    for (let i = 0; i < 100; i++) {
      const put = (await brainClient.call(KV, "Put", PutRequestSchema, { key: Buffer.from(`flood/${i % 8}`), value })) as unknown as PutResponse;
      lastRevision = put.header!.revision;
    }
    await stillServing();
    // 100 MiB of events were due: the transport refused more than its high-water
    // mark for this call, and the watch took the watcher off the live fan-out
    // (a slow watcher, as etcd's victims) instead of queueing the rest.
    const metrics = await (await fetch(`${brain.metricsUrl}/metrics`)).text();
    expect(Number(/^etcd_debugging_mvcc_slow_watcher_total (\d+)/m.exec(metrics)?.[1])).toBe(1);
    client.socket.resume();
    client.send(Buffer.concat([windowUpdateFrame(0, 1 << 30), windowUpdateFrame(1, 1 << 30)]));
    // What arrives is in order and without gaps: every event up to the last
    // put, unless brain resets the stream (ENHANCE_YOUR_CALM) because more than
    // the transport's bound was queued for it at once — today's catch-up of
    // 100 MiB in one go does that; a client then watches again from its last revision.
    const revisions: bigint[] = [];
    let parsedFrames = 0;
    const reader = new MessageReader(1 << 30, "");
    const reset = () => client.frames.find((f) => f.type === FrameType.rstStream && f.streamId === 1);
    await waitFor(
      async () => {
        for (; parsedFrames < client.frames.length; parsedFrames++) {
          const f = client.frames[parsedFrames]!;
          if (f.type !== FrameType.data || f.streamId !== 1) continue;
          reader.push(f.payload, (bytes) => {
            for (const event of fromBinary(WatchResponseSchema, bytes).events) revisions.push(event.kv!.modRevision);
          });
        }
        return revisions.at(-1) === lastRevision || reset() !== undefined;
      },
      60_000,
      () => `events up to revision ${lastRevision} or a reset; got ${revisions.length}, last ${revisions.at(-1)}; connection closed: ${client.closed}`,
    );
    revisions.forEach((revision, index) => expect(revision).toBe(lastRevision - 99n + BigInt(index)));
    if (reset()) expect(reset()!.payload.readUInt32BE(0)).toBe(ErrorCode.enhanceYourCalm);
    else expect(revisions).toHaveLength(100);
    client.close();
  }, 120_000);
});

describe("transport: memory under a client that never reads (in process, so the heap is measurable)", () => {
  it("a stream writing without pause is cancelled at the bound; the server holds far less than was written", async () => {
    const server = new GrpcServer({ maxReceiveMessageLength: 1 << 20 });
    const message = new Uint8Array(1 << 20).fill(0x62);
    let written = 0;
    let cancelled = false;
    server.route("/test.Flood/Flood", {
      kind: "server_streaming",
      decode: (bytes) => bytes,
      encode: (response) => response as Uint8Array,
      handle: (call) => {
        call.on("cancelled", () => (cancelled = true));
        const pump = () => {
          // Ignores write()'s answer on purpose: the transport must bound it.
          for (let i = 0; i < 8 && !cancelled; i++) {
            call.write(message);
            written += message.length;
          }
          if (!cancelled && written < 512 << 20) setImmediate(pump);
        };
        pump();
      },
    });
    const port = await server.listen("127.0.0.1", 0);
    try {
      const client = await RawH2.open(`http://127.0.0.1:${port}`);
      client.socket.pause();
      const before = process.memoryUsage();
      client.send(frame(FrameType.headers, Flag.endHeaders, 1, requestHeaders("/test.Flood/Flood")));
      client.send(frame(FrameType.data, Flag.endStream, 1, grpcMessage(new Uint8Array(0))));
      await waitFor(async () => cancelled, 30_000, () => `the flood to be cancelled (written ${written} bytes)`);
      const after = process.memoryUsage();
      expect(written).toBeLessThan(128 << 20);
      expect(after.arrayBuffers + after.heapUsed - before.arrayBuffers - before.heapUsed).toBeLessThan(160 << 20);
      client.socket.resume();
      expect(await client.streamError(1)).toBe(ErrorCode.enhanceYourCalm);
      client.close();
    } finally {
      await server.close(100);
    }
  });

  it("a streaming call that waits for drain keeps going as the client reads, without being cancelled", async () => {
    const server = new GrpcServer({ maxReceiveMessageLength: 1 << 20 });
    const message = new Uint8Array(64 << 10).fill(0x63);
    const total = 32 << 20;
    server.route("/test.Flood/Polite", {
      kind: "server_streaming",
      decode: (bytes) => bytes,
      encode: (response) => response as Uint8Array,
      handle: (call) => {
        let written = 0;
        const pump = () => {
          while (written < total) {
            written += message.length;
            if (!call.write(message)) return void call.once("drain", pump);
          }
          call.end();
        };
        pump();
      },
    });
    const port = await server.listen("127.0.0.1", 0);
    try {
      const client = await RawH2.open(`http://127.0.0.1:${port}`);
      client.send(frame(FrameType.headers, Flag.endHeaders, 1, requestHeaders("/test.Flood/Polite")));
      client.send(frame(FrameType.data, Flag.endStream, 1, grpcMessage(new Uint8Array(0))));
      // Grant window as data arrives, like a reading client.
      let granted = 0;
      await waitFor(
        async () => {
          const data = client.frames.filter((f) => f.type === FrameType.data).reduce((sum, f) => sum + f.payload.length, 0);
          if (data > granted) {
            client.send(Buffer.concat([windowUpdateFrame(0, data - granted), windowUpdateFrame(1, data - granted)]));
            granted = data;
          }
          return client.frames.some((f) => f.type === FrameType.headers && f.streamId === 1 && (f.flags & Flag.endStream) !== 0);
        },
        60_000,
        "the polite stream's trailers",
        5,
      );
      const data = client.frames.filter((f) => f.type === FrameType.data).reduce((sum, f) => sum + f.payload.length, 0);
      expect(data).toBe(total + 5 * (total / message.length));
      expect(client.frames.some((f) => f.type === FrameType.rstStream)).toBe(false);
      client.close();
    } finally {
      await server.close(100);
    }
  });
});
