import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { createInterface } from "node:readline";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { repoRoot, startPostgres, waitFor, type Postgres } from "@wharf/testkit";
import { encodeKeyValue } from "../../mvcc/kv-wire.js";
import { LeaderElection } from "./election.js";
import { PgGroupLog } from "./group-log.js";
import { migrate } from "./migrations.js";
import { openPool } from "./pool.js";
import { freshDatabase, sql } from "./pg-test.fixture.js";

let server: Postgres;
beforeAll(async () => {
  server = await startPostgres();
});
afterAll(async () => {
  await server?.stop();
});

async function database() {
  const url = await freshDatabase(server);
  const pools: pg.Pool[] = [];
  const elections: LeaderElection[] = [];
  const pool = (name: string) => {
    const made = openPool(url, { name });
    pools.push(made);
    return made;
  };
  await migrate(pool("migrate"));
  let ids = 0;
  const member = (name: string, ttlMs: number) => {
    const election = new LeaderElection(pool(name), { memberId: BigInt(++ids), name, clientUrl: `http://${name}` }, { ttlMs });
    elections.push(election);
    return election;
  };
  return {
    url,
    pool,
    member,
    close: async () => {
      await Promise.all(elections.map((election) => election.stop()));
      await Promise.all(pools.map((made) => made.end()));
    },
  };
}

function group(sequence: number, revision: number, key: string) {
  const kv = encodeKeyValue({ key: Buffer.from(key), value: Buffer.from("v"), createRevision: revision, modRevision: revision, version: 1, lease: 0n });
  return { sequence, revision, rows: [{ main: revision, sub: 0, tombstone: false, key: Buffer.from(key), kv }], leases: [] };
}

/** A campaigning process (election.fixture.ts) that can be paused with SIGSTOP. */
function startCandidate(url: string, name: string, memberId: number, ttlMs: number) {
  const child: ChildProcessWithoutNullStreams = spawn(
    // tsx as a loader in this one process (its CLI would run a child that SIGSTOP misses).
    process.execPath,
    ["--import", "tsx", join(import.meta.dirname, "election.fixture.ts"), url, name, String(memberId), String(ttlMs)],
    { stdio: ["pipe", "pipe", "pipe"], cwd: repoRoot },
  );
  const events: Array<Record<string, unknown>> = [];
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  createInterface({ input: child.stdout }).on("line", (line) => events.push(JSON.parse(line) as Record<string, unknown>));
  return {
    child,
    events,
    stderr: () => stderr,
    send: (line: string) => child.stdin.write(line + "\n"),
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGCONT");
      child.kill("SIGKILL");
      await new Promise((resolve) => child.once("exit", resolve));
    },
  };
}

