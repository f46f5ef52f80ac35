// The rows of `npm run bench:brain` and how each is run and read: etcd's own
// benchmark tool (tools/benchmark of go.etcd.io/etcd/v3) for etcd's rows, and
// kubeload (tools/etcd/bench/kubeload) for the Kubernetes-shaped ones.
import { spawn } from "node:child_process";
import { benchTool } from "./servers.js";

export const clients = 32;
export const connections = 8;
export const valueBytes = 1024;
export const keySpace = 100_000;
/** The key the range rows read (written once, 1 KiB, before the rows run). */
export const rangeKey = "bench-range-key";
/** kube-apiserver-shaped collection: list pages need at least this many objects. */
export const collection = 5000;

export type Better = "higher" | "lower";

export interface RowSpec {
  name: string;
  /** What the table says this row is. */
  label: string;
  /** What is compared: throughput, or (watch rows) the p99 delivery latency. */
  better: Better;
  /** The target for brain on this row. */
  target: { etcdRatio: number; aheadOfKine: boolean };
  tool: "benchmark" | "kubeload";
  args(scale: Scale): string[];
  /** Operations the row asks for, for "did not finish N ops". */
  ops(scale: Scale): number;
}

export interface Scale {
  quick: boolean;
}

const pick = (scale: Scale, full: number, quick: number) => (scale.quick ? quick : full);
const common = ["--clients", String(clients), "--conns", String(connections), "--precise"];
// kubeload's command comes first, then its flags.
const kubeCommon = ["--clients", String(clients), "--conns", String(connections)];
const everyOther = { etcdRatio: 1, aheadOfKine: true };
const twiceEtcd = { etcdRatio: 2, aheadOfKine: true };

export const rows: RowSpec[] = [
  {
    name: "put",
    label: "put (random keys, 100k key space)",
    better: "higher",
    target: twiceEtcd,
    tool: "benchmark",
    args: (s) => [...common, "put", "--total", String(pick(s, 20_000, 2000)), "--key-space-size", String(keySpace), "--val-size", String(valueBytes)],
    ops: (s) => pick(s, 20_000, 2000),
  },
  {
    name: "range-serializable",
    label: "range one key, serializable",
    better: "higher",
    target: everyOther,
    tool: "benchmark",
    args: (s) => [...common, "range", rangeKey, "--consistency", "s", "--total", String(pick(s, 60_000, 5000))],
    ops: (s) => pick(s, 60_000, 5000),
  },
  {
    name: "range-linearizable",
    label: "range one key, linearizable",
    better: "higher",
    target: everyOther,
    tool: "benchmark",
    args: (s) => [...common, "range", rangeKey, "--consistency", "l", "--total", String(pick(s, 60_000, 5000))],
    ops: (s) => pick(s, 60_000, 5000),
  },
  {
    name: "txn-put",
    label: "txn-put",
    better: "higher",
    target: twiceEtcd,
    tool: "benchmark",
    args: (s) => [...common, "txn-put", "--total", String(pick(s, 20_000, 2000)), "--key-space-size", String(keySpace), "--val-size", String(valueBytes)],
    ops: (s) => pick(s, 20_000, 2000),
  },
  {
    name: "txn-mixed",
    label: "txn-mixed (`--rw-ratio 1 --limit 100`), reads + writes",
    better: "higher",
    target: everyOther,
    tool: "benchmark",
    args: (s) => [
      ...common, "txn-mixed", "--total", String(pick(s, 4000, 400)), "--rw-ratio", "1", "--limit", "100",
      "--key-space-size", String(keySpace), "--val-size", String(valueBytes),
    ],
    ops: (s) => pick(s, 4000, 400),
  },
  {
    name: "stm",
    label: "stm (2 keys per txn, 1 written; mod_revision compares)",
    better: "higher",
    target: everyOther,
    tool: "benchmark",
    args: (s) => [...common, "stm", "--total", String(pick(s, 10_000, 1000)), "--keys", String(keySpace), "--keys-per-txn", "2", "--val-size", String(valueBytes)],
    ops: (s) => pick(s, 10_000, 1000),
  },
  {
    name: "watch-latency",
    label: "watch-latency (100 watchers, 500 puts/s), p99 ms",
    better: "lower",
    target: everyOther,
    tool: "benchmark",
    args: (s) => [
      ...common, "watch-latency", "--put-total", String(pick(s, 2500, 500)), "--put-rate", "500",
      "--streams", "10", "--watchers-per-stream", "10", "--val-size", String(valueBytes),
    ],
    ops: (s) => pick(s, 2500, 500),
  },
  {
    name: "lease-keepalive",
    label: "lease-keepalive",
    better: "higher",
    target: everyOther,
    tool: "benchmark",
    args: (s) => [...common, "lease-keepalive", "--total", String(pick(s, 60_000, 5000))],
    ops: (s) => pick(s, 60_000, 5000),
  },
  {
    name: "k8s-create",
    label: "Kubernetes: create (Txn mod_revision = 0)",
    better: "higher",
    target: twiceEtcd,
    tool: "kubeload",
    args: (s) => ["create", "--total", String(pick(s, 10_000, collection)), ...kubeCommon],
    ops: (s) => pick(s, 10_000, collection),
  },
  {
    name: "k8s-update",
    label: "Kubernetes: update (Txn mod_revision = last)",
    better: "higher",
    target: twiceEtcd,
    tool: "kubeload",
    args: (s) => ["update", "--total", String(pick(s, 10_000, 2000)), "--objects", String(collection), ...kubeCommon],
    ops: (s) => pick(s, 10_000, 2000),
  },
  {
    name: "k8s-get",
    label: "Kubernetes: linearizable get",
    better: "higher",
    target: everyOther,
    tool: "kubeload",
    args: (s) => ["get", "--total", String(pick(s, 30_000, 3000)), "--objects", String(collection), ...kubeCommon],
    ops: (s) => pick(s, 30_000, 3000),
  },
  {
    name: "k8s-list",
    label: `Kubernetes: paginated list at a revision (pages of 500 of ≥ ${collection})`,
    better: "higher",
    target: everyOther,
    tool: "kubeload",
    args: (s) => ["list", "--total", String(pick(s, 300, 40)), "--objects", String(collection), "--page", "500", ...kubeCommon],
    ops: (s) => pick(s, 300, 40),
  },
  {
    name: "k8s-watch",
    label: "Kubernetes: prefix watch with prev_kv (10 watchers, 500 updates/s), ack → delivery p99 ms",
    better: "lower",
    target: everyOther,
    tool: "kubeload",
    args: (s) => ["watch", "--total", String(pick(s, 2500, 500)), "--rate", "500", "--watchers", "10", "--objects", String(collection), ...kubeCommon],
    ops: (s) => pick(s, 2500, 500),
  },
  {
    name: "k8s-delete",
    label: "Kubernetes: delete (Txn mod_revision = last)",
    better: "higher",
    target: everyOther,
    tool: "kubeload",
    args: (s) => ["delete", "--total", String(pick(s, 10_000, collection)), ...kubeCommon],
    ops: (s) => pick(s, 10_000, collection),
  },
];

