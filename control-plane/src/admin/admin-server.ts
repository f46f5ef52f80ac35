// The admin API over Connect (Connect, gRPC and gRPC-Web protocols) and
// /metrics, behind a bearer token compared in constant time. /healthz answers
// without the token (it tells nothing but "ok"), for liveness probes.
import { timingSafeEqual } from "node:crypto";
import { createServer, type Server } from "node:http";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import {
  AdminService,
  ApplyConfigResponseSchema,
  EnvoyNodeSchema,
  GetConfigResponseSchema,
  GetStatusResponseSchema,
  NackSchema,
} from "@wharf/proto/wharf/admin/v1/admin_pb.js";
import type { ConfigSource } from "../config-source.js";
import type { ControlPlaneMetrics } from "../metrics.js";
import type { Tenants } from "../tenancy/tenants.js";
import type { SnapshotCache } from "../xds/cache.js";
import { tenantRoutes } from "./tenant-routes.js";

export interface RunningAdminServer {
  url: string;
  stop(): Promise<void>;
}

function routes(config: ConfigSource | undefined, cache: SnapshotCache, tenants: Tenants | undefined) {
  return (router: ConnectRouter) =>
    router.service(AdminService, {
      ...tenantRoutes(tenants),
      getStatus: () =>
        create(GetStatusResponseSchema, {
          configVersion: config?.currentVersion ?? "",
          nodes: cache.status().map((node) =>
            create(EnvoyNodeSchema, {
              id: node.nodeId,
              role: node.role,
              connected: node.connected,
              ackedVersions: Object.fromEntries(Object.entries(node.acked).filter((entry): entry is [string, string] => entry[1] !== undefined)),
              lastNack: node.lastNack
                ? create(NackSchema, { kind: node.lastNack.kind, version: node.lastNack.version, message: node.lastNack.message, at: node.lastNack.at.toISOString() })
                : undefined,
            }),
          ),
        }),
      getConfig: () => create(GetConfigResponseSchema, { yaml: config?.currentText ?? "", version: config?.currentVersion ?? "" }),
      applyConfig: async (request) => {
        if (!config) throw new ConnectError("this control plane serves no config source", Code.FailedPrecondition);
        try {
          return create(ApplyConfigResponseSchema, { version: await config.applyAndSave(request.yaml) });
        } catch (error) {
          throw new ConnectError((error as Error).message, Code.InvalidArgument);
        }
      },
    });
}

export interface AdminServerOptions {
  config: ConfigSource | undefined;
  cache: SnapshotCache;
  metrics: ControlPlaneMetrics;
  /** Absent: the tenant calls answer FailedPrecondition. */
  tenants?: Tenants;
  token: string;
  host: string;
  port: number;
}

export async function startAdminServer({ config, cache, metrics, tenants, token, host, port }: AdminServerOptions): Promise<RunningAdminServer> {
  if (token.length < 16) throw new Error("the admin token must be at least 16 characters");
  const expected = Buffer.from(`Bearer ${token}`);
  const handler = connectNodeAdapter({ routes: routes(config, cache, tenants) });
  const server: Server = createServer((request, response) => {
    if (request.url === "/healthz" && request.method === "GET") {
      response.writeHead(200, { "content-type": "text/plain" }).end("ok");
      return;
    }
    const given = Buffer.from(request.headers.authorization ?? "");
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      response.writeHead(401, { "content-type": "application/json" }).end('{"code":"unauthenticated","message":"a valid admin token is required"}');
      return;
    }
    if (request.url === "/metrics") {
      metrics.registry.metrics().then(
        (text) => response.writeHead(200, { "content-type": metrics.registry.contentType }).end(text),
        (error: unknown) => response.writeHead(500).end(String(error)),
      );
      return;
    }
    handler(request, response);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  const bound = typeof address === "object" && address ? address.port : port;
  return {
    url: `http://${host}:${bound}`,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
