import { Server, ServerCredentials } from "@grpc/grpc-js";
import { AggregatedDiscoveryService } from "@wharf/proto/envoy/service/discovery/v3/ads_pb.js";
import { serviceDefinition } from "@wharf/proto/grpc";
import { AdsServer, type AdsObserver } from "./ads-server.js";
import type { SnapshotCache } from "./cache.js";

export interface RunningXdsServer {
  /** host:port Envoy's bootstrap names. */
  address: string;
  ads: AdsServer;
  stop(): Promise<void>;
}

/** Serves ADS on `host:port` (loopback by default; plaintext on loopback only). */
export async function startXdsServer(cache: SnapshotCache, port = 0, host = "127.0.0.1", observer?: AdsObserver): Promise<RunningXdsServer> {
  const ads = new AdsServer(
    cache,
    (level, message, fields) => process.stderr.write(JSON.stringify({ ts: new Date().toISOString(), level, msg: message, ...fields }) + "\n"),
    observer,
  );
  const server = new Server();
  server.addService(serviceDefinition(AggregatedDiscoveryService), { streamAggregatedResources: ads.handler(), deltaAggregatedResources: ads.deltaHandler() });
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${port}`, ServerCredentials.createInsecure(), (error, actual) => (error ? reject(error) : resolve(actual))),
  );
  return {
    address: `${host}:${bound}`,
    ads,
    stop: () =>
      new Promise<void>((resolve) => {
        server.tryShutdown(() => resolve());
        setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 1000).unref();
      }),
  };
}