describe("leader election on PostgreSQL", () => {
  it("elects exactly one of three brains campaigning at once, and the others learn which", async () => {
    const db = await database();
    try {
      const members = ["a", "b", "c"].map((name) => db.member(name, 1000));
      const elected: Array<{ name: string; epoch: number }> = [];
      members.forEach((member, i) => member.onElected((epoch) => elected.push({ name: ["a", "b", "c"][i]!, epoch })));
      members.forEach((member) => member.start());
      await waitFor(async () => elected.length > 0, 10_000, "a leader");
      const winner = elected[0]!;
      expect(winner.epoch).toBe(1);
      await waitFor(async () => members.every((member) => member.leader?.name === winner.name), 5_000, "every member to know the leader");
      expect(members.filter((member) => member.isLeader)).toHaveLength(1);
      // The leader keeps its lease: five renewals later nobody else won and the epoch did not move.
      const renewals = new Set<string>();
      await waitFor(
        async () => {
          const [row] = await sql(db.url, "SELECT expires_at::text AS at FROM brain_leader");
          renewals.add(row!.at as string);
          return renewals.size >= 6;
        },
        10_000,
        "five renewals",
      );
      expect(elected).toEqual([winner]);
      expect(await sql(db.url, "SELECT epoch::int, name, locked FROM brain_leader")).toEqual([{ epoch: 1, name: winner.name, locked: true }]);
    } finally {
      await db.close();
    }
  });

  it("fences a paused leader: after SIGSTOP past its lease another brain takes over, and its commit fails writing nothing", async () => {
    const db = await database();
    const a = startCandidate(db.url, "a", 101, 1000);
    try {
      await waitFor(async () => a.events.some((event) => event.event === "elected"), 20_000, () => `a to be elected (stderr: ${a.stderr()})`);
      expect(a.events.find((event) => event.event === "elected")).toEqual({ event: "elected", epoch: 1 });
      a.send("append 1 2");
      await waitFor(async () => a.events.some((event) => event.event === "append"), 10_000, "a's first append");
      expect(a.events.find((event) => event.event === "append")).toEqual({ event: "append", sequence: 1, ok: true });

      const b = db.member("b", 1000);
      const bElected: number[] = [];
      b.onElected((epoch) => bElected.push(epoch));
      b.start();
      await waitFor(async () => b.leader?.name === "a", 5_000, "b to see a as the leader");
      a.child.kill("SIGSTOP");
      const stoppedAt = Date.now();
      await waitFor(async () => bElected.length > 0, 10_000, "b to take over");
      // It had to wait out the lease: a's session, and so the lock, was alive.
      expect(Date.now() - stoppedAt).toBeGreaterThan(300);
      expect(bElected).toEqual([2]);
      expect(await sql(db.url, "SELECT epoch::int, name, locked FROM brain_leader")).toEqual([{ epoch: 2, name: "b", locked: false }]);

      a.child.kill("SIGCONT");
      await waitFor(async () => a.events.some((event) => event.event === "deposed"), 10_000, "a to notice it was deposed");
      a.send("append 2 3");
      await waitFor(async () => a.events.filter((event) => event.event === "append").length === 2, 10_000, "a's second append");
      expect(a.events.filter((event) => event.event === "append")[1]).toEqual({ event: "append", sequence: 2, ok: false, error: "etcdserver: leader changed" });
      expect(await sql(db.url, "SELECT sequence::int, revision::int FROM brain_state")).toEqual([{ sequence: 1, revision: 2 }]);
      expect(await sql(db.url, "SELECT convert_from(key, 'UTF8') AS key FROM brain_kv")).toEqual([{ key: "from-a-1" }]);

      // The new leader continues the log where it stands.
      const bLog = new PgGroupLog(db.pool("b-log"));
      bLog.epoch = 2;
      await bLog.append(group(2, 3, "from-b-2"));
      await bLog.close();
      // Once a let go of its session, b holds the lock too (its own end is then detected quickly).
      await a.stop();
      await waitFor(async () => (await sql(db.url, "SELECT locked FROM brain_leader"))[0]!.locked === true, 10_000, "b to hold the leader lock");
    } finally {
      await a.stop();
      await db.close();
    }
  });

  it("replaces a leader whose session ended (kill -9) within a campaign tick, not a lease", async () => {
    const db = await database();
    try {
      const ttlMs = 3000;
      const a = db.member("a", ttlMs);
      const aDeposed: string[] = [];
      a.onDeposed((reason) => aDeposed.push(reason));
      a.start();
      await waitFor(async () => a.isLeader, 10_000, "a to lead");
      const b = db.member("b", ttlMs);
      const bElected: number[] = [];
      b.onElected((epoch) => bElected.push(epoch));
      b.start();
      await waitFor(async () => b.leader?.name === "a", 5_000, "b to see a");
      await waitFor(async () => (await sql(db.url, "SELECT locked FROM brain_leader"))[0]!.locked === true, 5_000, "a to hold the lock");

      const killed = await sql(db.url, "SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity WHERE application_name = 'brain/a'");
      expect(killed.length).toBeGreaterThan(0);
      const took = await waitFor(async () => bElected.length > 0, ttlMs, "b to take over");
      // a renewed every ttl/3, so its lease had at least 2 s left: b did not wait it out.
      expect(took).toBeLessThan(ttlMs / 2);
      expect(bElected).toEqual([2]);
      // a's lease had not run out: b won through the lock.
      const [row] = await sql(db.url, "SELECT name, locked FROM brain_leader");
      expect(row).toEqual({ name: "b", locked: true });
      await waitFor(async () => aDeposed.length > 0, 5_000, "a to learn it lost its session");
      expect(a.isLeader).toBe(false);
    } finally {
      await db.close();
    }
  });

  it("makes a takeover wait for a commit in progress, and the new leader reads that commit", async () => {
    const db = await database();
    const committer = new pg.Client({ connectionString: db.url });
    await committer.connect();
    try {
      // Epoch 1's lease has run out, but one of its commits is still open.
      await sql(db.url, "UPDATE brain_leader SET epoch = 1, member_id = 9, name = 'old', client_url = 'http://old', expires_at = now() - interval '1 second'");
      await committer.query("BEGIN");
      const open = group(1, 2, "in-flight");
      await committer.query("SELECT brain_commit_group(1, 1, 2, $1, $2, $3, $4, $5, '{}', '{}', NULL)", [
        [2], [0], [false], [open.rows[0]!.key], [open.rows[0]!.kv],
      ]);

      const b = db.member("b", 3000);
      const bElected: number[] = [];
      b.onElected((epoch) => bElected.push(epoch));
      b.start();
      await waitFor(
        async () => (await sql(db.url, "SELECT 1 FROM pg_stat_activity WHERE application_name = 'brain/b' AND wait_event_type = 'Lock'")).length === 1,
        5_000,
        "b's takeover to wait on the commit's lock",
      );
      expect(bElected).toEqual([]);
      await committer.query("COMMIT");
      await waitFor(async () => bElected.length > 0, 5_000, "b to take over");
      expect(bElected).toEqual([2]);
      const bLog = new PgGroupLog(db.pool("b-log"));
      const groups = await bLog.readGroups(0, 10);
      expect(groups.map((read) => [read.sequence, Buffer.from(read.rows[0]!.key).toString()])).toEqual([[1, "in-flight"]]);
      // Any later commit of epoch 1 is refused.
      await expect(
        committer.query("SELECT brain_commit_group(1, 2, 3, '{3}', '{0}', '{false}', '{\\\\x6b}', '{\\\\x6b}', '{}', '{}', NULL)"),
      ).rejects.toMatchObject({ code: "WB001" });
      await bLog.close();
    } finally {
      await committer.end();
      await db.close();
    }
  });

  it("hands over at once when the leader resigns", async () => {
    const db = await database();
    try {
      const ttlMs = 3000;
      const a = db.member("a", ttlMs);
      a.start();
      await waitFor(async () => a.isLeader, 10_000, "a to lead");
      const b = db.member("b", ttlMs);
      const seen: Array<string | undefined> = [];
      b.onLeaderChange((leader) => seen.push(leader?.name));
      b.start();
      await waitFor(async () => b.leader?.name === "a", 5_000, "b to see a");
      const resigned = Date.now();
      await a.resign();
      await waitFor(async () => b.isLeader, ttlMs, "b to lead");
      expect(Date.now() - resigned).toBeLessThan(ttlMs / 2);
      expect(b.epoch).toBe(2);
      expect(seen.at(0)).toBe("a");
      expect(seen.at(-1)).toBe("b");
    } finally {
      await db.close();
    }
  });
});
