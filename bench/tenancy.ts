// `npm run bench:tenancy`: what a tenant costs.
// - tenant create → first successful request, over 100 tenants (admin API
//   CreateTenant, then the tenant's first GET through the gateway);
// - LIST of 5,000 ConfigMaps and a 1,000-event watch, three ways: straight to
//   kube-apiserver, through the gateway as a host identity (the tenant filter
//   is in the chain but leaves host requests alone), and through the gateway
//   as the tenant (the tenant filter rewrites the request and every object of
//   the response). Rounds interleave the three targets; medians of rounds.
// Writes bench/results/tenancy.{md,json}; chart.sh draws the PNG.
// TENANCY_BENCH_QUICK=1: a small run to check that everything works (not a result).
import { readFileSync } from "node:fs";
import { connect, type ClientHttp2Session } from "node:http2";
import {
  credentialsFromPair,
  credentialsOf,
  startReferenceEtcd,
  startTenancyStack,
  waitFor,
  type Credentials,
  type TenancyStack,
} from "@wharf/testkit";
import { percentile, writeResults, type Row } from "./report.js";

const quick = process.env.TENANCY_BENCH_QUICK === "1";
const sizes = quick ? { tenants: 5, configMaps: 300, events: 100, rounds: 2, listsPerRound: 2 } : { tenants: 100, configMaps: 5000, events: 1000, rounds: 5, listsPerRound: 4 };
const concurrency = 16;

function session(credentials: Credentials): ClientHttp2Session {
  const session = connect(credentials.server, { ca: credentials.ca, cert: credentials.cert, key: credentials.key });
  session.on("error", () => undefined);
  return session;
}

function request(client: ClientHttp2Session, method: string, path: string, body?: string): Promise<{ status: number; bytes: number; body: string }> {
  return new Promise((resolve, reject) => {
    const stream = client.request({ ":method": method, ":path": path, ...(body ? { "content-type": "application/json" } : {}) });
    let status = 0;
    const chunks: Buffer[] = [];
    stream.on("response", (headers) => (status = Number(headers[":status"])));
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("end", () => {
      const buffer = Buffer.concat(chunks);
      resolve({ status, bytes: buffer.length, body: buffer.toString("utf8") });
    });
    stream.on("error", reject);
    stream.end(body);
  });
}

async function must(client: ClientHttp2Session, method: string, path: string, body?: string, ok = [200, 201]): Promise<string> {
  const response = await request(client, method, path, body);
  if (!ok.includes(response.status)) throw new Error(`${method} ${path}: ${response.status} ${response.body.slice(0, 300)}`);
  return response.body;
}

