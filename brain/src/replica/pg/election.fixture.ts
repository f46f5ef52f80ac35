// A brain-like process for the election tests: campaigns, and appends a
// group when told on stdin ("append <sequence> <revision>"). Prints one JSON
// event per line. Run with tsx: election.fixture.ts URL NAME MEMBER_ID TTL_MS
import { createInterface } from "node:readline";
import { encodeKeyValue } from "../../mvcc/kv-wire.js";
import { LeaderElection } from "./election.js";
import { PgGroupLog } from "./group-log.js";
import { openPool } from "./pool.js";

const [url, name, memberId, ttl] = process.argv.slice(2) as [string, string, string, string];
const pool = openPool(url, { name });
const log = new PgGroupLog(pool);
const election = new LeaderElection(pool, { memberId: BigInt(memberId), name, clientUrl: `http://${name}` }, { ttlMs: Number(ttl) });
const say = (event: Record<string, unknown>) => process.stdout.write(JSON.stringify(event) + "\n");
election.onElected((epoch) => {
  log.epoch = epoch;
  say({ event: "elected", epoch });
});
election.onDeposed((reason) => say({ event: "deposed", reason }));
election.start();
for await (const line of createInterface({ input: process.stdin })) {
  const [command, sequence, revision] = line.split(" ");
  if (command !== "append") continue;
  const main = Number(revision);
  const key = Buffer.from(`from-${name}-${sequence}`);
  const kv = encodeKeyValue({ key, value: Buffer.from("v"), createRevision: main, modRevision: main, version: 1, lease: 0n });
  try {
    await log.append({ sequence: Number(sequence), revision: main, rows: [{ main, sub: 0, tombstone: false, key, kv }], leases: [] });
    say({ event: "append", sequence: Number(sequence), ok: true });
  } catch (error) {
    say({ event: "append", sequence: Number(sequence), ok: false, error: (error as Error).message });
  }
}
