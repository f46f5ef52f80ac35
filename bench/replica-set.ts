// brain on PostgreSQL for the benchmarks: one fresh PostgreSQL and N brain
// processes on it (`--storage postgres`), each member with a fixed name and
// fixed ports so that it can be killed and started again at the same address.
import { startBrainProcess, startPostgres, type Brain, type Postgres, type RunningProcess } from "@wharf/testkit";
import { freePort } from "@wharf/testkit";
import { etcdRpc, type EtcdRpc } from "./etcd-rpc.js";

/** etcd's default election timeout is 1 s; brain's leader lease (plan: renewed every ttl/3). */
export const leaderLeaseTtl = "3s";

export interface ReplicaMember {
  name: string;
  /** 127.0.0.1:PORT, what the load tools take */
  address: string;
  port: number;
  metricsPort: number;
  /** The running process; replaced by `restart`. */
  brain: Brain;
  rpc: EtcdRpc;
  /** etcd's member id (Status header), once seen. */
  memberId?: bigint;
}

export interface LeaderView {
  member: ReplicaMember;
  epoch: number;
  revision: number;
}

export interface ReplicaSet {
  postgres: Postgres;
  members: ReplicaMember[];
  /** Every member's address, comma-separated: the tools' `--endpoints`. */
  endpoints(members?: ReplicaMember[]): string;
  /** Starts one more member (brain-N+1) and waits until it has caught up. */
  addMember(): Promise<ReplicaMember>;
  /** Starts a killed member again at the same address and under the same name. */
  restart(member: ReplicaMember): Promise<void>;
  /** The member every answering member names as leader, with its epoch and revision (undefined: none agreed yet). */
  leader(members?: ReplicaMember[], deadlineMs?: number): Promise<LeaderView | undefined>;
  /** Waits until a leader is agreed and every member has applied the leader's revision. */
  settle(timeoutMs?: number): Promise<LeaderView>;
  /** The processes whose memory and CPU count: PostgreSQL and every brain. */
  processes(): RunningProcess[];
  stop(): Promise<void>;
}

async function startMember(postgres: Postgres, name: string, port: number, metricsPort: number): Promise<Brain> {
  return startBrainProcess({
    port,
    metricsPort,
    extraArgs: ["--storage", "postgres", "--postgres-url", postgres.url, "--name", name, "--leader-lease-ttl", leaderLeaseTtl],
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export async function startReplicaSet(replicas: number): Promise<ReplicaSet> {
  const postgres = await startPostgres();
  const members: ReplicaMember[] = [];

  const set: ReplicaSet = {
    postgres,
    members,
    endpoints: (subset = members) => subset.map((member) => member.address).join(","),
    async addMember() {
      const name = `brain-${members.length + 1}`;
      const [port, metricsPort] = [await freePort(), await freePort()];
      const brain = await startMember(postgres, name, port, metricsPort);
      const member: ReplicaMember = { name, address: `127.0.0.1:${port}`, port, metricsPort, brain, rpc: etcdRpc(`127.0.0.1:${port}`) };
      members.push(member);
      await set.settle();
      return member;
    },
    async restart(member) {
      await member.brain.stop({ signal: "SIGKILL" });
      member.brain = await startMember(postgres, member.name, member.port, member.metricsPort);
    },
    async leader(subset = members, deadlineMs = 500) {
      const answers = await Promise.all(
        subset.map(async (member) => {
          try {
            const status = await member.rpc.status(deadlineMs);
            member.memberId = status.header?.memberId;
            return { member, status };
          } catch {
            return undefined;
          }
        }),
      );
      const answered = answers.filter((answer) => answer !== undefined);
      const leaderId = answered[0]?.status.leader;
      if (!leaderId || answered.some((answer) => answer.status.leader !== leaderId)) return undefined;
      const own = answered.find((answer) => answer.member.memberId === leaderId);
      if (!own) return undefined;
      return { member: own.member, epoch: Number(own.status.raftTerm), revision: Number(own.status.raftIndex) };
    },
    async settle(timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      let last = "no member answered Status";
      while (Date.now() < deadline) {
        const view = await set.leader();
        if (view) {
          const revisions = await Promise.all(members.map((member) => member.rpc.status(500).then((status) => Number(status.raftIndex), () => NaN)));
          if (revisions.every((revision) => revision >= view.revision)) return view;
          last = `leader ${view.member.name} at revision ${view.revision}, members at ${revisions.join(", ")}`;
        } else {
          last = "the members do not agree on a leader";
        }
        await sleep(50);
      }
      throw new Error(`brain replica set did not settle in ${timeoutMs} ms: ${last}`);
    },
    processes: () => [postgres.process, ...members.map((member) => member.brain.process)],
    async stop() {
      for (const member of members) member.rpc.close();
      await Promise.all(members.map((member) => member.brain.stop().catch(() => undefined)));
      await postgres.stop();
    },
  };

  try {
    // One at a time: the first member becomes the leader, the others join as followers.
    for (let i = 0; i < replicas; i++) await set.addMember();
  } catch (error) {
    await set.stop();
    throw error;
  }
  return set;
}
