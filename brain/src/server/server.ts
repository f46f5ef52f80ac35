// Assembles a running brain: storage, MVCC store, leases, watches, the etcd
// v3 gRPC API on every client URL, and the metrics/health endpoint.
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
import { addService, type Implementation } from "./grpc-adapter.js";
import { LeaseService } from "./lease-service.js";
import { MaintenanceService, raftTerm } from "./maintenance-service.js";
import { BrainMetrics } from "./metrics.js";
import { addHealthService } from "./transport/health.js";
import { GrpcServer } from "./transport/grpc-server.js";
import { watchStreamHandler } from "./watch-service.js";
import { encodeHeader } from "./wire.js";

/** gRPC framing on top of the largest request, as etcd allows. */
const grpcOverheadBytes = 512 * 1024;

export interface RunningBrain {
  store: MvccStore;
  /** host:port of each client listener, in --listen-client-urls order. */
  clientAddresses: string[];
  metricsAddresses: string[];
  stop(): Promise<void>;
}

export async function startBrain(config: BrainConfig): Promise<RunningBrain> {
  if (config.storage === "postgres") throw new Error("--storage postgres: the replica node is not assembled in this build yet");
  const engine = await openRocksEngine(config.dataDir);
  const lessor = new Lessor();
  const store = await MvccStore.open(engine, { sync: !config.unsafeNoFsync }, lessor);
  lessor.bind(store);
  lessor.startExpiry();
  const hub = new WatchHub(store);
  const metrics = BrainMetrics.create(store, lessor, hub);
  const stopCompaction = startAutoCompaction(store, { mode: config.autoCompactionMode, retention: config.autoCompactionRetention });

  const header = (revision: number): ResponseHeader =>
    create(ResponseHeaderSchema, {
      clusterId: store.clusterId,
      memberId: store.memberId,
      revision: BigInt(revision),
      raftTerm: BigInt(raftTerm),
    });
  const headerBytes = (revision: number): Uint8Array =>
    encodeHeader({ clusterId: store.clusterId, memberId: store.memberId, revision, raftTerm });
  const observe = metrics.observe.bind(metrics);

  const kv = new KvApplier(store, header, headerBytes, { maxTxnOps: config.maxTxnOps });
  const leases = new LeaseService(lessor, store, header);
  const maintenance = new MaintenanceService(store, header, {
    name: config.name,
    clientUrls: config.advertiseClientUrls,
    peerUrls: [],
  });

  const services: Array<[DescService, Implementation]> = [
    [
      KV,
      {
        range: kv.range.bind(kv),
        put: kv.put.bind(kv),
        deleteRange: kv.deleteRange.bind(kv),
        txn: kv.txn.bind(kv),
        compact: async (request: { revision: bigint; physical: boolean }) => {
          const revision = await store.compact(Number(request.revision), request.physical);
          return create(CompactionResponseSchema, { header: header(revision) });
        },
      },
    ],
    [
      Watch,
      {
        watch: watchStreamHandler(store, hub, header, headerBytes, {
          progressNotifyIntervalMs: config.watchProgressNotifyIntervalMs,
          maxResponseBytes: config.maxRequestBytes,
        }),
      },
    ],
    [
      Lease,
      {
        leaseGrant: leases.grant.bind(leases),
        leaseRevoke: leases.revoke.bind(leases),
        leaseKeepAlive: leases.keepAliveStream(),
        leaseTimeToLive: leases.timeToLive.bind(leases),
        leaseLeases: leases.leases.bind(leases),
      },
    ],
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
    const port = await server.listen(url.hostname.replace(/^\[(.*)\]$/, "$1"), Number(url.port), tls).catch((error: unknown) => {
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
    dataDir: config.dataDir,
    clientUrls: clientAddresses,
    metricsUrls: metricsAddresses,
    revision: store.revision,
    compactRevision: store.compactRevision,
    fsync: !config.unsafeNoFsync,
  });

  return {
    store,
    clientAddresses,
    metricsAddresses,
    async stop() {
      stopCompaction();
      lessor.stop();
      for (const server of httpServers) server.close();
      // Open watch streams would hold a graceful shutdown forever.
      await Promise.all(servers.map((server) => server.close(2000)));
      await store.close();
    },
  };
}

