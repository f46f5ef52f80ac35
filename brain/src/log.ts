// Structured logs: one JSON object per line on stderr.
export type LogLevel = "debug" | "info" | "warn" | "error";
const order: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };
let threshold: LogLevel = "info";

export function setLogLevel(level: LogLevel): void {
  threshold = level;
}

export function log(level: LogLevel, msg: string, fields: Record<string, unknown> = {}): void {
  if (order[level] < order[threshold]) return;
  process.stderr.write(
    JSON.stringify({ ts: new Date().toISOString(), level, msg, ...fields }, (_, value: unknown) =>
      typeof value === "bigint" ? value.toString() : value,
    ) + "\n",
  );
}
