// Tenancy end to end: two tenants, each with its own kubeconfig from the
// control plane, run the same kubectl workflow through the gateway Envoy
// (gateway filter → tenant filter) against one real kube-apiserver. The
// reference is that workflow run by the cluster admin straight against the
// apiserver, in plain namespaces, before any tenant exists: each tenant must
// see exactly what a fresh cluster shows, with unprefixed names, while the
// admin sees the prefixed truth upstream.
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CoreV1Api, KubeConfig, makeInformer, type V1ConfigMap } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  issueCertificate,
  kubectlOn,
  makeWorkDir,
  removeWorkDir,
  credentialsOf,
  rawClient,
  runTypedCommands,
  runValidatedApply,
  runWorkflow,
  startTenancyStack,
  waitFor,
  writeKubeconfig,
  type TenancyStack,
  type WorkflowOutputs,
  type WorkflowUsers,
} from "@wharf/testkit";

const tenantNames = ["blue", "green"] as const;
type TenantName = (typeof tenantNames)[number];

let stack: TenancyStack;
let dir: string;
let reference: WorkflowOutputs;
let referenceTyped: WorkflowOutputs;
let referenceValidated: WorkflowOutputs;
const users = {} as Record<TenantName, WorkflowUsers>;
const outputs = {} as Record<TenantName, WorkflowOutputs>;

beforeAll(async () => {
  dir = await makeWorkDir("tenancy-e2e");
  // A dedicated apiserver (about 2 s to start): the reference is a fresh
  // cluster, and no other test file's objects may appear in its lists.
  stack = await startTenancyStack({ etcdServers: [inject("referenceEtcd").endpoint] });
  const ca = stack.kube.pki.ca;
  const direct = async (name: string, organizations: string[] = []) =>
    writeKubeconfig(join(dir, `reference-${name}.kubeconfig`), stack.kube.url, ca.certFile, await issueCertificate(dir, ca, { name: `reference-${name}`, commonName: name, organizations, usage: "client" }));
  const referenceDir = join(dir, "reference");
  await makeDir(referenceDir);
  const referenceUsers = { admin: stack.kube.kubeconfig, alice: await direct("alice"), bob: await direct("bob", ["readers"]) };
  reference = await runWorkflow(referenceDir, referenceUsers);
  referenceTyped = await runTypedCommands(referenceUsers);
  referenceValidated = await runValidatedApply(referenceDir, referenceUsers);
  for (const tenant of tenantNames) {
    users[tenant] = {
      admin: await stack.createTenant(tenant),
      alice: await stack.tenantKubeconfig(tenant, "alice"),
      bob: await stack.tenantKubeconfig(tenant, "bob", ["readers"]),
    };
  }
}, 180_000);

afterAll(async () => {
  await stack?.stop();
  if (dir) await removeWorkDir(dir);
});

async function makeDir(path: string): Promise<void> {
  await mkdir(path, { recursive: true });
}

describe("two tenants run the same workflow as a cluster admin does on a fresh cluster", () => {
  for (const tenant of tenantNames) {
    it(`${tenant}: every step's output equals the reference's`, async () => {
      const workDir = join(dir, tenant);
      await makeDir(workDir);
      outputs[tenant] = await runWorkflow(workDir, users[tenant]);
      expect(Object.keys(outputs[tenant])).toEqual(Object.keys(reference));
      for (const step of Object.keys(reference)) expect.soft(outputs[tenant][step], step).toBe(reference[step]);
    }, 120_000);
  }

  // kubectl 1.36 sends protobuf bodies from its typed client (auth can-i,
  // auth whoami, create namespace/configmap/...): the tenant filter must
  // map them as it maps JSON ones.
  for (const tenant of tenantNames) {
    it(`${tenant}: auth can-i and auth whoami (protobuf request bodies) answer as on the reference`, async () => {
      const typed = await runTypedCommands(users[tenant]);
      for (const step of Object.keys(referenceTyped)) expect.soft(typed[step], step).toBe(referenceTyped[step]);
    });
  }

  // kubectl apply validates each object against the server's OpenAPI
  // (v3; v2 when v3 lacks the kind): the tenant's own groups must be there.
  for (const tenant of tenantNames) {
    it(`${tenant}: kubectl apply with client-side validation and kubectl explain work on the tenant's own CRDs`, async () => {
      const validated = await runValidatedApply(join(dir, tenant), users[tenant]);
      for (const step of Object.keys(referenceValidated)) expect.soft(validated[step], step).toBe(referenceValidated[step]);
    });
  }

  it("the two tenants' worlds are apart: an object one makes is not in the other's lists, and reads of its name are NotFound as on a plain cluster", async () => {
    const blue = kubectlOn(users.blue.admin);
    const green = kubectlOn(users.green.admin);
    const file = join(dir, "only-blue.json");
    await writeFile(file, JSON.stringify({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "only-blue", namespace: "dev" }, data: { k: "v" } }));
    await blue("apply", "-f", file);
    expect(await blue("get", "configmap", "only-blue", "-n", "dev", "-o", "jsonpath={.data.k}")).toBe("v");
    const notFound = (error: Error) => error.message.replace(/^kubectl [^:]*: /, "").trim();
    const referenceMiss = await kubectlOn(stack.kube.kubeconfig)("get", "configmap", "only-blue", "-n", "dev").catch(notFound);
    expect(referenceMiss).toBe('Error from server (NotFound): configmaps "only-blue" not found');
    expect(await green("get", "configmap", "only-blue", "-n", "dev").catch(notFound)).toBe(referenceMiss);
    expect(await green("get", "configmaps", "-A", "-o", "name")).not.toContain("only-blue");
  });
});

