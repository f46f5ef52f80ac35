// A proxy-wasm ABI v0.2.1 host in TypeScript: loads the exact .wasm Envoy
// runs and plays Envoy's side of the ABI, so filters are unit-tested on their
// real binary. Where Envoy's behaviour is observable it is copied: lower-case
// header names, pseudo-headers first, multiple values joined with ",", the
// header-map wire format, NotFound for absent values, CAS on shared data, and
// the callback order of a stream (create → request headers → body → response
// headers → body → done → log → delete).
import { readFile } from "node:fs/promises";
import { SharedData } from "./shared-data.js";

export enum LogLevel {
  Trace = 0,
  Debug = 1,
  Info = 2,
  Warn = 3,
  Error = 4,
  Critical = 5,
}

const enum Result {
  Ok = 0,
  NotFound = 1,
  BadArgument = 2,
  InvalidMemoryAccess = 6,
  CasMismatch = 8,
}

const enum Map_ {
  RequestHeaders = 0,
  RequestTrailers = 1,
  ResponseHeaders = 2,
  ResponseTrailers = 3,
  CallResponseHeaders = 6,
  CallResponseTrailers = 7,
}

const enum Buffer_ {
  RequestBody = 0,
  ResponseBody = 1,
  CallResponseBody = 4,
  VmConfiguration = 6,
  PluginConfiguration = 7,
}

export type Headers = Array<[string, string]>;

export interface LocalResponse {
  status: number;
  details: string;
  body: string;
  headers: Headers;
}

export interface HttpCall {
  id: number;
  /** The context that was effective when the guest made the call. */
  contextId: number;
  upstream: string;
  headers: Headers;
  body: Uint8Array;
  timeoutMs: number;
}

interface Stream {
  id: number;
  maps: Map<number, Headers>;
  buffers: Map<number, Uint8Array>;
  localResponse?: LocalResponse;
  continued: number[];
}

interface Metric {
  name: string;
  type: "counter" | "gauge" | "histogram";
  value: bigint;
}

export interface HostOptions {
  pluginConfiguration?: Uint8Array;
  /** Properties by path joined with "." (e.g. "connection.subject_peer_certificate"). */
  properties?: Record<string, Uint8Array | string>;
  /** Shared across hosts to model Envoy's worker threads sharing one store. */
  sharedData?: SharedData;
  now?: () => bigint;
}

const rootId = 1;
const decoder = new TextDecoder();

export class ProxyWasmHost {
  readonly logs: Array<{ level: LogLevel; message: string }> = [];
  readonly metrics = new Map<number, Metric>();
  readonly calls: HttpCall[] = [];
  tickPeriodMs = 0;
  /** Host functions the guest has called (every ABI import counts one): the cost a filter puts on Envoy. */
  hostCalls = 0;
  private instance!: WebAssembly.Instance;
  private readonly streams = new Map<number, Stream>();
  private readonly rootBuffers = new Map<number, Uint8Array>();
  private readonly rootMaps = new Map<number, Headers>();
  private nextContextId = rootId + 1;
  private nextCalloutId = 1;
  private effectiveContext = rootId;
  private readonly sharedData: SharedData;
  private readonly properties: Map<string, Uint8Array>;

  private constructor(private readonly options: HostOptions) {
    this.sharedData = options.sharedData ?? new SharedData();
    this.properties = new Map(
      Object.entries(options.properties ?? {}).map(([path, value]) => [path, typeof value === "string" ? new TextEncoder().encode(value) : value]),
    );
  }

  /** Instantiates the module; fails if it imports anything but the ABI. */
  static async load(wasmFile: string, options: HostOptions = {}): Promise<ProxyWasmHost> {
    const host = new ProxyWasmHost(options);
    const module = await WebAssembly.compile(await readFile(wasmFile));
    const imports = WebAssembly.Module.imports(module);
    const provided = host.imports();
    for (const entry of imports) {
      if (entry.module !== "env" || !(entry.name in provided)) {
        throw new Error(`${wasmFile} imports ${entry.module}.${entry.name}, which is not part of proxy-wasm ABI v0.2.1`);
      }
    }
    // Every import counts itself, so a test can tell how many host calls a request costs.
    const counted: Record<string, (...args: never[]) => number> = {};
    for (const [name, fn] of Object.entries(provided)) {
      counted[name] = (...args: never[]) => {
        host.hostCalls++;
        return fn(...args);
      };
    }
    host.instance = await WebAssembly.instantiate(module, { env: counted });
    return host;
  }

