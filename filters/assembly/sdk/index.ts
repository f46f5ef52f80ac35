// The project's proxy-wasm SDK for AssemblyScript (ABI v0.2.1).
// A filter's entry file re-exports `abi` so Envoy finds the ABI marker and
// the memory exports in the module.
export { LogLevel, MapType, FilterHeadersStatus } from "./enums";
export { log } from "./log";
export { addHeader } from "./headers";
