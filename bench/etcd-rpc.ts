// The few etcd calls the replica benchmarks make themselves (Put, Range,
// Status), each with a deadline: a call to a member that is stopped (SIGSTOP)
// must fail on time, not hang the measurement.
import { create } from "@bufbuild/protobuf";
import { credentials, makeGenericClientConstructor, Metadata, type Client, type ServiceError } from "@grpc/grpc-js";
import {
  KV,
  Maintenance,
  PutRequestSchema,
  RangeRequestSchema,
  StatusRequestSchema,
  type PutResponse,
  type RangeResponse,
  type StatusResponse,
} from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import { serviceDefinition } from "@wharf/proto/grpc";

type Callback<T> = (error: ServiceError | null, response: T) => void;
type UnaryMethod<T> = (request: object, metadata: Metadata, options: { deadline: number }, callback: Callback<T>) => void;

const KvClient = makeGenericClientConstructor(serviceDefinition(KV), "KV");
const MaintenanceClient = makeGenericClientConstructor(serviceDefinition(Maintenance), "Maintenance");

export interface EtcdRpc {
  put(key: string, value: Uint8Array, deadlineMs: number): Promise<PutResponse>;
  /** Every key under `prefix` (keys only, a linearizable read). */
  keys(prefix: string, deadlineMs: number): Promise<string[]>;
  status(deadlineMs: number): Promise<StatusResponse>;
  close(): void;
}

/** One endpoint ("127.0.0.1:PORT" or "http://…"), on a connection of its own. */
export function etcdRpc(endpoint: string): EtcdRpc {
  const address = endpoint.replace(/^https?:\/\//, "");
  const options = {
    // Not the process-wide subchannel pool: each member is measured on its own connection.
    "grpc.use_local_subchannel_pool": 1,
    // A member that comes back (restarted after kill -9) is reconnected to within 100 ms.
    "grpc.initial_reconnect_backoff_ms": 50,
    "grpc.max_reconnect_backoff_ms": 100,
  };
  const kv = new KvClient(address, credentials.createInsecure(), options) as Client & Record<string, UnaryMethod<never>>;
  const maintenance = new MaintenanceClient(address, credentials.createInsecure(), options) as Client & Record<string, UnaryMethod<never>>;
  const unary = <T>(client: Record<string, UnaryMethod<never>>, method: string, request: object, deadlineMs: number) =>
    new Promise<T>((resolve, reject) =>
      (client[method] as unknown as UnaryMethod<T>).call(client, request, new Metadata(), { deadline: Date.now() + deadlineMs }, (error, response) =>
        error ? reject(error) : resolve(response),
      ),
    );
  const prefixEnd = (prefix: string) => {
    const bytes = Buffer.from(prefix);
    bytes[bytes.length - 1]! += 1;
    return bytes;
  };
  return {
    put: (key, value, deadlineMs) => unary(kv, "put", create(PutRequestSchema, { key: Buffer.from(key), value }), deadlineMs),
    keys: async (prefix, deadlineMs) => {
      const response = await unary<RangeResponse>(kv, "range", create(RangeRequestSchema, { key: Buffer.from(prefix), rangeEnd: prefixEnd(prefix), keysOnly: true }), deadlineMs);
      return response.kvs.map((kv) => Buffer.from(kv.key).toString());
    },
    status: (deadlineMs) => unary(maintenance, "status", create(StatusRequestSchema, {}), deadlineMs),
    close() {
      kv.close();
      maintenance.close();
    },
  };
}
