// attack: the policy example in docs/config.md, loaded exactly as written
// (every YAML block with dispatch policies, through the one config
// validator), run in the compiled gateway filter of each cluster that has
// the deny: contractors can neither get, list nor watch secrets.
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { fromBinary } from "@bufbuild/protobuf";
import { GatewayConfigSchema } from "@wharf/proto/wharf/gateway/v1/gateway_pb.js";
import { wasmPath } from "@wharf/filters";
import { createCertificateAuthority, makeWorkDir, removeWorkDir, repoRoot } from "@wharf/testkit";
import { ProxyWasmHost } from "../../../filters/src/test-host/host.js";
import { clientCertificate, request, setClientCert } from "../../../filters/src/gateway/harness.js";
import { loadConfigText } from "./load-config.js";

let dir: string;
let examples: string[];

beforeAll(async () => {
  dir = await makeWorkDir("docs-example");
  const markdown = await readFile(join(repoRoot, "docs", "config.md"), "utf8");
  const blocks = [...markdown.matchAll(/```yaml\n([\s\S]*?)```/g)].map((match) => match[1]!).filter((block) => block.includes("dispatch_policies"));
  // The CRD form holds the same config under spec.
  examples = blocks.map((block) => {
    const document = parse(block) as { kind?: string; spec?: unknown };
    return document.kind === "GatewayConfig" ? JSON.stringify(document.spec) : block;
  });
  // The example's certificate paths, relative and absolute, filled with a real PEM.
  const pem = await readFile((await createCertificateAuthority(dir, "docs-ca")).certFile, "utf8");
  for (const example of examples) {
    for (const [, file] of example.matchAll(/"?(?:cert_file|key_file|client_ca_file|ca_file|client_cert_file|client_key_file)"?:\s*"?([^\s",}]+)/g)) {
      const path = file!.startsWith("/") ? join(dir, "abs", file!) : join(dir, file!);
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, pem);
    }
  }
});

afterAll(async () => {
  if (dir) await removeWorkDir(dir);
});

/** The filter of every cluster of the example that has a policy named `policy`. */
async function filtersWith(example: string, policy: string, subject: string): Promise<ProxyWasmHost[]> {
  // Absolute paths (the CRD form) are read under the work dir.
  const text = example.replaceAll(/"(\/etc\/[^"]+)"/g, (_, file: string) => `"${join(dir, "abs", file)}"`);
  const { deployment } = await loadConfigText(text, { baseDir: dir, wasmFile: wasmPath("gateway") });
  const hosts: ProxyWasmHost[] = [];
  for (const cluster of deployment.clusters) {
    if (!fromBinary(GatewayConfigSchema, cluster.gatewayConfig).policies.some((candidate) => candidate.name === policy)) continue;
    const host = await ProxyWasmHost.load(wasmPath("gateway"), { pluginConfiguration: cluster.gatewayConfig });
    if (!host.start()) throw new Error(`the gateway refused the docs example: ${JSON.stringify(host.logs)}`);
    setClientCert(host, await clientCertificate({ subject }));
    hosts.push(host);
  }
  return hosts;
}

const secretReads: Array<[string, string]> = [
  ["GET", "/api/v1/namespaces/default/secrets/db-password"],
  ["GET", "/api/v1/namespaces/default/secrets"],
  ["GET", "/api/v1/namespaces/default/secrets?watch=true"],
  ["GET", "/api/v1/watch/namespaces/default/secrets"],
  ["GET", "/api/v1/secrets?watch=1"],
  ["GET", "/api/v1/namespaces/default/secrets?fieldSelector=metadata.name%3Ddb-password&watch=true"],
];

describe("attack: the docs/config.md policy example", () => {
  it("has the file form, the several-clusters form and the custom resource, each with the deny", async () => {
    expect(examples.length).toBe(3);
    for (const example of examples) expect((await filtersWith(example, "no-secrets-for-contractors", "/CN=carol")).length).toBe(1);
  });

  it("denies contractors every get, list and watch of secrets", async () => {
    for (const example of examples) {
      const [host] = await filtersWith(example, "no-secrets-for-contractors", "/O=contractors/CN=carol");
      for (const [method, path] of secretReads) {
        const { stream } = request(host!, method, path);
        expect(stream.localResponse?.status, `${method} ${path}`).toBe(403);
        expect(JSON.parse(stream.localResponse!.body)).toMatchObject({ message: "contractors may not read secrets" });
        stream.finish();
      }
    }
  });

  it("still routes everyone else's watches to the watch pool", async () => {
    const hosts = (await Promise.all(examples.map((example) => filtersWith(example, "watches", "/O=devs/CN=dana")))).flat();
    expect(hosts.length).toBe(2);
    for (const host of hosts) {
      const { stream } = request(host, "GET", "/api/v1/namespaces/default/secrets?watch=true");
      expect(stream.localResponse).toBeUndefined();
      expect(stream.header("x-wharf-upstream")).toBe("watches");
      stream.finish();
    }
  });
});
