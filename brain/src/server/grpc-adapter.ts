// Binds protobuf-es service descriptors to brain's gRPC transport: requests
// are decoded by hand for the hottest methods (protobuf-es otherwise),
// responses that are already wire bytes (EncodedMessage) pass through, errors
// become etcd's gRPC statuses, and unary calls are counted in the metrics.
import { fromBinary, toBinary, type DescMessage, type DescService } from "@bufbuild/protobuf";
import { EtcdError, errors } from "../errors.js";
import { log } from "../log.js";
import { Code, GrpcStatus, type ServerCall } from "./transport/grpc-call.js";
import type { GrpcServer } from "./transport/grpc-server.js";
import { EncodedMessage } from "./wire.js";

export type RequestObserver = (method: string, code: number, seconds: number) => void;

/** A service's handlers by method local name: async functions for unary methods, call handlers for streams. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Implementation = Record<string, ((request: any) => Promise<unknown>) | ((call: ServerCall<any, any>) => void)>;

export interface AdapterOptions {
  maxRequestBytes: number;
  observe: RequestObserver;
}

function toGrpcStatus(error: unknown, method: string): GrpcStatus {
  if (error instanceof EtcdError) return new GrpcStatus(error.code, error.message);
  const message = error instanceof Error ? error.message : String(error);
  log("error", "request failed", { method, error: message });
  return new GrpcStatus(Code.internal, message);
}

export function decoderFor(input: DescMessage): (bytes: Buffer) => unknown {
  return (bytes: Buffer) => fromBinary(input, bytes);
}

export function encoderFor(output: DescMessage): (message: unknown) => Uint8Array {
  return (message) => (message instanceof EncodedMessage ? message.bytes : toBinary(output, message as never));
}

export function addService(server: GrpcServer, service: DescService, implementation: Implementation, options: AdapterOptions): void {
  for (const method of service.methods) {
    const handler = implementation[method.localName];
    if (!handler) continue;
    const path = `/${service.typeName}/${method.name}`;
    const name = `${service.typeName}/${method.name}`;
    const decode = decoderFor(method.input);
    const encode = encoderFor(method.output);
    if (method.methodKind === "unary") {
      const call = handler as (request: unknown) => Promise<unknown>;
      server.route(path, {
        kind: "unary",
        handle: (bytes) => {
          const started = performance.now();
          let response: Promise<unknown>;
          try {
            if (bytes.length > options.maxRequestBytes) throw errors.requestTooLarge();
            response = call(decode(bytes));
          } catch (error) {
            response = Promise.reject(error);
          }
          return response.then(
            (message) => {
              options.observe(name, Code.ok, (performance.now() - started) / 1000);
              return encode(message);
            },
            (error: unknown) => {
              const status = toGrpcStatus(error, name);
              options.observe(name, status.code, (performance.now() - started) / 1000);
              throw status;
            },
          );
        },
      });
    } else if (method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming") {
      server.route(path, { kind: method.methodKind, decode, encode, handle: handler as (call: ServerCall) => void });
    }
  }
}