/** Envoy's resident memory (MiB), from /proc. */
function envoyRssMb(stack: TenancyStack): number {
  const status = readFileSync(`/proc/${stack.envoy.process.child.pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

const etcd = await startReferenceEtcd();
const stack = await startTenancyStack({ etcdServers: [etcd.endpoint] });
const rows: Row[] = [];
const extra: Record<string, unknown> = { quick, sizes, concurrency };
try {
  // 1. Tenant create → first successful request.
  const createTimes: number[] = [];
  for (let i = 0; i < sizes.tenants; i++) {
    const started = performance.now();
    const file = await stack.createTenant(`bench${i}`);
    const client = session(await credentialsOf(file));
    await waitFor(async () => (await request(client, "GET", "/api/v1/namespaces/default/configmaps?limit=1")).status === 200, 30_000, `tenant bench${i}'s first request`, 5);
    createTimes.push(performance.now() - started);
    client.close();
  }
  createTimes.sort((a, b) => a - b);
  // Pushed last, so the chart's targets come in the order direct, gateway, gateway+tenant filter.
  const createRow: Row = { workload: "tenant create → first request", target: "gateway+tenant filter", opsPerSecond: 1000 / median(createTimes), p50Ms: percentile(createTimes, 50), p99Ms: percentile(createTimes, 99), rssMb: envoyRssMb(stack) };
  console.error(`create → first request over ${sizes.tenants} tenants: p50 ${percentile(createTimes, 50).toFixed(0)} ms, p99 ${percentile(createTimes, 99).toFixed(0)} ms`);

  // The tenant whose data the LIST and watch read, and the three ways to it.
  const tenantFile = await stack.createTenant("data");
  const tenant = await credentialsOf(tenantFile);
  const direct = credentialsFromPair(stack.kube.url, stack.kube.pki.ca.certFile, stack.kube.pki.admin);
  const viaGateway = credentialsFromPair(stack.gatewayUrl, stack.kube.pki.ca.certFile, stack.hostAdmin);
  const targets: Array<{ name: string; credentials: Credentials; namespace: (ns: string) => string }> = [
    { name: "direct", credentials: direct, namespace: (ns) => `wt-data-${ns}` },
    { name: "gateway", credentials: viaGateway, namespace: (ns) => `wt-data-${ns}` },
    { name: "gateway+tenant filter", credentials: tenant, namespace: (ns) => ns },
  ];
  const writer = session(tenant);
  await waitFor(async () => (await request(writer, "GET", "/api/v1/namespaces/default")).status === 200, 30_000, "the data tenant");
  for (const ns of ["list", "watch"]) await must(writer, "POST", "/api/v1/namespaces", JSON.stringify({ apiVersion: "v1", kind: "Namespace", metadata: { name: ns } }));
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < sizes.configMaps) {
        const i = next++;
        await must(writer, "POST", "/api/v1/namespaces/list/configmaps", JSON.stringify({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: `cm-${i}`, labels: { app: "bench", index: String(i) } }, data: { value: "x".repeat(256) } }));
      }
    }),
  );

  // 2. LIST of every ConfigMap in one namespace, interleaved rounds.
  const listTimes = new Map<string, number[]>(targets.map((target) => [target.name, []]));
  const listMedians = new Map<string, number[]>(targets.map((target) => [target.name, []]));
  const listBytes = new Map<string, number>();
  const listRss: number[] = [];
  for (let round = 0; round <= sizes.rounds; round++) {
    for (const target of round % 2 === 0 ? targets : [...targets].reverse()) {
      const client = session(target.credentials);
      const times: number[] = [];
      for (let i = 0; i < sizes.listsPerRound; i++) {
        const started = performance.now();
        const response = await request(client, "GET", `/api/v1/namespaces/${target.namespace("list")}/configmaps`);
        const elapsed = performance.now() - started;
        if (response.status !== 200) throw new Error(`LIST via ${target.name}: ${response.status} ${response.body.slice(0, 300)}`);
        const count = (JSON.parse(response.body) as { items: unknown[] }).items.length;
        if (count !== sizes.configMaps) throw new Error(`LIST via ${target.name}: ${count} items, want ${sizes.configMaps}`);
        listBytes.set(target.name, response.bytes);
        times.push(elapsed);
      }
      client.close();
      if (target.name === "gateway+tenant filter") listRss.push(envoyRssMb(stack));
      // Round 0 warms connections and caches up; it is not counted.
      if (round === 0) continue;
      listTimes.get(target.name)!.push(...times);
      listMedians.get(target.name)!.push(median(times));
    }
  }
  for (const target of targets) {
    const times = listTimes.get(target.name)!.sort((a, b) => a - b);
    const med = median(listMedians.get(target.name)!);
    rows.push({ workload: `list ${sizes.configMaps} configmaps`, target: target.name, opsPerSecond: 1000 / med, p50Ms: percentile(times, 50), p99Ms: percentile(times, 99), rssMb: target.name === "gateway+tenant filter" ? Math.max(...listRss) : 0 });
    console.error(`LIST ${sizes.configMaps} via ${target.name}: median of round medians ${med.toFixed(1)} ms, p99 ${percentile(times, 99).toFixed(1)} ms, ${listBytes.get(target.name)} bytes`);
  }
  extra.listBytes = Object.fromEntries(listBytes);

  // 3. A watch per target open at once on the same namespace: each event is
  //    timed from the write's start to its arrival on each watch.
  const watchLatencies = new Map<string, number[]>(targets.map((target) => [target.name, []]));
  const sentAt = new Map<string, number>();
  const watchers = targets.map((target) => {
    const client = session(target.credentials);
    const stream = client.request({ ":method": "GET", ":path": `/api/v1/namespaces/${target.namespace("watch")}/configmaps?watch=true&allowWatchBookmarks=false` });
    stream.setEncoding("utf8");
    let buffer = "";
    let opened = false;
    stream.on("response", () => (opened = true));
    stream.on("data", (chunk: string) => {
      buffer += chunk;
      let at;
      while ((at = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, at);
        buffer = buffer.slice(at + 1);
        const event = JSON.parse(line) as { type: string; object: { metadata: { name: string; namespace: string } } };
        const sent = sentAt.get(event.object.metadata.name);
        if (event.type === "ADDED" && sent !== undefined) watchLatencies.get(target.name)!.push(performance.now() - sent);
      }
    });
    stream.on("error", () => undefined);
    return { target, client, stream, opened: () => opened };
  });
  await waitFor(async () => watchers.every((watcher) => watcher.opened()), 10_000, "every watch to open");
  const watchRss: number[] = [];
  const watchStarted = performance.now();
  for (let i = 0; i < sizes.events; i++) {
    const name = `ev-${i}`;
    sentAt.set(name, performance.now());
    await must(writer, "POST", "/api/v1/namespaces/watch/configmaps", JSON.stringify({ apiVersion: "v1", kind: "ConfigMap", metadata: { name }, data: { i: String(i) } }));
    if (i % 100 === 0) watchRss.push(envoyRssMb(stack));
  }
  await waitFor(async () => watchers.every((watcher) => watchLatencies.get(watcher.target.name)!.length === sizes.events), 30_000, () =>
    `every event on every watch: ${watchers.map((watcher) => `${watcher.target.name} ${watchLatencies.get(watcher.target.name)!.length}`).join(", ")}`,
  );
  const watchSeconds = (performance.now() - watchStarted) / 1000;
  for (const watcher of watchers) {
    watcher.stream.close();
    watcher.client.close();
    const latencies = watchLatencies.get(watcher.target.name)!.sort((a, b) => a - b);
    rows.push({ workload: `watch ${sizes.events} events`, target: watcher.target.name, opsPerSecond: sizes.events / watchSeconds, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99), rssMb: watcher.target.name === "gateway+tenant filter" ? Math.max(...watchRss) : 0 });
    console.error(`watch ${sizes.events} events via ${watcher.target.name}: p50 ${percentile(latencies, 50).toFixed(2)} ms, p99 ${percentile(latencies, 99).toFixed(2)} ms`);
  }
  writer.close();
  rows.push(createRow);
  extra.envoyRssMbAtEnd = envoyRssMb(stack);
} finally {
  await stack.stop();
  await etcd.stop();
}