  private get exports(): Record<string, (...args: number[]) => number> {
    return this.instance.exports as unknown as Record<string, (...args: number[]) => number>;
  }

  /** Size of the guest's linear memory: it only grows, so a flat value means nothing accumulates. */
  get memoryBytes(): number {
    return (this.instance.exports.memory as WebAssembly.Memory).buffer.byteLength;
  }

  /** Sets a property (e.g. "connection.subject_peer_certificate") as a new connection would present it; undefined removes it. */
  setProperty(path: string, value: Uint8Array | string | undefined): void {
    if (value === undefined) this.properties.delete(path);
    else this.properties.set(path, typeof value === "string" ? new TextEncoder().encode(value) : value);
  }

  private memoryView = new Uint8Array(0);

  /** A view of guest memory, made again only when the memory grew (growing detaches the old buffer). */
  private get memory(): Uint8Array {
    const buffer = (this.instance.exports.memory as WebAssembly.Memory).buffer;
    if (this.memoryView.buffer !== buffer) this.memoryView = new Uint8Array(buffer);
    return this.memoryView;
  }

  private call(name: string, ...args: number[]): number {
    const fn = this.exports[name];
    return fn ? fn(...args) : 0;
  }

  /** _initialize, root context creation, vm start and configure, as Envoy does. */
  start(): boolean {
    this.call("_initialize");
    this.call("proxy_on_context_create", rootId, 0);
    this.rootBuffers.set(Buffer_.VmConfiguration, new Uint8Array());
    this.rootBuffers.set(Buffer_.PluginConfiguration, this.options.pluginConfiguration ?? new Uint8Array());
    if (!this.call("proxy_on_vm_start", rootId, 0)) return false;
    return this.call("proxy_on_configure", rootId, (this.options.pluginConfiguration ?? new Uint8Array()).length) !== 0;
  }

  /**
   * A new plugin configuration for the running VM, as Envoy hands an updated
   * filter configuration to a VM it keeps (module state such as caches
   * survives): true when the filter accepted it.
   */
  configure(pluginConfiguration: Uint8Array): boolean {
    this.rootBuffers.set(Buffer_.PluginConfiguration, pluginConfiguration);
    this.effectiveContext = rootId;
    return this.call("proxy_on_configure", rootId, pluginConfiguration.length) !== 0;
  }

  tick(): void {
    this.effectiveContext = rootId;
    this.call("proxy_on_tick", rootId);
  }

  /** A new HTTP stream; drive it with the returned handle. */
  stream(): StreamHandle {
    const id = this.nextContextId++;
    const stream: Stream = { id, maps: new Map(), buffers: new Map(), continued: [] };
    this.streams.set(id, stream);
    this.call("proxy_on_context_create", id, rootId);
    return new StreamHandle(this, stream);
  }

  /** @internal */ invoke(contextId: number, name: string, ...args: number[]): number {
    this.effectiveContext = contextId;
    return this.call(name, contextId, ...args);
  }

  /** @internal */ forget(contextId: number): void {
    this.streams.delete(contextId);
  }

  /**
   * Answers an HTTP call the filter made, as the upstream cluster would.
   * Like Envoy, the host makes every call on the root context and answers it
   * there, whichever stream asked; the guest must switch context itself.
   */
  respondToCall(call: HttpCall, headers: Headers, body: string | Uint8Array): void {
    const bytes = typeof body === "string" ? new TextEncoder().encode(body) : body;
    this.rootMaps.set(Map_.CallResponseHeaders, headers);
    this.rootBuffers.set(Buffer_.CallResponseBody, bytes);
    this.effectiveContext = rootId;
    this.call("proxy_on_http_call_response", rootId, call.id, headers.length, bytes.length, 0);
    this.rootMaps.delete(Map_.CallResponseHeaders);
    this.rootBuffers.delete(Buffer_.CallResponseBody);
  }

