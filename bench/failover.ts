// Failover time of brain on PostgreSQL, three replicas: a steady writer puts
// against every member while the leader is killed (kill -9: its PostgreSQL
// session ends, so its advisory lock frees at once) or paused (SIGSTOP: the
// others wait for its lease to expire). Measured from the signal to the first
// write acknowledged among those sent after it, and to the first Status (of
// any surviving member) that names a new leader.
import { randomBytes } from "node:crypto";
import { etcdRpc } from "./etcd-rpc.js";
import { startReplicaSet, type ReplicaMember, type ReplicaSet } from "./replica-set.js";

export type FailoverKind = "kill" | "pause";

export interface FailoverTrial {
  round: number;
  trial: number;
  kind: FailoverKind;
  /** The member signalled (the leader) and the one that took over. */
  from: string;
  to?: string;
  epochBefore: number;
  epochAfter?: number;
  /** Signal → first acknowledged put sent after it. */
  firstWriteMs: number;
  /** Signal → first Status naming another leader. */
  newLeaderMs: number;
  /** Last put acknowledged before the signal → first acknowledged after it: the gap a client saw. */
  writeGapMs: number;
  /** Puts sent from the signal to the end of the trial (the set back to three members, caught up). */
  sentPuts: number;
  /** Of those, the ones that failed (the signalled member's share, deadlines). */
  failedPuts: number;
  /** pause only: SIGCONT → the old leader serving again as a follower at the leader's revision. */
  rejoinMs?: number;
  error?: string;
}

export interface FailoverResult {
  trials: FailoverTrial[];
  /** Puts acknowledged over the run, and those of them a linearizable read at the end did not find. */
  acknowledged: number;
  lost: number;
  putRate: number;
  putDeadlineMs: number;
}

/** One put every 10 ms, whatever the answers: acknowledgements are timed per put, not held up by a hung one. */
export const putRate = 100;
/** A put to a paused member fails after this, like a client's request timeout. */
export const putDeadlineMs = 2000;
const trialTimeoutMs = 30_000;

interface PutRecord {
  key: string;
  member: string;
  sentAt: number;
  doneAt?: number;
  ok?: boolean;
}

