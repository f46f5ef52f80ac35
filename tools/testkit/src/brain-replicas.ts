import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { credentials, makeGenericClientConstructor, type Client, type ServiceError } from "@grpc/grpc-js";
import { serviceDefinition } from "@wharf/proto/grpc";
import { Maintenance, StatusRequestSchema, type StatusResponse } from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import { freePort } from "./ports.js";
import { startPostgres, type Postgres } from "./postgres.js";
import { startProcess, waitUntilReady, type LineSink, type RunningProcess } from "./process.js";
import { repoRoot } from "./tools.js";
import { makeWorkDir, removeWorkDir } from "./workdir.js";

/** One brain of a replica set; `process` is the current incarnation's. */
export interface ReplicaMember {
  /** `--name`: the member id PostgreSQL keeps for it is stable across restarts. */
  readonly name: string;
  /** http://127.0.0.1:PORT, the same across restarts. */
  readonly clientAddress: string;
  /** http://127.0.0.1:PORT (/metrics, /healthz). */
  readonly metricsAddress: string;
  /** Its local copy: wiped and reloaded from PostgreSQL at every start. */
  readonly dataDir: string;
  readonly logFile: string;
  process: RunningProcess;
  /** How it ended, when it exited by itself. */
  exitCode?: number | null;
  /**
   * Killed by the harness (and not restarted), stopped with SIGSTOP (and not
   * continued), or "exited": it ended by itself, which a brain never should.
   */
  state: "running" | "paused" | "dead" | "exited";
}

export interface BrainReplicaSet {
  postgres: Postgres;
  members: ReplicaMember[];
  /** Every member's client address, in member order: what a client lists as its endpoints. */
  endpoints: string[];
  /**
   * The index of the member every live member names as leader in Status (a
   * live member not answering, or members disagreeing, is an error).
   */
  leaderIndex(): Promise<number>;
  /** Polls `leaderIndex` until it names a member other than `excluding`; returns it. */
  waitForLeader(excluding?: number, timeoutMs?: number): Promise<number>;
  /** SIGKILL waits for the exit; SIGSTOP/SIGCONT pause and resume the process. */
  kill(index: number, signal: "SIGKILL" | "SIGTERM" | "SIGSTOP" | "SIGCONT"): Promise<void>;
  /** Starts a member that was killed again, at the same addresses, name and data dir. */
  restart(index: number): Promise<void>;
  /** Stops every brain, then PostgreSQL unless it was given. */
  stop(): Promise<void>;
}

export interface BrainReplicaSetOptions {
  replicas?: number;
  /** A PostgreSQL the set may take over (its database is used as is); one of its own by default. */
  postgres?: Postgres;
  /** `--leader-lease-ttl`, e.g. "3s". */
  leaseTtl?: string;
  /** Each member's output lines (`npm start` prints them), by member name. */
  echo?: (member: string) => LineSink;
  /** Fixed ports per member (npm start); free ones by default. */
  ports?: Array<{ client: number; metrics: number }>;
  /** Where the members' data and log dirs go; a throwaway dir (removed on stop) by default. */
  dir?: string;
  extraArgs?: string[];
}

const statusTimeoutMs = 1000;
/**
 * A member that was down is asked again within half a second of being back:
 * grpc-js would otherwise back off for up to two minutes, and the harness,
 * not the brains, would decide how long a failover seems to take.
 */
export const quickReconnect = { "grpc.initial_reconnect_backoff_ms": 100, "grpc.max_reconnect_backoff_ms": 500 };
type MaintenanceClient = Client & { status(request: object, options: { deadline: number }, callback: (error: ServiceError | null, response: StatusResponse) => void): void };
const MaintenanceClientConstructor = makeGenericClientConstructor(serviceDefinition(Maintenance), "Maintenance");

/**
 * Several brains on one PostgreSQL (`--storage postgres`), each its own
 * process with its own local copy, as in production: one of them is elected
 * leader, the others follow and forward writes to it.
 */
