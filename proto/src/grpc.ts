// Binds protobuf-es service descriptors to @grpc/grpc-js, for servers and
// clients alike: messages are (de)serialized with the generated schemas.
import { fromBinary, toBinary, type DescMessage, type DescService, type MessageShape } from "@bufbuild/protobuf";
import type { ServiceDefinition } from "@grpc/grpc-js";

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
