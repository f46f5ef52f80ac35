// Prometheus metrics under etcd's names where one applies, so existing
// dashboards and alerts for etcd read brain too.
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { status } from "@grpc/grpc-js";
import { status as grpcStatus } from "@grpc/grpc-js";
import type { Lessor } from "../lease/lessor.js";
import type { MvccStore } from "../mvcc/store.js";
import type { WatchHub } from "../watch/watch-hub.js";
import type { ReplicaCounters, ReplicaNode } from "../replica/replica-node.js";

/** --storage postgres: the replica this brain is, and the counters that outlive its restarts. */
export interface ReplicaMetricsSource {
  node: ReplicaNode;
  counters: ReplicaCounters;
}

const statusNames = Object.fromEntries(Object.entries(grpcStatus).map(([name, code]) => [code, name])) as Record<number, string>;

const applyHistograms = new WeakMap<ReplicaCounters, Histogram>();

export class BrainMetrics {
  readonly registry = new Registry();
  private readonly handled: Counter<"grpc_type" | "grpc_service" | "grpc_method" | "grpc_code">;
  private readonly latency: Histogram<"grpc_type" | "grpc_service" | "grpc_method">;

  private constructor(store: MvccStore, lessor: Lessor, hub: WatchHub, replica: ReplicaMetricsSource | undefined) {
    const registers = [this.registry];
    this.handled = new Counter({
      name: "grpc_server_handled_total",
      help: "Total number of RPCs completed on the server, regardless of success or failure.",
      labelNames: ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
      registers,
    });
    this.latency = new Histogram({
      name: "grpc_server_handling_seconds",
      help: "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
      labelNames: ["grpc_type", "grpc_service", "grpc_method"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    new Gauge({
      name: "etcd_mvcc_db_total_size_in_bytes",
      help: "Total size of the underlying database physically allocated in bytes.",
      registers,
      collect: async function () {
        this.set(await store.engine.approximateSize());
      },
    });
    new Gauge({
      name: "etcd_debugging_mvcc_keys_total",
      help: "Total number of keys.",
      registers,
      collect() {
        this.set(store.liveKeys.size);
      },
    });
    new Gauge({
      name: "etcd_debugging_mvcc_current_revision",
      help: "The current revision of store.",
      registers,
      collect() {
        this.set(store.revision);
      },
    });
    new Gauge({
      name: "etcd_debugging_mvcc_compact_revision",
      help: "The revision of the last compaction in store.",
      registers,
      collect() {
        this.set(store.compactRevision);
      },
    });
    new Gauge({
      name: "etcd_debugging_mvcc_watcher_total",
      help: "Total number of watchers.",
      registers,
      collect() {
        this.set(hub.size);
      },
    });
    new Gauge({
      name: "etcd_debugging_mvcc_slow_watcher_total",
      help: "Total number of unsynced slow watchers.",
      registers,
      collect() {
        this.set(hub.unsyncedCount);
      },
    });
    const ring = (name: string, help: string, read: (stats: WatchHub["ringStats"]) => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read(hub.ringStats));
        },
      });
    ring("brain_watch_ring_events", "Events held in memory for watch catch-up and prev_kv.", (stats) => stats.events);
    ring("brain_watch_ring_bytes", "Approximate bytes of the events held for watch catch-up.", (stats) => stats.bytes);
    ring("brain_watch_ring_first_revision", "Lowest revision from which every event is held in memory; older starts read storage.", (stats) => stats.firstRevision);
    new Gauge({
      name: "etcd_debugging_lease_total",
      help: "The number of active leases.",
      registers,
      collect() {
        this.set(lessor.size);
      },
    });
    new Gauge({
      name: "etcd_server_has_leader",
      help: "Whether or not a leader exists. 1 is existence, 0 is not.",
      registers,
      collect() {
        this.set(replica === undefined || replica.node.leader !== undefined ? 1 : 0);
      },
    });
    new Gauge({
      name: "etcd_server_is_leader",
      help: "Whether or not this member is a leader. 1 if is, 0 otherwise.",
      registers,
      collect() {
        this.set(replica === undefined || replica.node.isLeader ? 1 : 0);
      },
    });
    new Counter({
      name: "etcd_server_leader_changes_seen_total",
      help: "The number of leader changes seen.",
      registers,
      collect() {
        // A single member saw one: its own election, as a one-member etcd counts.
        this.reset();
        this.inc(replica === undefined ? 1 : replica.counters.leaderChanges);
      },
    });
    if (replica !== undefined) this.replicaMetrics(replica, registers);
  }

  private replicaMetrics({ node, counters }: ReplicaMetricsSource, registers: Registry[]): void {
    new Counter({
      name: "brain_forwarded_requests_total",
      help: "Requests this member forwarded to the leader, by method.",
      labelNames: ["method"],
      registers,
      collect() {
        this.reset();
        for (const [method, count] of counters.forwarded) this.inc({ method }, count);
      },
    });
    new Gauge({
      name: "brain_follower_lag_revisions",
      help: "Revisions PostgreSQL has committed that this member's copy has not applied yet (0 on the leader).",
      registers,
      collect: async function () {
        // One ReadIndex query per scrape; a scrape while PostgreSQL is away leaves the last value.
        this.set(node.isLeader ? 0 : await node.lag().catch(() => Number.NaN));
      },
    });
    // One histogram per process: its counts go on across restarts as a follower.
    let applied = applyHistograms.get(counters);
    if (applied === undefined) {
      const histogram = new Histogram({
        name: "brain_follower_apply_seconds",
        help: "Time from a group's commit notification (NOTIFY) to this follower having applied it.",
        buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
        registers: [],
        collect() {
          for (const seconds of counters.applySeconds.splice(0)) histogram.observe(seconds);
        },
      });
      applyHistograms.set(counters, (applied = histogram));
    }
    for (const registry of registers) registry.registerMetric(applied);
  }

  static create(store: MvccStore, lessor: Lessor, hub: WatchHub, replica?: ReplicaMetricsSource): BrainMetrics {
    return new BrainMetrics(store, lessor, hub, replica);
  }

  /** Records one finished RPC; `method` is "Service/Method". */
  observe(method: string, code: status, seconds: number, type = "unary"): void {
    const [service = "", name = ""] = method.split("/");
    this.handled.inc({ grpc_type: type, grpc_service: service, grpc_method: name, grpc_code: statusNames[code] ?? String(code) });
    this.latency.observe({ grpc_type: type, grpc_service: service, grpc_method: name }, seconds);
  }
}
