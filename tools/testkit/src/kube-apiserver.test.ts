import { describe, expect, inject, it } from "vitest";
import { kubectlOn } from "./kubectl.js";

describe("kube-apiserver on the reference etcd", () => {
  const kube = inject("kube");
  const kubectl = kubectlOn(kube.kubeconfig);

  it("answers kubectl get --raw /readyz with ok", async () => {
    expect((await kubectl("get", "--raw", "/readyz")).trim()).toBe("ok");
  });

  it("reports the Kubernetes version setup built", async () => {
    const versions = JSON.parse(await kubectl("version", "-o", "json")) as { clientVersion: { minor: string }; serverVersion: { gitVersion: string; minor: string } };
    expect(Number.parseInt(versions.serverVersion.minor, 10)).toBeGreaterThanOrEqual(36);
    expect(versions.clientVersion.minor).toBe(versions.serverVersion.minor);
  });

  it("stores objects in etcd: a configmap round-trips", async () => {
    const name = `foundation-${process.pid}`;
    await kubectl("create", "configmap", name, "--from-literal=answer=42");
    expect(await kubectl("get", "configmap", name, "-o", "jsonpath={.data.answer}")).toBe("42");
    await kubectl("delete", "configmap", name);
  });

  it("rejects a client without a certificate from its CA", async () => {
    const response = await fetch(`${kube.url}/readyz`).catch((error: unknown) => error);
    // Node's fetch does not trust the throwaway CA, so TLS itself must fail.
    expect(response).toBeInstanceOf(Error);
  });
});
