import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { startProcess, waitUntilReady, type LineSink, type RunningProcess } from "./process.js";
import { toolPath } from "./tools.js";
import { makeWorkDir, removeWorkDir } from "./workdir.js";

export interface Envoy {
  /** http://127.0.0.1:ADMIN_PORT */
  adminUrl: string;
  process: RunningProcess;
  stop(): Promise<void>;
}

export interface EnvoyOptions {
  /** The rendered bootstrap YAML. */
  bootstrap: string;
  /** The admin port the bootstrap names; readiness is polled there. */
  adminPort: number;
  logLevel?: "trace" | "debug" | "info" | "warn" | "error";
  /** Each output line, besides the log file (`npm start` prints them). */
  echo?: LineSink;
}

/** Starts Envoy and waits until its admin /ready answers LIVE. */
export async function startEnvoy(options: EnvoyOptions): Promise<Envoy> {
  const workDir = await makeWorkDir("envoy");
  const configFile = join(workDir, "bootstrap.yaml");
  await writeFile(configFile, options.bootstrap);
  const adminUrl = `http://127.0.0.1:${options.adminPort}`;
  const process = startProcess({
    name: "envoy",
    command: toolPath("envoy"),
    args: [
      "--config-path", configFile,
      "--log-level", options.logLevel ?? "info",
      // Several Envoys run side by side in one test run; hot restart would
      // make them share memory segments by base id.
      "--disable-hot-restart",
      "--concurrency", "2",
    ],
    logFile: join(workDir, "envoy.log"),
    echo: options.echo,
  });
  await waitUntilReady(
    process,
    async () => (await (await fetch(`${adminUrl}/ready`)).text()).trim() === "LIVE",
    30_000,
  );
  return {
    adminUrl,
    process,
    async stop() {
      await process.stop();
      await removeWorkDir(workDir);
    },
  };
}
