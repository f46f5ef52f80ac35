// The forwarder against real brain processes standing in for a leader:
// bytes in and out unchanged, the leader's errors passed through, a leader
// change or an unreachable leader reported as such, and mTLS between members.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { status } from "@grpc/grpc-js";
import {
  LeaseGrantRequestSchema,
  LeaseGrantResponseSchema,
  LeaseKeepAliveRequestSchema,
  LeaseKeepAliveResponseSchema,
  LeaseRevokeRequestSchema,
  PutRequestSchema,
  PutResponseSchema,
  RangeRequestSchema,
  RangeResponseSchema,
} from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import { createCertificateAuthority, freePort, issueCertificate, makeWorkDir, removeWorkDir, startBrainProcess, type Brain } from "@wharf/testkit";
import { readFileSync } from "node:fs";
import { EtcdError } from "../errors.js";
import { Forwarder, LeaderUnreachable, type StreamHandlers } from "./forwarder.js";

const text = new TextEncoder();
const put = (key: string, value: string) => toBinary(PutRequestSchema, create(PutRequestSchema, { key: text.encode(key), value: text.encode(value) }));

let brain: Brain;
let other: Brain;
const forwarded: string[] = [];
const forwarder = new Forwarder({ maxRequestBytes: 1.5 * 1024 * 1024, onForward: (method) => forwarded.push(method) });

beforeAll(async () => {
  [brain, other] = await Promise.all([startBrainProcess(), startBrainProcess()]);
});
afterAll(async () => {
  forwarder.close();
  await Promise.all([brain?.stop(), other?.stop()]);
});

async function failure(promise: Promise<unknown>): Promise<EtcdError> {
  const error = await promise.then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(error).toBeInstanceOf(EtcdError);
  return error as EtcdError;
}

function collect(): { handlers: StreamHandlers; messages: Uint8Array[]; ended: Promise<EtcdError | "end"> } {
  const messages: Uint8Array[] = [];
  let settle!: (outcome: EtcdError | "end") => void;
  const ended = new Promise<EtcdError | "end">((resolve) => (settle = resolve));
  return { messages, ended, handlers: { data: (bytes) => messages.push(bytes), error: settle, end: () => settle("end") } };
}

