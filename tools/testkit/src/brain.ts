import { join } from "node:path";
import { freePort } from "./ports.js";
import { startProcess, waitUntilReady, type LineSink, type RunningProcess } from "./process.js";
import { repoRoot } from "./tools.js";
import { makeWorkDir, removeWorkDir } from "./workdir.js";

export interface Brain {
  /** http://127.0.0.1:PORT */
  endpoint: string;
  metricsUrl: string;
  dataDir: string;
  process: RunningProcess;
  /** Stops the process; `keepData` leaves the data dir for a restart. */
  stop(options?: { keepData?: boolean; signal?: "SIGTERM" | "SIGKILL" }): Promise<void>;
}

export interface BrainOptions {
  /** Reuse a data dir (a restart); a fresh one by default. */
  dataDir?: string;
  /** Reuse ports (a restart at the same address). */
  port?: number;
  metricsPort?: number;
  extraArgs?: string[];
  /** Each output line, besides the log file (`npm start` prints them). */
  echo?: LineSink;
  /** Serve https:// with this certificate, requiring client certificates from `caFile`. */
  tls?: { certFile: string; keyFile: string; caFile: string };
}

/** Starts the built brain (`brain/dist/main.js`) as its own process. */
export async function startBrainProcess(options: BrainOptions = {}): Promise<Brain> {
  const workDir = await makeWorkDir("brain");
  const dataDir = options.dataDir ?? join(workDir, "data");
  const port = options.port ?? (await freePort());
  const metricsPort = options.metricsPort ?? (await freePort());
  const endpoint = `${options.tls ? "https" : "http"}://127.0.0.1:${port}`;
  const tlsArgs = options.tls
    ? ["--cert-file", options.tls.certFile, "--key-file", options.tls.keyFile, "--trusted-ca-file", options.tls.caFile, "--client-cert-auth"]
    : [];
  const metricsUrl = `http://127.0.0.1:${metricsPort}`;
  const main = join(repoRoot, "brain", "dist", "main.js");
  const process = startProcess({
    name: "brain",
    command: globalThis.process.execPath,
    args: [
      main,
      "--data-dir", dataDir,
      "--listen-client-urls", endpoint,
      "--listen-metrics-urls", metricsUrl,
      ...tlsArgs,
      ...(options.extraArgs ?? []),
    ],
    logFile: join(workDir, "brain.log"),
    echo: options.echo,
  });
  await waitUntilReady(process, async () => (await fetch(`${metricsUrl}/healthz`)).ok, 30_000);
  return {
    endpoint,
    metricsUrl,
    dataDir,
    process,
    async stop({ keepData = false, signal = "SIGTERM" } = {}) {
      if (signal === "SIGKILL") {
        process.child.kill("SIGKILL");
        await process.exited;
      } else {
        await process.stop();
      }
      // The work dir holds the log, and the data unless the caller chose where.
      if (!keepData || options.dataDir !== undefined) await removeWorkDir(workDir);
    },
  };
}
