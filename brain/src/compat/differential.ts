// Runs the same scenario against the reference etcd and against brain and
// records what each answered, normalised only where the two must differ
// (cluster/member ids, absolute revisions of an instance, random lease ids).
// "brain" is one of three targets (`brainTargets`): a single brain on
// RocksDB, or a three-brain replica set on PostgreSQL reached through a
// follower or through its leader; a test file runs its suites once per
// target with `describe.each(brainTargets)`.
import type { DescMessage, MessageInitShape } from "@bufbuild/protobuf";
import type { ClientDuplexStream, ServiceError } from "@grpc/grpc-js";
import {
  RangeRequestSchema,
  WatchRequestSchema,
  type WatchRequest,
  type WatchResponse,
} from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import { create } from "@bufbuild/protobuf";
import { afterAll, beforeAll, expect } from "vitest";
import {
  etcdServices,
  rawEtcdClient,
  startBrainProcess,
  startBrainReplicaSet,
  startReferenceEtcd,
  type BrainReplicaSet,
  type RawEtcdClient,
  type ReferenceEtcd,
} from "@wharf/testkit";

export interface Target {
  name: "etcd" | "brain";
  endpoint: string;
  client: RawEtcdClient;
  /** How many members its cluster has (1 when not given). */
  members?: number;
  /** Whether the member at `endpoint` leads its cluster (a single member does). */
  leads?: boolean;
}

/** What "brain" is in a differential run. */
export const brainTargets = ["brain", "brain replica set via a follower", "brain replica set via its leader"] as const;
export type BrainTarget = (typeof brainTargets)[number];

export interface Pair {
  etcd: Target;
  brain: Target;
  /** The replica set behind `brain`, for the replica targets. */
  replicas?: BrainReplicaSet;
  stop(): Promise<void>;
}

/** Starts the brain side: a single brain, or a replica set and the endpoint of a follower or of its leader. */
async function startBrainTarget(target: BrainTarget, brainArgs: string[]): Promise<{ endpoint: string; members: number; leads: boolean; replicas?: BrainReplicaSet; stop(): Promise<void> }> {
  if (target === "brain") {
    const brain = await startBrainProcess({ extraArgs: brainArgs });
    return { endpoint: brain.endpoint, members: 1, leads: true, stop: () => brain.stop() };
  }
  const replicas = await startBrainReplicaSet({ replicas: 3, extraArgs: brainArgs });
  const leader = await replicas.leaderIndex();
  const index = target === "brain replica set via its leader" ? leader : (leader + 1) % replicas.members.length;
  return { endpoint: replicas.endpoints[index]!, members: replicas.members.length, leads: index === leader, replicas, stop: () => replicas.stop() };
}

/** A dedicated reference etcd and brain target, both empty, for one test file (or one target's suites in it). */
export async function startPair(brainArgs: string[] = [], target: BrainTarget = "brain"): Promise<Pair> {
  const [reference, brain] = await Promise.allSettled([startReferenceEtcd(), startBrainTarget(target, brainArgs)]);
  if (reference.status === "rejected" || brain.status === "rejected") {
    if (reference.status === "fulfilled") await reference.value.stop();
    if (brain.status === "fulfilled") await brain.value.stop();
    throw reference.status === "rejected" ? reference.reason : (brain as PromiseRejectedResult).reason;
  }
  const started: { reference: ReferenceEtcd; brain: typeof brain.value } = { reference: reference.value, brain: brain.value };
  const etcdTarget: Target = { name: "etcd", endpoint: started.reference.endpoint, client: rawEtcdClient(started.reference.endpoint) };
  const brainTarget: Target = { name: "brain", endpoint: started.brain.endpoint, client: rawEtcdClient(started.brain.endpoint), members: started.brain.members, leads: started.brain.leads };
  return {
    etcd: etcdTarget,
    brain: brainTarget,
    replicas: started.brain.replicas,
    async stop() {
      etcdTarget.client.close();
      brainTarget.client.close();
      await Promise.all([started.reference.stop(), started.brain.stop()]);
    },
  };
}

const encoder = new TextEncoder();
export const bytes = (text: string): Uint8Array => encoder.encode(text);

type Service = keyof typeof etcdServices;

/** What one step of a scenario observed. */
export type Observation = { ok: unknown } | { error: { code: number; details: string } };

export class Scenario {
  readonly log: Array<{ step: string; seen: Observation | unknown }> = [];
  private base = 0;
  /** Lease ids the server chose, by order of appearance. */
  private readonly leaseIds = new Map<string, string>();

  constructor(
    readonly target: Target,
    /** Unique per scenario, so scenarios sharing a server do not see each other's keys. */
    readonly prefix: string,
  ) {}

  key(name: string): Uint8Array {
    return bytes(`${this.prefix}/${name}`);
  }

  async begin(): Promise<void> {
    const response = await this.target.client.call(etcdServices.KV, "Range", RangeRequestSchema, { key: bytes("\0") });
    this.base = Number((response as { header?: { revision: bigint } }).header?.revision ?? 0n);
  }