describe("the admin kubeconfig sees the prefixed truth upstream", () => {
  const admin = () => kubectlOn(stack.kube.kubeconfig);
  const json = async <T>(...args: string[]) => JSON.parse(await admin()(...args, "-o", "json")) as T;

  for (const tenant of tenantNames) {
    it(`${tenant}: namespaces, CRDs, custom resources and RBAC carry the mapped names and the tenant label`, async () => {
      const label = `tenancy.wharf.dev/tenant=${tenant}`;
      const namespaces = (await admin()("get", "namespaces", "-l", label, "-o", "name")).trim().split("\n").sort();
      expect(namespaces).toEqual(["default", "dev", "kube-node-lease", "kube-public", "kube-system", "typed"].map((ns) => `namespace/wt-${tenant}-${ns}`));
      const crd = await json<{ spec: { group: string; names: { plural: string } }; metadata: { labels: Record<string, string> } }>("get", "crd", `widgets.wt-${tenant}-example.com`);
      expect(crd.spec.group).toBe(`wt-${tenant}-example.com`);
      expect(crd.metadata.labels["tenancy.wharf.dev/tenant"]).toBe(tenant);
      const widgets = await json<{ items: Array<{ apiVersion: string; metadata: { namespace: string; name: string } }> }>("get", `widgets.wt-${tenant}-example.com`, "-A");
      expect(widgets.items.map((item) => `${item.apiVersion} ${item.metadata.namespace}/${item.metadata.name}`).sort()).toEqual([
        `wt-${tenant}-example.com/v1 wt-${tenant}-default/w1`,
        `wt-${tenant}-example.com/v1 wt-${tenant}-dev/w2`,
        `wt-${tenant}-example.com/v1 wt-${tenant}-dev/w3`,
      ]);
      expect(await admin()("get", `gadgets.wt-${tenant}-example.com`, "-o", "name")).toBe(`gadget.wt-${tenant}-example.com/wt-${tenant}-g1\n`);
      const role = await json<{ rules: Array<{ apiGroups: string[] }>; metadata: { labels: Record<string, string> } }>("get", "clusterrole", `wt-${tenant}-widget-reader`);
      expect(role.rules[0]!.apiGroups).toEqual([`wt-${tenant}-example.com`]);
      expect(role.metadata.labels["tenancy.wharf.dev/tenant"]).toBe(tenant);
      const binding = await json<{ roleRef: { name: string }; subjects: Array<{ kind: string; name: string }> }>("get", "clusterrolebinding", `wt-${tenant}-widget-readers`);
      expect(binding.roleRef.name).toBe(`wt-${tenant}-widget-reader`);
      expect(binding.subjects).toEqual([{ apiGroup: "rbac.authorization.k8s.io", kind: "Group", name: `wharf:tenant:${tenant}:readers` }]);
      const roleBinding = await json<{ roleRef: { name: string }; subjects: Array<{ kind: string; name: string }> }>("get", "rolebinding", "alice-reads-widgets", "-n", `wt-${tenant}-dev`);
      expect(roleBinding.roleRef.name).toBe(`wt-${tenant}-widget-reader`);
      expect(roleBinding.subjects).toEqual([{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: `wharf:tenant:${tenant}:alice` }]);
      const deployment = await json<{ metadata: { labels: Record<string, string> }; spec: { template: { metadata: { labels: Record<string, string> } } } }>("get", "deployment", "api", "-n", `wt-${tenant}-dev`);
      expect(deployment.metadata.labels["tenancy.wharf.dev/tenant"]).toBe(tenant);
      expect(deployment.spec.template.metadata.labels["tenancy.wharf.dev/tenant"]).toBe(tenant);
      // What the workflow made as the admin in plain namespaces is untouched beside it.
      expect(await admin()("get", "configmaps", "-n", "dev", "-l", "workflow=e2e", "-o", "name")).toBe(["c0", "c1", "c2", "c3", "c4", "ssa"].map((name) => `configmap/${name}\n`).join(""));
    });
  }
});

