// Assembles a running brain: storage, MVCC store, leases, watches, the etcd
// v3 gRPC API on every client URL, and the metrics/health endpoint.
import { readFileSync } from "node:fs";
import { createServer, type Server as HttpServer } from "node:http";
import { create } from "@bufbuild/protobuf";
import { Server, ServerCredentials, type ServiceDefinition } from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
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
import { etcdServiceDefinition, unary, type Implementation } from "./grpc-adapter.js";
import { LeaseService } from "./lease-service.js";
import { MaintenanceService, raftTerm } from "./maintenance-service.js";
import { BrainMetrics } from "./metrics.js";
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
  const engine = await openRocksEngine(config.dataDir);
  const store = await MvccStore.open(engine, { sync: !config.unsafeNoFsync });
  const lessor = await Lessor.open(store);
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
  const handle = <Req extends object, Res>(service: string, method: string, fn: (request: Req) => Promise<Res>) =>
    unary<Req, Res>(`etcdserverpb.${service}/${method}`, fn, config.maxRequestBytes, observe);

  const kv = new KvApplier(store, header, headerBytes, { maxTxnOps: config.maxTxnOps });
  const leases = new LeaseService(lessor, store, header);
  const maintenance = new MaintenanceService(store, header, {
    name: config.name,
    clientUrls: config.advertiseClientUrls,
    peerUrls: [],
  });

  const services: Array<[ServiceDefinition, Implementation]> = [
    [
      etcdServiceDefinition(KV),
      {
        range: handle("KV", "Range", kv.range.bind(kv)),
        put: handle("KV", "Put", kv.put.bind(kv)),
        deleteRange: handle("KV", "DeleteRange", kv.deleteRange.bind(kv)),
        txn: handle("KV", "Txn", kv.txn.bind(kv)),
        compact: handle("KV", "Compact", async (request: { revision: bigint; physical: boolean }) => {
          const revision = await store.compact(Number(request.revision), request.physical);
          return create(CompactionResponseSchema, { header: header(revision) });
        }),
      },
    ],
    [
      etcdServiceDefinition(Watch),
      {
        watch: watchStreamHandler(store, hub, header, headerBytes, {
          progressNotifyIntervalMs: config.watchProgressNotifyIntervalMs,
          maxResponseBytes: config.maxRequestBytes,
        }),
      },
    ],
    [
      etcdServiceDefinition(Lease),
      {
        leaseGrant: handle("Lease", "LeaseGrant", leases.grant.bind(leases)),
        leaseRevoke: handle("Lease", "LeaseRevoke", leases.revoke.bind(leases)),
        leaseKeepAlive: leases.keepAliveStream(),
        leaseTimeToLive: handle("Lease", "LeaseTimeToLive", leases.timeToLive.bind(leases)),
        leaseLeases: handle("Lease", "LeaseLeases", leases.leases.bind(leases)),
      },
    ],
    [
      etcdServiceDefinition(Maintenance),
      {
        alarm: handle("Maintenance", "Alarm", maintenance.alarm.bind(maintenance)),
        status: handle("Maintenance", "Status", maintenance.status.bind(maintenance)),
        defragment: handle("Maintenance", "Defragment", maintenance.defragment.bind(maintenance)),
        hash: handle("Maintenance", "Hash", maintenance.hash.bind(maintenance)),
        hashKV: handle("Maintenance", "HashKV", maintenance.hashKv.bind(maintenance)),
        snapshot: maintenance.snapshotStream(),
      },
    ],
    [
      etcdServiceDefinition(Cluster),
      { memberList: handle("Cluster", "MemberList", maintenance.memberList.bind(maintenance)) },
    ],
    [
      etcdServiceDefinition(Auth),
      {
        authStatus: handle("Auth", "AuthStatus", async () =>
          create(AuthStatusResponseSchema, { header: header(store.revision), enabled: false }),
        ),
      },
    ],
  ];

  const servers: Server[] = [];
  const clientAddresses: string[] = [];
  for (const url of config.listenClientUrls) {
    const server = new Server({
      "grpc.max_receive_message_length": config.maxRequestBytes + grpcOverheadBytes,
      "grpc.max_send_message_length": 2 ** 31 - 1,
      "grpc.keepalive_permit_without_calls": 1,
    });
    for (const [definition, implementation] of services) server.addService(definition, implementation);
    const health = new HealthImplementation({ "": "SERVING", "etcdserverpb.KV": "SERVING" });
    health.addToServer(server);
    const credentials =
      url.protocol === "https:"
        ? ServerCredentials.createSsl(
            config.trustedCaFile ? readFileSync(config.trustedCaFile) : null,
            [{ cert_chain: readFileSync(config.certFile!), private_key: readFileSync(config.keyFile!) }],
            config.clientCertAuth,
          )
        : ServerCredentials.createInsecure();
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`${url.hostname}:${url.port}`, credentials, (error, bound) => (error ? reject(error) : resolve(bound))),
    ).catch((error: unknown) => {
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
      await Promise.all(
        servers.map(
          (server) =>
            new Promise<void>((resolve) => {
              server.tryShutdown(() => resolve());
              // Open watch streams would hold a graceful shutdown forever.
              setTimeout(() => {
                server.forceShutdown();
                resolve();
              }, 2000).unref();
            }),
        ),
      );
      await store.close();
    },
  };
}

