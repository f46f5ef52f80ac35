// The gRPC server Envoys connect to: both ADS variants (state of the world
// and delta) on one port, over one cache.
import type { ServerCredentials } from "@grpc/grpc-js";
import { Server } from "@grpc/grpc-js";
import { AggregatedDiscoveryService } from "@wharf/proto/envoy/service/discovery/v3/ads_pb.js";
import { serviceDefinition } from "@wharf/proto/grpc";
import type { ConfigWatcher } from "./cache.js";
import { deltaHandler } from "./delta-server.js";
import { sotwHandler } from "./sotw-server.js";
import type { StreamOptions } from "./stream.js";

export interface RunningXdsServer {
  /** host:port Envoy's bootstrap names. */
  address: string;
  stop(): Promise<void>;
}

export interface XdsServerOptions extends StreamOptions {
  host: string;
  port: number;
  credentials: ServerCredentials;
}

export async function startXdsServer(cache: ConfigWatcher, options: XdsServerOptions): Promise<RunningXdsServer> {
  const server = new Server();
  server.addService(serviceDefinition(AggregatedDiscoveryService), {
    streamAggregatedResources: sotwHandler(cache, options),
    deltaAggregatedResources: deltaHandler(cache, options),
  });
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${options.host}:${options.port}`, options.credentials, (error, actual) => (error ? reject(error) : resolve(actual))),
  );
  return {
    address: `${options.host}:${bound}`,
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
