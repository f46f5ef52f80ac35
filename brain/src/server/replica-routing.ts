// On a replica set, writes and lease calls run here when this brain leads and
// go to the leader otherwise; reads, watches, maintenance stay local.
import { create, toBinary, type DescMessage, type DescService } from "@bufbuild/protobuf";
import { KV, Lease, LeaseKeepAliveRequestSchema, type LeaseKeepAliveRequest, type LeaseKeepAliveResponse } from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import { EtcdError } from "../errors.js";
import { LeaderUnreachable, type Forwarder, type ForwardedStream } from "../replica/forwarder.js";
import type { ReplicaNode } from "../replica/replica-node.js";
import type { Implementation } from "./grpc-adapter.js";
import type { ServerCall } from "./transport/grpc-call.js";
import { EncodedMessage } from "./wire.js";

/** KV methods that write, and every Lease method, go to the leader. */
const forwardedKv = new Set(["Put", "DeleteRange", "Txn", "Compact"]);

type Unary = (request: unknown) => Promise<unknown>;

/**
 * `local`'s handlers for `service`, each of those named by `forwards` behind
 * a check of the leadership: run here on the leader, else the request's
 * bytes go to the leader and its answer's bytes come back.
 */
export function routed(service: DescService, local: Implementation, node: ReplicaNode, forwarder: Forwarder, forwards: (method: string) => boolean): Implementation {
  const routedImplementation: Implementation = { ...local };
  for (const method of service.methods) {
    const handler = local[method.localName];
    if (handler === undefined || !forwards(method.name) || method.methodKind !== "unary") continue;
    const path = `/${service.typeName}/${method.name}`;
    const input: DescMessage = method.input;
    const run = handler as Unary;
    const compactTo = method.name === "Compact" ? (request: unknown) => Number((request as { revision: bigint }).revision) : () => 0;
    routedImplementation[method.localName] = async (request: unknown) => {
      let route = await node.route();
      if (route.local) return run(request);
      const bytes = toBinary(input, request as never);
      let answer: Uint8Array;
      try {
        answer = await forwarder.unary(route.url, path, bytes);
      } catch (error) {
        // A leader that is gone (killed) refuses connections until the next
        // one is elected: wait for that one, as etcd holds proposals while
        // it has no leader, and send it there (once; it never reached the first).
        if (!(error instanceof LeaderUnreachable) || !error.unsent) throw error;
        route = await node.route(route.url);
        if (route.local) return run(request);
        answer = await forwarder.unary(route.url, path, bytes);
      }
      // Read-your-writes on this member, as etcd gives: answered once applied here.
      await node.applied(responseRevision(answer), compactTo(request));
      return new EncodedMessage(answer);
    };
  }
  return routedImplementation;
}

/**
 * header.revision (ResponseHeader field 3 inside field 1) of a KV or Lease
 * response, read off the wire without decoding the rest (a Txn's answer may
 * be large); 0 when absent.
 */
export function responseRevision(message: Uint8Array): number {
  const header = field(message, 1);
  if (header === undefined || typeof header === "number") return 0;
  const revision = field(header, 3);
  return typeof revision === "number" ? revision : 0;
}

/** The first occurrence of field `wanted`: a varint as a number, bytes as a subarray. */
function field(message: Uint8Array, wanted: number): number | Uint8Array | undefined {
  let at = 0;
  const varint = (): number => {
    let value = 0;
    let scale = 1;
    for (;;) {
      if (at >= message.length) throw new Error("truncated varint in a forwarded response");
      const byte = message[at++]!;
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 128;
    }
  };
  while (at < message.length) {
    const tag = varint();
    const number = Math.floor(tag / 8);
    switch (tag & 7) {
      case 0: {
        const value = varint();
        if (number === wanted) return value;
        break;
      }
      case 1:
        at += 8;
        break;
      case 2: {
        const length = varint();
        if (number === wanted) return message.subarray(at, at + length);
        at += length;
        break;
      }
      case 5:
        at += 4;
        break;
      default:
        throw new Error(`unexpected wire type ${tag & 7} in a forwarded response`);
    }
  }
  return undefined;
}

export function routedKv(local: Implementation, node: ReplicaNode, forwarder: Forwarder): Implementation {
  return routed(KV, local, node, forwarder, (method) => forwardedKv.has(method));
}

export function routedLease(local: Implementation, node: ReplicaNode, forwarder: Forwarder): Implementation {
  const implementation = routed(Lease, local, node, forwarder, () => true);
  const localKeepAlive = local.leaseKeepAlive as (call: ServerCall<LeaseKeepAliveRequest, LeaseKeepAliveResponse>) => void;
  implementation.leaseKeepAlive = (call: ServerCall<LeaseKeepAliveRequest, LeaseKeepAliveResponse>) => keepAliveRelay(call, node, forwarder, localKeepAlive);
  return implementation;
}

/**
 * A LeaseKeepAlive stream on a replica. The leader is looked up when the
 * stream opens: this brain's lessor answers when it leads; otherwise every
 * request is relayed on one stream to the leader and each answer comes back
 * as the leader wrote it. When that stream fails (the leader changed or
 * went away), the client's stream fails with the same status and the client
 * opens a new one, which finds the new leader (clientv3 does this).
 */
function keepAliveRelay(
  call: ServerCall<LeaseKeepAliveRequest, LeaseKeepAliveResponse>,
  node: ReplicaNode,
  forwarder: Forwarder,
  local: (call: ServerCall<LeaseKeepAliveRequest, LeaseKeepAliveResponse>) => void,
): void {
  // Requests that arrive while the route is looked up wait in order.
  const early: LeaseKeepAliveRequest[] = [];
  let ended = false;
  let upstream: ForwardedStream | undefined;
  let finished = false;
  const onData = (request: LeaseKeepAliveRequest) => {
    if (upstream !== undefined) upstream.write(toBinary(LeaseKeepAliveRequestSchema, create(LeaseKeepAliveRequestSchema, request)));
    else early.push(request);
  };
  const onEnd = () => {
    ended = true;
    upstream?.end();
  };
  call.on("data", onData);
  call.on("end", onEnd);
  call.on("cancelled", () => {
    finished = true;
    upstream?.cancel();
  });
  call.on("error", () => undefined);
  node.route().then(
    (route) => {
      if (finished) return;
      if (route.local) {
        // The lessor's own handler takes the stream from here, with what came meanwhile.
        call.off("data", onData);
        call.off("end", onEnd);
        local(call);
        for (const request of early.splice(0)) call.emit("data", request);
        if (ended) call.emit("end");
        return;
      }
      try {
        upstream = forwarder.stream(route.url, `/${Lease.typeName}/LeaseKeepAlive`, {
          data: (bytes) => {
            if (!finished) call.write(new EncodedMessage(bytes));
          },
          error: (error) => {
            finished = true;
            call.destroy(error);
          },
          end: () => {
            finished = true;
            call.end();
          },
        });
      } catch (error) {
        finished = true;
        call.destroy(error instanceof Error ? error : new Error(String(error)));
        return;
      }
      for (const request of early.splice(0)) onData(request);
      if (ended) upstream.end();
    },
    (error: unknown) => {
      finished = true;
      call.destroy(error instanceof EtcdError ? error : new Error(String(error)));
    },
  );
}
