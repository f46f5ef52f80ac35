// Assembles a running brain: storage (its own RocksDB, or a replica of a set
// sharing PostgreSQL), MVCC store, leases, watches, the etcd v3 gRPC API on
// every client URL, and the metrics/health endpoint.
import { readFileSync } from "node:fs";
import { createServer, type Server as HttpServer } from "node:http";
import { create, type DescService } from "@bufbuild/protobuf";
import {
  Auth,
  AuthStatusResponseSchema,
  Cluster,
  CompactionResponseSchema,
  KV,
  Lease,
  Maintenance,
  ResponseHeaderSchema,
  Watch,
  type ResponseHeader,
} from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import { KvApplier } from "../apply/kv-applier.js";
import type { BrainConfig } from "../config.js";
import { Lessor } from "../lease/lessor.js";
import { log } from "../log.js";
import { startAutoCompaction } from "../mvcc/auto-compactor.js";
import { MvccStore } from "../mvcc/store.js";
import { openRocksEngine } from "../storage/rocks-engine.js";
import { WatchHub } from "../watch/watch-hub.js";
import { Forwarder } from "../replica/forwarder.js";
import { ReplicaCounters, ReplicaNode } from "../replica/replica-node.js";
import { routedKv, routedLease } from "./replica-routing.js";
import { addService, type Implementation } from "./grpc-adapter.js";
import { LeaseService } from "./lease-service.js";
import { MaintenanceService, raftTerm, type ReplicaView } from "./maintenance-service.js";
import { BrainMetrics } from "./metrics.js";
import { addHealthService } from "./transport/health.js";
import { GrpcServer } from "./transport/grpc-server.js";
import { watchStreamHandler } from "./watch-service.js";
import { encodeHeader } from "./wire.js";

/** How long a replica that stops goes on answering requests already sent to it before its listeners close. */
const answerBeforeCloseMs = 100;
/** gRPC framing on top of the largest request, as etcd allows. */
const grpcOverheadBytes = 512 * 1024;

export interface RunningBrain {
  store: MvccStore;
  /** host:port of each client listener, in --listen-client-urls order. */
  clientAddresses: string[];
  metricsAddresses: string[];
  /**
   * --storage postgres: resolves with the reason when this brain must stop
   * and start again as a follower (deposed, or the shared log failed under
   * it). Never resolves with RocksDB storage.
   */
  restart: Promise<string>;
  /** `graceMs`: how long open calls (watch streams) may go on before their connections are cut. */
  stop(options?: { graceMs?: number }): Promise<void>;
}

export interface StartOptions {
  /** --storage postgres: counters that outlive restarts within the process (metrics). */
  counters?: ReplicaCounters;
}

