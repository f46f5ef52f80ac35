// `npm run bench:brain`: the same load generator against the reference etcd
// and brain, one after the other in one run, both with durable writes (etcd
// fsyncs its WAL; brain syncs every group commit). Writes a markdown table and
// a JSON file to bench/results/, then a PNG chart (bench/chart.py).
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import {
  Compare_CompareResult,
  Compare_CompareTarget,
  LeaseGrantRequestSchema,
  LeaseKeepAliveRequestSchema,
  PutRequestSchema,
  RangeRequestSchema,
  TxnRequestSchema,
  WatchRequestSchema,
  type LeaseKeepAliveRequest,
  type LeaseKeepAliveResponse,
  type WatchRequest,
  type WatchResponse,
} from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import {
  etcdServices,
  rawEtcdClient,
  repoRoot,
  startBrainProcess,
  startReferenceEtcd,
  type RawEtcdClient,
  type RunningProcess,
} from "@wharf/testkit";
import { percentile, writeResults, type Row } from "./report.js";


const scale = Number(process.env.BENCH_SCALE ?? "1");
const concurrency = 32;
const bytes = (text: string) => new TextEncoder().encode(text);
const value = new Uint8Array(1024).fill(120); // 1 KiB, about a small Kubernetes object

function rssMb(process: RunningProcess): number {
  const status = readFileSync(`/proc/${process.child.pid}/status`, "utf8");
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return kb / 1024;
}

/** Runs `op(i)` for i in [0, total) with `concurrency` in flight; returns latencies. */
async function drive(total: number, op: (i: number) => Promise<void>): Promise<{ seconds: number; latencies: number[] }> {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < total; i = next++) {
        const t0 = performance.now();
        await op(i);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  return { seconds: (performance.now() - started) / 1000, latencies: latencies.sort((a, b) => a - b) };
}

type Workload = (client: RawEtcdClient, prefix: string) => Promise<{ ops: number; seconds: number; latencies: number[] }>;

const workloads: Array<[string, Workload]> = [
  [
    "txn-create",
    async (client, prefix) => {
      const total = 4000 * scale;
      const result = await drive(total, async (i) => {
        const key = bytes(`${prefix}/obj/${i}`);
        await client.call(etcdServices.KV, "Txn", TxnRequestSchema, {
          compare: [{ target: Compare_CompareTarget.Mod, result: Compare_CompareResult.Equal, key, targetUnion: { case: "modRevision", value: 0n } }],
          success: [{ request: { case: "requestPut", value: { key, value } } }],
        });
      });
      return { ops: total, ...result };
    },
  ],
  [
    "txn-update",
    async (client, prefix) => {
      const keys = 500;
      const revisions: bigint[] = [];
      for (let i = 0; i < keys; i++) {
        const put = (await client.call(etcdServices.KV, "Put", PutRequestSchema, { key: bytes(`${prefix}/upd/${i}`), value })) as unknown as {
          header: { revision: bigint };
        };
        revisions[i] = put.header.revision;
      }
      const total = 4000 * scale;
      const result = await drive(total, async (i) => {
        const index = i % keys;
        const key = bytes(`${prefix}/upd/${index}`);
        const response = (await client.call(etcdServices.KV, "Txn", TxnRequestSchema, {
          compare: [
            { target: Compare_CompareTarget.Mod, result: Compare_CompareResult.Equal, key, targetUnion: { case: "modRevision", value: revisions[index]! } },
          ],
          success: [{ request: { case: "requestPut", value: { key, value } } }],
          failure: [{ request: { case: "requestRange", value: { key } } }],
        })) as unknown as { succeeded: boolean; header: { revision: bigint } };
        if (response.succeeded) revisions[index] = response.header.revision;
      });
      return { ops: total, ...result };
    },
  ],
  [
    "range-500-at-rev",
    async (client, prefix) => {
      // The txn-create keys (4000 × scale of them) are the data set.
      const head = (await client.call(etcdServices.KV, "Range", RangeRequestSchema, { key: bytes("x") })) as unknown as { header: { revision: bigint } };
      const total = 400 * scale;
      const result = await drive(total, async () => {
        await client.call(etcdServices.KV, "Range", RangeRequestSchema, {
          key: bytes(`${prefix}/obj/`),
          rangeEnd: bytes(`${prefix}/obj0`),
          limit: 500n,
          revision: head.header.revision,
        });
      });
      return { ops: total, ...result };
    },
  ],
  [
    "watch-fanout-100",
    async (client, prefix) => {
      const watchers = 100;
      const puts = 200 * scale;
      const sentAt = new Map<string, number>();
      const latencies: number[] = [];
      let created = 0;
      let delivered = 0;
      let done!: () => void;
      const allDelivered = new Promise<void>((resolve) => (done = resolve));
      const streams = Array.from({ length: watchers }, () => {
        const stream = client.stream<WatchRequest, WatchResponse>(etcdServices.Watch, "Watch");
        stream.on("error", () => undefined);
        stream.on("data", (response: WatchResponse) => {
          if (response.created) created++;
          const now = performance.now();
          for (const event of response.events) {
            const at = sentAt.get(new TextDecoder().decode(event.kv!.key));
            if (at !== undefined) latencies.push(now - at);
            if (++delivered === watchers * puts) done();
          }
        });
        stream.write(create(WatchRequestSchema, { requestUnion: { case: "createRequest", value: { key: bytes(`${prefix}/w/`), rangeEnd: bytes(`${prefix}/w0`) } } }));
        return stream;
      });
      while (created < watchers) await new Promise((resolve) => setTimeout(resolve, 10));
      const started = performance.now();
      for (let i = 0; i < puts; i++) {
        const key = `${prefix}/w/${i}`;
        sentAt.set(key, performance.now());
        await client.call(etcdServices.KV, "Put", PutRequestSchema, { key: bytes(key), value });
      }
      await Promise.race([allDelivered, new Promise((resolve) => setTimeout(resolve, 30_000))]);
      const seconds = (performance.now() - started) / 1000;
      for (const stream of streams) stream.cancel();
      return { ops: delivered, seconds, latencies: latencies.sort((a, b) => a - b) };
    },
  ],
  [
    "lease-grant+keepalive",
    async (client) => {
      const total = 2000 * scale;
      const stream = client.stream<LeaseKeepAliveRequest, LeaseKeepAliveResponse>(etcdServices.Lease, "LeaseKeepAlive");
      stream.on("error", () => undefined);
      const waiting = new Map<bigint, () => void>();
      stream.on("data", (response: LeaseKeepAliveResponse) => waiting.get(response.ID)?.());
      const result = await drive(total, async () => {
        const granted = (await client.call(etcdServices.Lease, "LeaseGrant", LeaseGrantRequestSchema, { TTL: 60n })) as unknown as { ID: bigint };
        await new Promise<void>((resolve) => {
          waiting.set(granted.ID, resolve);
          stream.write(create(LeaseKeepAliveRequestSchema, { ID: granted.ID }));
        });
        waiting.delete(granted.ID);
      });
      stream.cancel();
      return { ops: total, ...result };
    },
  ],
];