  metric(name: string): bigint | undefined {
    for (const metric of this.metrics.values()) if (metric.name === name) return metric.value;
    return undefined;
  }

  // --- memory helpers ---

  private read(pointer: number, size: number): Uint8Array {
    if (pointer + size > this.memory.length) throw new RangeError("guest pointer out of bounds");
    return this.memory.slice(pointer, pointer + size);
  }

  private readString(pointer: number, size: number): string {
    if (pointer + size > this.memory.length) throw new RangeError("guest pointer out of bounds");
    return decoder.decode(this.memory.subarray(pointer, pointer + size));
  }

  private writeU32(pointer: number, value: number): void {
    const memory = this.memory;
    memory[pointer] = value & 0xff;
    memory[pointer + 1] = (value >>> 8) & 0xff;
    memory[pointer + 2] = (value >>> 16) & 0xff;
    memory[pointer + 3] = (value >>> 24) & 0xff;
  }

  /** Copies bytes into guest memory the guest allocated, as Envoy does. */
  private returnBytes(bytes: Uint8Array, dataPointer: number, sizePointer: number): number {
    const target = bytes.length === 0 ? 0 : this.call("proxy_on_memory_allocate", bytes.length);
    if (bytes.length > 0) this.memory.set(bytes, target);
    this.writeU32(dataPointer, target);
    this.writeU32(sizePointer, bytes.length);
    return Result.Ok;
  }

  private mapOf(type: number): Headers | undefined {
    if (type === Map_.CallResponseHeaders || type === Map_.CallResponseTrailers) return this.rootMaps.get(type);
    const stream = this.streams.get(this.effectiveContext);
    if (!stream) return undefined;
    if (!stream.maps.has(type)) stream.maps.set(type, []);
    return stream.maps.get(type);
  }

  private bufferOf(type: number): Uint8Array | undefined {
    if (type === Buffer_.PluginConfiguration || type === Buffer_.VmConfiguration || type === Buffer_.CallResponseBody) {
      return this.rootBuffers.get(type);
    }
    return this.streams.get(this.effectiveContext)?.buffers.get(type);
  }

  // --- the ABI's host functions ---

