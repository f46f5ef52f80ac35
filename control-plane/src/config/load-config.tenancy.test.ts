// tenants: and tenancy: in the config model: what is accepted, and each
// refusal naming the field.
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { createCertificateAuthority, issueCertificate, makeWorkDir, removeWorkDir, repoRoot, type KeyPair } from "@wharf/testkit";
import { wasmPath } from "@wharf/filters";
import { ConfigError, loadConfigText } from "./load-config.js";

let dir: string;
let clusterCa: KeyPair;
let otherCa: KeyPair;
let serving: KeyPair;
let servingByOther: KeyPair;

beforeAll(async () => {
  dir = await makeWorkDir("config-tenancy");
  clusterCa = await createCertificateAuthority(dir, "cluster-ca");
  otherCa = await createCertificateAuthority(dir, "serving-ca");
  serving = await issueCertificate(dir, clusterCa, { name: "serving", commonName: "gateway", ipAddresses: ["127.0.0.1"], usage: "server" });
  servingByOther = await issueCertificate(dir, otherCa, { name: "serving-other", commonName: "gateway", ipAddresses: ["127.0.0.1"], usage: "server" });
  await writeFile(join(dir, "control-plane.kubeconfig"), "apiVersion: v1\nkind: Config\n");
});
afterAll(async () => {
  await removeWorkDir(dir);
});

type Config = Record<string, unknown> & { listener: Record<string, unknown>; tenancy?: Record<string, unknown> };

function base(): Config {
  return {
    listener: { port: 7443, cert_file: serving.certFile, key_file: serving.keyFile, client_ca_file: clusterCa.certFile },
    upstream_cluster: {
      pools: [{ name: "main", servers: ["127.0.0.1:6443"] }],
      default_pool: "main",
      ca_file: clusterCa.certFile,
      client_cert_file: serving.certFile,
      client_key_file: serving.keyFile,
    },
    tenancy: { kubeconfig: "control-plane.kubeconfig" },
    tenants: [{ name: "acme", shared_views: ["nodes"] }, { name: "globex" }],
  };
}

const load = (config: Config) => loadConfigText(stringify(config), { baseDir: dir, wasmFile: wasmPath("gateway"), tenantWasmFile: join(dir, "no-tenant.wasm") });

async function refusal(edit: (config: Config) => void): Promise<string> {
  const config = base();
  edit(config);
  const error = await load(config).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(ConfigError);
  return (error as ConfigError).message;
}