async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("forwarding to the leader", () => {
  it("sends a request's bytes and returns the leader's response bytes", async () => {
    const bytes = await forwarder.unary(brain.endpoint, "/etcdserverpb.KV/Put", put("fwd/a", "1"));
    const response = fromBinary(PutResponseSchema, bytes);
    expect(response.header?.revision).toBe(2n);
    const range = fromBinary(
      RangeResponseSchema,
      await forwarder.unary(brain.endpoint, "/etcdserverpb.KV/Range", toBinary(RangeRequestSchema, create(RangeRequestSchema, { key: text.encode("fwd/a") }))),
    );
    expect(new TextDecoder().decode(range.kvs[0]?.value)).toBe("1");
    expect(forwarded).toEqual(["etcdserverpb.KV/Put", "etcdserverpb.KV/Range"]);
  });

  it("passes the leader's errors through unchanged", async () => {
    const empty = await failure(forwarder.unary(brain.endpoint, "/etcdserverpb.KV/Put", put("", "x")));
    expect([empty.code, empty.message]).toEqual([status.INVALID_ARGUMENT, "etcdserver: key is not provided"]);
    const revoke = toBinary(LeaseRevokeRequestSchema, create(LeaseRevokeRequestSchema, { ID: 12345n }));
    const missing = await failure(forwarder.unary(brain.endpoint, "/etcdserverpb.Lease/LeaseRevoke", revoke));
    expect([missing.code, missing.message]).toEqual([status.NOT_FOUND, "etcdserver: requested lease not found"]);
  });

  it("relays a keepalive stream, and ends it with 'leader changed' when the leader moves", async () => {
    const grant = toBinary(LeaseGrantRequestSchema, create(LeaseGrantRequestSchema, { TTL: 30n }));
    const lease = fromBinary(LeaseGrantResponseSchema, await forwarder.unary(brain.endpoint, "/etcdserverpb.Lease/LeaseGrant", grant));
    const { handlers, messages, ended } = collect();
    const stream = forwarder.stream(brain.endpoint, "/etcdserverpb.Lease/LeaseKeepAlive", handlers);
    stream.write(toBinary(LeaseKeepAliveRequestSchema, create(LeaseKeepAliveRequestSchema, { ID: lease.ID })));
    await until(() => messages.length === 1, "a keepalive response");
    const answer = fromBinary(LeaseKeepAliveResponseSchema, messages[0]!);
    expect([answer.ID, answer.TTL]).toEqual([lease.ID, 30n]);

    forwarder.leaderChanged(other.endpoint);
    const outcome = await ended;
    expect(outcome).toBeInstanceOf(EtcdError);
    expect([(outcome as EtcdError).code, (outcome as EtcdError).message]).toEqual([status.UNAVAILABLE, "etcdserver: leader changed"]);
    // The new leader is reached on a new channel.
    const moved = fromBinary(PutResponseSchema, await forwarder.unary(other.endpoint, "/etcdserverpb.KV/Put", put("fwd/b", "2")));
    expect(moved.header?.revision).toBe(2n);
  });

  it("ends the stream cleanly when the client ends it", async () => {
    const { handlers, ended } = collect();
    const stream = forwarder.stream(other.endpoint, "/etcdserverpb.Lease/LeaseKeepAlive", handlers);
    stream.end();
    expect(await ended).toBe("end");
  });

  it("fails UNAVAILABLE naming the leader when it cannot be reached", async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const error = await failure(forwarder.unary(url, "/etcdserverpb.KV/Put", put("fwd/c", "3")));
    expect(error.code).toBe(status.UNAVAILABLE);
    expect(error.message).toMatch(new RegExp(`^brain: cannot reach the leader at ${url}: `));
    // Never connected: safe to send to the next leader.
    expect(error).toBeInstanceOf(LeaderUnreachable);
    expect((error as LeaderUnreachable).unsent).toBe(true);
  });
});

describe("forwarding between members over mTLS", () => {
  let dir: string;
  let secure: Brain;
  beforeAll(async () => {
    dir = await makeWorkDir("forwarder-tls");
    const ca = await createCertificateAuthority(dir, "members-ca");
    // A member's certificate serves clients and is its client certificate towards the leader.
    const member = await issueCertificate(dir, ca, { name: "member", commonName: "brain", ipAddresses: ["127.0.0.1"], usage: "server+client" });
    secure = await startBrainProcess({ tls: { certFile: member.certFile, keyFile: member.keyFile, caFile: ca.certFile } });
    Object.assign(secureOptions, { tls: { ca: readFileSync(ca.certFile), cert: readFileSync(member.certFile), key: readFileSync(member.keyFile) } });
  });
  const secureOptions: ConstructorParameters<typeof Forwarder>[0] = { maxRequestBytes: 1024 * 1024 };
  afterAll(async () => {
    await secure?.stop();
    await removeWorkDir(dir);
  });

  it("presents the member's certificate to a leader that requires one", async () => {
    const viaTls = new Forwarder(secureOptions);
    try {
      const response = fromBinary(PutResponseSchema, await viaTls.unary(secure.endpoint, "/etcdserverpb.KV/Put", put("tls/a", "1")));
      expect(response.header?.revision).toBe(2n);
    } finally {
      viaTls.close();
    }
  });

  it("refuses an https:// leader when this member has no certificate", async () => {
    const plain = new Forwarder({ maxRequestBytes: 1024 * 1024 });
    try {
      const error = await failure(plain.unary(secure.endpoint, "/etcdserverpb.KV/Put", put("tls/b", "1")));
      expect(error.code).toBe(status.UNAVAILABLE);
      expect(error.message).toMatch(/has no TLS certificate to reach it with/);
    } finally {
      plain.close();
    }
  });
});