  private imports(): Record<string, (...args: never[]) => number> {
    const encoder = new TextEncoder();
    return {
      proxy_log: (level: number, pointer: number, size: number) => {
        this.logs.push({ level, message: this.readString(pointer, size) });
        return Result.Ok;
      },
      proxy_get_current_time_nanoseconds: (pointer: number) => {
        new DataView(this.memory.buffer).setBigUint64(pointer, this.options.now?.() ?? process.hrtime.bigint(), true);
        return Result.Ok;
      },
      proxy_set_tick_period_milliseconds: (period: number) => {
        this.tickPeriodMs = period;
        return Result.Ok;
      },
      proxy_get_configuration: (dataPointer: number, sizePointer: number) =>
        this.returnBytes(this.rootBuffers.get(Buffer_.PluginConfiguration) ?? new Uint8Array(), dataPointer, sizePointer),
      proxy_get_buffer_bytes: (type: number, start: number, maxSize: number, dataPointer: number, sizePointer: number) => {
        const buffer = this.bufferOf(type);
        if (!buffer) return Result.NotFound;
        return this.returnBytes(buffer.subarray(start, start + maxSize), dataPointer, sizePointer);
      },
      proxy_set_buffer_bytes: (type: number, start: number, size: number, pointer: number, length: number) => {
        const stream = this.streams.get(this.effectiveContext);
        const buffer = this.bufferOf(type);
        if (!stream || !buffer) return Result.NotFound;
        const data = this.read(pointer, length);
        // Envoy: replace [start, start+size) with data (start 0 and size >= length replaces all).
        const next = new Uint8Array(buffer.length - Math.min(size, buffer.length - start) + data.length);
        next.set(buffer.subarray(0, start), 0);
        next.set(data, start);
        next.set(buffer.subarray(start + size), start + data.length);
        stream.buffers.set(type, next);
        return Result.Ok;
      },
      proxy_get_header_map_pairs: (type: number, dataPointer: number, sizePointer: number) => {
        const map = this.mapOf(type);
        if (!map) return Result.NotFound;
        return this.returnBytes(serializeHeaders(map), dataPointer, sizePointer);
      },
      proxy_set_header_map_pairs: (type: number, pointer: number, size: number) => {
        const map = this.mapOf(type);
        if (!map) return Result.NotFound;
        map.splice(0, map.length, ...deserializeHeaders(this.read(pointer, size)));
        return Result.Ok;
      },
      proxy_get_header_map_value: (type: number, keyPointer: number, keySize: number, dataPointer: number, sizePointer: number) => {
        const map = this.mapOf(type);
        const key = this.readString(keyPointer, keySize).toLowerCase();
        const values = (map ?? []).filter(([name]) => name === key).map(([, value]) => value);
        if (values.length === 0) return Result.NotFound;
        return this.returnBytes(encoder.encode(values.join(",")), dataPointer, sizePointer);
      },
      proxy_replace_header_map_value: (type: number, keyPointer: number, keySize: number, valuePointer: number, valueSize: number) => {
        const map = this.mapOf(type);
        if (!map) return Result.NotFound;
        const key = this.readString(keyPointer, keySize).toLowerCase();
        const value = this.readString(valuePointer, valueSize);
        const at = map.findIndex(([name]) => name === key);
        const kept = map.filter(([name]) => name !== key);
        kept.splice(at < 0 ? kept.length : at, 0, [key, value]);
        map.splice(0, map.length, ...kept);
        return Result.Ok;
      },
      proxy_add_header_map_value: (type: number, keyPointer: number, keySize: number, valuePointer: number, valueSize: number) => {
        const map = this.mapOf(type);
        if (!map) return Result.NotFound;
        map.push([this.readString(keyPointer, keySize).toLowerCase(), this.readString(valuePointer, valueSize)]);
        return Result.Ok;
      },
      proxy_remove_header_map_value: (type: number, keyPointer: number, keySize: number) => {
        const map = this.mapOf(type);
        if (!map) return Result.NotFound;
        const key = this.readString(keyPointer, keySize).toLowerCase();
        map.splice(0, map.length, ...map.filter(([name]) => name !== key));
        return Result.Ok;
      },
      proxy_get_property: (pathPointer: number, pathSize: number, dataPointer: number, sizePointer: number) => {
        const path = this.readString(pathPointer, pathSize).split("\0").join(".");
        const value = this.properties.get(path);
        if (value === undefined) return Result.NotFound;
        return this.returnBytes(value, dataPointer, sizePointer);
      },
      proxy_set_property: (pathPointer: number, pathSize: number, valuePointer: number, valueSize: number) => {
        this.properties.set(this.readString(pathPointer, pathSize).split("\0").join("."), this.read(valuePointer, valueSize));
        return Result.Ok;
      },
      proxy_send_local_response: (
        status: number,
        detailsPointer: number,
        detailsSize: number,
        bodyPointer: number,
        bodySize: number,
        headersPointer: number,
        headersSize: number,
      ) => {
        const stream = this.streams.get(this.effectiveContext);
        if (!stream) return Result.NotFound;
        stream.localResponse = {
          status,
          details: this.readString(detailsPointer, detailsSize),
          body: this.readString(bodyPointer, bodySize),
          headers: deserializeHeaders(this.read(headersPointer, headersSize)),
        };
        return Result.Ok;
      },
      proxy_continue_stream: (streamType: number) => {
        this.streams.get(this.effectiveContext)?.continued.push(streamType);
        return Result.Ok;
      },
      proxy_get_shared_data: (keyPointer: number, keySize: number, dataPointer: number, sizePointer: number, casPointer: number) => {
        const entry = this.sharedData.get(this.readString(keyPointer, keySize));
        if (!entry) return Result.NotFound;
        this.writeU32(casPointer, entry.cas);
        return this.returnBytes(entry.value, dataPointer, sizePointer);
      },
      proxy_set_shared_data: (keyPointer: number, keySize: number, valuePointer: number, valueSize: number, cas: number) =>
        this.sharedData.set(this.readString(keyPointer, keySize), this.read(valuePointer, valueSize), cas) ? Result.Ok : Result.CasMismatch,
      proxy_define_metric: (type: number, namePointer: number, nameSize: number, idPointer: number) => {
        const name = this.readString(namePointer, nameSize);
        let id = [...this.metrics.entries()].find(([, metric]) => metric.name === name)?.[0];
        if (id === undefined) {
          id = this.metrics.size + 1;
          this.metrics.set(id, { name, type: (["counter", "gauge", "histogram"] as const)[type] ?? "counter", value: 0n });
        }
        this.writeU32(idPointer, id);
        return Result.Ok;
      },
      proxy_increment_metric: (id: number, offset: bigint) => {
        const metric = this.metrics.get(id);
        if (!metric) return Result.NotFound;
        metric.value += BigInt(offset);
        return Result.Ok;
      },
      proxy_record_metric: (id: number, value: bigint) => {
        const metric = this.metrics.get(id);
        if (!metric) return Result.NotFound;
        metric.value = BigInt.asUintN(64, BigInt(value));
        return Result.Ok;
      },
      proxy_get_metric: (id: number, pointer: number) => {
        const metric = this.metrics.get(id);
        if (!metric) return Result.NotFound;
        new DataView(this.memory.buffer).setBigUint64(pointer, metric.value, true);
        return Result.Ok;
      },
      proxy_http_call: (
        upstreamPointer: number,
        upstreamSize: number,
        headersPointer: number,
        headersSize: number,
        bodyPointer: number,
        bodySize: number,
        _trailersPointer: number,
        _trailersSize: number,
        timeoutMs: number,
        idPointer: number,
      ) => {
        const call: HttpCall = {
          id: this.nextCalloutId++,
          contextId: this.effectiveContext,
          upstream: this.readString(upstreamPointer, upstreamSize),
          headers: deserializeHeaders(this.read(headersPointer, headersSize)),
          body: this.read(bodyPointer, bodySize),
          timeoutMs,
        };
        this.calls.push(call);
        this.writeU32(idPointer, call.id);
        return Result.Ok;
      },
      proxy_set_effective_context: (contextId: number) => {
        if (contextId !== rootId && !this.streams.has(contextId)) return Result.BadArgument;
        this.effectiveContext = contextId;
        return Result.Ok;
      },
      proxy_done: () => Result.Ok,
    } as unknown as Record<string, (...args: never[]) => number>;
  }
}

