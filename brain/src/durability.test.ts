// What must survive a restart or a crash: acknowledged writes, revisions,
// watch history and leases. Each test runs its own brain process.
import { afterEach, describe, expect, it } from "vitest";
import {
  LeaseGrantRequestSchema,
  LeaseTimeToLiveRequestSchema,
  PutRequestSchema,
  RangeRequestSchema,
  WatchRequestSchema,
  type WatchResponse,
} from "@wharf/proto/etcd/api/etcdserverpb/rpc_pb.js";
import { create } from "@bufbuild/protobuf";
import { etcdServices, rawEtcdClient, startBrainProcess, type Brain, type RawEtcdClient } from "@wharf/testkit";

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (value: Uint8Array) => new TextDecoder().decode(value);

let brain: Brain | undefined;
let client: RawEtcdClient | undefined;

afterEach(async () => {
  client?.close();
  await brain?.stop();
  brain = undefined;
  client = undefined;
});

async function restart(signal: "SIGTERM" | "SIGKILL"): Promise<void> {
  const { dataDir, endpoint } = brain!;
  client?.close();
  await brain!.stop({ keepData: true, signal });
  brain = await startBrainProcess({ dataDir, port: Number(new URL(endpoint).port) });
  client = rawEtcdClient(brain.endpoint);
}

describe("brain durability", () => {
  it("keeps keys, revisions and watch history across a restart", async () => {
    brain = await startBrainProcess();
    client = rawEtcdClient(brain.endpoint);
    for (let i = 1; i <= 5; i++) {
      await client.call(etcdServices.KV, "Put", PutRequestSchema, { key: bytes("k"), value: bytes(`v${i}`) });
    }
    await restart("SIGTERM");
    const after = (await client.call(etcdServices.KV, "Range", RangeRequestSchema, { key: bytes("k") })) as unknown as {
      header: { revision: bigint };
      kvs: Array<{ value: Uint8Array; version: bigint; modRevision: bigint }>;
    };
    expect(after.header.revision).toBe(6n);
    expect(text(after.kvs[0]!.value)).toBe("v5");
    expect(after.kvs[0]!.version).toBe(5n);

    // A watch from revision 2 replays the history written before the restart.
    const stream = client.stream<ReturnType<typeof create<typeof WatchRequestSchema>>, WatchResponse>(etcdServices.Watch, "Watch");
    stream.on("error", () => undefined); // our own cancel below
    const values: string[] = [];
    const done = new Promise<void>((resolve) =>
      stream.on("data", (response: WatchResponse) => {
        for (const event of response.events) values.push(text(event.kv!.value));
        if (values.length >= 5) resolve();
      }),
    );
    stream.write(create(WatchRequestSchema, { requestUnion: { case: "createRequest", value: { key: bytes("k"), startRevision: 3n } } }));
    await client.call(etcdServices.KV, "Put", PutRequestSchema, { key: bytes("k"), value: bytes("v6") });
    await done;
    expect(values).toEqual(["v2", "v3", "v4", "v5", "v6"]);
    stream.cancel();
  });

  it("keeps leases and their keys across a restart, and expires them after", async () => {
    brain = await startBrainProcess();
    client = rawEtcdClient(brain.endpoint);
    await client.call(etcdServices.Lease, "LeaseGrant", LeaseGrantRequestSchema, { ID: 42n, TTL: 3n });
    await client.call(etcdServices.KV, "Put", PutRequestSchema, { key: bytes("leased"), value: bytes("x"), lease: 42n });
    await restart("SIGKILL");
    const alive = (await client.call(etcdServices.Lease, "LeaseTimeToLive", LeaseTimeToLiveRequestSchema, { ID: 42n, keys: true })) as unknown as {
      TTL: bigint;
      grantedTTL: bigint;
      keys: Uint8Array[];
    };
    expect(alive.grantedTTL).toBe(3n);
    expect(alive.TTL).toBeGreaterThan(0n);
    expect(alive.keys.map(text)).toEqual(["leased"]);
    // Not kept alive: the lease expires and takes its key with it.
    const deadline = Date.now() + 10_000;
    let count = 1n;
    while (count !== 0n && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      count = ((await client.call(etcdServices.KV, "Range", RangeRequestSchema, { key: bytes("leased"), countOnly: true })) as unknown as { count: bigint }).count;
    }
    expect(count).toBe(0n);
  });

  it("loses no acknowledged write when killed with SIGKILL under concurrent writes", async () => {
    brain = await startBrainProcess();
    client = rawEtcdClient(brain.endpoint);
    const acknowledged = new Map<string, { value: string; revision: bigint }>();
    let stop = false;
    const writer = async (worker: number) => {
      for (let i = 0; !stop; i++) {
        const key = `crash/${worker}/${i}`;
        try {
          const response = (await client!.call(etcdServices.KV, "Put", PutRequestSchema, { key: bytes(key), value: bytes(`${worker}-${i}`) })) as unknown as {
            header: { revision: bigint };
          };
          acknowledged.set(key, { value: `${worker}-${i}`, revision: response.header.revision });
        } catch {
          return; // the server died under us: unacknowledged, may or may not exist
        }
      }
    };
    const writers = Array.from({ length: 8 }, (_, worker) => writer(worker));
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const { dataDir, endpoint } = brain;
    brain.process.child.kill("SIGKILL");
    await brain.process.exited;
    stop = true;
    await Promise.all(writers);
    expect(acknowledged.size).toBeGreaterThan(50);

    client.close();
    brain = await startBrainProcess({ dataDir, port: Number(new URL(endpoint).port) });
    client = rawEtcdClient(brain.endpoint);
    const stored = (await client.call(etcdServices.KV, "Range", RangeRequestSchema, {
      key: bytes("crash/"),
      rangeEnd: bytes("crash0"),
    })) as unknown as { header: { revision: bigint }; kvs: Array<{ key: Uint8Array; value: Uint8Array; modRevision: bigint }> };
    const byKey = new Map(stored.kvs.map((kv) => [text(kv.key), kv]));
    for (const [key, { value, revision }] of acknowledged) {
      const kv = byKey.get(key);
      expect(kv, `acknowledged ${key} is missing`).toBeDefined();
      expect(text(kv!.value)).toBe(value);
      expect(kv!.modRevision).toBe(revision);
    }
    const highest = [...acknowledged.values()].reduce((max, { revision }) => (revision > max ? revision : max), 0n);
    expect(stored.header.revision).toBeGreaterThanOrEqual(highest);
    // Revisions continue from where they stopped.
    const next = (await client.call(etcdServices.KV, "Put", PutRequestSchema, { key: bytes("after-crash"), value: bytes("x") })) as unknown as {
      header: { revision: bigint };
    };
    expect(next.header.revision).toBe(stored.header.revision + 1n);
  });

  it("refuses to start on a corrupt data dir with a clear error, and leaves it as it was", async () => {
    const { mkdtemp, writeFile, readFile } = await import("node:fs/promises");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const dataDir = await mkdtemp(join(tmpdir(), "wharf-corrupt-"));
    await writeFile(join(dataDir, "CURRENT"), "MANIFEST-999999\n");
    await expect(startBrainProcess({ dataDir })).rejects.toThrow(/brain failed to start.*cannot open RocksDB/s);
    expect(await readFile(join(dataDir, "CURRENT"), "utf8")).toBe("MANIFEST-999999\n");
  });
});
