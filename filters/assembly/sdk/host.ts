// Raw imports of the proxy-wasm ABI v0.2.1 host functions. Nothing else in
// the SDK talks to the host directly; everything here is one-to-one with the
// spec (https://github.com/proxy-wasm/spec/tree/main/abi-versions/v0.2.1).

@external("env", "proxy_log")
export declare function proxy_log(level: u32, messageData: usize, messageSize: usize): u32;

@external("env", "proxy_add_header_map_value")
export declare function proxy_add_header_map_value(
  mapType: u32,
  keyData: usize,
  keySize: usize,
  valueData: usize,
  valueSize: usize,
): u32;
