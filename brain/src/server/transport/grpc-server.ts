// The gRPC server: routes by :path to unary or streaming handlers, accepts
// plain TCP or TLS (ALPN h2, optional client certificates) connections, and
// shuts down gracefully (GOAWAY; open streams may finish).
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from "node:net";
import { createServer as createTlsServer, type TLSSocket } from "node:tls";
import { Connection, defaultLimits, type ConnectionLimits, type RequestHead, type Stream } from "./connection.js";
import { Code, MessageReader, ServerCall, trailersOnly, UnaryCall, type UnaryHandler } from "./grpc-call.js";
import { encodeLiteral, staticNameIndex } from "./hpack.js";

export type StreamingHandler = (call: ServerCall) => void;

export type Route =
  | { kind: "unary"; handle: UnaryHandler }
  | { kind: "server_streaming" | "bidi_streaming"; decode: (bytes: Buffer) => unknown; encode: (message: unknown) => Uint8Array; handle: StreamingHandler };

export interface TlsOptions {
  cert: Buffer;
  key: Buffer;
  /** Trusted client CAs; with `requestClientCert`, client certificates are verified against them. */
  ca?: Buffer;
  requestClientCert: boolean;
}

export interface GrpcServerOptions {
  /** Largest request message accepted (RESOURCE_EXHAUSTED above it, as grpc-go). */
  maxReceiveMessageLength: number;
  limits?: Partial<ConnectionLimits>;
}

export class GrpcServer {
  private readonly routes = new Map<string, Route>();
  private readonly services = new Set<string>();
  private readonly listeners: TcpServer[] = [];
  private readonly connections = new Set<Connection>();
  private readonly limits: ConnectionLimits;

  constructor(private readonly options: GrpcServerOptions) {
    this.limits = { ...defaultLimits, ...options.limits };
  }

  /** `path` is "/package.Service/Method". */
  route(path: string, route: Route): void {
    this.routes.set(path, route);
    this.services.add(path.slice(1, path.lastIndexOf("/")));
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** Listens on host:port (0 = any free port); returns the bound port. */
  async listen(host: string, port: number, tls?: TlsOptions): Promise<number> {
    const accept = (socket: Socket) => {
      const connection = new Connection(
        socket,
        this.limits,
        (stream, head, endStream) => this.dispatch(stream, head, endStream),
        (closed) => this.connections.delete(closed),
      );
      this.connections.add(connection);
    };
    const server = tls
      ? createTlsServer(
          {
            cert: tls.cert,
            key: tls.key,
            ca: tls.ca,
            requestCert: tls.requestClientCert,
            rejectUnauthorized: tls.requestClientCert,
            ALPNProtocols: ["h2"],
            minVersion: "TLSv1.2",
          },
          (socket: TLSSocket) => accept(socket),
        )
      : createTcpServer(accept);
    // A failed handshake or a reset before the connection exists is the client's business.
    server.on("tlsClientError", () => undefined);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    server.on("error", () => undefined);
    this.listeners.push(server);
    const address = server.address();
    return typeof address === "object" && address ? address.port : port;
  }

  /**
   * Stops accepting, sends GOAWAY everywhere and waits up to `graceMs` for
   * open streams (watches never end by themselves) before resetting them.
   */
  async close(graceMs: number): Promise<void> {
    const closed = Promise.all(this.listeners.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
    for (const connection of this.connections) connection.shutdown();
    const deadline = Date.now() + graceMs;
    while (this.connections.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    for (const connection of [...this.connections]) connection.destroy();
    await closed;
  }

  private dispatch(stream: Stream, head: RequestHead, endStream: boolean): void {
    if (head.method !== "POST") {
      stream.respond(encodeLiteral(staticNameIndex(":status"), "405"), true);
      return;
    }
    if (!head.contentType.startsWith("application/grpc")) {
      stream.respond(Buffer.concat([encodeLiteral(staticNameIndex(":status"), "415"), encodeLiteral("grpc-status", String(Code.internal)), encodeLiteral("grpc-message", `invalid gRPC request content-type "${head.contentType}"`)]), true);
      return;
    }
    const route = this.routes.get(head.path);
    if (!route) {
      stream.respond(trailersOnly(Code.unimplemented, this.unknownMethod(head.path)), true);
      return;
    }
    const reader = new MessageReader(this.options.maxReceiveMessageLength, head.grpcEncoding);
    if (route.kind === "unary") {
      stream.listener = new UnaryCall(stream, reader, route.handle);
      if (endStream) stream.listener.data(Buffer.alloc(0), true);
      return;
    }
    const call = new ServerCall(stream, reader, route.decode, route.encode);
    if (route.kind === "bidi_streaming") {
      route.handle(call);
      stream.listener = call;
      if (endStream) call.data(Buffer.alloc(0), true);
      return;
    }
    // Server streaming: the handler starts with the one request.
    let request: unknown;
    let received = false;
    const collector = {
      data(payload: Buffer, end: boolean) {
        try {
          reader.push(payload, (bytes) => {
            request = route.decode(bytes);
            received = true;
          });
        } catch (error) {
          call.destroy(error instanceof Error ? error : new Error(String(error)));
          return;
        }
        stream.consumed(payload.length);
        if (!end) return;
        if (!received) {
          call.destroy(Object.assign(new Error("grpc: request stream ended without a whole message"), { code: Code.internal }));
          return;
        }
        stream.listener = call;
        call.request = request;
        route.handle(call);
      },
      reset: () => call.reset(),
    };
    stream.listener = collector;
    if (endStream) collector.data(Buffer.alloc(0), true);
  }

  private unknownMethod(path: string): string {
    const slash = path.lastIndexOf("/");
    const service = path.slice(1, slash);
    // grpc-go's wording, which clients print as is.
    if (!this.services.has(service)) return `unknown service ${service}`;
    return `unknown method ${path.slice(slash + 1)} for service ${service}`;
  }
}