  /** Absolute revision of this instance for a revision relative to the scenario start. */
  revision(relative: number): bigint {
    return BigInt(this.base + relative);
  }

  async call<I extends DescMessage>(
    service: Service,
    method: string,
    schema: I,
    request: MessageInitShape<I>,
  ): Promise<Observation & { raw: unknown }> {
    let seen: Observation;
    let raw: unknown;
    try {
      raw = await this.target.client.call(etcdServices[service], method, schema, request);
      seen = { ok: this.normalize(raw) };
    } catch (error) {
      const failure = error as ServiceError;
      seen = { error: { code: failure.code, details: failure.details } };
    }
    this.log.push({ step: `${service}.${method}`, seen });
    return { ...seen, raw };
  }

  record(step: string, value: unknown): void {
    this.log.push({ step, seen: this.normalize(value) });
  }

  /** Opens a watch stream; responses are normalised into `received`. */
  watch(): WatchSession {
    const stream = this.target.client.stream<WatchRequest, WatchResponse>(etcdServices.Watch, "Watch");
    return new WatchSession(stream, (value) => this.normalize(value));
  }

  normalize(value: unknown, field = ""): unknown {
    if (typeof value === "bigint") {
      if (["revision", "createRevision", "modRevision", "compactRevision"].includes(field) && value > 0n) {
        return Number(value) - this.base;
      }
      if ((field === "ID" || field === "lease") && value !== 0n && value > 1_000_000n) {
        // A server-chosen lease id: random on both, so compare by identity.
        const text = value.toString();
        if (!this.leaseIds.has(text)) this.leaseIds.set(text, `lease#${this.leaseIds.size + 1}`);
        return this.leaseIds.get(text);
      }
      return value.toString();
    }
    if (value instanceof Uint8Array) return new TextDecoder().decode(value);
    if (Array.isArray(value)) return value.map((item) => this.normalize(item, field));
    if (value !== null && typeof value === "object") {
      const out: Record<string, unknown> = {};
      for (const [name, inner] of Object.entries(value)) {
        if (name === "$typeName" || name === "$unknown") continue;
        if (name === "clusterId" || name === "memberId" || name === "raftTerm") continue;
        out[name] = this.normalize(inner, name);
      }
      return out;
    }
    return value;
  }
}

export class WatchSession {
  readonly received: unknown[] = [];
  private waiters: Array<() => void> = [];

  constructor(
    private readonly stream: ClientDuplexStream<WatchRequest, WatchResponse>,
    normalize: (value: unknown) => unknown,
  ) {
    stream.on("data", (response: WatchResponse) => {
      this.received.push(normalize(response));
      for (const wake of this.waiters.splice(0)) wake();
    });
    stream.on("error", () => undefined);
  }

  send(request: MessageInitShape<typeof WatchRequestSchema>): void {
    this.stream.write(create(WatchRequestSchema, request));
  }

  /** Waits until `count` responses arrived (or fails after `timeoutMs`). */
  async until(count: number, timeoutMs = 5000): Promise<unknown[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.received.length < count) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`watch: ${this.received.length} of ${count} responses after ${timeoutMs} ms: ${JSON.stringify(this.received)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.received.slice(0, count);
  }

  /** Waits a little and returns everything received (to check nothing more came). */
  async settle(ms = 300): Promise<unknown[]> {
    await new Promise((resolve) => setTimeout(resolve, ms));
    return [...this.received];
  }

  close(): void {
    this.stream.end();
    this.stream.cancel();
  }
}

let counter = 0;

/**
 * Runs `body` on etcd, then on brain, each in a fresh key prefix, and
 * returns both logs for the caller to compare.
 */
export async function differential(
  pair: Pair,
  body: (scenario: Scenario) => Promise<void>,
): Promise<{ etcd: Scenario["log"]; brain: Scenario["log"] }> {
  const prefix = `scenario-${++counter}`;
  const logs: Partial<Record<"etcd" | "brain", Scenario["log"]>> = {};
  for (const target of [pair.etcd, pair.brain]) {
    const scenario = new Scenario(target, prefix);
    await scenario.begin();
    await body(scenario);
    logs[target.name] = scenario.log;
  }
  return { etcd: logs.etcd!, brain: logs.brain! };
}

/**
 * For a test file (or a `describe.each(brainTargets)` block in it): a pair
 * started before its tests and stopped after, and `same(body)`, which runs a
 * scenario on both and expects equal logs.
 */
export function differentialSuite(
  brainArgs: string[] = [],
  target: BrainTarget = "brain",
): { pair: () => Pair; same: (body: (scenario: Scenario) => Promise<void>) => Promise<void> } {
  let pair: Pair | undefined;
  beforeAll(async () => {
    pair = await startPair(brainArgs, target);
  });
  afterAll(async () => {
    await pair?.stop();
  });
  const started = () => {
    if (!pair) throw new Error("the etcd/brain pair did not start");
    return pair;
  };
  return {
    pair: started,
    async same(body) {
      const { etcd, brain } = await differential(started(), body);
      expect(brain).toEqual(etcd);
    },
  };
}
