// The tenancy end-to-end test compares each tenant's run of the workflow with
// a reference run; that comparison only means something if two runs of the
// workflow on two plain clusters are equal after normalising, and if the
// normalising blanks nothing but what differs between runs.
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startKubeApiserver, type KubeApiserver } from "./kube-apiserver.js";
import { writeKubeconfig } from "./kubeconfig.js";
import { issueCertificate } from "./pki.js";
import { normaliseJson, normaliseTable, runTypedCommands, runValidatedApply, runWorkflow, type WorkflowUsers } from "./tenancy-workflow.js";
import { makeWorkDir, removeWorkDir } from "./workdir.js";

describe("normalising", () => {
  it("blanks the AGE and CREATED AT columns of a table and keeps every other cell", () => {
    const table = ["NAME                  CREATED AT", "widgets.example.com   2026-12-02T08:00:01Z", "", ""].join("\n");
    expect(normaliseTable(table)).toBe("NAME | CREATED AT\nwidgets.example.com | <volatile>");
    const wide = ["NAMESPACE   NAME   DATA   AGE", "dev         c0     1      3s", "dev         c10    12     2m1s"].join("\n");
    expect(normaliseTable(wide)).toBe("NAMESPACE | NAME | DATA | AGE\ndev | c0 | 1 | <volatile>\ndev | c10 | 12 | <volatile>");
  });

  it("drops uid, resourceVersion, timestamps and field managers' times, and keeps names, labels and the rest", () => {
    const object = {
      metadata: { name: "a", namespace: "dev", uid: "u", resourceVersion: "7", creationTimestamp: "t", generation: 2, labels: { x: "y" }, managedFields: [{ manager: "kubectl", time: "t", operation: "Apply" }] },
      data: { uid: "kept: not metadata" },
      status: { conditions: [{ type: "Ready", lastTransitionTime: "t" }] },
    };
    expect(JSON.parse(normaliseJson(JSON.stringify(object)))).toEqual({
      metadata: { name: "a", namespace: "dev", labels: { x: "y" }, managedFields: [{ manager: "kubectl", operation: "Apply" }] },
      data: { uid: "kept: not metadata" },
      status: { conditions: [{ type: "Ready", lastTransitionTime: "<volatile>" }] },
    });
  });
});

describe("the workflow on two fresh clusters", () => {
  let dir: string;
  const clusters: KubeApiserver[] = [];
  const users: WorkflowUsers[] = [];

  beforeAll(async () => {
    dir = await makeWorkDir("tenancy-workflow");
    for (const index of [0, 1]) {
      const pki = inject("kube").pki;
      const kube = await startKubeApiserver({ etcdServers: [inject("referenceEtcd").endpoint], pki, extraArgs: [`--etcd-prefix=/tenancy-workflow-${process.pid}-${index}`] });
      clusters.push(kube);
      const user = async (name: string, organizations: string[] = []) =>
        writeKubeconfig(join(dir, `${index}-${name}.kubeconfig`), kube.url, pki.ca.certFile, await issueCertificate(dir, pki.ca, { name: `${index}-${name}`, commonName: name, organizations, usage: "client" }));
      users.push({ admin: kube.kubeconfig, alice: await user("alice"), bob: await user("bob", ["readers"]) });
    }
  }, 120_000);

  afterAll(async () => {
    for (const kube of clusters) await kube.stop();
    if (dir) await removeWorkDir(dir);
  });

  it("gives equal outputs step by step (so a tenant's difference from the reference is the gateway's doing)", async () => {
    const outputs = [];
    for (const [index, clusterUsers] of users.entries()) {
      const workDir = join(dir, `run-${index}`);
      await mkdir(workDir, { recursive: true });
      outputs.push({ ...(await runWorkflow(workDir, clusterUsers)), ...(await runTypedCommands(clusterUsers)), ...(await runValidatedApply(workDir, clusterUsers)) });
    }
    const [first, second] = outputs as [Record<string, string>, Record<string, string>];
    expect(Object.keys(second)).toEqual(Object.keys(first));
    for (const step of Object.keys(first)) expect.soft(second[step], step).toBe(first[step]);
    // What the workflow is meant to show, so an empty or failed step cannot pass as "equal".
    expect(first["get ns"]).toBe(["NAME | STATUS | AGE", ...["default", "dev", "kube-node-lease", "kube-public", "kube-system"].map((ns) => `${ns} | Active | <volatile>`)].join("\n"));
    expect(first["get cm -n dev --chunk-size 2: pages"]).toBe("3");
    expect(first["get cm -A --chunk-size 2: paged"]).toBe("true");
    expect(first["apply (validated) objects again"]).toMatch(/^deployment.apps\/web unchanged\n/);
    expect(first["explain widget.spec"]).toMatch(/FIELD: spec/);
    expect(first["get cm -w --output-watch-events"]).toBe(
      ["ADDED c0 0 e2e", "ADDED c1 1 e2e", "ADDED c2 2 e2e", "ADDED c3 3 e2e", "ADDED c4 4 e2e", "ADDED c5 5 e2e", "MODIFIED c5 five e2e", "DELETED c5 five e2e"].join("\n"),
    );
    expect(first["alice lists widgets in default"]).toMatch(/Forbidden.*User "alice" cannot list resource "widgets" in API group "example.com" in the namespace "default"/);
    expect(first["auth can-i (bob)"]).toBe("list widgets.example.com -A: yes\ndelete widgets.example.com -n dev: no");
  }, 120_000);
});
