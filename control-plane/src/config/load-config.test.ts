import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { createCertificateAuthority, makeWorkDir, removeWorkDir, type KeyPair } from "@wharf/testkit";
import { wasmPath } from "@wharf/filters";
import { fromBinary } from "@bufbuild/protobuf";
import { GatewayConfigSchema } from "@wharf/proto/wharf/gateway/v1/gateway_pb.js";
import { ConfigError, loadConfigText } from "./load-config.js";

let dir: string;
let ca: KeyPair;

beforeAll(async () => {
  dir = await makeWorkDir("config");
  ca = await createCertificateAuthority(dir, "ca");
  await writeFile(join(dir, "not-pem.txt"), "hello\n");
});
afterAll(async () => {
  await removeWorkDir(dir);
});

function base(): Record<string, Record<string, unknown>> {
  return {
    listener: { cert_file: ca.certFile, key_file: ca.keyFile, client_ca_file: ca.certFile },
    upstream_cluster: {
      pools: [{ name: "main", servers: ["127.0.0.1:6443"] }, { name: "watch", servers: ["10.0.0.2:6443", "[::1]:6443"] }],
      default_pool: "main",
      ca_file: ca.certFile,
      client_cert_file: ca.certFile,
      client_key_file: ca.keyFile,
      flow_control_schemas: [{ name: "per-user", qps: 10, burst: 20, per_user: true }],
      dispatch_policies: [{ name: "watches", rules: [{ verbs: ["watch"] }], action: { upstream: "watch", flow_control: "per-user" } }],
    },
  };
}

async function refusal(edit: (config: ReturnType<typeof base>) => void): Promise<string> {
  const config = base();
  edit(config);
  const error = await loadConfigText(stringify(config), { baseDir: dir, wasmFile: wasmPath("gateway") }).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(ConfigError);
  return (error as ConfigError).message;
}

describe("the config validator", () => {
  it("accepts a complete config and turns it into a deployment", async () => {
    const { deployment } = await loadConfigText(stringify(base()), { baseDir: dir, wasmFile: wasmPath("gateway") });
    expect(deployment.listenAddress).toBe("127.0.0.1");
    expect(deployment.listenPort).toBe(7443);
    // upstream_cluster is one unnamed cluster on every hostname, with the listener's certificate.
    expect(deployment.clusters).toHaveLength(1);
    expect(deployment.clusters[0]!.name).toBe("");
    expect(deployment.clusters[0]!.hostnames).toEqual([]);
    expect(deployment.clusters[0]!.pools).toEqual([
      { name: "main", endpoints: [{ host: "127.0.0.1", port: 6443 }] },
      { name: "watch", endpoints: [{ host: "10.0.0.2", port: 6443 }, { host: "::1", port: 6443 }] },
    ]);
    expect(deployment.clusters[0]!.gatewayConfig.length).toBeGreaterThan(0);
  });

  it.each([
    ["an unknown field", (c: ReturnType<typeof base>) => (c.listener!.colour = "blue"), /colour/],
    ["a duplicate pool", (c: ReturnType<typeof base>) => (c.upstream_cluster!.pools = [{ name: "main", servers: ["a:1"] }, { name: "main", servers: ["b:2"] }]), /upstream_cluster\.pools\[1\]\.name: duplicate name "main"/],
    ["a policy routing to no pool", (c: ReturnType<typeof base>) => (c.upstream_cluster!.dispatch_policies = [{ name: "p", rules: [{}], action: { upstream: "gone" } }]), /dispatch_policies\[0\]\.action\.upstream: names no pool \("gone"\)/],
    ["a policy naming no schema", (c: ReturnType<typeof base>) => (c.upstream_cluster!.dispatch_policies = [{ name: "p", rules: [{}], action: { flow_control: "x" } }]), /dispatch_policies\[0\]\.action\.flow_control: names no flow-control schema \("x"\)/],
    ["a policy without rules", (c: ReturnType<typeof base>) => (c.upstream_cluster!.dispatch_policies = [{ name: "p", action: { upstream: "main" } }]), /dispatch_policies\[0\]\.rules: at least one rule/],
    ["a server without a port", (c: ReturnType<typeof base>) => (c.upstream_cluster!.pools = [{ name: "main", servers: ["apiserver"] }]), /pools\[0\]\.servers\[0\]: "apiserver" is not host:port/],
    ["a default pool that does not exist", (c: ReturnType<typeof base>) => (c.upstream_cluster!.default_pool = "nope"), /upstream_cluster\.default_pool: names no pool/],
    ["an unreadable certificate", (c: ReturnType<typeof base>) => (c.listener!.cert_file = "missing.crt"), /listener\.cert_file: cannot read .*missing\.crt: ENOENT/],
    ["a key file that is not PEM", (c: ReturnType<typeof base>) => (c.upstream_cluster!.ca_file = "not-pem.txt"), /upstream_cluster\.ca_file: .* is not a PEM file/],
  ])("refuses %s, naming the field", async (_, edit, message) => {
    expect(await refusal(edit)).toMatch(message);
  });

  it("refuses text that is not YAML", async () => {
    await expect(loadConfigText("listener: [unclosed", { baseDir: dir, wasmFile: wasmPath("gateway") })).rejects.toThrow(/not valid YAML/);
  });
});

