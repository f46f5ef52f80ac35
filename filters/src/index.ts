import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export { ProxyWasmHost, StreamHandle, LogLevel, serializeHeaders, deserializeHeaders } from "./test-host/host.js";
export type { Headers, HttpCall, LocalResponse, HostOptions } from "./test-host/host.js";
export { SharedData } from "./test-host/shared-data.js";

const buildDir = join(dirname(fileURLToPath(import.meta.url)), "..", "build");

/** Path of a compiled filter module, e.g. wasmPath("hello"). */
export function wasmPath(filter: string): string {
  const path = join(buildDir, `${filter}.wasm`);
  if (!existsSync(path)) {
    throw new Error(`${path} is missing: run \`npm run build\` (it compiles filters/assembly/${filter}).`);
  }
  return path;
}
