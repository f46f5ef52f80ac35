// What the two ADS protocol servers share: the resource kind of a type URL,
// who a stream belongs to, and ending a stream exactly once.
import { status as grpcStatus, type ServerDuplexStream } from "@grpc/grpc-js";

/** What a stream tells about its peer (its TLS certificate, its address). */
export type ServerSurfaceCall = Pick<ServerDuplexStream<unknown, unknown>, "getAuthContext" | "getPeer">;
import type { ConfigWatcher, NodeIdentity } from "./cache.js";
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

/**
 * What both ADS variants do around the protocol: authenticate the stream's
 * node on every request (one naming another node ends the stream), tell the
 * cache when the stream opens and closes, and cancel every watch on close.
 * `onRequest` gets each request of a known resource kind; `isClosed` tells
 * a late cache answer that the stream is gone.
 */
export function serveNodeStream<Request extends { node?: { id: string }; typeUrl: string }>(
  call: ServerDuplexStream<Request, unknown>,
  cache: Pick<ConfigWatcher, "streamOpened" | "streamClosed">,
  options: StreamOptions,
  watches: () => Iterable<{ cancel?: () => void }>,
  onRequest: (node: NodeIdentity, kind: ResourceKind, request: Request) => void,
): { isClosed(): boolean } {
  const identify = streamIdentity(call, options);
  let node: NodeIdentity | undefined;
  let closed = false;
  call.on("data", (request: Request) => {
    if (closed) return;
    try {
      const identity = identify(request.node?.id);
      if (!node) {
        node = identity;
        cache.streamOpened(node);
      }
    } catch (error) {
      closed = true;
      refuse(call, error, options, request.node?.id ?? "");
      return;
    }
    const kind = kindOf.get(request.typeUrl);
    if (kind) onRequest(node, kind, request);
  });
  onStreamClosed(call, () => {
    closed = true;
    for (const watch of watches()) watch.cancel?.();
    if (node) cache.streamClosed(node);
  });
  return { isClosed: () => closed };
}