export async function startBrainReplicaSet(options: BrainReplicaSetOptions = {}): Promise<BrainReplicaSet> {
  const replicas = options.replicas ?? 3;
  const ownPostgres = options.postgres === undefined;
  const postgres = options.postgres ?? (await startPostgres());
  const ownDir = options.dir === undefined;
  const dir = options.dir ?? (await makeWorkDir("brain-replicas"));
  const members: ReplicaMember[] = [];
  const statusClients = new Map<number, MaintenanceClient>();

  const launch = (index: number): RunningProcess => {
    const member = members[index]!;
    const started = startProcess({
      name: member.name,
      command: process.execPath,
      args: [
        join(repoRoot, "brain", "dist", "main.js"),
        "--storage", "postgres",
        "--postgres-url", postgres.url,
        "--name", member.name,
        "--data-dir", member.dataDir,
        "--listen-client-urls", member.clientAddress,
        "--listen-metrics-urls", member.metricsAddress,
        "--leader-lease-ttl", options.leaseTtl ?? "3s",
        ...(options.extraArgs ?? []),
      ],
      logFile: member.logFile,
      echo: options.echo?.(member.name),
    });
    void started.exited.then((code) => {
      if (member.process === started && member.state !== "dead") {
        member.state = "exited";
        member.exitCode = code;
      }
    });
    return started;
  };
  const healthy = (member: ReplicaMember) => waitUntilReady(member.process, async () => (await fetch(`${member.metricsAddress}/healthz`)).ok, 30_000);

  const status = (index: number): Promise<StatusResponse> => {
    let client = statusClients.get(index);
    if (!client) {
      client = new MaintenanceClientConstructor(members[index]!.clientAddress.replace(/^http:\/\//, ""), credentials.createInsecure(), quickReconnect) as unknown as MaintenanceClient;
      statusClients.set(index, client);
    }
    const ask = client;
    return new Promise((resolve, reject) =>
      ask.status(create(StatusRequestSchema), { deadline: Date.now() + statusTimeoutMs }, (error, response) => (error ? reject(error) : resolve(response))),
    );
  };

  const leaderIndex = async (): Promise<number> => {
    for (const member of members) {
      if (member.state === "exited") throw new Error(`${member.name} exited by itself (code ${member.exitCode}). Log ${member.logFile}:\n${member.process.logTail(40)}`);
    }
    const live = members.map((member, index) => ({ member, index })).filter(({ member }) => member.state === "running");
    const answers = await Promise.all(
      live.map(async ({ member, index }) => {
        try {
          return { index, status: await status(index) };
        } catch (error) {
          throw new Error(`${member.name} did not answer Status: ${(error as Error).message}`, { cause: error });
        }
      }),
    );
    const leaders = new Set(answers.map(({ status }) => status.leader));
    if (leaders.size !== 1) throw new Error(`members disagree on the leader: ${answers.map(({ index, status }) => `${members[index]!.name} → ${status.leader}`).join(", ")}`);
    const [leader] = leaders;
    if (!leader) throw new Error("no leader");
    const found = answers.find(({ status }) => status.header?.memberId === leader);
    if (!found) throw new Error(`the leader ${leader} is none of the live members (${answers.map(({ index, status }) => `${members[index]!.name}=${status.header?.memberId}`).join(", ")})`);
    return found.index;
  };

  const waitForLeader = async (excluding?: number, timeoutMs = 30_000): Promise<number> => {
    const deadline = Date.now() + timeoutMs;
    let last: string;
    for (;;) {
      try {
        const index = await leaderIndex();
        if (index !== excluding) return index;
        last = `${members[index]!.name} still leads`;
      } catch (error) {
        last = (error as Error).message;
      }
      if (Date.now() > deadline) {
        const logs = members.map((member) => `--- ${member.name} (${member.state}) ${member.logFile}:\n${member.process.logTail(25)}`).join("\n");
        throw new Error(`no leader${excluding === undefined ? "" : ` other than ${members[excluding]!.name}`} after ${timeoutMs} ms (last: ${last})\n${logs}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };

  const stopMember = async (member: ReplicaMember) => {
    if (member.state === "paused") member.process.child.kill("SIGCONT");
    member.state = "dead";
    await member.process.stop();
  };

  try {
    for (let index = 0; index < replicas; index++) {
      const name = `brain-${index + 1}`;
      const ports = options.ports?.[index] ?? { client: await freePort(), metrics: await freePort() };
      await mkdir(join(dir, name), { recursive: true });
      members.push({
        name,
        clientAddress: `http://127.0.0.1:${ports.client}`,
        metricsAddress: `http://127.0.0.1:${ports.metrics}`,
        dataDir: join(dir, name, "data"),
        logFile: join(dir, name, "brain.log"),
        process: undefined as unknown as RunningProcess,
        state: "running",
      });
    }
    // Together: one of them must win the election for the others to be ready.
    for (let index = 0; index < replicas; index++) members[index]!.process = launch(index);
    await Promise.all(members.map(healthy));
    await waitForLeader(undefined, 30_000);
  } catch (error) {
    await Promise.all(members.filter((member) => member.process).map(stopMember));
    if (ownPostgres) await postgres.stop();
    if (ownDir) await removeWorkDir(dir);
    throw error;
  }

  return {
    postgres,
    members,
    endpoints: members.map((member) => member.clientAddress),
    leaderIndex,
    waitForLeader,
    async kill(index, signal) {
      const member = members[index]!;
      if (signal === "SIGSTOP") {
        member.process.child.kill("SIGSTOP");
        member.state = "paused";
      } else if (signal === "SIGCONT") {
        member.process.child.kill("SIGCONT");
        member.state = "running";
      } else if (signal === "SIGTERM") {
        await stopMember(member);
      } else {
        member.state = "dead";
        member.process.child.kill("SIGKILL");
        await member.process.exited;
      }
    },
    async restart(index) {
      const member = members[index]!;
      if (member.state !== "dead" && member.state !== "exited") throw new Error(`${member.name} is ${member.state}: kill it before restarting it`);
      statusClients.get(index)?.close();
      statusClients.delete(index);
      member.process = launch(index);
      member.state = "running";
      await healthy(member);
    },
    async stop() {
      for (const client of statusClients.values()) client.close();
      await Promise.all(members.map(stopMember));
      if (ownPostgres) await postgres.stop();
      if (ownDir) await removeWorkDir(dir);
    },
  };
}