/** Two clusters, each on its own hostnames with its own certificate and CA. */
function several(): Record<string, unknown> & { listener: Record<string, unknown>; upstream_clusters: Array<Record<string, unknown>> } {
  const cluster = (name: string, hostnames: string[], pool: string) => ({
    name,
    hostnames,
    cert_file: ca.certFile,
    key_file: ca.keyFile,
    client_ca_file: ca.certFile,
    pools: [{ name: pool, servers: ["127.0.0.1:6443"] }],
    default_pool: pool,
    ca_file: ca.certFile,
    client_cert_file: ca.certFile,
    client_key_file: ca.keyFile,
    token_review: { cluster: pool },
  });
  return { listener: { port: 7443 }, upstream_clusters: [cluster("alpha", ["alpha.example", "*.alpha.example"], "main"), cluster("beta", ["beta.example"], "main")] };
}

async function refusalOf(config: Record<string, unknown>): Promise<string> {
  const error = await loadConfigText(stringify(config), { baseDir: dir, wasmFile: wasmPath("gateway") }).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(ConfigError);
  return (error as ConfigError).message;
}

describe("the config validator, several upstream clusters", () => {
  it("turns each into a named cluster on its hostnames, pools named apart", async () => {
    const { deployment } = await loadConfigText(stringify(several()), { baseDir: dir, wasmFile: wasmPath("gateway") });
    expect(deployment.clusters.map((cluster) => [cluster.name, cluster.hostnames])).toEqual([
      ["alpha", ["alpha.example", "*.alpha.example"]],
      ["beta", ["beta.example"]],
    ]);
    // Both name their pool "main"; each filter's token review calls its own cluster's.
    const review = deployment.clusters.map((cluster) => fromBinary(GatewayConfigSchema, cluster.gatewayConfig).tokenReview?.cluster);
    expect(review).toEqual(["alpha/main", "beta/main"]);
  });

  const clusters = (edit: (config: ReturnType<typeof several>) => void) => {
    const config = several();
    edit(config);
    return config;
  };
  it.each([
    ["a hostname two clusters list", (c: ReturnType<typeof several>) => (c.upstream_clusters[1]!.hostnames = ["beta.example", "alpha.example"]), /upstream_clusters\[1\]\.hostnames\[1\]: "alpha\.example" is already served by upstream_clusters\[0\] \("alpha"\)/],
    ["two clusters of one name", (c: ReturnType<typeof several>) => (c.upstream_clusters[1]!.name = "alpha"), /upstream_clusters\[1\]\.name: duplicate name "alpha"/],
    ["a cluster without a name", (c: ReturnType<typeof several>) => delete c.upstream_clusters[0]!.name, /upstream_clusters\[0\]\.name: required/],
    ["a name that cannot be part of Envoy names", (c: ReturnType<typeof several>) => (c.upstream_clusters[0]!.name = "Alpha/1"), /upstream_clusters\[0\]\.name: "Alpha\/1" is not lowercase/],
    ["a cluster without hostnames", (c: ReturnType<typeof several>) => (c.upstream_clusters[1]!.hostnames = []), /upstream_clusters\[1\]\.hostnames: at least one hostname/],
    ["a hostname in capitals", (c: ReturnType<typeof several>) => (c.upstream_clusters[1]!.hostnames = ["Beta.example"]), /upstream_clusters\[1\]\.hostnames\[0\]: "Beta\.example" is not a lowercase DNS name/],
    ["a wildcard in the middle", (c: ReturnType<typeof several>) => (c.upstream_clusters[1]!.hostnames = ["beta.*.example"]), /upstream_clusters\[1\]\.hostnames\[0\]: "beta\.\*\.example" is not a lowercase DNS name/],
    ["a cluster without its serving certificate", (c: ReturnType<typeof several>) => delete c.upstream_clusters[1]!.cert_file, /upstream_clusters\[1\]\.cert_file: required/],
    ["a cluster without its client CA", (c: ReturnType<typeof several>) => delete c.upstream_clusters[0]!.client_ca_file, /upstream_clusters\[0\]\.client_ca_file: required/],
    ["a duplicate pool within a cluster", (c: ReturnType<typeof several>) => (c.upstream_clusters[1]!.pools = [{ name: "main", servers: ["a:1"] }, { name: "main", servers: ["b:2"] }]), /upstream_clusters\[1\]\.pools\[1\]\.name: duplicate name "main"/],
    ["a token review naming another cluster's pool", (c: ReturnType<typeof several>) => (c.upstream_clusters[1]!.token_review = { cluster: "alpha/main" }), /upstream_clusters\[1\]\.token_review\.cluster: names no pool \("alpha\/main"\)/],
    ["a listener certificate as well", (c: ReturnType<typeof several>) => (c.listener.cert_file = ca.certFile), /listener\.cert_file: only with upstream_cluster/],
    ["upstream_cluster as well", (c: ReturnType<typeof several>) => (c.upstream_cluster = base().upstream_cluster), /upstream_clusters: set upstream_cluster .* or upstream_clusters, not both/],
  ])("refuses %s, naming the field", async (_, edit, message) => {
    expect(await refusalOf(clusters(edit))).toMatch(message);
  });

  it("refuses hostnames on the single upstream_cluster, which serves every hostname", async () => {
    const config = base();
    config.upstream_cluster!.hostnames = ["alpha.example"];
    expect(await refusalOf(config)).toMatch(/upstream_cluster\.hostnames: only in upstream_clusters/);
  });

  it("refuses a config with no cluster at all", async () => {
    expect(await refusalOf({ listener: base().listener })).toMatch(/upstream_cluster: required \(or upstream_clusters\)/);
  });
});

