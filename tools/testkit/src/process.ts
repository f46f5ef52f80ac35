import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, readFileSync } from "node:fs";
import { createInterface } from "node:readline";

/** A real part running as a child process, with its output in a log file. */
export interface RunningProcess {
  readonly name: string;
  readonly logFile: string;
  readonly child: ChildProcess;
  /** Resolves once the process has exited. */
  readonly exited: Promise<number | null>;
  /** Last lines of the log, for error messages. */
  logTail(lines?: number): string;
  /** SIGTERM, then SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

export interface StartOptions {
  name: string;
  command: string;
  args: string[];
  logFile: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Also hands each output line here (the log file still gets everything). */
  echo?: LineSink;
}

export type LineSink = (line: string) => void;

export function startProcess(options: StartOptions): RunningProcess {
  const log = createWriteStream(options.logFile, { flags: "a" });
  const child = spawn(options.command, options.args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.pipe(log, { end: false });
  child.stderr?.pipe(log, { end: false });
  if (options.echo) {
    for (const stream of [child.stdout, child.stderr]) {
      if (stream) createInterface({ input: stream, crlfDelay: Infinity }).on("line", options.echo);
    }
  }
  const exited = new Promise<number | null>((resolveExit) => {
    child.on("error", (error) => {
      log.write(`\n[testkit] could not start ${options.command}: ${error.message}\n`);
      resolveExit(null);
    });
    child.on("exit", (code) => resolveExit(code));
  });

  const logTail = (lines = 30): string => {
    try {
      return readFileSync(options.logFile, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
    } catch {
      return "(no log)";
    }
  };

  const stop = async (graceMs = 10_000): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    await exited;
    clearTimeout(timer);
    log.end();
  };

  return { name: options.name, logFile: options.logFile, child, exited, logTail, stop };
}

/**
 * Polls `check` until it returns true. Fails early, with the log tail, if the
 * process exits, and with the log tail on timeout.
 */
export async function waitUntilReady(
  process: RunningProcess,
  check: () => Promise<boolean>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exitCode: number | null | undefined;
  void process.exited.then((code) => {
    exitCode = code;
  });
  for (;;) {
    if (exitCode !== undefined) {
      throw new Error(`${process.name} exited (code ${exitCode}) before it was ready. Log ${process.logFile}:\n${process.logTail()}`);
    }
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) {
      await process.stop();
      throw new Error(`${process.name} was not ready after ${timeoutMs} ms. Log ${process.logFile}:\n${process.logTail()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