async function benchTarget(name: "etcd" | "brain"): Promise<Row[]> {
  const server = name === "etcd" ? await startReferenceEtcd() : await startBrainProcess();
  const client = rawEtcdClient(server.endpoint);
  const rows: Row[] = [];
  try {
    for (const [workload, run] of workloads) {
      const { ops, seconds, latencies } = await run(client, "bench");
      rows.push({
        workload,
        target: name,
        opsPerSecond: ops / seconds,
        p50Ms: percentile(latencies, 50),
        p99Ms: percentile(latencies, 99),
        rssMb: rssMb(server.process),
      });
      console.error(`${name} ${workload}: ${(ops / seconds).toFixed(0)} ops/s, p50 ${percentile(latencies, 50).toFixed(2)} ms, p99 ${percentile(latencies, 99).toFixed(2)} ms`);
    }
  } finally {
    client.close();
    await server.stop();
  }
  return rows;
}

function markdown(rows: Row[]): string {
  const lines = [
    "| workload | etcd ops/s | brain ops/s | brain/etcd | etcd p50 ms | brain p50 ms | etcd p99 ms | brain p99 ms | etcd RSS MiB | brain RSS MiB |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const [workload] of workloads) {
    const etcd = rows.find((row) => row.workload === workload && row.target === "etcd")!;
    const brain = rows.find((row) => row.workload === workload && row.target === "brain")!;
    lines.push(
      `| ${workload} | ${etcd.opsPerSecond.toFixed(0)} | ${brain.opsPerSecond.toFixed(0)} | ${(brain.opsPerSecond / etcd.opsPerSecond).toFixed(2)} | ` +
        `${etcd.p50Ms.toFixed(2)} | ${brain.p50Ms.toFixed(2)} | ${etcd.p99Ms.toFixed(2)} | ${brain.p99Ms.toFixed(2)} | ` +
        `${etcd.rssMb.toFixed(0)} | ${brain.rssMb.toFixed(0)} |`,
    );
  }
  return lines.join("\n");
}

const rows = [...(await benchTarget("etcd")), ...(await benchTarget("brain"))];
const table = markdown(rows);
const etcdVersion = execFileSync(join(repoRoot, ".tools", "bin", "etcd"), ["--version"]).toString().split("\n")[0];
writeResults("brain", rows, { concurrency, scale }, "brain vs etcd", `${etcdVersion}; ${concurrency} requests in flight, 1 KiB values, fsync on for both.`, table);
console.log(table);
