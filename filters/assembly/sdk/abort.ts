import { proxy_log } from "./host";
import { LogLevel } from "./enums";

// Replaces AssemblyScript's default `env.abort` import, which no proxy-wasm
// host provides: log through the ABI, then trap so the host fails the VM.
export function abortWithLog(
  message: string | null,
  fileName: string | null,
  lineNumber: u32,
  columnNumber: u32,
): void {
  const text = `abort: ${message !== null ? message : "(no message)"} at ${
    fileName !== null ? fileName : "?"
  }:${lineNumber}:${columnNumber}`;
  const bytes = String.UTF8.encode(text);
  proxy_log(LogLevel.Critical, changetype<usize>(bytes), <usize>bytes.byteLength);
  unreachable();
}
