// How long the gateway waits on a client, so a slow or idle one cannot hold
// a connection, a stream or the filter's in-flight slot for ever. Watches
// are long and may be quiet: kube-apiserver ends a watch itself after its
// request timeout (--min-request-timeout, 30 minutes by default, randomized
// up to twice that), so a stream is cut only after it has been silent for
// longer than any watch the apiserver would keep open on its own.

/** The client must have sent all its request headers within this. */
export const requestHeadersTimeout = "10s";
/** A stream (request, watch, exec session) with no bytes either way for this long is reset. */
export const streamIdleTimeout = "3660s";
/** A connection with no stream open for this long is closed. */
export const connectionIdleTimeout = "300s";

/** The HTTP connection manager's fields for the above. */
export function clientTimeouts() {
  return {
    request_headers_timeout: requestHeadersTimeout,
    stream_idle_timeout: streamIdleTimeout,
    common_http_protocol_options: { idle_timeout: connectionIdleTimeout },
  };
}
