// What the two ADS protocol servers share: the resource kind of a type URL,
// who a stream belongs to, and ending a stream exactly once.
import { status as grpcStatus, type ServerDuplexStream } from "@grpc/grpc-js";

/** What a stream tells about its peer (its TLS certificate, its address). */
export type ServerSurfaceCall = Pick<ServerDuplexStream<unknown, unknown>, "getAuthContext" | "getPeer">;
import type { NodeIdentity } from "./cache.js";
import { typeUrls, type ResourceKind } from "./snapshot.js";

export const kindOf = new Map<string, ResourceKind>((Object.keys(typeUrls) as ResourceKind[]).map((kind) => [typeUrls[kind], kind]));

/** A stream the control plane will not serve, and the gRPC status it ends with. */
export class StreamRefused extends Error {
  constructor(
    readonly code: grpcStatus,
    message: string,
  ) {
    super(message);
  }
}

/** Who is on the other end of `call`; throws StreamRefused when they are not to be served. */
export type Authenticate = (call: ServerSurfaceCall, claimedNodeId: string) => NodeIdentity;

/** What the protocol servers report, e.g. to metrics and logs. */
export interface StreamObserver {
  pushed?(kind: ResourceKind): void;
  refused?(reason: string, claimedNodeId: string): void;
}

export interface StreamOptions {
  authenticate: Authenticate;
  observer?: StreamObserver;
}

/**
 * The identity of the stream's node, fixed by its first request: later
 * requests that name another node end the stream.
 */
export function streamIdentity(call: ServerSurfaceCall, options: StreamOptions): (claimedNodeId: string | undefined) => NodeIdentity {
  let identity: NodeIdentity | undefined;
  return (claimed) => {
    if (identity) {
      if (claimed !== undefined && claimed !== "" && claimed !== identity.name) {
        throw new StreamRefused(grpcStatus.PERMISSION_DENIED, `this stream belongs to node ${identity.name}, not ${claimed}`);
      }
      return identity;
    }
    identity = options.authenticate(call, claimed ?? "");
    return identity;
  };
}

/** Ends the stream with the refusal's status; nothing more is sent on it. */
export function refuse(call: ServerDuplexStream<unknown, unknown>, error: unknown, options: StreamOptions, claimedNodeId: string): void {
  const refusal = error instanceof StreamRefused ? error : new StreamRefused(grpcStatus.INTERNAL, (error as Error).message);
  options.observer?.refused?.(refusal.message, claimedNodeId);
  call.emit("error", { code: refusal.code, details: refusal.message });
}

/** Runs `close` once when the stream ends, fails or is cancelled; ends our side too. */
export function onStreamClosed(call: ServerDuplexStream<unknown, unknown>, close: () => void): void {
  let closed = false;
  const once = () => {
    if (closed) return;
    closed = true;
    close();
  };
  call.on("end", () => {
    once();
    call.end();
  });
  call.on("error", once);
  call.on("cancelled", once);
}
