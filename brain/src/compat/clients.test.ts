// The same sessions through etcdctl and the etcd3 npm client, against the
// reference etcd and against brain; what the user sees must be identical.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { Etcd3 } from "etcd3";
import { toolPath } from "@wharf/testkit";
import { brainTargets, differentialSuite, type Target } from "./differential.js";

const run = promisify(execFile);

/** Runs etcdctl; stdin is given for txn. Output with ids and revisions made relative. */
async function etcdctl(target: Target, base: number, args: string[], stdin?: string): Promise<string> {
  // `watch` never ends by itself: give it long enough to print the replay.
  const timeout = args[0] === "watch" ? 1500 : 10_000;
  const child = execFile(toolPath("etcdctl"), [`--endpoints=${target.endpoint}`, ...args], { timeout });
  const output = new Promise<string>((resolve) => {
    let out = "";
    let err = "";
    child.stdout?.on("data", (chunk: string) => (out += chunk));
    child.stderr?.on("data", (chunk: string) => (err += chunk));
    child.on("close", (code) => resolve(`${out}${err ? `[stderr] ${err.replace(/\{"level".*\n/g, "")}` : ""}[exit ${code}]`));
  });
  child.stdin?.end(stdin ?? "");
  const text = await output;
  return text
    .replace(/"cluster_id":\d+,"member_id":\d+,/g, "")
    // The term is an instance's (elections so far), like the ids: the raw-gRPC suites drop raftTerm too.
    .replace(/,?"raft_term":\d+/g, "")
    .replace(/"(revision|create_revision|mod_revision)":(\d+)/g, (_, name: string, value: string) => `"${name}":${Number(value) - base}`);
}

async function currentRevision(target: Target): Promise<number> {
  const { stdout } = await run(toolPath("etcdctl"), [`--endpoints=${target.endpoint}`, "get", "x", "-w", "json"]);
  return (JSON.parse(stdout) as { header: { revision: number } }).header.revision;
}

let session = 0;

describe.each(brainTargets)("%s", (target) => {
  const { pair } = differentialSuite([], target);

  describe("etcdctl against etcd and brain", () => {
    it("prints the same for put, get, del, txn, watch and compaction", async () => {
      const p = `ctl${++session}`;
      const outputs: Record<string, string[]> = {};
      for (const target of [pair().etcd, pair().brain]) {
        const base = await currentRevision(target);
        const ctl = (args: string[], stdin?: string) => etcdctl(target, base, args, stdin);
        const out: string[] = [];
        out.push(await ctl(["put", `${p}/a`, "1"]));
        out.push(await ctl(["put", `${p}/b`, "2", "--prev-kv"]));
        out.push(await ctl(["put", `${p}/a`, "3", "--prev-kv"]));
        out.push(await ctl(["get", `${p}/`, "--prefix"]));
        out.push(await ctl(["get", `${p}/`, "--prefix", "-w", "json"]));
        out.push(await ctl(["get", `${p}/`, "--prefix", "--keys-only", "--order=DESCEND", "--sort-by=VALUE"]));
        out.push(await ctl(["get", `${p}/a`, `--rev=${base + 1}`, "-w", "json"]));
        out.push(await ctl(["get", `${p}/`, "--prefix", "--count-only", "-w", "json"]));
        out.push(await ctl(["txn"], `value("${p}/a") = "3"\n\nput ${p}/c 4\nget ${p}/a\n\ndel ${p}/b\n\n`));
        out.push(await ctl(["txn"], `mod("${p}/a") > "0"\nversion("${p}/zz") = "1"\n\nput ${p}/d 5\n\nget ${p}/c\n\n`));
        out.push(await ctl(["del", `${p}/`, "--prefix", "--prev-kv"]));
        out.push(await ctl(["watch", `${p}/a`, `--rev=${base + 1}`, "--prev-kv", "-w", "json"]));
        out.push(await ctl(["compaction", String(base + 2)]));
        out.push(await ctl(["get", `${p}/a`, `--rev=${base + 1}`]));
        out.push(await ctl(["put", "", "x"]));
        outputs[target.name] = out;
      }
      expect(outputs.brain).toEqual(outputs.etcd);
      expect(outputs.brain?.join("\n")).toContain(`"key":"${Buffer.from(`${p}/a`).toString("base64")}"`);
    });
  });

  describe("the etcd3 npm client against etcd and brain", () => {
    it("sees the same values, leases, transactions and watch events", async () => {
      const p = `js${++session}`;
      const seen: Record<string, unknown[]> = {};
      for (const target of [pair().etcd, pair().brain]) {
        const client = new Etcd3({ hosts: target.endpoint });
        const out: unknown[] = [];
        try {
          const events: string[] = [];
          const watcher = await client.watch().prefix(`${p}/`).create();
          watcher.on("put", (kv) => events.push(`put ${kv.key.toString()}=${kv.value.toString()}`));
          watcher.on("delete", (kv) => events.push(`delete ${kv.key.toString()}`));
          await client.put(`${p}/a`).value("1");
          await client.put(`${p}/b`).value("2");
          out.push(await client.get(`${p}/a`).string());
          out.push(await client.getAll().prefix(`${p}/`).strings());
          out.push(await client.getAll().prefix(`${p}/`).count());
          const lease = client.lease(30, { autoKeepAlive: false });
          await lease.put(`${p}/leased`).value("x");
          out.push((await lease.keepaliveOnce()).TTL);
          out.push((await client.getAll().prefix(`${p}/`).keys()).map(String));
          await lease.revoke();
          out.push((await client.getAll().prefix(`${p}/`).keys()).map(String));
          const result = await client
            .if(`${p}/a`, "Value", "==", "1")
            .then(client.put(`${p}/a`).value("10"))
            .else(client.put(`${p}/a`).value("-1"))
            .commit();
          out.push(result.succeeded);
          out.push(await client.get(`${p}/a`).string());
          out.push(await client.delete().prefix(`${p}/`).then((r) => r.deleted));
          const deadline = Date.now() + 5000;
          while (events.length < 7 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
          out.push(events);
          await watcher.cancel();
        } finally {
          client.close();
        }
        seen[target.name] = out;
      }
      expect(seen.brain).toEqual(seen.etcd);
      expect((seen.brain?.at(-1) as string[]).length).toBe(7);
    });
  });
});