/** What one run of one row on one server gave. */
export interface Measurement {
  status: "ok" | "refused" | "did not finish" | "failed";
  opsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** Requests that got an error (a row with some is still measured on the rest). */
  errors: number;
  /** The first error's text (refusals, failures). */
  error?: string;
  /** txn-mixed: reads/s and writes/s; k8s-watch: events missed. */
  detail?: string;
  seconds: number;
}

export interface ToolRun {
  code: number | null;
  stdout: string;
  stderr: string;
  seconds: number;
  timedOut: boolean;
}

/** Runs a load tool against `address`, killing it after `timeoutMs`. */
export function runTool(tool: "benchmark" | "kubeload", address: string, args: string[], timeoutMs: number): Promise<ToolRun> {
  // kubeload takes its command first, then flags.
  const fullArgs = tool === "benchmark" ? ["--endpoints", address, ...args] : [args[0]!, "--endpoints", address, ...args.slice(1)];
  return new Promise((resolve) => {
    const started = performance.now();
    const child = spawn(benchTool(tool), fullArgs, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    // The benchmark tool draws a progress bar on stderr; keep only its tail.
    child.stderr.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, seconds: (performance.now() - started) / 1000, timedOut });
    });
  });
}

interface Summary {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  error?: string;
}

/** Reads one report of etcd's benchmark tool (pkg/report): Requests/sec, the latency distribution, the error distribution. */
function readSummary(text: string): Summary {
  const number = (pattern: RegExp) => Number(pattern.exec(text)?.[1] ?? "NaN");
  // The most frequent error first: it says why a server refuses a row.
  const errors = [...text.matchAll(/^\s+\[(\d+)\]\s+(.*)$/gm)].sort((a, b) => Number(b[1]) - Number(a[1]));
  return {
    requestsPerSecond: number(/Requests\/sec:\s+([\d.e+-]+)/),
    p50Ms: number(/^\s+50% in ([\d.e+-]+) secs/m) * 1000,
    p99Ms: number(/^\s+99% in ([\d.e+-]+) secs/m) * 1000,
    errors: errors.reduce((sum, match) => sum + Number(match[1]), 0),
    error: errors[0]?.[2]?.trim(),
  };
}

