// A replica set serving https:// with client-certificate authentication: a
// follower reaches the leader with the members' CA and its own certificate,
// so a client that writes through the follower is served, and the password
// of the PostgreSQL URL (given in the environment) reaches no log line.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { credentials } from "@grpc/grpc-js";
import { createGrpcClient, type GrpcClient } from "@wharf/proto/grpc";
import { KV, Maintenance, PutRequestSchema, RangeRequestSchema, StatusRequestSchema, type PutResponse, type RangeResponse, type StatusResponse } from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import {
  createCertificateAuthority,
  freePort,
  issueCertificate,
  makeWorkDir,
  removeWorkDir,
  repoRoot,
  startPostgres,
  startProcess,
  waitFor,
  waitUntilReady,
  type KeyPair,
  type Postgres,
  type RunningProcess,
} from "@wharf/testkit";

const password = "s3cret-pw";
let dir: string;
let postgres: Postgres;
let ca: KeyPair;
let client: KeyPair;
const members: Array<{ process: RunningProcess; endpoint: string; logFile: string; kv: GrpcClient; maintenance: GrpcClient }> = [];

beforeAll(async () => {
  dir = await makeWorkDir("replica-tls");
  postgres = await startPostgres();
  // A role with a password, so that there is one to keep out of the logs.
  const admin = await import("pg");
  const db = new admin.default.Client({ connectionString: postgres.url });
  await db.connect();
  await db.query(`CREATE ROLE brain LOGIN SUPERUSER PASSWORD '${password}'`);
  await db.end();
  const url = postgres.url.replace("postgres://postgres@", `postgres://brain:${password}@`);

  ca = await createCertificateAuthority(dir, "members-ca");
  const member = await issueCertificate(dir, ca, { name: "member", commonName: "brain", ipAddresses: ["127.0.0.1"], usage: "server+client" });
  client = await issueCertificate(dir, ca, { name: "client", commonName: "client", usage: "client" });
  const clientCredentials = credentials.createSsl(readFileSync(ca.certFile), readFileSync(client.keyFile), readFileSync(client.certFile));
  for (const name of ["tls-1", "tls-2"]) {
    const port = await freePort();
    const metrics = `http://127.0.0.1:${await freePort()}`;
    const endpoint = `https://127.0.0.1:${port}`;
    const logFile = join(dir, `${name}.log`);
    const started = startProcess({
      name,
      command: process.execPath,
      args: [
        join(repoRoot, "brain", "dist", "main.js"),
        "--storage", "postgres",
        "--name", name,
        "--data-dir", join(dir, name),
        "--listen-client-urls", endpoint,
        "--listen-metrics-urls", metrics,
        "--cert-file", member.certFile,
        "--key-file", member.keyFile,
        "--trusted-ca-file", ca.certFile,
        "--client-cert-auth",
        "--leader-lease-ttl", "2s",
      ],
      env: { ...process.env, BRAIN_POSTGRES_URL: url },
      logFile,
    });
    members.push({
      process: started,
      endpoint,
      logFile,
      kv: createGrpcClient(KV, `127.0.0.1:${port}`, clientCredentials),
      maintenance: createGrpcClient(Maintenance, `127.0.0.1:${port}`, clientCredentials),
    });
    await waitUntilReady(started, async () => (await fetch(`${metrics}/healthz`)).ok, 30_000);
  }
}, 120_000);
afterAll(async () => {
  for (const member of members) {
    member.kv.close();
    member.maintenance.close();
    await member.process.stop();
  }
  await postgres?.stop();
  if (dir) await removeWorkDir(dir);
});

const status = (index: number) => members[index]!.maintenance.unary("Status", create(StatusRequestSchema)) as Promise<StatusResponse>;

describe("a replica set over mTLS", () => {
  it("forwards a write from the follower to the leader with the member's certificate", async () => {
    let leader = -1;
    await waitFor(
      async () => {
        const answers = await Promise.all([0, 1].map(status));
        leader = answers.findIndex((answer) => answer.leader !== 0n && answer.leader === answer.header!.memberId);
        return leader >= 0 && answers.every((answer) => answer.leader === answers[leader]!.header!.memberId);
      },
      15_000,
      "both members to agree on a leader",
    );
    const follower = 1 - leader;
    const written = (await members[follower]!.kv.unary("Put", create(PutRequestSchema, { key: new TextEncoder().encode("tls/k"), value: new TextEncoder().encode("v") }))) as PutResponse;
    expect(written.header!.revision).toBe(2n);
    for (const member of members) {
      const read = (await member.kv.unary("Range", create(RangeRequestSchema, { key: new TextEncoder().encode("tls/k") }))) as RangeResponse;
      expect(new TextDecoder().decode(read.kvs[0]?.value)).toBe("v");
    }
    const followerLog = readFileSync(members[follower]!.logFile, "utf8");
    expect(followerLog).toContain('"storage":"postgres"');
    expect(followerLog).toContain("postgres://brain:***@127.0.0.1");
    for (const member of members) expect(readFileSync(member.logFile, "utf8")).not.toContain(password);
  });
});
