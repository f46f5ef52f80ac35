// brain behind TLS with client-certificate authentication, as kube-apiserver
// reaches etcd with --etcd-cafile/--etcd-certfile/--etcd-keyfile.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createCertificateAuthority,
  issueCertificate,
  makeWorkDir,
  removeWorkDir,
  startBrainProcess,
  startKubeApiserver,
  toolPath,
  type Brain,
  type KeyPair,
} from "@wharf/testkit";

const run = promisify(execFile);

let dir: string;
let ca: KeyPair;
let client: KeyPair;
let brain: Brain;

beforeAll(async () => {
  dir = await makeWorkDir("brain-tls");
  ca = await createCertificateAuthority(dir, "etcd-ca");
  const server = await issueCertificate(dir, ca, { name: "brain", commonName: "brain", ipAddresses: ["127.0.0.1"], dnsNames: ["localhost"], usage: "server" });
  client = await issueCertificate(dir, ca, { name: "apiserver-etcd-client", commonName: "kube-apiserver", usage: "client" });
  brain = await startBrainProcess({ tls: { certFile: server.certFile, keyFile: server.keyFile, caFile: ca.certFile } });
});
afterAll(async () => {
  await brain?.stop();
  await removeWorkDir(dir);
});

describe("brain over mTLS", () => {
  it("serves a client with a certificate from the trusted CA", async () => {
    const args = [`--endpoints=${brain.endpoint}`, `--cacert=${ca.certFile}`, `--cert=${client.certFile}`, `--key=${client.keyFile}`];
    await run(toolPath("etcdctl"), [...args, "put", "secure", "yes"]);
    const { stdout } = await run(toolPath("etcdctl"), [...args, "get", "secure", "--print-value-only"]);
    expect(stdout.trim()).toBe("yes");
  });

  it("refuses a client without a certificate", async () => {
    const failure = await run(toolPath("etcdctl"), [`--endpoints=${brain.endpoint}`, `--cacert=${ca.certFile}`, "--dial-timeout=2s", "--command-timeout=3s", "get", "secure"]).catch(
      (error: { code: number }) => error,
    );
    expect(failure).toMatchObject({ code: 1 });
  });

  it("is kube-apiserver's storage with --etcd-cafile, --etcd-certfile and --etcd-keyfile", async () => {
    const kube = await startKubeApiserver({
      etcdServers: [brain.endpoint],
      extraArgs: [`--etcd-cafile=${ca.certFile}`, `--etcd-certfile=${client.certFile}`, `--etcd-keyfile=${client.keyFile}`],
    });
    try {
      const { stdout } = await run(toolPath("kubectl"), ["--kubeconfig", kube.kubeconfig, "get", "--raw", "/readyz"]);
      expect(stdout.trim()).toBe("ok");
    } finally {
      await kube.stop();
    }
  });
});