/** One HTTP stream through the filter. */
export class StreamHandle {
  constructor(
    private readonly host: ProxyWasmHost,
    private readonly stream: Stream,
  ) {}

  get id(): number {
    return this.stream.id;
  }

  get localResponse(): LocalResponse | undefined {
    return this.stream.localResponse;
  }

  get continued(): number[] {
    return this.stream.continued;
  }

  /** The request headers as the filter left them (what Envoy would send upstream). */
  get requestHeaders(): Headers {
    return this.stream.maps.get(Map_.RequestHeaders) ?? [];
  }

  get responseHeaders(): Headers {
    return this.stream.maps.get(Map_.ResponseHeaders) ?? [];
  }

  body(type: "request" | "response"): string {
    return new TextDecoder().decode(this.stream.buffers.get(type === "request" ? Buffer_.RequestBody : Buffer_.ResponseBody) ?? new Uint8Array());
  }

  /** Returns the filter's status: 0 Continue, 1 StopIteration. */
  sendRequestHeaders(headers: Headers, endOfStream = true): number {
    this.stream.maps.set(Map_.RequestHeaders, normalize(headers));
    return this.host.invoke(this.stream.id, "proxy_on_request_headers", headers.length, endOfStream ? 1 : 0);
  }

  sendRequestBody(body: string | Uint8Array, endOfStream = true): number {
    const bytes = typeof body === "string" ? new TextEncoder().encode(body) : body;
    this.stream.buffers.set(Buffer_.RequestBody, bytes);
    // Envoy states the buffered size in bytes.
    return this.host.invoke(this.stream.id, "proxy_on_request_body", bytes.length, endOfStream ? 1 : 0);
  }

