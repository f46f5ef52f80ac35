// Binds protobuf-es service descriptors to @grpc/grpc-js, for servers and
// clients alike: messages are (de)serialized with the generated schemas.
import { fromBinary, toBinary, type DescMessage, type DescService, type MessageShape } from "@bufbuild/protobuf";
import {
  makeGenericClientConstructor,
  type ChannelCredentials,
  type ChannelOptions,
  type Client,
  type ClientDuplexStream,
  type ServiceDefinition,
  type ServiceError,
} from "@grpc/grpc-js";

export interface ServiceDefinitionHooks {
  /** Serializes a response that is not a message (e.g. pre-encoded bytes); undefined: not handled. */
  serializeResponse?: (response: unknown) => Buffer | undefined;
  /** Sees every request as received, with its size on the wire. */
  onRequest?: (message: object, bytes: Buffer) => void;
}

export function serviceDefinition(service: DescService, hooks: ServiceDefinitionHooks = {}): ServiceDefinition {
  const definition: Record<string, unknown> = {};
  for (const method of service.methods) {
    const input: DescMessage = method.input;
    const output: DescMessage = method.output;
    definition[method.localName] = {
      path: `/${service.typeName}/${method.name}`,
      originalName: method.name,
      requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
      responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
      requestSerialize: (message: MessageShape<DescMessage>) => Buffer.from(toBinary(input, message)),
      requestDeserialize: (bytes: Buffer) => {
        const message = fromBinary(input, bytes);
        hooks.onRequest?.(message, bytes);
        return message;
      },
      responseSerialize: (message: MessageShape<DescMessage>) =>
        hooks.serializeResponse?.(message) ?? Buffer.from(toBinary(output, message)),
      responseDeserialize: (bytes: Buffer) => fromBinary(output, bytes),
    };
  }
  return definition as ServiceDefinition;
}

/**
 * A client for `service` whose methods are called by name with protobuf-es
 * messages; what the server answered comes back as the generated message.
 */
export interface GrpcClient {
  unary<O extends DescMessage = DescMessage>(method: string, request: object): Promise<MessageShape<O>>;
  duplex<Req, Res>(method: string): ClientDuplexStream<Req, Res>;
  close(): void;
}

export function createGrpcClient(service: DescService, address: string, channelCredentials: ChannelCredentials, options: ChannelOptions = {}): GrpcClient {
  const Constructor = makeGenericClientConstructor(serviceDefinition(service), service.name);
  const client = new Constructor(address, channelCredentials, options) as Client & Record<string, unknown>;
  const bound = (method: string) => {
    const found = service.methods.find((candidate) => candidate.name === method || candidate.localName === method);
    if (!found) throw new Error(`${service.typeName} has no method ${method}`);
    return (client[found.localName] as (...args: unknown[]) => unknown).bind(client);
  };
  return {
    unary<O extends DescMessage>(method: string, request: object) {
      const call = bound(method);
      return new Promise<MessageShape<O>>((resolve, reject) =>
        call(request, (error: ServiceError | null, response: MessageShape<O>) => (error ? reject(error) : resolve(response))),
      );
    },
    duplex<Req, Res>(method: string) {
      return bound(method)() as ClientDuplexStream<Req, Res>;
    },
    close: () => client.close(),
  };
}
