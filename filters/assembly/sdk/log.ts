import { proxy_log } from "./host";
import { LogLevel } from "./enums";

export function log(level: LogLevel, message: string): void {
  const bytes = String.UTF8.encode(message);
  proxy_log(level, changetype<usize>(bytes), <usize>bytes.byteLength);
}
