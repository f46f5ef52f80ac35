#!/usr/bin/env node
// The `brain` command.
import { ConfigError, helpText, parseConfig } from "./config.js";
import { log, setLogLevel } from "./log.js";
import { runMigrateCommand } from "./migrate/command.js";
import { startBrain } from "./server/server.js";

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

void main();
