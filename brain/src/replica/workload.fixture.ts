// Write load for the replica-set tests, and the check of what it left: every
// request is recorded with where it went, when, and how it ended, so a test
// can ask which writes were acknowledged (and at which revision), which were
// in flight at a given moment, and whether the history a member serves is
// exactly what the acknowledged writes made, revision by revision.
import { create, type DescMessage, type DescService, type MessageInitShape } from "@bufbuild/protobuf";
import { credentials, makeGenericClientConstructor, status, type Client, type ServiceError } from "@grpc/grpc-js";
import { serviceDefinition } from "@wharf/proto/grpc";
import {
  Compare_CompareResult as Result,
  Compare_CompareTarget as Target,
  DeleteRangeRequestSchema,
  KV,
  PutRequestSchema,
  RangeRequestSchema,
  TxnRequestSchema,
  WatchRequestSchema,
  type DeleteRangeResponse,
  type PutResponse,
  type RangeResponse,
  type TxnResponse,
  type WatchRequest,
  type WatchResponse,
} from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import { Event_EventType as EventType } from "@wharf/proto/etcd/api/mvccpb/kv_pb.js";
import { etcdServices, quickReconnect, waitFor, type RawEtcdClient } from "@wharf/testkit";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
export const bytes = (text: string): Uint8Array => encoder.encode(text);
export const text = (value: Uint8Array): string => decoder.decode(value);

/** One event a write makes, reduced to what the write determines. */
export interface ExpectedEvent {
  type: "put" | "delete";
  key: string;
  value?: string;
}

export type Outcome = { revision: bigint } | { code: number; details: string };

/** One request, as the client saw it. */
export interface Attempt {
  what: string;
  endpoint: string;
  issuedAt: number;
  settledAt?: number;
  /** The events it makes if it took effect. */
  events: ExpectedEvent[];
  outcome?: Outcome;
}

export const acknowledged = (attempt: Attempt): attempt is Attempt & { outcome: { revision: bigint } } =>
  attempt.outcome !== undefined && "revision" in attempt.outcome;

type Unary = (request: object, options: { deadline: number }, callback: (error: ServiceError | null, response: unknown) => void) => void;

/** Unary etcd calls to one endpoint with a deadline each (the testkit's raw client has none). */
export class Connection {
  private readonly clients = new Map<string, Client & Record<string, Unary>>();

  constructor(readonly endpoint: string) {}

