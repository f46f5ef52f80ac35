// The control plane fed by a GatewayConfig custom resource on a real
// kube-apiserver (the management cluster of the global test setup).
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { stringify } from "yaml";
import {
  createClusterPki,
  freePort,
  makeWorkDir,
  removeWorkDir,
  repoRoot,
  startProcess,
  kubectlOn,
  waitUntilReady,
  type ClusterPki,
  type RunningProcess,
  waitFor,
} from "@wharf/testkit";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AdminService } from "@wharf/proto/wharf/admin/v1/admin_pb.js";

const wharf = join(repoRoot, "control-plane", "dist", "cli.js");
const token = "kube-source-test-token-0123456789";

let dir: string;
let pki: ClusterPki;
let controlPlane: RunningProcess;
let adminUrl: string;
const kube = inject("kube");
const kubectl = kubectlOn(kube.kubeconfig);

function resource(policies: unknown[]): string {
  return stringify({
    apiVersion: "wharf.dev/v1",
    kind: "GatewayConfig",
    metadata: { name: "gateway", namespace: "default" },
    spec: {
      listener: { port: 17443, cert_file: pki.apiserver.certFile, key_file: pki.apiserver.keyFile, client_ca_file: pki.ca.certFile },
      upstream_cluster: {
        pools: [{ name: "main", servers: ["127.0.0.1:6443"] }],
        default_pool: "main",
        ca_file: pki.ca.certFile,
        client_cert_file: pki.frontProxyClient.certFile,
        client_key_file: pki.frontProxyClient.keyFile,
        dispatch_policies: policies,
      },
    },
  });
}

/** The same resource with two clusters, chosen by hostname, in place of upstream_cluster. */
function severalClusters(hostnamesOfB: string[]): string {
  const cluster = (name: string, hostnames: string[]) => ({
    name,
    hostnames,
    cert_file: pki.apiserver.certFile,
    key_file: pki.apiserver.keyFile,
    client_ca_file: pki.ca.certFile,
    pools: [{ name: "main", servers: ["127.0.0.1:6443"] }],
    default_pool: "main",
    ca_file: pki.ca.certFile,
    client_cert_file: pki.frontProxyClient.certFile,
    client_key_file: pki.frontProxyClient.keyFile,
  });
  return stringify({
    apiVersion: "wharf.dev/v1",
    kind: "GatewayConfig",
    metadata: { name: "gateway", namespace: "default" },
    spec: { listener: { port: 17443 }, upstream_clusters: [cluster("a", ["a.example"]), cluster("b", hostnamesOfB)] },
  });
}

async function applyResource(yaml: string): Promise<void> {
  const file = join(dir, `resource-${Date.now()}.yaml`);
  await writeFile(file, yaml);
  await kubectl("apply", "-f", file);
}

const admin = () =>
  createClient(
    AdminService,
    createConnectTransport({
      baseUrl: adminUrl,
      httpVersion: "1.1",
      interceptors: [
        (next) => (request) => {
          request.header.set("authorization", `Bearer ${token}`);
          return next(request);
        },
      ],
    }),
  );

beforeAll(async () => {
  dir = await makeWorkDir("kube-source");
  pki = await createClusterPki(dir);
  // The CRD from deploy/crds is installed by the global setup.
  await applyResource(resource([]));
  await writeFile(join(dir, "token"), token);
  adminUrl = `http://127.0.0.1:${await freePort()}`;
  controlPlane = startProcess({
    name: "wharf control-plane (kubernetes)",
    command: process.execPath,
    args: [
      wharf, "control-plane", "--kube-resource", "default/gateway", "--kubeconfig", kube.kubeconfig,
      "--xds-listen", `127.0.0.1:${await freePort()}`, "--admin-token-file", join(dir, "token"), "--admin-listen", adminUrl.replace("http://", ""),
    ],
    logFile: join(dir, "control-plane.log"),
  });
  await waitUntilReady(controlPlane, async () => (await admin().getConfig({})).version === "1", 30_000);
}, 90_000);

afterAll(async () => {
  await controlPlane?.stop();
  await kubectl("delete", "gatewayconfig", "gateway", "--ignore-not-found").catch(() => undefined);
  if (dir) await removeWorkDir(dir);
});

describe("the control plane from a GatewayConfig custom resource", () => {
  it("serves the resource's spec and follows its changes", async () => {
    expect((await admin().getConfig({})).yaml).toContain("default_pool: main");
    await applyResource(resource([{ name: "no-secrets", rules: [{ resources: ["secrets"] }], action: { deny: { message: "from the CR" } } }]));
    await waitFor(async () => (await admin().getConfig({})).version === "2", 10_000, "the changed resource");
    expect((await admin().getConfig({})).yaml).toContain("from the CR");
  });

  it("refuses an invalid spec with the field named and keeps serving the last good one", async () => {
    await applyResource(resource([{ name: "lost", rules: [{}], action: { upstream: "nowhere" } }]));
    await waitFor(async () => controlPlane.logTail(20).includes("names no pool"), 10_000, "the refusal");
    const config = await admin().getConfig({});
    expect(config.version).toBe("2");
    expect(config.yaml).toContain("from the CR");
  });

  it("serves several upstream clusters from the resource, and refuses a hostname two of them list", async () => {
    await applyResource(severalClusters(["b.example"]));
    await waitFor(async () => (await admin().getConfig({})).version === "3", 10_000, "the resource with two clusters");
    expect((await admin().getConfig({})).yaml).toContain("b.example");
    await applyResource(severalClusters(["a.example"]));
    await waitFor(async () => controlPlane.logTail(20).includes('upstream_clusters[1].hostnames[0]: \\"a.example\\" is already served by upstream_clusters[0]'), 10_000, () => `the refusal in ${controlPlane.logTail(5)}`);
    expect((await admin().getConfig({})).version).toBe("3");
  });

  it("sends admin applies back to the resource", async () => {
    await expect(admin().applyConfig({ yaml: "{}" })).rejects.toThrow(/GatewayConfig default\/gateway: change that resource/);
  });
});
