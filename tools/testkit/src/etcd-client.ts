import { makeGenericClientConstructor, credentials, type Client, type ClientDuplexStream, type ServiceError } from "@grpc/grpc-js";
import type { DescMessage, DescService, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import { create } from "@bufbuild/protobuf";
import { serviceDefinition } from "@wharf/proto/grpc";
import { Cluster, KV, Lease, Maintenance, Watch } from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";

type Unary = <I extends DescMessage, O extends DescMessage>(
  service: DescService,
  method: string,
  input: I,
  request: MessageInitShape<I>,
) => Promise<MessageShape<O>>;

/**
 * A raw etcd v3 gRPC client over protobuf-es messages: sends exactly the
 * request given and returns exactly what the server answered, so tests can
 * compare servers field by field.
 */
export interface RawEtcdClient {
  call: Unary;
  stream<Req, Res>(service: DescService, method: string): ClientDuplexStream<Req, Res>;
  close(): void;
}

export function rawEtcdClient(endpoint: string): RawEtcdClient {
  const address = endpoint.replace(/^https?:\/\//, "");
  const clients = new Map<string, Client & Record<string, unknown>>();
  const clientFor = (service: DescService) => {
    let client = clients.get(service.typeName);
    if (!client) {
      const Constructor = makeGenericClientConstructor(serviceDefinition(service), service.name);
      client = new Constructor(address, credentials.createInsecure(), {
        "grpc.max_receive_message_length": 64 * 1024 * 1024,
        "grpc.max_send_message_length": 64 * 1024 * 1024,
      }) as Client & Record<string, unknown>;
      clients.set(service.typeName, client);
    }
    return client;
  };
  const localName = (service: DescService, method: string) => {
    const found = service.methods.find((m) => m.name === method || m.localName === method);
    if (!found) throw new Error(`${service.typeName} has no method ${method}`);
    return found;
  };
  return {
    call(service, method, input, request) {
      const client = clientFor(service);
      const desc = localName(service, method);
      const fn = client[desc.localName] as (req: unknown, cb: (error: ServiceError | null, res: unknown) => void) => void;
      return new Promise((resolve, reject) =>
        fn.call(client, create(input, request), (error, response) => (error ? reject(error) : resolve(response as never))),
      );
    },
    stream<Req, Res>(service: DescService, method: string) {
      const client = clientFor(service);
      const fn = client[localName(service, method).localName] as () => ClientDuplexStream<Req, Res>;
      return fn.call(client);
    },
    close() {
      for (const client of clients.values()) client.close();
    },
  };
}

export const etcdServices = { KV, Watch, Lease, Maintenance, Cluster };
