// Thin, typed wrappers over the raw host imports: strings and ArrayBuffers in,
// strings and ArrayBuffers out. Memory the host hands back was allocated
// through proxy_on_memory_allocate; it is copied and freed here.
import * as host from "./host";
import { BufferType, LogLevel, MapType, MetricType, StreamType, WasmResult } from "./enums";
import { decodeUtf8 } from "./utf8";

// Out-parameter slots the host writes pointers and sizes into.
const returnData: usize = memory.data(8);
const returnSize: usize = memory.data(8);
const returnExtra: usize = memory.data(8);

export class HeaderPair {
  constructor(
    public name: string,
    public value: string,
  ) {}
}

function utf8(text: string): ArrayBuffer {
  return String.UTF8.encode(text);
}

function ptr(buffer: ArrayBuffer): usize {
  return changetype<usize>(buffer);
}

/** Copies the host-returned block into a managed buffer and frees the block. */
function takeReturned(): ArrayBuffer {
  const data = <usize>load<u32>(returnData);
  const size = <i32>load<u32>(returnSize);
  const out = new ArrayBuffer(size);
  if (size > 0) memory.copy(changetype<usize>(out), data, <usize>size);
  if (data != 0) heap.free(data);
  return out;
}

export function log(level: LogLevel, message: string): void {
  const bytes = utf8(message);
  host.proxy_log(level, ptr(bytes), bytes.byteLength);
}

export function currentTimeNanoseconds(): u64 {
  host.proxy_get_current_time_nanoseconds(returnExtra);
  return load<u64>(returnExtra);
}

export function setTickPeriodMilliseconds(period: u32): void {
  host.proxy_set_tick_period_milliseconds(period);
}

export function getBufferBytes(buffer: BufferType, start: u32, maxSize: u32): ArrayBuffer | null {
  const result = host.proxy_get_buffer_bytes(buffer, start, maxSize, returnData, returnSize);
  if (result != WasmResult.Ok) return null;
  return takeReturned();
}

/** Replaces `size` bytes at `start` of a buffer with `data` (start 0, size = length replaces it all). */
export function setBufferBytes(buffer: BufferType, start: u32, size: u32, data: ArrayBuffer): WasmResult {
  return host.proxy_set_buffer_bytes(buffer, start, size, ptr(data), data.byteLength);
}

export function getPluginConfiguration(size: u32): ArrayBuffer {
  const bytes = getBufferBytes(BufferType.PluginConfiguration, 0, size);
  return bytes === null ? new ArrayBuffer(0) : bytes;
}

/** The ABI's header-map wire form: count, (key len, value len)×count, then key\0value\0 pairs. */
export function serializeHeaders(pairs: HeaderPair[]): ArrayBuffer {
  const names = new Array<ArrayBuffer>(pairs.length);
  const values = new Array<ArrayBuffer>(pairs.length);
  let size = 4 + pairs.length * 8;
  for (let i = 0; i < pairs.length; i++) {
    names[i] = utf8(pairs[i].name);
    values[i] = utf8(pairs[i].value);
    size += names[i].byteLength + values[i].byteLength + 2;
  }
  const out = new ArrayBuffer(size);
  const base = ptr(out);
  store<u32>(base, pairs.length);
  let at = base + 4;
  for (let i = 0; i < pairs.length; i++) {
    store<u32>(at, names[i].byteLength);
    store<u32>(at + 4, values[i].byteLength);
    at += 8;
  }
  for (let i = 0; i < pairs.length; i++) {
    memory.copy(at, ptr(names[i]), names[i].byteLength);
    at += names[i].byteLength;
    store<u8>(at++, 0);
    memory.copy(at, ptr(values[i]), values[i].byteLength);
    at += values[i].byteLength;
    store<u8>(at++, 0);
  }
  return out;
}

export function deserializeHeaders(data: ArrayBuffer): HeaderPair[] {
  const pairs = new Array<HeaderPair>();
  if (data.byteLength < 4) return pairs;
  const base = ptr(data);
  const count = <i32>load<u32>(base);
  let at = base + 4 + <usize>count * 8;
  for (let i = 0; i < count; i++) {
    const nameSize = <usize>load<u32>(base + 4 + <usize>i * 8);
    const valueSize = <usize>load<u32>(base + 8 + <usize>i * 8);
    const name = decodeUtf8(at, nameSize);
    at += nameSize + 1;
    const value = decodeUtf8(at, valueSize);
    at += valueSize + 1;
    pairs.push(new HeaderPair(name, value));
  }
  return pairs;
}

export function getHeaders(map: MapType): HeaderPair[] {
  if (host.proxy_get_header_map_pairs(map, returnData, returnSize) != WasmResult.Ok) return new Array<HeaderPair>();
  return deserializeHeaders(takeReturned());
}