describe("tenancy in the config", () => {
  it("is checked into what the control plane needs: tenants, the gateway URL and CA for their kubeconfigs", async () => {
    const { tenancy } = await load(base());
    expect(tenancy).toMatchObject({
      kubeconfig: join(dir, "control-plane.kubeconfig"),
      server: "https://127.0.0.1:7443",
      tenants: [{ name: "acme", sharedViews: ["nodes"] }, { name: "globex", sharedViews: [] }],
    });
    // The listener's serving certificate is signed by the client CA: that is the kubeconfig's CA.
    expect(tenancy!.serverCa).toContain("-----BEGIN CERTIFICATE-----");
    expect(tenancy!.filterModule).toBeUndefined();
  });

  it("takes the server and its CA when given", async () => {
    const config = base();
    config.listener = { ...config.listener, cert_file: servingByOther.certFile, key_file: servingByOther.keyFile };
    config.tenancy = { kubeconfig: "control-plane.kubeconfig", server: "https://gateway.example.com:7443", server_ca_file: otherCa.certFile };
    const { tenancy } = await load(config);
    expect(tenancy!.server).toBe("https://gateway.example.com:7443");
    expect(tenancy!.serverCa.replace(/\s/g, "")).toBe((await readFile(otherCa.certFile, "utf8")).replace(/\s/g, ""));
  });

  it("reads the tenant filter module when it is there", async () => {
    const { tenancy } = await loadConfigText(stringify(base()), { baseDir: dir, wasmFile: wasmPath("gateway"), tenantWasmFile: wasmPath("hello") });
    expect(tenancy!.filterModule!.length).toBeGreaterThan(0);
  });

  it("is absent without a tenancy section", async () => {
    const config = base();
    delete config.tenancy;
    delete config.tenants;
    expect((await load(config)).tenancy).toBeUndefined();
  });

  it.each([
    ["tenants without tenancy", (c: Config) => delete c.tenancy, /^tenancy\.kubeconfig: required with tenants/],
    ["tenancy without its kubeconfig", (c: Config) => (c.tenancy = { server: "https://x:1" }), /^tenancy\.kubeconfig: required/],
    ["an unreadable kubeconfig", (c: Config) => (c.tenancy = { kubeconfig: "missing.kubeconfig" }), /^tenancy\.kubeconfig: cannot read .*missing\.kubeconfig: ENOENT/],
    ["a name with a dash", (c: Config) => (c.tenants = [{ name: "ac-me" }]), /^tenants\[0\]\.name: tenant name "ac-me" may not contain '-'/],
    ["an upper-case name", (c: Config) => (c.tenants = [{ name: "ok" }, { name: "Acme" }]), /^tenants\[1\]\.name: tenant name "Acme" must start with a lowercase letter/],
    ["a name of 13 characters", (c: Config) => (c.tenants = [{ name: "abcdefghijklm" }]), /^tenants\[0\]\.name: tenant name "abcdefghijklm" is 13 characters; at most 12/],
    ["a name starting with a digit", (c: Config) => (c.tenants = [{ name: "1acme" }]), /^tenants\[0\]\.name: tenant name "1acme" must start/],
    ["an empty name", (c: Config) => (c.tenants = [{ shared_views: [] }]), /^tenants\[0\]\.name: tenant name is empty/],
    ["a duplicate name", (c: Config) => (c.tenants = [{ name: "acme" }, { name: "globex" }, { name: "acme" }]), /^tenants\[2\]\.name: duplicate name "acme"/],
    ["a shared view not on the list", (c: Config) => (c.tenants = [{ name: "acme", shared_views: ["nodes", "secrets"] }]), /^tenants\[0\]\.shared_views\[1\]: "secrets" cannot be shared \(one of nodes, storageclasses/],
    ["a shared view twice", (c: Config) => (c.tenants = [{ name: "acme", shared_views: ["nodes", "nodes"] }]), /^tenants\[0\]\.shared_views\[1\]: "nodes" is listed twice/],
    ["a server that is not https", (c: Config) => (c.tenancy = { kubeconfig: "control-plane.kubeconfig", server: "http://gateway:7443" }), /^tenancy\.server: "http:\/\/gateway:7443" is not an https/],
    ["a server with a path", (c: Config) => (c.tenancy = { kubeconfig: "control-plane.kubeconfig", server: "https://gateway:7443/x" }), /^tenancy\.server: /],
    ["a wildcard listener without a server", (c: Config) => (c.listener.address = "0.0.0.0"), /^tenancy\.server: required when the listener listens on 0\.0\.0\.0/],
    [
      "a serving certificate the client CA did not sign, without server_ca_file",
      (c: Config) => (c.listener = { ...c.listener, cert_file: servingByOther.certFile, key_file: servingByOther.keyFile }),
      /^tenancy\.server_ca_file: required: listener\.cert_file is not signed by listener\.client_ca_file/,
    ],
    ["a server CA file holding a key", (c: Config) => (c.tenancy = { kubeconfig: "control-plane.kubeconfig", server_ca_file: serving.keyFile }), /^tenancy\.server_ca_file: (holds a private key|.* is not a PEM file)/],
    ["an unknown tenant field", (c: Config) => (c.tenants = [{ name: "acme", colour: "blue" }]), /colour/],
  ])("refuses %s, naming the field", async (_, edit, message) => {
    expect(await refusal(edit)).toMatch(message);
  });

  it("accepts the example in docs/config.md as written", async () => {
    const markdown = await readFile(join(repoRoot, "docs", "config.md"), "utf8");
    const section = markdown.slice(markdown.indexOf("## Tenants"));
    const example = parse(/```yaml\n([\s\S]*?)```/.exec(section)![1]!) as { tenancy: Record<string, unknown>; tenants: unknown[] };
    await writeFile(join(dir, "control-plane-upstream.kubeconfig"), "apiVersion: v1\nkind: Config\n");
    await writeFile(join(dir, "gateway-ca.crt"), await readFile(clusterCa.certFile, "utf8"));
    const { tenancy } = await load({ ...base(), tenancy: example.tenancy, tenants: example.tenants });
    expect(tenancy).toMatchObject({ server: "https://gateway.example.com:7443", tenants: [{ name: "acme", sharedViews: ["nodes", "storageclasses.storage.k8s.io"] }] });
  });

  it("refuses tenancy with several upstream clusters", async () => {
    const config = base();
    const single = config.upstream_cluster as Record<string, unknown>;
    delete config.upstream_cluster;
    config.listener = { port: 7443 };
    config.upstream_clusters = [{ ...single, name: "a", hostnames: ["a.example.com"], cert_file: serving.certFile, key_file: serving.keyFile, client_ca_file: clusterCa.certFile }];
    const error = await load(config).catch((e: unknown) => e);
    expect((error as ConfigError).message).toMatch(/^tenancy: only with upstream_cluster/);
  });
});
