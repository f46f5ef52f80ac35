#!/usr/bin/env node
// The `brain` command.
import { ConfigError, helpText, parseConfig, type BrainConfig } from "./config.js";
import { log, setLogLevel } from "./log.js";
import { runMigrateCommand } from "./migrate/command.js";
import { ReplicaCounters } from "./replica/replica-node.js";
import { redactUrl } from "./replica/pg/pool.js";
import { startBrain, type RunningBrain } from "./server/server.js";

async function main(): Promise<void> {
  if (process.argv[2] === "migrate") {
    process.exitCode = await runMigrateCommand(process.argv.slice(3));
    return;
  }
  let config;
  try {
    config = parseConfig(process.argv.slice(2));
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`brain: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  if (config === undefined) {
    process.stdout.write(helpText());
    return;
  }
  setLogLevel(config.logLevel);
  if (config.storage === "postgres") {
    await runReplica(config);
    return;
  }
  let brain;
  try {
    brain = await startBrain(config);
  } catch (error) {
    log("error", "brain failed to start", { error: (error as Error).message });
    process.exit(1);
  }
  const shutdown = (signal: string) => {
    log("info", "shutting down", { signal });
    brain.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        log("error", "shutdown failed", { error: String(error) });
        process.exit(1);
      },
    );
  };
  process.once("SIGINT", () => shutdown("SIGINT"));
  process.once("SIGTERM", () => shutdown("SIGTERM"));
}

/** How long a replica that must restart waits between failed starts (PostgreSQL away). */
const restartDelayMs = 1000;
/** Open streams (watches) of a brain that restarts are cut this soon: their clients reconnect elsewhere. */
const restartGraceMs = 500;

/**
 * A replica of a set on PostgreSQL. Whenever it must stop leading (deposed,
 * or the log failed under it) it stops serving and starts again, in this
 * process, as a follower from a fresh copy. The first start failing ends the
 * process (a wrong URL or password should be seen at once); later starts are
 * retried, since PostgreSQL being away is then the likely cause.
 */
async function runReplica(config: BrainConfig): Promise<void> {
  const counters = new ReplicaCounters();
  const where = { postgres: redactUrl(config.postgresUrl!) };
  let signalled: string | undefined;
  let wake: () => void = () => undefined;
  let brain: RunningBrain | undefined;
  const onSignal = (signal: string) => {
    if (signalled !== undefined) return;
    signalled = signal;
    log("info", "shutting down", { signal });
    wake();
  };
  process.once("SIGINT", () => onSignal("SIGINT"));
  process.once("SIGTERM", () => onSignal("SIGTERM"));
  const stopped = new Promise<void>((resolve) => (wake = resolve));

  let started = false;
  while (signalled === undefined) {
    try {
      brain = await startBrain(config, { counters });
      started = true;
    } catch (error) {
      log("error", "brain failed to start", { ...where, error: (error as Error).message });
      if (!started) process.exit(1);
      await Promise.race([stopped, new Promise((resolve) => setTimeout(resolve, restartDelayMs))]);
      continue;
    }
    if (signalled !== undefined) break;
    const reason = await Promise.race([brain.restart, stopped.then(() => undefined)]);
    if (reason === undefined) break;
    log("warn", "restarting as a follower", { ...where, reason });
    // A step that failed was logged; the others ran. Starting again shows whether it matters.
    await brain.stop({ graceMs: restartGraceMs }).catch(() => undefined);
    brain = undefined;
  }
  try {
    // A leader hands over at once (resigns) rather than letting its lease run out.
    await brain?.stop();
    process.exit(0);
  } catch (error) {
    log("error", "shutdown failed", { error: String(error) });
    process.exit(1);
  }
}

void main();