  call<I extends DescMessage, O>(service: DescService, method: string, schema: I, request: MessageInitShape<I>, deadlineMs: number): Promise<O> {
    let client = this.clients.get(service.typeName);
    if (!client) {
      const Constructor = makeGenericClientConstructor(serviceDefinition(service), service.name);
      client = new Constructor(this.endpoint.replace(/^http:\/\//, ""), credentials.createInsecure(), quickReconnect) as unknown as Client & Record<string, Unary>;
      this.clients.set(service.typeName, client);
    }
    const localName = service.methods.find((candidate) => candidate.name === method)!.localName;
    const unary = client[localName]!.bind(client);
    return new Promise((resolve, reject) =>
      unary(create(schema, request), { deadline: Date.now() + deadlineMs }, (error, response) => (error ? reject(error) : resolve(response as O))),
    );
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
  }
}

export interface WriteLoadOptions {
  writers?: number;
  /** Each request's deadline. */
  deadlineMs?: number;
  /** Key prefix, so loads on one keyspace do not meet. */
  prefix?: string;
}

/**
 * Writers that each start on one endpoint (round robin) and move to the next
 * endpoint after any failure, as etcd clients given every member do. Every
 * write makes new keys (or deletes one of the writer's own acknowledged keys),
 * so each can be found in the history by its events alone.
 */
export class WriteLoad {
  readonly attempts: Attempt[] = [];
  private readonly connections = new Map<string, Connection>();
  private running: Array<Promise<void>> = [];
  private stopping = false;
  /** Endpoints writers do not move to (a client's balancer skipping a member that does not answer). */
  private readonly avoided = new Set<string>();
  private readonly deadlineMs: number;
  private readonly prefix: string;

  constructor(
    private readonly endpoints: string[],
    private readonly options: WriteLoadOptions = {},
  ) {
    this.deadlineMs = options.deadlineMs ?? 10_000;
    this.prefix = options.prefix ?? "load";
  }

  start(): void {
    const writers = this.options.writers ?? 6;
    this.running = Array.from({ length: writers }, (_, worker) => this.writer(worker));
  }

  /** Stops issuing; resolves once every writer's last request settled. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.running);
  }

  close(): void {
    for (const connection of this.connections.values()) connection.close();
  }

  /** Writers leave `endpoint` alone when they move on after a failure, until `allow`. */
  avoid(endpoint: string): void {
    this.avoided.add(endpoint);
  }

  allow(endpoint: string): void {
    this.avoided.delete(endpoint);
  }

  connection(endpoint: string): Connection {
    let connection = this.connections.get(endpoint);
    if (!connection) {
      connection = new Connection(endpoint);
      this.connections.set(endpoint, connection);
    }
    return connection;
  }

  acked(): Array<Attempt & { outcome: { revision: bigint } }> {
    return this.attempts.filter(acknowledged);
  }

  /** Requests issued before `at` and not settled by then. */
  inFlightAt(at: number): Attempt[] {
    return this.attempts.filter((attempt) => attempt.issuedAt <= at && (attempt.settledAt === undefined || attempt.settledAt > at));
  }

  /** A put recorded like the writers' (probes use it to time a failover). */
  async put(endpoint: string, key: string, value: string, deadlineMs = this.deadlineMs): Promise<Attempt> {
    return this.issue(endpoint, `put ${key}`, [{ type: "put", key, value }], async (connection) => {
      const response = await connection.call<typeof PutRequestSchema, PutResponse>(KV, "Put", PutRequestSchema, { key: bytes(key), value: bytes(value) }, deadlineMs);
      return response.header!.revision;
    });
  }

  private async issue(endpoint: string, what: string, events: ExpectedEvent[], send: (connection: Connection) => Promise<bigint>): Promise<Attempt> {
    const attempt: Attempt = { what, endpoint, issuedAt: Date.now(), events };
    this.attempts.push(attempt);
    try {
      attempt.outcome = { revision: await send(this.connection(endpoint)) };
    } catch (error) {
      const failure = error as Partial<ServiceError>;
      if (typeof failure.code !== "number") throw error;
      attempt.outcome = { code: failure.code, details: failure.details ?? String(error) };
    }
    attempt.settledAt = Date.now();
    return attempt;
  }

  private async writer(worker: number): Promise<void> {
    let at = worker % this.endpoints.length;
    const live: string[] = []; // own keys whose put was acknowledged and that no delete was sent for
    for (let i = 0; !this.stopping; i++) {
      const endpoint = this.endpoints[at]!;
      const key = `${this.prefix}/w${worker}/${i}`;
      const value = `${worker}:${i}`;
      const roll = (i * 7 + worker) % 20; // deterministic mix: 14 puts, 3 txns, 3 deletes in 20
      let attempt: Attempt;
      if (roll < 3 && live.length > 0) {
        const victim = live.splice((i * 31) % live.length, 1)[0]!;
        attempt = await this.issue(endpoint, `delete ${victim}`, [{ type: "delete", key: victim }], async (connection) => {
          const response = await connection.call<typeof DeleteRangeRequestSchema, DeleteRangeResponse>(KV, "DeleteRange", DeleteRangeRequestSchema, { key: bytes(victim) }, this.deadlineMs);
          if (response.deleted !== 1n) throw new Error(`delete of the acknowledged ${victim} deleted ${response.deleted}`);
          return response.header!.revision;
        });
      } else if (roll < 6) {
        const keys = [key, `${key}/b`];
        attempt = await this.issue(endpoint, `txn ${key}`, keys.map((k) => ({ type: "put", key: k, value })), async (connection) => {
          const response = await connection.call<typeof TxnRequestSchema, TxnResponse>(KV, "Txn", TxnRequestSchema, {
            compare: [{ target: Target.Version, result: Result.Equal, key: bytes(key), targetUnion: { case: "version", value: 0n } }],
            success: keys.map((k) => ({ request: { case: "requestPut" as const, value: { key: bytes(k), value: bytes(value) } } })),
          }, this.deadlineMs);
          if (!response.succeeded) throw new Error(`txn on the fresh key ${key} did not succeed`);
          return response.header!.revision;
        });
        if (acknowledged(attempt)) live.push(key);
      } else {
        attempt = await this.put(endpoint, key, value);
        if (acknowledged(attempt)) live.push(key);
      }
      if (!acknowledged(attempt)) {
        do at = (at + 1) % this.endpoints.length;
        while (this.avoided.has(this.endpoints[at]!) && this.avoided.size < this.endpoints.length);
      }
    }
  }
}

/** Failures a client may see while a leader changes or PostgreSQL is away: etcd's "try again" codes. */
export const retryable = (outcome: Outcome): boolean =>
  "code" in outcome && (outcome.code === status.UNAVAILABLE || outcome.code === status.DEADLINE_EXCEEDED);

export type History = Map<bigint, Array<{ type: "put" | "delete"; key: string; value: string }>>;

/** The current revision of a member (a linearizable Range, so it has caught up). */
export async function currentRevision(client: RawEtcdClient): Promise<bigint> {
  const response = (await client.call(etcdServices.KV, "Range", RangeRequestSchema, { key: bytes("\0") })) as unknown as RangeResponse;
  return response.header!.revision;
}

/** Every event from revision 1 to `upTo` a member's watch delivers, grouped by revision. */
export async function watchHistory(client: RawEtcdClient, upTo: bigint): Promise<History> {
  const byRevision: History = new Map();
  const stream = client.stream<WatchRequest, WatchResponse>(etcdServices.Watch, "Watch");
  stream.on("error", () => undefined); // our own cancel below
  let highest = 1n;
  stream.on("data", (response: WatchResponse) => {
    for (const event of response.events) {
      const revision = event.kv!.modRevision;
      if (revision > highest) highest = revision;
      const events = byRevision.get(revision) ?? [];
      events.push({ type: event.type === EventType.Put ? "put" : "delete", key: text(event.kv!.key), value: text(event.kv!.value) });
      byRevision.set(revision, events);
    }
  });
  stream.write(create(WatchRequestSchema, { requestUnion: { case: "createRequest", value: { key: Uint8Array.of(0), rangeEnd: Uint8Array.of(0), startRevision: 1n } } }));
  try {
    await waitFor(async () => highest >= upTo, 30_000, () => `a watch from revision 1 to reach revision ${upTo} (at ${highest})`);
  } finally {
    stream.cancel();
  }
  return byRevision;
}

const sameEvents = (a: ExpectedEvent[], b: History extends Map<bigint, infer V> ? V : never) =>
  a.length === b.length && a.every((event, i) => event.type === b[i]!.type && event.key === b[i]!.key && (event.type === "delete" || event.value === b[i]!.value));

/**
 * Checks a history against the attempts: revisions 2..current all made
 * events and none beyond (nothing skipped); each acknowledged write is
 * exactly the revision it was acknowledged with (nothing lost, no revision
 * acknowledged twice); every other revision is exactly one write that was
 * issued but not acknowledged (a failed or timed-out request may have taken
 * effect), each at most once (no revision reused, nothing made up).
 * Returns problems; empty when the history is right.
 */
export function checkHistory(history: History, current: bigint, attempts: Attempt[]): string[] {
  const problems: string[] = [];
  const revisions = [...history.keys()].sort((a, b) => (a < b ? -1 : 1));
  const expected = Array.from({ length: Number(current - 1n) }, (_, i) => BigInt(i + 2));
  if (revisions.join(",") !== expected.join(",")) {
    const missing = expected.filter((revision) => !history.has(revision));
    const extra = revisions.filter((revision) => revision < 2n || revision > current);
    problems.push(`revisions with events are not exactly 2..${current}: missing ${missing.slice(0, 20).join(",")}; beyond ${extra.slice(0, 20).join(",")}`);
  }
  const claimed = new Map<bigint, Attempt>();
  for (const attempt of attempts.filter(acknowledged)) {
    const revision = attempt.outcome.revision;
    const other = claimed.get(revision);
    if (other) problems.push(`revision ${revision} acknowledged twice: ${other.what} via ${other.endpoint} and ${attempt.what} via ${attempt.endpoint}`);
    claimed.set(revision, attempt);
    const found = history.get(revision) ?? [];
    if (!sameEvents(attempt.events, found)) {
      problems.push(`${attempt.what}, acknowledged at revision ${revision} via ${attempt.endpoint}: the history has ${JSON.stringify(found)} there`);
    }
  }
  // Unacknowledged writes, by their first event: each write's is its own (fresh keys; one delete per key).
  const firstEvent = (event: { type: string; key: string }) => `${event.type} ${event.key}`;
  const unacknowledged = new Map<string, Attempt>();
  for (const attempt of attempts) if (!acknowledged(attempt)) unacknowledged.set(firstEvent(attempt.events[0]!), attempt);
  const used = new Set<Attempt>();
  for (const revision of revisions) {
    if (claimed.has(revision)) continue;
    const events = history.get(revision)!;
    const attempt = unacknowledged.get(firstEvent(events[0]!));
    if (!attempt || !sameEvents(attempt.events, events) || used.has(attempt)) {
      problems.push(`revision ${revision} holds ${JSON.stringify(events)}, which no single issued write made`);
      continue;
    }
    used.add(attempt);
  }
  return problems;
}
