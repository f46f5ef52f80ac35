// attack: the policy example in docs/config.md, loaded exactly as written
// (every YAML block with dispatch policies, through the one config
// validator), run in the compiled gateway filter: contractors can neither
// get, list nor watch secrets, whichever policy comes first for others.
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { wasmPath } from "@wharf/filters";
import { createCertificateAuthority, makeWorkDir, removeWorkDir, repoRoot } from "@wharf/testkit";
import { ProxyWasmHost } from "../../../filters/src/test-host/host.js";
import { request } from "../../../filters/src/gateway/harness.js";
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

async function filterFor(example: string, subject: string): Promise<ProxyWasmHost> {
  // Absolute paths (the CRD form) are read under the work dir.
  const text = example.replaceAll(/"(\/etc\/[^"]+)"/g, (_, file: string) => `"${join(dir, "abs", file)}"`);
  const { deployment } = await loadConfigText(text, { baseDir: dir, wasmFile: wasmPath("gateway") });
  const host = await ProxyWasmHost.load(wasmPath("gateway"), { pluginConfiguration: deployment.gatewayConfig, properties: { "connection.subject_peer_certificate": subject } });
  if (!host.start()) throw new Error(`the gateway refused the docs example: ${JSON.stringify(host.logs)}`);
  return host;
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
  it("has both forms (file and custom resource)", () => {
    expect(examples.length).toBe(2);
  });

  it("denies contractors every get, list and watch of secrets", async () => {
    for (const example of examples) {
      const host = await filterFor(example, "CN=carol,O=contractors");
      for (const [method, path] of secretReads) {
        const { stream } = request(host, method, path);
        expect(stream.localResponse?.status, `${method} ${path}`).toBe(403);
        expect(JSON.parse(stream.localResponse!.body)).toMatchObject({ message: "contractors may not read secrets" });
        stream.finish();
      }
    }
  });

  it("still routes everyone else's watches to the watch pool", async () => {
    for (const example of examples) {
      const host = await filterFor(example, "CN=dana,O=devs");
      const { stream } = request(host, "GET", "/api/v1/namespaces/default/secrets?watch=true");
      expect(stream.localResponse).toBeUndefined();
      expect(stream.header("x-wharf-upstream")).toBe("watches");
      stream.finish();
    }
  });
});