export function setHeaders(map: MapType, pairs: HeaderPair[]): void {
  const data = serializeHeaders(pairs);
  host.proxy_set_header_map_pairs(map, ptr(data), data.byteLength);
}

export function getHeader(map: MapType, name: string): string | null {
  const key = utf8(name);
  if (host.proxy_get_header_map_value(map, ptr(key), key.byteLength, returnData, returnSize) != WasmResult.Ok) return null;
  const value = takeReturned();
  return decodeUtf8(changetype<usize>(value), value.byteLength);
}

export function replaceHeader(map: MapType, name: string, value: string): void {
  const key = utf8(name);
  const val = utf8(value);
  host.proxy_replace_header_map_value(map, ptr(key), key.byteLength, ptr(val), val.byteLength);
}

export function addHeader(map: MapType, name: string, value: string): void {
  const key = utf8(name);
  const val = utf8(value);
  host.proxy_add_header_map_value(map, ptr(key), key.byteLength, ptr(val), val.byteLength);
}

export function removeHeader(map: MapType, name: string): void {
  const key = utf8(name);
  host.proxy_remove_header_map_value(map, ptr(key), key.byteLength);
}

/** A property by path segments, e.g. ["connection", "subject_peer_certificate"]. */
export function getProperty(path: string[]): ArrayBuffer | null {
  const joined = utf8(path.join("\0"));
  if (host.proxy_get_property(ptr(joined), joined.byteLength, returnData, returnSize) != WasmResult.Ok) return null;
  return takeReturned();
}

export function setProperty(path: string[], value: ArrayBuffer): WasmResult {
  const joined = utf8(path.join("\0"));
  return host.proxy_set_property(ptr(joined), joined.byteLength, ptr(value), value.byteLength);
}

export function sendLocalResponse(status: u32, details: string, body: ArrayBuffer, headers: HeaderPair[], grpcStatus: i32 = -1): void {
  const detailBytes = utf8(details);
  const headerBytes = serializeHeaders(headers);
  host.proxy_send_local_response(
    status,
    ptr(detailBytes),
    detailBytes.byteLength,
    ptr(body),
    body.byteLength,
    ptr(headerBytes),
    headerBytes.byteLength,
    grpcStatus,
  );
}

export function continueStream(stream: StreamType): void {
  host.proxy_continue_stream(stream);
}

export class SharedValue {
  constructor(
    public value: ArrayBuffer | null,
    public cas: u32,
  ) {}
}

export function getSharedData(key: string): SharedValue {
  const keyBytes = utf8(key);
  const result = host.proxy_get_shared_data(ptr(keyBytes), keyBytes.byteLength, returnData, returnSize, returnExtra);
  if (result != WasmResult.Ok) return new SharedValue(null, 0);
  const cas = load<u32>(returnExtra);
  return new SharedValue(takeReturned(), cas);
}

/** Stores `value` if the entry's CAS still equals `cas` (0: unconditionally). */
export function setSharedData(key: string, value: ArrayBuffer, cas: u32): WasmResult {
  const keyBytes = utf8(key);
  return host.proxy_set_shared_data(ptr(keyBytes), keyBytes.byteLength, ptr(value), value.byteLength, cas);
}

export function defineMetric(type: MetricType, name: string): u32 {
  const nameBytes = utf8(name);
  if (host.proxy_define_metric(type, ptr(nameBytes), nameBytes.byteLength, returnExtra) != WasmResult.Ok) return 0;
  return load<u32>(returnExtra);
}

export function incrementMetric(id: u32, offset: i64): void {
  host.proxy_increment_metric(id, offset);
}

export function recordMetric(id: u32, value: u64): void {
  host.proxy_record_metric(id, value);
}

export function getMetric(id: u32): u64 {
  if (host.proxy_get_metric(id, returnExtra) != WasmResult.Ok) return 0;
  return load<u64>(returnExtra);
}

/** Starts an HTTP call to an Envoy cluster; returns the callout id, or 0 when refused. */
export function httpCall(upstream: string, headers: HeaderPair[], body: ArrayBuffer, timeoutMilliseconds: u32): u32 {
  const upstreamBytes = utf8(upstream);
  const headerBytes = serializeHeaders(headers);
  const trailerBytes = serializeHeaders(new Array<HeaderPair>());
  const result = host.proxy_http_call(
    ptr(upstreamBytes),
    upstreamBytes.byteLength,
    ptr(headerBytes),
    headerBytes.byteLength,
    ptr(body),
    body.byteLength,
    ptr(trailerBytes),
    trailerBytes.byteLength,
    timeoutMilliseconds,
    returnExtra,
  );
  if (result != WasmResult.Ok) return 0;
  return load<u32>(returnExtra);
}

export function setEffectiveContext(contextId: u32): void {
  host.proxy_set_effective_context(contextId);
}