export async function startBrain(config: BrainConfig, options: StartOptions = {}): Promise<RunningBrain> {
  const lessor = new Lessor();
  const counters = options.counters ?? new ReplicaCounters();
  let store: MvccStore;
  let node: ReplicaNode | undefined;
  let stopCompaction: () => void = () => undefined;
  if (config.storage === "postgres") {
    // The node restores the lessor, follows the log, and starts expiry and
    // auto compaction itself once it leads.
    node = await ReplicaNode.start(config, lessor, counters);
    store = node.store;
  } else {
    const engine = await openRocksEngine(config.dataDir);
    store = await MvccStore.open(engine, { sync: !config.unsafeNoFsync }, lessor);
    lessor.bind(store);
    lessor.startExpiry();
    stopCompaction = startAutoCompaction(store, { mode: config.autoCompactionMode, retention: config.autoCompactionRetention });
  }
  const hub = new WatchHub(store);
  const memberId = node?.memberId ?? store.memberId;
  const clusterId = node?.clusterId ?? store.clusterId;
  // A replica reports the leader's epoch as etcd reports its raft term.
  const term = (): number => (node === undefined ? raftTerm : node.epoch);
  const forwarder =
    node === undefined
      ? undefined
      : new Forwarder({
          tls: memberTls(config),
          maxRequestBytes: config.maxRequestBytes,
          onForward: (method) => counters.countForward(method),
        });
  if (node !== undefined && forwarder !== undefined) node.onLeaderChange((leader) => forwarder.leaderChanged(leader?.clientUrl));
  const metrics = BrainMetrics.create(store, lessor, hub, node === undefined ? undefined : { node, counters });

  const header = (revision: number): ResponseHeader =>
    create(ResponseHeaderSchema, {
      clusterId,
      memberId,
      revision: BigInt(revision),
      raftTerm: BigInt(term()),
    });
  const headerBytes = (revision: number): Uint8Array => encodeHeader({ clusterId, memberId, revision, raftTerm: term() });
  const observe = metrics.observe.bind(metrics);

  const kv = new KvApplier(store, header, headerBytes, { maxTxnOps: config.maxTxnOps });
  const leases = new LeaseService(lessor, store, header);
  const maintenance = new MaintenanceService(
    store,
    header,
    {
      name: config.name,
      clientUrls: config.advertiseClientUrls,
      peerUrls: [],
    },
    node === undefined ? undefined : replicaView(node, memberId),
  );

  let kvImplementation: Implementation = {
    range: kv.range.bind(kv),
    put: kv.put.bind(kv),
    deleteRange: kv.deleteRange.bind(kv),
    txn: kv.txn.bind(kv),
    compact: async (request: { revision: bigint; physical: boolean }) => {
      const revision = await store.compact(Number(request.revision), request.physical);
      return create(CompactionResponseSchema, { header: header(revision) });
    },
  };
  let leaseImplementation: Implementation = {
    leaseGrant: leases.grant.bind(leases),
    leaseRevoke: leases.revoke.bind(leases),
    leaseKeepAlive: leases.keepAliveStream(),
    leaseTimeToLive: leases.timeToLive.bind(leases),
    leaseLeases: leases.leases.bind(leases),
  };
  if (node !== undefined && forwarder !== undefined) {
    kvImplementation = routedKv(kvImplementation, node, forwarder);
    leaseImplementation = routedLease(leaseImplementation, node, forwarder);
  }

  const services: Array<[DescService, Implementation]> = [
    [KV, kvImplementation],
    [
      Watch,
      {
        watch: watchStreamHandler(store, hub, header, headerBytes, {
          progressNotifyIntervalMs: config.watchProgressNotifyIntervalMs,
          maxResponseBytes: config.maxRequestBytes,
        }),
      },
    ],
    [Lease, leaseImplementation],
    [
      Maintenance,
      {
        alarm: maintenance.alarm.bind(maintenance),
        status: maintenance.status.bind(maintenance),
        defragment: maintenance.defragment.bind(maintenance),
        hash: maintenance.hash.bind(maintenance),
        hashKV: maintenance.hashKv.bind(maintenance),
        snapshot: maintenance.snapshotStream(),
      },
    ],
    [
      Cluster,
      { memberList: maintenance.memberList.bind(maintenance) },
    ],
    [
      Auth,
      {
        authStatus: async () => create(AuthStatusResponseSchema, { header: header(store.revision), enabled: false }),
      },
    ],
  ];

  const servers: GrpcServer[] = [];
  const clientAddresses: string[] = [];
  const serving = new Set(["", "etcdserverpb.KV"]);
  for (const url of config.listenClientUrls) {
    const server = new GrpcServer({ maxReceiveMessageLength: config.maxRequestBytes + grpcOverheadBytes });
    for (const [service, implementation] of services) addService(server, service, implementation, { maxRequestBytes: config.maxRequestBytes, observe });
    addHealthService(server, serving);
    const tls =
      url.protocol === "https:"
        ? {
            cert: readFileSync(config.certFile!),
            key: readFileSync(config.keyFile!),
            ca: config.trustedCaFile ? readFileSync(config.trustedCaFile) : undefined,
            requestClientCert: config.clientCertAuth,
          }
        : undefined;
    const port = await server.listen(url.hostname.replace(/^\[(.*)\]$/, "$1"), Number(url.port), tls).catch(async (error: unknown) => {
      await Promise.all(servers.map((started) => started.close(0)));
      forwarder?.close();
      await node?.close();
      await store.close();
      await node?.end();
      throw new Error(`cannot listen on ${url.href}: ${(error as Error).message}`, { cause: error });
    });
    servers.push(server);
    clientAddresses.push(`${url.hostname}:${port}`);
  }

  const httpServers: HttpServer[] = [];
  const metricsAddresses: string[] = [];
  for (const url of config.listenMetricsUrls) {
    const server = createServer((request, response) => {
      if (request.url === "/metrics") {
        metrics.registry.metrics().then(
          (text) => response.writeHead(200, { "content-type": metrics.registry.contentType }).end(text),
          (error: unknown) => response.writeHead(500).end(String(error)),
        );
      } else if (request.url === "/healthz" || request.url === "/health") {
        // Healthy when the store answers a read.
        store.view().then(
          async (view) => {
            await view.close();
            response.writeHead(200, { "content-type": "application/json" }).end('{"health":"true"}');
          },
          (error: unknown) => response.writeHead(503).end(JSON.stringify({ health: "false", reason: String(error) })),
        );
      } else {
        response.writeHead(404).end();
      }
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(Number(url.port), url.hostname, () => resolve());
    });
    const address = server.address();
    metricsAddresses.push(typeof address === "object" && address ? `${url.hostname}:${address.port}` : url.host);
    httpServers.push(server);
  }

  log("info", "brain is serving", {
    name: config.name,
    storage: config.storage,
    dataDir: config.dataDir,
    clientUrls: clientAddresses,
    metricsUrls: metricsAddresses,
    revision: store.revision,
    compactRevision: store.compactRevision,
    // On PostgreSQL, its own settings (fsync, synchronous_commit) make writes durable.
    fsync: config.storage === "postgres" ? "postgres" : !config.unsafeNoFsync,
  });

  let stopping: Promise<void> | undefined;
  return {
    store,
    clientAddresses,
    metricsAddresses,
    restart: node?.restart ?? new Promise<string>(() => undefined),
    stop({ graceMs = 2000 } = {}) {
      stopping ??= (async () => {
        // Each step runs whatever an earlier one met: a brain restarting as a
        // follower must release its data dir and connections in any case.
        let failure: unknown;
        const step = async (what: string, run: () => unknown) => {
          try {
            await run();
          } catch (error) {
            log("warn", `stopping: ${what} failed`, { error: String(error) });
            failure ??= error;
          }
        };
        stopCompaction();
        lessor.stop();
        for (const server of httpServers) server.close();
        // A replica first reads what clients already sent (a leader resumed
        // from a pause has a socket buffer of them) and answers it: refused
        // by GOAWAY instead, those requests would be retried against a
        // closed port and fail with a transport error rather than etcd's.
        if (node !== undefined) await new Promise((resolve) => setTimeout(resolve, answerBeforeCloseMs));
        // Open watch streams would hold a graceful shutdown forever.
        const closing = Promise.all(servers.map((server) => server.close(graceMs)));
        // A leader hands over as soon as what its writer took is answered, not
        // after the streams' grace: the next leader is elected meanwhile.
        await step("resigning the leadership", () => node?.resign(Math.min(graceMs, 1000)));
        await step("closing the client listeners", () => closing);
        forwarder?.close();
        await step("leaving the replica set", () => node?.close());
        await step("closing the store", () => store.close());
        await step("closing the PostgreSQL pool", () => node?.end());
        if (failure !== undefined) throw failure;
      })();
      return stopping;
    },
  };
}

/** A member reaches an https:// leader with the CA it trusts and its own certificate as the client's. */
function memberTls(config: BrainConfig): { ca: Buffer | undefined; cert: Buffer; key: Buffer } | undefined {
  if (config.certFile === undefined || config.keyFile === undefined) return undefined;
  return {
    ca: config.trustedCaFile ? readFileSync(config.trustedCaFile) : undefined,
    cert: readFileSync(config.certFile),
    key: readFileSync(config.keyFile),
  };
}

function replicaView(node: ReplicaNode, memberId: bigint): ReplicaView {
  return {
    memberId,
    leaderId: () => node.leader?.memberId ?? 0n,
    term: () => node.epoch,
    members: () => node.members(),
  };
}
