// grpc.health.v1.Health (Check and Watch) for the services a server reports
// as SERVING; its two messages are one field each, so they are coded here.
import { Code, GrpcStatus, type ServerCall } from "./grpc-call.js";
import type { GrpcServer } from "./grpc-server.js";

const ServingStatus = { serving: 1, serviceUnknown: 3 } as const;

/** HealthCheckRequest { string service = 1; } */
export function decodeHealthRequest(bytes: Buffer): string {
  let at = 0;
  let service = "";
  while (at < bytes.length) {
    const tag = bytes[at++]!;
    if (tag !== 0x0a) throw new GrpcStatus(Code.internal, "grpc: error unmarshalling request: unexpected field in HealthCheckRequest");
    let length = 0;
    for (let shift = 0; ; shift += 7) {
      if (at >= bytes.length || shift > 28) throw new GrpcStatus(Code.internal, "grpc: error unmarshalling request: truncated");
      const byte = bytes[at++]!;
      length |= (byte & 0x7f) << shift;
      if (!(byte & 0x80)) break;
    }
    if (at + length > bytes.length) throw new GrpcStatus(Code.internal, "grpc: error unmarshalling request: truncated");
    service = bytes.toString("utf8", at, at + length);
    at += length;
  }
  return service;
}

/** HealthCheckResponse { ServingStatus status = 1; } */
const response = (status: number) => Uint8Array.of(0x08, status);

export function addHealthService(server: GrpcServer, serving: ReadonlySet<string>): void {
  server.route("/grpc.health.v1.Health/Check", {
    kind: "unary",
    handle: async (bytes) => {
      const service = decodeHealthRequest(bytes);
      if (!serving.has(service)) throw new GrpcStatus(Code.notFound, `Health status unknown for service ${service}`);
      return response(ServingStatus.serving);
    },
  });
  server.route("/grpc.health.v1.Health/Watch", {
    kind: "server_streaming",
    decode: decodeHealthRequest,
    encode: (message) => message as Uint8Array,
    // The status never changes while the server runs: one answer, then the stream stays open.
    handle: (call: ServerCall) => {
      call.write(response(serving.has(call.request as string) ? ServingStatus.serving : ServingStatus.serviceUnknown));
    },
  });
}
