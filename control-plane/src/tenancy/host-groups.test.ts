// The host groups the tenant filter leaves unmapped (naming.ts's
// builtinGroups) are exactly the groups a real kube-apiserver serves of its own: /apis minus the groups of the CRDs
// installed on it (wharf's own, by the global setup), plus the core group.
import { describe, expect, inject, it } from "vitest";
import { kubectlOn } from "@wharf/testkit";
import { builtinGroups } from "./naming.js";

describe("host groups", () => {
  it("are the built-in groups of the real apiserver", async () => {
    const kubectl = kubectlOn(inject("kube").kubeconfig);
    const served = (JSON.parse(await kubectl("get", "--raw", "/apis")) as { groups: Array<{ name: string }> }).groups.map((group) => group.name);
    const crdGroups = (JSON.parse(await kubectl("get", "crd", "-o", "json")) as { items: Array<{ spec: { group: string } }> }).items.map((crd) => crd.spec.group);
    expect(crdGroups.length).toBeGreaterThan(0);
    const builtIn = served.filter((group) => !crdGroups.includes(group));
    expect(JSON.parse(await kubectl("get", "--raw", "/api")) as { versions: string[] }).toMatchObject({ versions: ["v1"] });
    expect([...builtinGroups].sort()).toEqual(["", ...builtIn].sort());
  });
});