describe("the client-sidecar role in the config", () => {
  const sidecar = { gateways: ["wharf-gateway.wharf-system.svc:443"], gateway_server_name: "wharf-gateway.wharf-system.svc" };

  it("is checked and defaulted: loopback port 8001, two read retries, no local limit", async () => {
    const config = { ...base(), client_sidecar: { ...sidecar, gateway_ca_file: ca.certFile } };
    const { clientSidecar } = await loadConfigText(stringify(config), { baseDir: dir, wasmFile: wasmPath("gateway") });
    expect(clientSidecar).toMatchObject({ listenPort: 8001, gateways: [{ host: "wharf-gateway.wharf-system.svc", port: 443 }], readRetries: 2, localLimit: undefined });
    expect(clientSidecar!.gatewayCa).toContain("BEGIN CERTIFICATE");
  });

  it("is absent unless configured", async () => {
    expect((await loadConfigText(stringify(base()), { baseDir: dir, wasmFile: wasmPath("gateway") })).clientSidecar).toBeUndefined();
  });

  it.each([
    ["no gateway endpoint", { ...sidecar, gateways: [] }, /client_sidecar\.gateways: at least one/],
    ["a gateway that is not host:port", { ...sidecar, gateways: ["gateway"] }, /client_sidecar\.gateways\[0\]: "gateway" is not host:port/],
    ["no server name to check", { ...sidecar, gateway_server_name: "" }, /client_sidecar\.gateway_server_name: required/],
    ["a server name that is not a DNS name", { ...sidecar, gateway_server_name: "a b" }, /client_sidecar\.gateway_server_name: "a b" is not a DNS name/],
    ["no gateway CA", { ...sidecar }, /client_sidecar\.gateway_ca_file: required/],
    ["a zero local limit", { ...sidecar, local_limit: { burst: 3 } }, /client_sidecar\.local_limit\.requests_per_second: must be > 0/],
  ])("refuses %s, naming the field", async (what, clientSidecar, message) => {
    const withCa = what === "no gateway CA" ? clientSidecar : { gateway_ca_file: ca.certFile, ...clientSidecar };
    expect(await refusal((config) => (config.client_sidecar = withCa))).toMatch(message);
  });

  it("attack: refuses a gateway CA file that holds a private key, so none can reach a client sidecar", async () => {
    const both = join(dir, "ca-and-key.pem");
    await writeFile(both, (await readFile(ca.certFile, "utf8")) + (await readFile(ca.keyFile, "utf8")));
    expect(await refusal((config) => (config.client_sidecar = { ...sidecar, gateway_ca_file: both }))).toMatch(/client_sidecar\.gateway_ca_file: holds a private key/);
  });
});

