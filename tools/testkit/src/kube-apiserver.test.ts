import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, inject, it } from "vitest";
import { toolPath } from "./tools.js";

const run = promisify(execFile);

describe("kube-apiserver on the reference etcd", () => {
  const kube = inject("kube");
  const kubectl = (...args: string[]) => run(toolPath("kubectl"), ["--kubeconfig", kube.kubeconfig, ...args]);

  it("answers kubectl get --raw /readyz with ok", async () => {
    const { stdout } = await kubectl("get", "--raw", "/readyz");
    expect(stdout.trim()).toBe("ok");
  });

  it("reports the Kubernetes version setup built", async () => {
    const { stdout } = await kubectl("version", "-o", "json");
    const versions = JSON.parse(stdout) as { clientVersion: { minor: string }; serverVersion: { gitVersion: string; minor: string } };
    expect(Number.parseInt(versions.serverVersion.minor, 10)).toBeGreaterThanOrEqual(36);
    expect(versions.clientVersion.minor).toBe(versions.serverVersion.minor);
  });

  it("stores objects in etcd: a configmap round-trips", async () => {
    const name = `foundation-${process.pid}`;
    await kubectl("create", "configmap", name, "--from-literal=answer=42");
    const { stdout } = await kubectl("get", "configmap", name, "-o", "jsonpath={.data.answer}");
    expect(stdout).toBe("42");
    await kubectl("delete", "configmap", name);
  });

  it("rejects a client without a certificate from its CA", async () => {
    const response = await fetch(`${kube.url}/readyz`).catch((error: unknown) => error);
    // Node's fetch does not trust the throwaway CA, so TLS itself must fail.
    expect(response).toBeInstanceOf(Error);
  });
});