function lastLine(text: string): string {
  return (
    text
      .split(/\r?\n|\r/)
      .map((line) => line.trim())
      // Not the progress bar, not a goroutine dump, not clientv3's JSON log lines.
      .filter((line) => line !== "" && !/^\d+ \/ \d+/.test(line) && !line.includes("∎") && !line.startsWith("goroutine") && !line.startsWith("{"))
      .find((line) => /error|panic|rpc|not supported|unsupported|refused/i.test(line)) ?? text.trim().split("\n").pop() ?? ""
  ).slice(0, 300);
}

/** Turns a tool run into a measurement: ok, refused (every request failed), did not finish, or failed. */
export function readRun(row: RowSpec, run: ToolRun, scale: Scale): Measurement {
  const base = { errors: 0, seconds: run.seconds, opsPerSecond: NaN, p50Ms: NaN, p99Ms: NaN };
  if (run.timedOut) {
    // The benchmark tool's progress bar ("812 / 4000") says how far it got.
    const progress = [...run.stderr.matchAll(/(\d+) \/ (\d+)/g)].pop();
    const done = progress ? `${progress[1]} of ${row.ops(scale)}` : `${row.ops(scale)}`;
    return { ...base, status: "did not finish", error: `did not finish ${done} ops in ${run.seconds.toFixed(0)} s` };
  }
  if (row.tool === "kubeload") {
    if (run.code !== 0) return { ...base, status: "refused", error: lastLine(run.stderr) };
    const out = JSON.parse(run.stdout.trim().split("\n").pop()!) as {
      ops: number; errors: number; opsPerSecond: number; p50Ms: number; p99Ms: number; firstError?: string; missed?: number;
    };
    const succeeded = row.name === "k8s-watch" ? out.ops : out.ops - out.errors;
    if (succeeded === 0) return { ...base, status: "refused", errors: out.errors, error: out.firstError ?? "no operation succeeded" };
    return {
      status: "ok",
      opsPerSecond: out.opsPerSecond,
      p50Ms: out.p50Ms,
      p99Ms: out.p99Ms,
      errors: out.errors,
      error: out.firstError,
      detail: row.name === "k8s-watch" ? `${out.missed ?? 0} events missed` : undefined,
      seconds: run.seconds,
    };
  }
  if (run.code !== 0) return { ...base, status: "refused", error: lastLine(run.stdout + "\n" + run.stderr) };
  if (row.name === "txn-mixed") {
    const [, reads = "", writes = ""] = run.stdout.split(/Total (?:Read|Write) Ops: \d+/);
    const read = readSummary(reads);
    const write = readSummary(writes);
    const perSecond = (read.requestsPerSecond || 0) + (write.requestsPerSecond || 0);
    if (!(perSecond > 0)) return { ...base, status: "refused", errors: read.errors + write.errors, error: read.error ?? write.error ?? lastLine(run.stdout) };
    return {
      status: "ok",
      opsPerSecond: perSecond,
      // The reads (a range of 100 over the key space) are the slow half.
      p50Ms: Math.max(read.p50Ms, write.p50Ms),
      p99Ms: Math.max(read.p99Ms, write.p99Ms),
      errors: read.errors + write.errors,
      error: read.error ?? write.error,
      detail: `${read.requestsPerSecond.toFixed(0)} reads/s + ${write.requestsPerSecond.toFixed(0)} writes/s`,
      seconds: run.seconds,
    };
  }
  const text = row.name === "watch-latency" ? (run.stdout.split("Watch events summary:")[1] ?? "") : run.stdout;
  const summary = readSummary(text);
  if (!(summary.requestsPerSecond > 0)) {
    return { ...base, status: "refused", errors: summary.errors, error: summary.error ?? lastLine(run.stdout + "\n" + run.stderr) };
  }
  return {
    status: "ok",
    opsPerSecond: summary.requestsPerSecond,
    p50Ms: summary.p50Ms,
    p99Ms: summary.p99Ms,
    errors: summary.errors,
    error: summary.error,
    seconds: run.seconds,
  };
}