const signed = (value: number, digits: number) => `${value >= 0 ? "+" : ""}${value.toFixed(digits)}`;
const row = (workload: string, target: string) => rows.find((candidate) => candidate.workload === workload && candidate.target === target)!;
const lines = [
  "| workload | target | p50 ms | p99 ms | vs gateway (p50) | Envoy RSS MiB |",
  "|---|---|---:|---:|---:|---:|",
  ...rows.map((entry) => {
    const base = rows.find((candidate) => candidate.workload === entry.workload && candidate.target === "gateway");
    const versus = base && entry.target === "gateway+tenant filter" ? `${signed(((entry.p50Ms - base.p50Ms) / base.p50Ms) * 100, 1)}% / ${signed(entry.p50Ms - base.p50Ms, 2)} ms` : "";
    return `| ${entry.workload} | ${entry.target} | ${entry.p50Ms.toFixed(2)} | ${entry.p99Ms.toFixed(2)} | ${versus} | ${entry.rssMb ? entry.rssMb.toFixed(0) : ""} |`;
  }),
];
const listWorkload = `list ${sizes.configMaps} configmaps`;
const watchWorkload = `watch ${sizes.events} events`;
const listAdded = row(listWorkload, "gateway+tenant filter").p50Ms / row(listWorkload, "gateway").p50Ms - 1;
const watchAdded = row(watchWorkload, "gateway+tenant filter").p99Ms - row(watchWorkload, "gateway").p99Ms;
const create = row("tenant create → first request", "gateway+tenant filter");
lines.push(
  "",
  `Targets (issue 12): create p99 ≤ 1000 ms — measured ${create.p99Ms.toFixed(0)} ms; the tenant filter adds ≤ 20% to the LIST — measured ${signed(listAdded * 100, 1)}%; ≤ 1 ms p99 to watch delivery — measured ${signed(watchAdded, 2)} ms.`,
);
const table = lines.join("\n");
writeResults(
  "tenancy",
  rows,
  { ...extra, panels: [{ key: "p50Ms", title: "p50 (ms, lower is better)" }, { key: "p99Ms", title: "p99 (ms, lower is better)" }] },
  "Tenancy: tenant creation, and LIST/watch direct vs through the gateway vs through the gateway with the tenant filter",
  `one kube-apiserver on etcd, one gateway Envoy configured by \`wharf control-plane\` over xDS, HTTP/2 with client certificates on every hop; ` +
    `${sizes.tenants} tenants created one after another; LIST: ${sizes.rounds} interleaved rounds of ${sizes.listsPerRound} requests per target after a warm-up round; ` +
    `watch: one watch per target open at once, ${sizes.events} creates written one at a time by the tenant, latency from the write's start to arrival.` +
    (quick ? " QUICK SMOKE RUN (TENANCY_BENCH_QUICK=1): not a result." : ""),
  table,
);
console.log(table);