describe("a client-go style program works unchanged against a tenant", () => {
  it("a @kubernetes/client-node informer lists, then sees adds, updates and deletes in the tenant's namespace, with unprefixed names and no tenant label", async () => {
    const config = new KubeConfig();
    config.loadFromFile(users.green.admin);
    const api = config.makeApiClient(CoreV1Api);
    const informer = makeInformer<V1ConfigMap>(config, "/api/v1/namespaces/dev/configmaps", () => api.listNamespacedConfigMap({ namespace: "dev" }));
    const seen: string[] = [];
    const record = (verb: string) => (object: V1ConfigMap) => seen.push(`${verb} ${object.metadata?.namespace}/${object.metadata?.name} ${JSON.stringify(object.metadata?.labels ?? {})}`);
    informer.on("add", record("add"));
    informer.on("update", record("update"));
    informer.on("delete", record("delete"));
    const errors: unknown[] = [];
    informer.on("error", (error) => errors.push(error));
    await informer.start();
    try {
      await waitFor(async () => seen.some((line) => line.startsWith("add dev/c4 ")), 20_000, () => `the informer's initial list; saw ${JSON.stringify(seen)}`);
      const initial = seen.filter((line) => line.startsWith("add ")).map((line) => line.split(" ")[1]).sort();
      expect(initial).toEqual(["dev/c0", "dev/c1", "dev/c2", "dev/c3", "dev/c4", "dev/ssa"]);
      await api.createNamespacedConfigMap({ namespace: "dev", body: { metadata: { name: "informed", labels: { via: "informer" } }, data: { a: "1" } } });
      await waitFor(async () => seen.includes('add dev/informed {"via":"informer"}'), 10_000, () => `the informer's add; saw ${JSON.stringify(seen)}`);
      const current = await api.readNamespacedConfigMap({ namespace: "dev", name: "informed" });
      await api.replaceNamespacedConfigMap({ namespace: "dev", name: "informed", body: { ...current, data: { a: "2" } } });
      await waitFor(async () => seen.includes('update dev/informed {"via":"informer"}'), 10_000, () => `the informer's update; saw ${JSON.stringify(seen)}`);
      await api.deleteNamespacedConfigMap({ namespace: "dev", name: "informed" });
      await waitFor(async () => seen.includes('delete dev/informed {"via":"informer"}'), 10_000, () => `the informer's delete; saw ${JSON.stringify(seen)}`);
      expect(informer.list("dev").map((object) => object.metadata?.name).sort()).toEqual(["c0", "c1", "c2", "c3", "c4", "ssa"]);
      expect(seen.every((line) => !line.includes("tenancy.wharf.dev"))).toBe(true);
      expect(errors).toEqual([]);
    } finally {
      await informer.stop();
    }
  });
});

describe("wharf tenant (the CLI on the admin API)", () => {
  it("lists both tenants, and a kubeconfig it issues works for the named user", async () => {
    const list = await stack.wharf("tenant", "list");
    for (const tenant of tenantNames) expect(list).toMatch(new RegExp(`^${tenant}\\b`, "m"));
    const file = join(dir, "carol.kubeconfig");
    await writeFile(file, await stack.wharf("tenant", "kubeconfig", "blue", "--user", "carol", "--group", "readers", "--ttl", "1h"), { mode: 0o600 });
    // JSON bodies: this test is about the CLI's kubeconfig, not kubectl's protobuf bodies.
    const carol = rawClient(await credentialsOf(file));
    const review = await carol("/apis/authentication.k8s.io/v1/selfsubjectreviews", { method: "POST", body: JSON.stringify({ apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" }) });
    expect(review.status, review.body).toBe(201);
    const whoami = review.json as { status: { userInfo: { username: string; groups: string[] } } };
    expect(whoami.status.userInfo.username).toBe("carol");
    expect(whoami.status.userInfo.groups).toContain("readers");
    const widgets = await carol("/apis/example.com/v1/widgets");
    expect(widgets.status, widgets.body).toBe(200);
    expect((widgets.json as { items: Array<{ metadata: { name: string } }> }).items.map((item) => item.metadata.name).sort()).toEqual(["w1", "w2", "w3"]);
    expect((await carol("/api/v1/namespaces/dev/configmaps")).status).toBe(403);
  });
});
