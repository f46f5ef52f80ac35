// Hand-written decoders for the hottest requests, by message type name. None
// yet: protobuf-es decodes every request (grpc-adapter.ts falls back to it);
// a decoder registered here must produce the same object protobuf-es would.
export const requestDecoders = new Map<string, (bytes: Buffer) => unknown>();