/** Puts at a fixed rate, round-robin over the members' addresses, as a client given every endpoint would spread them. */
function startWriter(members: ReplicaMember[], prefix: string) {
  const records: PutRecord[] = [];
  const rpcs = members.map((member) => ({ member, rpc: etcdRpc(member.address) }));
  const value = randomBytes(64);
  let sequence = 0;
  let inFlight = 0;
  const timer = setInterval(() => {
    const target = rpcs[sequence % rpcs.length]!;
    const record: PutRecord = { key: `${prefix}${String(sequence).padStart(8, "0")}`, member: target.member.name, sentAt: performance.now() };
    sequence++;
    records.push(record);
    inFlight++;
    target.rpc.put(record.key, value, putDeadlineMs).then(
      () => Object.assign(record, { ok: true, doneAt: performance.now() }),
      () => Object.assign(record, { ok: false, doneAt: performance.now() }),
    ).finally(() => inFlight--);
  }, 1000 / putRate);
  return {
    records,
    /** Stops sending and waits for every put in flight to settle. */
    async stop() {
      clearInterval(timer);
      const deadline = Date.now() + putDeadlineMs + 5000;
      while (inFlight > 0 && Date.now() < deadline) await sleep(20);
      for (const { rpc } of rpcs) rpc.close();
    },
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The writer is getting acknowledgements now (the set is serving writes before a trial starts). */
async function waitForSteadyWrites(records: PutRecord[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const now = performance.now();
    const recent = records.filter((record) => record.ok && record.doneAt! > now - 500).length;
    if (recent >= putRate / 4) return;
    await sleep(50);
  }
  throw new Error(`the writer got no steady acknowledgements in ${timeoutMs} ms`);
}

async function trial(set: ReplicaSet, records: PutRecord[], kind: FailoverKind, round: number, number: number, log: (line: string) => void): Promise<FailoverTrial> {
  const before = await set.settle();
  await waitForSteadyWrites(records, 30_000);
  const old = before.member;
  const oldId = old.memberId!;
  const survivors = set.members.filter((member) => member !== old);
  let lastAckBefore = NaN;
  for (const record of records) if (record.ok && !(record.doneAt! <= lastAckBefore)) lastAckBefore = record.doneAt!;

  const signalledAt = performance.now();
  old.brain.process.child.kill(kind === "kill" ? "SIGKILL" : "SIGSTOP");

  let newLeaderAt: number | undefined;
  let to: ReplicaMember | undefined;
  let epochAfter: number | undefined;
  const firstAck = () => {
    let first: number | undefined;
    for (const record of records) {
      if (record.sentAt >= signalledAt && record.ok && (first === undefined || record.doneAt! < first)) first = record.doneAt!;
    }
    return first;
  };
  const result: FailoverTrial = {
    round, trial: number, kind, from: old.name, epochBefore: before.epoch, firstWriteMs: NaN, newLeaderMs: NaN, writeGapMs: NaN, sentPuts: 0, failedPuts: 0,
  };
  while (performance.now() - signalledAt < trialTimeoutMs && (newLeaderAt === undefined || firstAck() === undefined)) {
    if (newLeaderAt === undefined) {
      // Every survivor at once, each answer timed as it arrives.
      await Promise.all(
        survivors.map(async (member) => {
          try {
            const status = await member.rpc.status(300);
            if (newLeaderAt === undefined && status.leader !== 0n && status.leader !== oldId) {
              newLeaderAt = performance.now();
              to = set.members.find((candidate) => candidate.memberId === status.leader);
              epochAfter = Number(status.raftTerm);
            }
          } catch {
            // a survivor may be busy taking over; asked again in 10 ms
          }
        }),
      );
    }
    await sleep(10);
  }
  const ackAt = firstAck();
  result.firstWriteMs = ackAt === undefined ? NaN : ackAt - signalledAt;
  result.newLeaderMs = newLeaderAt === undefined ? NaN : newLeaderAt - signalledAt;
  result.writeGapMs = ackAt === undefined ? NaN : ackAt - lastAckBefore;
  result.to = to?.name;
  result.epochAfter = epochAfter;
  if (ackAt === undefined || newLeaderAt === undefined) result.error = `no ${ackAt === undefined ? "acknowledged write" : "new leader"} within ${trialTimeoutMs / 1000} s`;

  // Back to three members for the next trial: the killed one started again
  // under its name and address, the paused one resumed (it must notice it was
  // deposed and rejoin as a follower on its own).
  if (kind === "kill") {
    await set.restart(old);
  } else {
    const resumedAt = performance.now();
    old.brain.process.child.kill("SIGCONT");
    try {
      await set.settle(60_000);
      result.rejoinMs = performance.now() - resumedAt;
    } catch (error) {
      // Its own account of why it did not come back, for the report.
      const tail = old.brain.process.logTail(5).replaceAll("\n", " | ");
      result.error = [result.error, `after SIGCONT: ${(error as Error).message}; ${old.name}'s log: ${tail}`].filter(Boolean).join("; ");
      await set.restart(old);
    }
  }
  await set.settle();
  const end = performance.now();
  const during = records.filter((record) => record.sentAt >= signalledAt && record.sentAt < end);
  result.sentPuts = during.length;
  result.failedPuts = during.filter((record) => record.ok === false).length;
  log(
    `  ${kind} ${number}: ${old.name} → ${result.to ?? "?"}: first write ${result.firstWriteMs.toFixed(0)} ms, ` +
      `new leader in Status ${result.newLeaderMs.toFixed(0)} ms, write gap ${result.writeGapMs.toFixed(0)} ms, ${result.failedPuts} of ${result.sentPuts} puts failed` +
      `${result.rejoinMs !== undefined ? `, rejoined ${result.rejoinMs.toFixed(0)} ms after SIGCONT` : ""}${result.error ? ` (${result.error})` : ""}`,
  );
  return result;
}

/** One replica set, `kills` kill -9 trials then `pauses` SIGSTOP trials, the same writer throughout. */
export async function runFailover(round: number, kills: number, pauses: number, log: (line: string) => void): Promise<FailoverResult> {
  const set = await startReplicaSet(3);
  const prefix = `/failover/round-${round}/`;
  const writer = startWriter(set.members, prefix);
  const trials: FailoverTrial[] = [];
  try {
    const plan: FailoverKind[] = [...Array<FailoverKind>(kills).fill("kill"), ...Array<FailoverKind>(pauses).fill("pause")];
    for (const [index, kind] of plan.entries()) {
      try {
        trials.push(await trial(set, writer.records, kind, round, index + 1, log));
      } catch (error) {
        // The set could not be brought back: the remaining trials would measure nothing.
        const message = (error as Error).message.split("\n")[0]!;
        log(`  ${kind} ${index + 1}: failed: ${message}`);
        trials.push({ round, trial: index + 1, kind, from: "?", epochBefore: NaN, firstWriteMs: NaN, newLeaderMs: NaN, writeGapMs: NaN, sentPuts: 0, failedPuts: 0, error: message });
        break;
      }
    }
    await writer.stop();
    const acknowledged = new Set(writer.records.filter((record) => record.ok).map((record) => record.key));
    const view = await set.settle();
    const present = new Set(await view.member.rpc.keys(prefix, 30_000));
    const lost = [...acknowledged].filter((key) => !present.has(key)).length;
    log(`  failover round ${round}: ${acknowledged.size} puts acknowledged, ${lost} of them missing afterwards`);
    return { trials, acknowledged: acknowledged.size, lost, putRate, putDeadlineMs };
  } finally {
    await writer.stop();
    for (const member of set.members) member.brain.process.child.kill("SIGCONT");
    await set.stop();
  }
}