  /** Request trailers end the request; returns the filter's status (0 Continue, 1 StopIteration). */
  sendRequestTrailers(trailers: Headers): number {
    this.stream.maps.set(Map_.RequestTrailers, normalize(trailers));
    return this.host.invoke(this.stream.id, "proxy_on_request_trailers", trailers.length);
  }

  sendResponseHeaders(headers: Headers, endOfStream = false): number {
    this.stream.maps.set(Map_.ResponseHeaders, normalize(headers));
    return this.host.invoke(this.stream.id, "proxy_on_response_headers", headers.length, endOfStream ? 1 : 0);
  }

  /** One chunk of the response body (bytes, or text sent as UTF-8); the size the filter is told is its byte length. */
  sendResponseBody(body: string | Uint8Array, endOfStream = true): number {
    const bytes = typeof body === "string" ? new TextEncoder().encode(body) : body;
    this.stream.buffers.set(Buffer_.ResponseBody, bytes);
    return this.host.invoke(this.stream.id, "proxy_on_response_body", bytes.length, endOfStream ? 1 : 0);
  }

  /** The body chunk as the filter left it (what Envoy sends on), as bytes. */
  bodyBytes(type: "request" | "response"): Uint8Array {
    return this.stream.buffers.get(type === "request" ? Buffer_.RequestBody : Buffer_.ResponseBody) ?? new Uint8Array();
  }

  /** Ends the stream: done, log, delete, in Envoy's order. */
  finish(): void {
    this.host.invoke(this.stream.id, "proxy_on_done");
    this.host.invoke(this.stream.id, "proxy_on_log");
    this.host.invoke(this.stream.id, "proxy_on_delete");
    this.host.forget(this.stream.id);
  }

  header(name: string, which: "request" | "response" = "request"): string | undefined {
    const map = which === "request" ? this.requestHeaders : this.responseHeaders;
    const values = map.filter(([key]) => key === name).map(([, value]) => value);
    return values.length === 0 ? undefined : values.join(",");
  }
}

/** Envoy lower-cases names and keeps pseudo-headers first. */
function normalize(headers: Headers): Headers {
  const lowered = headers.map(([name, value]) => [name.toLowerCase(), value] as [string, string]);
  return [...lowered.filter(([name]) => name.startsWith(":")), ...lowered.filter(([name]) => !name.startsWith(":"))];
}

export function serializeHeaders(headers: Headers): Uint8Array {
  const encoder = new TextEncoder();
  const encoded = headers.map(([name, value]) => [encoder.encode(name), encoder.encode(value)] as const);
  const size = 4 + encoded.length * 8 + encoded.reduce((total, [name, value]) => total + name.length + value.length + 2, 0);
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setUint32(0, encoded.length, true);
  let at = 4;
  for (const [name, value] of encoded) {
    view.setUint32(at, name.length, true);
    view.setUint32(at + 4, value.length, true);
    at += 8;
  }
  for (const [name, value] of encoded) {
    out.set(name, at);
    at += name.length + 1;
    out.set(value, at);
    at += value.length + 1;
  }
  return out;
}

export function deserializeHeaders(bytes: Uint8Array): Headers {
  if (bytes.length < 4) return [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = view.getUint32(0, true);
  const decoder = new TextDecoder();
  const headers: Headers = [];
  let at = 4 + count * 8;
  for (let i = 0; i < count; i++) {
    const nameSize = view.getUint32(4 + i * 8, true);
    const valueSize = view.getUint32(8 + i * 8, true);
    const name = decoder.decode(bytes.subarray(at, at + nameSize));
    at += nameSize + 1;
    const value = decoder.decode(bytes.subarray(at, at + valueSize));
    at += valueSize + 1;
    headers.push([name, value]);
  }
  return headers;
}
