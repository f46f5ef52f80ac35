import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { createCertificateAuthority, makeWorkDir, removeWorkDir, type KeyPair } from "@wharf/testkit";
import { wasmPath } from "@wharf/filters";
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
    expect(deployment.pools).toEqual([
      { name: "main", endpoints: [{ host: "127.0.0.1", port: 6443 }] },
      { name: "watch", endpoints: [{ host: "10.0.0.2", port: 6443 }, { host: "::1", port: 6443 }] },
    ]);
    expect(deployment.gatewayConfig.length).toBeGreaterThan(0);
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
