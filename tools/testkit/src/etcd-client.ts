import { credentials, type ChannelOptions, type ClientDuplexStream } from "@grpc/grpc-js";
import type { DescMessage, DescService, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import { create } from "@bufbuild/protobuf";
import { createGrpcClient, type GrpcClient } from "@wharf/proto/grpc";
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

/**
 * `channelOptions` are grpc-js channel options on top of the defaults (e.g.
 * `grpc.use_local_subchannel_pool: 1` for a connection of its own: clients
 * with equal options otherwise share one HTTP/2 connection).
 */
export function rawEtcdClient(endpoint: string, channelOptions: ChannelOptions = {}): RawEtcdClient {
  const address = endpoint.replace(/^https?:\/\//, "");
  const clients = new Map<string, GrpcClient>();
  const clientFor = (service: DescService) => {
    let client = clients.get(service.typeName);
    if (!client) {
      client = createGrpcClient(service, address, credentials.createInsecure(), {
        "grpc.max_receive_message_length": 64 * 1024 * 1024,
        "grpc.max_send_message_length": 64 * 1024 * 1024,
        ...channelOptions,
      });
      clients.set(service.typeName, client);
    }
    return client;
  };
  return {
    call: (service, method, input, request) => clientFor(service).unary(method, create(input, request)) as never,
    stream: (service, method) => clientFor(service).duplex(method),
    close() {
      for (const client of clients.values()) client.close();
    },
  };
}

export const etcdServices = { KV, Watch, Lease, Maintenance, Cluster };
