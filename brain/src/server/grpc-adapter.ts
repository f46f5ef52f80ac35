// Binds protobuf-es service descriptors to @grpc/grpc-js: messages are
// (de)serialized with the generated schemas, errors become gRPC statuses.
import type { DescService } from "@bufbuild/protobuf";
import { status, type sendUnaryData, type ServerUnaryCall, type ServiceDefinition, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { serviceDefinition } from "@wharf/proto/grpc";
import { EtcdError, errors } from "../errors.js";
import { log } from "../log.js";
import { EncodedMessage } from "./wire.js";

const encodedSize = Symbol("encodedSize");

/** Bytes the client sent for a request, as received. */
export function requestSize(message: object): number {
  return (message as { [encodedSize]?: number })[encodedSize] ?? 0;
}

/** etcd's services: pre-encoded responses pass through; request sizes are kept for the size limit. */
export function etcdServiceDefinition(service: DescService): ServiceDefinition {
  return serviceDefinition(service, {
    serializeResponse: (response) =>
      response instanceof EncodedMessage ? Buffer.from(response.bytes.buffer, response.bytes.byteOffset, response.bytes.byteLength) : undefined,
    onRequest: (message, bytes) => Object.defineProperty(message, encodedSize, { value: bytes.length, enumerable: false }),
  });
}

export interface GrpcStatusError {
  code: status;
  details: string;
}

export function toStatus(error: unknown): GrpcStatusError {
  if (error instanceof EtcdError) return { code: error.code, details: error.message };
  const message = error instanceof Error ? error.message : String(error);
  return { code: status.INTERNAL, details: message };
}

export type RequestObserver = (method: string, code: status, seconds: number) => void;

/** A unary handler from an async function, with etcd's request-size limit. */
export function unary<Req extends object, Res>(
  method: string,
  handler: (request: Req) => Promise<Res>,
  maxRequestBytes: number,
  observe: RequestObserver,
): (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void {
  return (call, callback) => {
    const started = performance.now();
    const finish = (code: status) => observe(method, code, (performance.now() - started) / 1000);
    if (requestSize(call.request) > maxRequestBytes) {
      const failure = toStatus(errors.requestTooLarge());
      finish(failure.code);
      callback(failure);
      return;
    }
    handler(call.request).then(
      (response) => {
        finish(status.OK);
        callback(null, response);
      },
      (error: unknown) => {
        const failure = toStatus(error);
        if (failure.code === status.INTERNAL) {
          log("error", "request failed", { method, error: failure.details });
        }
        finish(failure.code);
        callback(failure);
      },
    );
  };
}

export type Implementation = UntypedServiceImplementation;
