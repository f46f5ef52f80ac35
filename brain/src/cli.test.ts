// The brain command's flags, metrics and health endpoints, and bad input.
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PutRequestSchema } from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import { etcdServices, rawEtcdClient, repoRoot, startBrainProcess, type Brain } from "@wharf/testkit";
import { ConfigError, flags, parseConfig } from "./config.js";

const run = promisify(execFile);
const brainMain = join(repoRoot, "brain", "dist", "main.js");

describe("brain command", () => {
  it("documents every flag in --help", async () => {
    const { stdout } = await run(process.execPath, [brainMain, "--help"]);
    for (const name of Object.keys(flags)) expect(stdout).toContain(`--${name}`);
  });

  it.each([
    [["--bogus"], /Unknown option '--bogus'/],
    [["--listen-client-urls", "ftp://127.0.0.1:1"], /--listen-client-urls: ftp:\/\/127.0.0.1:1 must use http:\/\/ or https:\/\//],
    [["--listen-client-urls", "https://127.0.0.1:1"], /https:\/\/ URLs need --cert-file and --key-file/],
    [["--max-txn-ops", "zero"], /--max-txn-ops=zero: want an integer >= 1/],
    [["--auto-compaction-mode", "sometimes"], /--auto-compaction-mode=sometimes: want periodic or revision/],
    [["--auto-compaction-retention", "soon"], /--auto-compaction-retention=soon: want a duration/],
    [["--storage", "etcd"], /--storage=etcd: want rocksdb or postgres/],
    [["--storage", "postgres"], /--storage postgres needs --postgres-url \(or the BRAIN_POSTGRES_URL environment variable\)/],
    [["--storage", "postgres", "--postgres-url", "mysql://u:secret@h/db"], /--postgres-url: must use postgres:\/\/ or postgresql:\/\//],
    [["--storage", "postgres", "--postgres-url", "postgres://h/db", "--unsafe-no-fsync"], /--unsafe-no-fsync cannot be used with --storage postgres/],
    [["--postgres-url", "postgres://h/db"], /--postgres-url needs --storage postgres/],
    [["--storage", "postgres", "--postgres-url", "postgres://h/db", "--listen-client-urls", "http://0.0.0.0:2379"], /http:\/\/0\.0\.0\.0:2379 names no host; set --advertise-client-urls/],
    [["--storage", "postgres", "--postgres-url", "postgres://h/db", "--leader-lease-ttl", "500ms"], /--leader-lease-ttl=500ms: want at least 1s/],
    [["--storage", "postgres", "--postgres-url", "postgres://h/db", "--leader-lease-ttl", "soon"], /--leader-lease-ttl=soon: want a duration/],
  ])("refuses %j with a message naming the flag", async (args, message) => {
    const failure = await run(process.execPath, [brainMain, ...args]).catch((error: { code: number; stderr: string }) => error);
    expect(failure).toMatchObject({ code: 2 });
    expect((failure as { stderr: string }).stderr).toMatch(message);
    // A URL's password never reaches the output.
    expect((failure as { stderr: string }).stderr).not.toContain("secret");
  });
});

describe("brain flags for PostgreSQL storage", () => {
  it("takes a wildcard listen address when the advertised URL names the host", () => {
    const args = ["--storage", "postgres", "--postgres-url", "postgres://db/brain", "--listen-client-urls", "http://0.0.0.0:2379"];
    expect(parseConfig([...args, "--advertise-client-urls", "http://10.0.0.5:2379"], {})?.advertiseClientUrls).toEqual(["http://10.0.0.5:2379"]);
  });

  it("defaults to RocksDB with a 3 s leader lease", () => {
    expect(parseConfig([], {})).toMatchObject({ storage: "rocksdb", postgresUrl: undefined, leaderLeaseTtlMs: 3000 });
  });

  it("takes the URL from BRAIN_POSTGRES_URL when the flag is absent, the flag first otherwise", () => {
    const env = { BRAIN_POSTGRES_URL: "postgres://brain:pw@db:5432/brain" };
    expect(parseConfig(["--storage", "postgres"], env)).toMatchObject({ storage: "postgres", postgresUrl: env.BRAIN_POSTGRES_URL });
    expect(parseConfig(["--storage", "postgres", "--postgres-url", "postgresql://other/db"], env)?.postgresUrl).toBe("postgresql://other/db");
  });

  it("reads --leader-lease-ttl as a duration (a bare number in seconds)", () => {
    const base = ["--storage", "postgres", "--postgres-url", "postgres://db/brain"];
    expect(parseConfig([...base, "--leader-lease-ttl", "1500ms"], {})?.leaderLeaseTtlMs).toBe(1500);
    expect(parseConfig([...base, "--leader-lease-ttl", "5"], {})?.leaderLeaseTtlMs).toBe(5000);
  });

  it("does not echo a URL it cannot parse (it may hold a password)", () => {
    expect(() => parseConfig(["--storage", "postgres", "--postgres-url", "::secret::"], {})).toThrow(ConfigError);
    expect(() => parseConfig(["--storage", "postgres", "--postgres-url", "::secret::"], {})).not.toThrow(/secret/);
  });
});

describe("brain metrics and health", () => {
  let brain: Brain;
  beforeAll(async () => {
    brain = await startBrainProcess();
  });
  afterAll(async () => {
    await brain?.stop();
  });

  it("answers /healthz", async () => {
    const response = await fetch(`${brain.metricsUrl}/healthz`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ health: "true" });
  });

  it("exports etcd's metric names with live values", async () => {
    const client = rawEtcdClient(brain.endpoint);
    for (let i = 0; i < 3; i++) {
      await client.call(etcdServices.KV, "Put", PutRequestSchema, { key: new TextEncoder().encode(`m${i}`), value: new Uint8Array(8) });
    }
    client.close();
    const text = await (await fetch(`${brain.metricsUrl}/metrics`)).text();
    expect(text).toMatch(/^etcd_debugging_mvcc_keys_total 3$/m);
    expect(text).toMatch(/^etcd_debugging_mvcc_current_revision 4$/m);
    expect(text).toMatch(/^etcd_mvcc_db_total_size_in_bytes \d+$/m);
    expect(text).toMatch(/^grpc_server_handled_total\{grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="Put",grpc_code="OK"\} 3$/m);
    expect(text).toMatch(/^grpc_server_handling_seconds_count\{grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="Put"\} 3$/m);
  });
});
