// Test support for the resource builders: one throwaway certificate for
// every role (only the config's shape is checked), gateway resources for
// given pools, and Envoy's own `--mode validate` on the result.
import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { wasmPath } from "@wharf/filters";
import { createCertificateAuthority, issueCertificate, makeWorkDir, removeWorkDir, toolPath } from "@wharf/testkit";
import { gatewayResources, staticBootstrap, type UpstreamPool } from "./index.js";
import type { ResourceSet } from "../xds/snapshot.js";

const run = promisify(execFile);

export interface GatewayFixture {
  resourcesFor(pools: UpstreamPool[]): Promise<ResourceSet>;
  /** Envoy's validation output for the resources as one static config. */
  validate(resources: ResourceSet): Promise<string>;
  remove(): Promise<void>;
}

export async function gatewayFixture(name: string): Promise<GatewayFixture> {
  const dir = await makeWorkDir(name);
  const ca = await createCertificateAuthority(dir, "ca");
  const leaf = await issueCertificate(dir, ca, { name: "leaf", commonName: "leaf", dnsNames: ["localhost"], usage: "server+client" });
  const [caPem, pem, key, wasmModule] = await Promise.all([readFile(ca.certFile, "utf8"), readFile(leaf.certFile, "utf8"), readFile(leaf.keyFile, "utf8"), readFile(wasmPath("gateway"))]);
  return {
    resourcesFor: async (pools) =>
      gatewayResources({
        listenPort: 7443,
        servingCert: pem,
        servingKey: key,
        clientCa: caPem,
        upstreamCa: caPem,
        frontProxyCert: pem,
        frontProxyKey: key,
        wasmModule,
        gatewayConfig: new Uint8Array(),
        pools,
        defaultPool: pools[0]!.name,
      }),
    validate: async (resources) => {
      const file = join(dir, "static.json");
      await writeFile(file, JSON.stringify(staticBootstrap(resources, 19901)));
      const { stdout, stderr } = await run(toolPath("envoy"), ["--mode", "validate", "--config-path", file, "--disable-hot-restart"]).catch(
        (error: { stdout: string; stderr: string }) => error,
      );
      return `${stdout}${stderr}`;
    },
    remove: () => removeWorkDir(dir),
  };
}
