import { join } from "node:path";
import { freePort } from "./ports.js";
import { startProcess, waitUntilReady, type LineSink, type RunningProcess } from "./process.js";
import { toolPath } from "./tools.js";
import { makeWorkDir, removeWorkDir } from "./workdir.js";

/** The reference etcd, a single member on loopback over plaintext. */
export interface ReferenceEtcd {
  /** e.g. http://127.0.0.1:23790 */
  endpoint: string;
  dataDir: string;
  process: RunningProcess;
  stop(): Promise<void>;
}

export interface ReferenceEtcdOptions {
  /** Keep the data here (and leave it on stop); a throwaway dir by default. */
  dataDir?: string;
  port?: number;
  echo?: LineSink;
}

export async function startReferenceEtcd(options: ReferenceEtcdOptions = {}): Promise<ReferenceEtcd> {
  const workDir = await makeWorkDir("etcd");
  const dataDir = options.dataDir ?? join(workDir, "data");
  const [clientPort, peerPort] = [options.port ?? (await freePort()), await freePort()];
  const endpoint = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const process = startProcess({
    name: "etcd",
    command: toolPath("etcd"),
    args: [
      "--name", "reference",
      "--data-dir", dataDir,
      "--listen-client-urls", endpoint,
      "--advertise-client-urls", endpoint,
      "--listen-peer-urls", peer,
      "--initial-advertise-peer-urls", peer,
      "--initial-cluster", `reference=${peer}`,
      "--log-level", "warn",
    ],
    logFile: join(workDir, "etcd.log"),
    echo: options.echo,
  });
  await waitUntilReady(
    process,
    async () => {
      const response = await fetch(`${endpoint}/health`);
      return response.ok && ((await response.json()) as { health?: string }).health === "true";
    },
    30_000,
  );
  return {
    endpoint,
    dataDir,
    process,
    async stop() {
      await process.stop();
      await removeWorkDir(workDir);
    },
  };
}