describe("the access log in the config", () => {
  const load = (config: ReturnType<typeof base>) => loadConfigText(stringify(config), { baseDir: dir, wasmFile: wasmPath("gateway") });

  it("is off unless configured; when on, the path resolves against the config's directory and the filter is told", async () => {
    const off = (await load(base())).deployment.clusters[0]!;
    expect(off.accessLog).toBeUndefined();
    expect(fromBinary(GatewayConfigSchema, off.gatewayConfig).accessLog).toBe(false);
    const config = base();
    config.upstream_cluster!.access_log = { path: "logs/access.log", fields: ["time", "user", "status"], sample_percent: 12.5 };
    const on = (await load(config)).deployment.clusters[0]!;
    expect(on.accessLog).toEqual({ path: join(dir, "logs", "access.log"), fields: ["time", "user", "status"], samplePercent: 12.5 });
    expect(fromBinary(GatewayConfigSchema, on.gatewayConfig).accessLog).toBe(true);
    config.upstream_cluster!.access_log = { path: "/var/log/wharf.log" };
    expect((await load(config)).deployment.clusters[0]!.accessLog).toEqual({ path: "/var/log/wharf.log", fields: [], samplePercent: 100 });
  });

  it("refuses a missing path, an unknown field and a sample outside (0, 100], naming the field", async () => {
    expect(await refusal((config) => (config.upstream_cluster!.access_log = { fields: ["user"] }))).toMatch(/^upstream_cluster\.access_log\.path: required/);
    expect(await refusal((config) => (config.upstream_cluster!.access_log = { path: "a.log", fields: ["user", "authorization"] }))).toMatch(
      /^upstream_cluster\.access_log\.fields\[1\]: "authorization" is not a field/,
    );
    for (const sample of [-1, 100.5, "NaN"]) {
      expect(await refusal((config) => (config.upstream_cluster!.access_log = { path: "a.log", sample_percent: sample }))).toMatch(/^upstream_cluster\.access_log\.sample_percent: must be above 0/);
    }
  });
});
