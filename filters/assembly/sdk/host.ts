// Raw imports of the proxy-wasm ABI v0.2.1 host functions, one-to-one with
// the spec (https://github.com/proxy-wasm/spec/tree/main/abi-versions/v0.2.1).
// Nothing else in the SDK declares imports; hostcalls.ts wraps these.

@external("env", "proxy_log")
export declare function proxy_log(level: u32, messageData: usize, messageSize: usize): u32;

@external("env", "proxy_get_current_time_nanoseconds")
export declare function proxy_get_current_time_nanoseconds(returnTime: usize): u32;

@external("env", "proxy_set_tick_period_milliseconds")
export declare function proxy_set_tick_period_milliseconds(period: u32): u32;

@external("env", "proxy_get_configuration")
export declare function proxy_get_configuration(returnData: usize, returnSize: usize): u32;

@external("env", "proxy_get_buffer_bytes")
export declare function proxy_get_buffer_bytes(bufferType: u32, start: u32, maxSize: u32, returnData: usize, returnSize: usize): u32;

@external("env", "proxy_set_buffer_bytes")
export declare function proxy_set_buffer_bytes(bufferType: u32, start: u32, size: u32, data: usize, dataSize: usize): u32;

@external("env", "proxy_get_header_map_pairs")
export declare function proxy_get_header_map_pairs(mapType: u32, returnData: usize, returnSize: usize): u32;

@external("env", "proxy_set_header_map_pairs")
export declare function proxy_set_header_map_pairs(mapType: u32, data: usize, size: usize): u32;

@external("env", "proxy_get_header_map_value")
export declare function proxy_get_header_map_value(mapType: u32, keyData: usize, keySize: usize, returnData: usize, returnSize: usize): u32;

@external("env", "proxy_replace_header_map_value")
export declare function proxy_replace_header_map_value(mapType: u32, keyData: usize, keySize: usize, valueData: usize, valueSize: usize): u32;

@external("env", "proxy_add_header_map_value")
export declare function proxy_add_header_map_value(mapType: u32, keyData: usize, keySize: usize, valueData: usize, valueSize: usize): u32;

@external("env", "proxy_remove_header_map_value")
export declare function proxy_remove_header_map_value(mapType: u32, keyData: usize, keySize: usize): u32;

@external("env", "proxy_get_property")
export declare function proxy_get_property(pathData: usize, pathSize: usize, returnData: usize, returnSize: usize): u32;

@external("env", "proxy_set_property")
export declare function proxy_set_property(pathData: usize, pathSize: usize, valueData: usize, valueSize: usize): u32;

@external("env", "proxy_send_local_response")
export declare function proxy_send_local_response(
  statusCode: u32,
  statusDetailsData: usize,
  statusDetailsSize: usize,
  bodyData: usize,
  bodySize: usize,
  headersData: usize,
  headersSize: usize,
  grpcStatus: i32,
): u32;

@external("env", "proxy_continue_stream")
export declare function proxy_continue_stream(streamType: u32): u32;

@external("env", "proxy_get_shared_data")
export declare function proxy_get_shared_data(keyData: usize, keySize: usize, returnData: usize, returnSize: usize, returnCas: usize): u32;

@external("env", "proxy_set_shared_data")
export declare function proxy_set_shared_data(keyData: usize, keySize: usize, valueData: usize, valueSize: usize, cas: u32): u32;

@external("env", "proxy_define_metric")
export declare function proxy_define_metric(metricType: u32, nameData: usize, nameSize: usize, returnId: usize): u32;

@external("env", "proxy_increment_metric")
export declare function proxy_increment_metric(metricId: u32, offset: i64): u32;

@external("env", "proxy_record_metric")
export declare function proxy_record_metric(metricId: u32, value: u64): u32;

@external("env", "proxy_get_metric")
export declare function proxy_get_metric(metricId: u32, returnValue: usize): u32;

@external("env", "proxy_http_call")
export declare function proxy_http_call(
  upstreamData: usize,
  upstreamSize: usize,
  headersData: usize,
  headersSize: usize,
  bodyData: usize,
  bodySize: usize,
  trailersData: usize,
  trailersSize: usize,
  timeoutMilliseconds: u32,
  returnCalloutId: usize,
): u32;

@external("env", "proxy_set_effective_context")
export declare function proxy_set_effective_context(contextId: u32): u32;

@external("env", "proxy_done")
export declare function proxy_done(): u32;
