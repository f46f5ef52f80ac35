// Forwards writes and lease calls that reach a follower to the leader, over
// gRPC with the method path unchanged: the request's wire bytes go out and
// the leader's response bytes come back as they are, so what a client sees
// through a follower is what the leader answered.
import { Client, credentials, status, type ChannelCredentials, type ClientDuplexStream, type ServiceError } from "@grpc/grpc-js";
import { EtcdError, errors } from "../errors.js";
import { log } from "../log.js";

export interface ForwarderOptions {
  /**
   * For https:// leaders: the CA that signed the other members' serving
   * certificates and this member's own certificate, presented as a client
   * certificate (members run with --client-cert-auth verify it).
   */
  tls?: { ca: Buffer | undefined; cert: Buffer; key: Buffer };
  /** Largest request a member accepts; forwarded requests are at most that. */
  maxRequestBytes: number;
  /** Counts one forwarded call; `method` is "Service/Method". */
  onForward?: (method: string) => void;
}

/**
 * The leader could not be reached. `unsent`: the request certainly never
 * reached it (no connection was established), so sending it to the next
 * leader cannot apply it twice.
 */
export class LeaderUnreachable extends EtcdError {
  constructor(
    message: string,
    readonly unsent: boolean,
  ) {
    super(status.UNAVAILABLE, message);
  }
}

/** A forwarded stream as its server-side relay uses it. */
export interface ForwardedStream {
  write(bytes: Uint8Array): void;
  end(): void;
  cancel(): void;
}

export interface StreamHandlers {
  data(bytes: Uint8Array): void;
  /** The leader ended the stream with this status (passed through), or the leader changed or is unreachable. */
  error(error: EtcdError): void;
  end(): void;
}

interface Channel {
  url: string;
  client: Client;
  /** Calls in flight, cancelled when the leader changes. */
  calls: Set<{ cancel(): void }>;
  closed: boolean;
}

const serialize = (bytes: Uint8Array): Buffer => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
const deserialize = (bytes: Buffer): Buffer => bytes;
/** gRPC framing on top of the largest request (as the server allows). */
const overheadBytes = 512 * 1024;

/**
 * One channel to the current leader's client URL at a time: a call for a
 * different URL (the leader changed) closes the old channel and cancels what
 * is still in flight on it with "leader changed", so memory and connections
 * stay bounded however often leadership moves.
 */
export class Forwarder {
  private channel: Channel | undefined;
  private closed = false;

  constructor(private readonly options: ForwarderOptions) {}

  /** The leader is now at `url` (undefined: none known); calls to an earlier leader fail with "leader changed". */
  leaderChanged(url: string | undefined): void {
    if (this.channel !== undefined && this.channel.url !== url) this.closeChannel();
  }

  /** Sends `request` (wire bytes) to `path` on the leader at `url`; resolves with the response's wire bytes. */
  unary(url: string, path: string, request: Uint8Array): Promise<Uint8Array> {
    let channel: Channel;
    try {
      channel = this.channelFor(url);
    } catch (error) {
      return Promise.reject(error);
    }
    this.options.onForward?.(path.slice(1));
    return new Promise((resolve, reject) => {
      const call = channel.client.makeUnaryRequest(path, serialize, deserialize, request, (error: ServiceError | null, response?: Buffer) => {
        channel.calls.delete(call);
        if (error) reject(this.toEtcdError(channel, error));
        else resolve(response!);
      });
      channel.calls.add(call);
    });
  }

  /** Opens a bidi stream to `path` on the leader at `url`. */
  stream(url: string, path: string, handlers: StreamHandlers): ForwardedStream {
    const channel = this.channelFor(url);
    this.options.onForward?.(path.slice(1));
    const call: ClientDuplexStream<Uint8Array, Buffer> = channel.client.makeBidiStreamRequest(path, serialize, deserialize);
    channel.calls.add(call);
    let done = false;
    const finish = (outcome: () => void) => {
      if (done) return;
      done = true;
      channel.calls.delete(call);
      outcome();
    };
    call.on("data", (bytes: Buffer) => {
      if (!done) handlers.data(bytes);
    });
    call.on("error", (error: ServiceError) => finish(() => handlers.error(this.toEtcdError(channel, error))));
    call.on("status", (result: { code: status }) => {
      if (result.code === status.OK) finish(() => handlers.end());
    });
    return {
      write: (bytes) => {
        if (!done) call.write(bytes);
      },
      end: () => {
        if (!done) call.end();
      },
      cancel: () => finish(() => call.cancel()),
    };
  }

  close(): void {
    this.closed = true;
    this.closeChannel();
  }

  private channelFor(url: string): Channel {
    if (this.closed) throw errors.stopped();
    if (this.channel?.url === url) return this.channel;
    this.closeChannel();
    let target: URL;
    try {
      target = new URL(url);
    } catch {
      throw new EtcdError(status.UNAVAILABLE, `brain: the leader's client URL ${url} is not a URL`);
    }
    let channelCredentials: ChannelCredentials;
    if (target.protocol === "https:") {
      const tls = this.options.tls;
      if (tls === undefined) {
        throw new EtcdError(status.UNAVAILABLE, `brain: the leader serves ${url}, and this member has no TLS certificate to reach it with (--cert-file, --key-file, --trusted-ca-file)`);
      }
      channelCredentials = credentials.createSsl(tls.ca ?? null, tls.key, tls.cert);
    } else {
      channelCredentials = credentials.createInsecure();
    }
    const client = new Client(target.host, channelCredentials, {
      "grpc.max_send_message_length": this.options.maxRequestBytes + overheadBytes,
      "grpc.max_receive_message_length": -1,
      // A leader that stopped answering (paused, cut off) is noticed by the
      // transport even while no election has replaced it yet.
      "grpc.keepalive_time_ms": 5000,
      "grpc.keepalive_timeout_ms": 5000,
      "grpc.keepalive_permit_without_calls": 0,
      // Not the process-wide pool: closing this channel must close its connection.
      "grpc.use_local_subchannel_pool": 1,
    });
    this.channel = { url, client, calls: new Set(), closed: false };
    log("debug", "forwarding to the leader", { url });
    return this.channel;
  }

  private closeChannel(): void {
    const channel = this.channel;
    if (channel === undefined) return;
    this.channel = undefined;
    channel.closed = true;
    for (const call of channel.calls) call.cancel();
    channel.calls.clear();
    channel.client.close();
  }

  /**
   * The leader's own statuses pass through unchanged. A call cancelled
   * because the leader changed fails as etcd's "leader changed"; a leader the
   * transport cannot reach fails UNAVAILABLE saying so (clients retry
   * UNAVAILABLE on another endpoint).
   */
  private toEtcdError(channel: Channel, error: ServiceError): EtcdError {
    if (channel.closed && error.code === status.CANCELLED) return this.closed ? errors.stopped() : errors.leaderChanged();
    if (error.code === status.UNAVAILABLE && !isServerStatus(error)) {
      return new LeaderUnreachable(`brain: cannot reach the leader at ${channel.url}: ${error.details}`, error.details.startsWith("No connection established"));
    }
    return new EtcdError(error.code, error.details);
  }
}

/**
 * Whether a status came from the leader's server rather than from the
 * client's transport: brain answers UNAVAILABLE only with etcd's messages,
 * while grpc-js makes up its own (no connection, connection dropped, GOAWAY).
 */
function isServerStatus(error: ServiceError): boolean {
  return error.details.startsWith("etcdserver:") || error.details.startsWith("brain:");
}
