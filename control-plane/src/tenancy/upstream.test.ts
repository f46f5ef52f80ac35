// The control plane's upstream side against a real kube-apiserver: the
// admission policy compiles and holds tenant identities sent straight to the
// apiserver (as only the gateway can, with the front-proxy certificate) to
// their names, while letting their own writes through; tenant RBAC grants
// the tenant's world and none of the host's; deleting a tenant removes
// exactly its objects. The control plane acts with deploy/tenancy-rbac.yaml's
// identity, so that file is proved sufficient too.
//
// Its own apiserver on the shared etcd (own prefix) and shared PKI: the
// cluster-wide admission policy must not reach other test files.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { parseAllDocuments } from "yaml";
import {
  issueCertificate,
  kubectlOn,
  makeWorkDir,
  removeWorkDir,
  repoRoot,
  startKubeApiserver,
  waitFor,
  writeKubeconfig,
  type KubeApiserver,
} from "@wharf/testkit";
import { builtinGroups, tenantLabel } from "./naming.js";
import { kubeClient, type KubeClient, type KubeObject, type KubeResponse } from "./upstream-client.js";
import { servedResources, type ServedResource } from "./upstream-discovery.js";
import {
  controlPlaneIdentity,
  deleteTenant,
  ensureTenancyPolicy,
  policyName,
  prefixTaken,
  setUpTenant,
  syncTenantRules,
  systemLabel,
  tenancyPolicy,
  tenantRbacNames,
  tenantUpstream,
} from "./upstream.js";

let dir: string;
let kube: KubeApiserver;
let admin: KubeClient;
let controlPlane: KubeClient;
let controlPlaneKubeconfig: string;
let kubectl: (...args: string[]) => Promise<string>;

const denied = /ValidatingAdmissionPolicy 'wharf-tenancy' with binding 'wharf-tenancy' denied request: wharf tenancy: /;

/** A tenant identity straight to the apiserver, asserted with the front-proxy certificate as the gateway does. */
function asIdentity(user: string, groups: string[], extra: Record<string, string> = {}): KubeClient {
  const pki = inject("kube").pki;
  return kubeClient({
    server: kube.url,
    ca: readFileSyncCached(pki.ca.certFile),
    cert: readFileSyncCached(pki.frontProxyClient.certFile),
    key: readFileSyncCached(pki.frontProxyClient.keyFile),
    headers: { "X-Remote-User": user, "X-Remote-Group": groups, ...extra },
  });
}

const files = new Map<string, string>();
function readFileSyncCached(file: string): string {
  const text = files.get(file);
  if (text === undefined) throw new Error(`${file} not read in beforeAll`);
  return text;
}

const tenantAdmin = (tenant: string, user = "alice") => asIdentity(`wharf:tenant:${tenant}:${user}`, [`wharf:tenant:${tenant}`, `wharf:tenant:${tenant}:system:masters`]);

const labelled = (tenant: string) => ({ [tenantLabel]: tenant });
const configMap = (name: string, labels: Record<string, string> = {}) => ({ apiVersion: "v1", kind: "ConfigMap", metadata: { name, labels }, data: { a: "1" } });
const namespace = (name: string, labels: Record<string, string> = {}) => ({ apiVersion: "v1", kind: "Namespace", metadata: { name, labels } });
const clusterRole = (name: string, labels: Record<string, string>, rules: unknown[] = [{ apiGroups: [""], resources: ["configmaps"], verbs: ["get"] }]) => ({
  apiVersion: "rbac.authorization.k8s.io/v1",
  kind: "ClusterRole",
  metadata: { name, labels },
  rules,
});
const binding = (kind: "ClusterRoleBinding" | "RoleBinding", name: string, labels: Record<string, string>, roleRef: { kind: string; name: string }, subjects: unknown[]) => ({
  apiVersion: "rbac.authorization.k8s.io/v1",
  kind,
  metadata: { name, labels },
  roleRef: { apiGroup: "rbac.authorization.k8s.io", ...roleRef },
  subjects,
});
const crd = (group: string, labels: Record<string, string>, scope = "Namespaced") => ({
  apiVersion: "apiextensions.k8s.io/v1",
  kind: "CustomResourceDefinition",
  metadata: { name: `widgets.${group}`, labels },
  spec: {
    group,
    scope,
    names: { plural: "widgets", singular: "widget", kind: "Widget" },
    versions: [{ name: "v1", served: true, storage: true, schema: { openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true } } }],
  },
});
const group = (name: string) => ({ apiGroup: "rbac.authorization.k8s.io", kind: "Group", name });
const user = (name: string) => ({ apiGroup: "rbac.authorization.k8s.io", kind: "User", name });

const rbacPath = "/apis/rbac.authorization.k8s.io/v1";
const crdPath = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";

function describeResponse(response: KubeResponse): string {
  return `${response.status} ${response.body?.message ?? response.text.slice(0, 300)}`;
}

async function create(client: KubeClient, path: string, body: unknown): Promise<KubeResponse> {
  return client("POST", path, body);
}

async function expectCreated(client: KubeClient, path: string, body: unknown): Promise<KubeObject> {
  const response = await create(client, path, body);
  expect(response.status, describeResponse(response)).toBe(201);
  return response.body!;
}

/** The request is refused by the policy itself, with its own message. */
async function expectDenied(response: Promise<KubeResponse>, message: RegExp): Promise<void> {
  const result = await response;
  expect(result.status, describeResponse(result)).toBe(403);
  expect(result.body?.message, describeResponse(result)).toMatch(denied);
  expect(result.body?.message, describeResponse(result)).toMatch(message);
}

/** "resource.group ns/name" of every object the admin can list, over every listable resource discovery names. */
async function snapshot(served: readonly ServedResource[]): Promise<Set<string>> {
  const keys = new Set<string>();
  for (const resource of served) {
    if (resource.resource.includes("/") || !resource.verbs.includes("list")) continue;
    const base = resource.group === "" ? `/api/${resource.version}` : `/apis/${resource.group}/${resource.version}`;
    let response = await admin("GET", `${base}/${resource.resource}`);
    // A CRD made or removed a moment ago: its storage may still be starting (429), or gone (404).
    await waitFor(async () => (response = await admin("GET", `${base}/${resource.resource}`)).status !== 429, 10_000, `${resource.resource} storage`);
    if (response.status === 404) continue;
    expect(response.status, `list ${resource.resource}: ${describeResponse(response)}`).toBe(200);
    for (const item of (response.body!.items as KubeObject[]) ?? []) {
      const key = resource.group === "" ? resource.resource : `${resource.resource}.${resource.group}`;
      keys.add(`${key} ${item.metadata.namespace ?? ""}/${item.metadata.name}`);
    }
  }
  return keys;
}

/** Whether a snapshot key names an object of tenant T (its namespaces, cluster-scoped names or CRD groups). */
function ownedBy(tenant: string, key: string): boolean {
  const [resource, path] = key.split(" ") as [string, string];
  const [ns, name] = path.split("/") as [string, string];
  const prefix = `wt-${tenant}-`;
  // CRDs are "plural.wt-T-group"; the apiserver registers an APIService "version.wt-T-group" for each of their groups.
  const groupNamed = resource.startsWith("customresourcedefinitions.") || resource.startsWith("apiservices.");
  return ns.startsWith(prefix) || name.startsWith(prefix) || resource.includes(`.${prefix}`) || (groupNamed && name.includes(`.${prefix}`));
}

beforeAll(async () => {
  const shared = inject("kube");
  for (const file of [shared.pki.ca.certFile, shared.pki.frontProxyClient.certFile, shared.pki.frontProxyClient.keyFile]) files.set(file, await readFile(file, "utf8"));
  dir = await makeWorkDir("tenancy-upstream");
  kube = await startKubeApiserver({ etcdServers: [inject("referenceEtcd").endpoint], pki: shared.pki, extraArgs: [
      `--etcd-prefix=/tenancy-upstream-${process.pid}-${Date.now()}`,
      // As kubeadm runs it: privileged pods are the admission policy's to refuse in tenant namespaces, not refused everywhere.
      "--allow-privileged=true",
    ],
  });
  kubectl = kubectlOn(kube.kubeconfig);
  const ca = await readFile(shared.pki.ca.certFile, "utf8");
  admin = kubeClient({ server: kube.url, ca, cert: await readFile(shared.pki.admin.certFile, "utf8"), key: await readFile(shared.pki.admin.keyFile, "utf8") });
  // The control plane's identity: deploy/tenancy-rbac.yaml's user, with a client certificate from the cluster CA.
  await kubectl("apply", "--server-side", "-f", join(repoRoot, "deploy", "tenancy-rbac.yaml"));
  const pair = await issueCertificate(dir, shared.pki.ca, { name: "wharf-control-plane", commonName: "wharf:control-plane", usage: "client" });
  controlPlane = kubeClient({ server: kube.url, ca, cert: await readFile(pair.certFile, "utf8"), key: await readFile(pair.keyFile, "utf8") });
  controlPlaneKubeconfig = await writeKubeconfig(join(dir, "control-plane.kubeconfig"), kube.url, shared.pki.ca.certFile, pair);
}, 120_000);

afterAll(async () => {
  await kube?.stop();
  if (dir) await removeWorkDir(dir);
});

describe("what the apiserver serves", () => {
  it("builtinGroups are exactly the groups kube-apiserver serves itself", async () => {
    const served = await servedResources(admin);
    const crdGroups = new Set(((await admin("GET", crdPath)).body!.items as KubeObject[]).map((item) => item.spec.group as string));
    const groups = [...new Set(served.map((resource) => resource.group))].filter((g) => !crdGroups.has(g)).sort();
    expect(groups).toEqual([...builtinGroups].sort());
  });

  it("deploy/tenancy-rbac.yaml lets the control plane empty every namespaced resource the apiserver serves", async () => {
    const served = await servedResources(admin);
    const wanted = served
      .filter((r) => builtinGroups.includes(r.group) && r.namespaced && !r.resource.includes("/") && r.verbs.includes("deletecollection"))
      .map((r) => `${r.group}/${r.resource}`)
      .sort();
    const documents = parseAllDocuments(await readFile(join(repoRoot, "deploy", "tenancy-rbac.yaml"), "utf8")).map((d) => d.toJS() as KubeObject);
    const role = documents.find((d) => d.kind === "ClusterRole")!;
    const granted = (role.rules as Array<{ apiGroups: string[]; resources: string[]; verbs: string[] }>)
      .filter((rule) => rule.verbs.includes("deletecollection"))
      .flatMap((rule) => rule.apiGroups.flatMap((g) => rule.resources.map((r) => `${g}/${r}`)))
      .sort();
    expect(granted).toEqual(wanted);
  });
});

describe("the admission policy", () => {
  beforeAll(async () => {
    await ensureTenancyPolicy(controlPlane);
    for (const [tenant, views] of [["acme", ["nodes"]], ["acme2", []], ["kube", []]] as const) {
      expect(await prefixTaken(controlPlane, tenant)).toBeUndefined();
      await setUpTenant(controlPlane, tenant, views);
    }
    // The apiserver's policy informer picks the policy up shortly after it is written.
    await waitFor(
      async () => (await create(tenantAdmin("acme"), "/api/v1/namespaces/kube-system/configmaps?dryRun=All", configMap("probe", labelled("acme")))).status === 403,
      15_000,
      "the policy to be enforced",
    );
  });

  it("exempts the identity the control plane has upstream (asked of the apiserver), and refuses to run as admin", async () => {
    expect(await controlPlaneIdentity(controlPlane)).toBe("wharf:control-plane");
    await expect(ensureTenancyPolicy(admin)).rejects.toThrow(/authenticates as wharf-admin in system:masters/);
    await expect(controlPlaneIdentity(tenantAdmin("acme"))).rejects.toThrow(/wharf:tenant:acme:alice, a tenant identity/);
  });

  it("is written as tenancyPolicy() says, compiles without warnings, and a second ensure changes nothing", async () => {
    const before = (await admin("GET", `/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies/${policyName}`)).body!;
    await ensureTenancyPolicy(controlPlane);
    const after = (await admin("GET", `/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies/${policyName}`)).body!;
    expect(after.metadata.resourceVersion).toBe(before.metadata.resourceVersion);
    expect(after.spec.validations).toEqual(tenancyPolicy()[0].spec.validations);
    expect(after.spec.variables).toEqual(tenancyPolicy()[0].spec.variables);
    const boundTo = (await admin("GET", `/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings/${policyName}`)).body!;
    expect(boundTo.spec).toMatchObject({ policyName, validationActions: ["Deny"] });
  });

  it("setUpTenant made the tenant's namespaces and RBAC, labelled, and the prefix is now taken (but not a prefix of it)", async () => {
    for (const ns of ["default", "kube-system", "kube-public", "kube-node-lease"]) {
      const got = await admin("GET", `/api/v1/namespaces/wt-acme-${ns}`);
      expect(got.status).toBe(200);
      expect(got.body!.metadata.labels).toMatchObject({ [tenantLabel]: "acme", [systemLabel]: "true" });
    }
    const names = tenantRbacNames("acme");
    const adminBinding = (await admin("GET", `${rbacPath}/clusterrolebindings/${names.admin}`)).body!;
    expect(adminBinding.subjects).toEqual([group("wharf:tenant:acme:system:masters")]);
    expect((await admin("GET", `${rbacPath}/clusterrolebindings/${names.views}`)).body!.subjects).toEqual([group("wharf:tenant:acme")]);
    expect((await admin("GET", `${rbacPath}/clusterroles/${tenantRbacNames("acme2").views}`)).status).toBe(404);
    expect(await prefixTaken(controlPlane, "acme")).toBe("namespace wt-acme-default exists");
    expect(await prefixTaken(controlPlane, "acm")).toBeUndefined();
    // Rerunning is harmless; it is also how shared views change.
    await setUpTenant(controlPlane, "acme", ["nodes"]);
    const kubeViews = `${rbacPath}/clusterroles/${tenantRbacNames("kube").views}`;
    await setUpTenant(controlPlane, "kube", ["priorityclasses.scheduling.k8s.io"]);
    expect((await admin("GET", kubeViews)).body!.rules).toEqual([{ apiGroups: ["scheduling.k8s.io"], resources: ["priorityclasses"], verbs: ["get", "list", "watch"] }]);
    await setUpTenant(controlPlane, "kube", []);
    expect((await admin("GET", kubeViews)).status).toBe(404);
    await expect(setUpTenant(controlPlane, "kube", ["secrets"])).rejects.toThrow(/shared view "secrets" is not one of nodes, storageclasses.storage.k8s.io/);
    await expect(setUpTenant(controlPlane, "kube-system", [])).rejects.toThrow(/may not contain '-'/);
  });

  it("lets a tenant write its own world: namespaces, objects, ClusterRoles, bindings, CRDs, and ask what it may do", async () => {
    const acme = tenantAdmin("acme");
    await expectCreated(acme, "/api/v1/namespaces", namespace("wt-acme-dev", labelled("acme")));
    await expectCreated(acme, "/api/v1/namespaces/wt-acme-dev/configmaps", configMap("settings", labelled("acme")));
    await expectCreated(acme, `${rbacPath}/clusterroles`, clusterRole("wt-acme-reader", labelled("acme")));
    await expectCreated(
      acme,
      `${rbacPath}/clusterrolebindings`,
      binding("ClusterRoleBinding", "wt-acme-reader", labelled("acme"), { kind: "ClusterRole", name: "wt-acme-reader" }, [
        group("wharf:tenant:acme:dev"),
        user("wharf:tenant:acme:bob"),
      ]),
    );
    await expectCreated(
      acme,
      `${rbacPath}/namespaces/wt-acme-dev/rolebindings`,
      binding("RoleBinding", "robots", labelled("acme"), { kind: "ClusterRole", name: "wt-acme-reader" }, [
        user("system:serviceaccount:wt-acme-dev:ci"),
        group("system:serviceaccounts:wt-acme-dev"),
        { kind: "ServiceAccount", name: "ci", namespace: "wt-acme-dev" },
      ]),
    );
    await expectCreated(
      acme,
      `${rbacPath}/namespaces/wt-acme-dev/rolebindings`,
      binding("RoleBinding", "readers", labelled("acme"), { kind: "ClusterRole", name: "wt-acme-reader" }, [user("wharf:tenant:acme:carol")]),
    );
    await expectCreated(acme, crdPath, crd("wt-acme-example.com", labelled("acme")));
    const review = await create(acme, "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {
      apiVersion: "authorization.k8s.io/v1",
      kind: "SelfSubjectAccessReview",
      spec: { resourceAttributes: { namespace: "wt-acme-dev", verb: "create", resource: "configmaps" } },
    });
    expect(review.status, describeResponse(review)).toBe(201);
    expect(review.body!.status.allowed).toBe(true);
    const update = await acme("PUT", "/api/v1/namespaces/wt-acme-dev/configmaps/settings", { ...configMap("settings", labelled("acme")), data: { a: "2" } });
    expect(update.status, describeResponse(update)).toBe(200);
    // Its system namespaces may be relabelled (not unmarked), as a cluster's own may be.
    const ns = (await acme("GET", "/api/v1/namespaces/wt-acme-default")).body!;
    ns.metadata.labels.team = "platform";
    expect((await acme("PUT", "/api/v1/namespaces/wt-acme-default", ns)).status).toBe(200);
    // A tenant's service account acts within the tenant too.
    const robot = asIdentity("system:serviceaccount:wt-acme-dev:ci", ["system:serviceaccounts", "system:serviceaccounts:wt-acme-dev", "wharf:tenant:acme:system:masters"]);
    await expectCreated(robot, "/api/v1/namespaces/wt-acme-dev/configmaps", configMap("from-ci", labelled("acme")));
    const gone = await acme("DELETE", "/api/v1/namespaces/wt-acme-dev/configmaps/from-ci");
    expect(gone.status, describeResponse(gone)).toBe(200);
  });

  it("refuses a tenant identity's writes outside its names, with the policy's own message", async () => {
    const acme = tenantAdmin("acme");
    const kubeTenant = tenantAdmin("kube");
    // Another tenant's namespace (acme is a prefix of acme2), the host's system namespaces.
    await expectDenied(create(acme, "/api/v1/namespaces/wt-acme2-default/configmaps", configMap("x", labelled("acme"))), /tenant acme may only write in its own namespaces \(wt-acme-\*\), not in namespace wt-acme2-default/);
    await expectDenied(create(tenantAdmin("acme2"), "/api/v1/namespaces/wt-acme-default/configmaps", configMap("x", labelled("acme2"))), /not in namespace wt-acme-default/);
    await expectDenied(create(acme, "/api/v1/namespaces/kube-system/configmaps", configMap("x", labelled("acme"))), /not in namespace kube-system/);
    await expectDenied(create(acme, "/api/v1/namespaces/default/configmaps", configMap("x", labelled("acme"))), /not in namespace default/);
    // Tenant "kube" is a prefix of kube-system: still not its namespace.
    await expectDenied(create(kubeTenant, "/api/v1/namespaces/kube-system/configmaps", configMap("x", labelled("kube"))), /tenant kube may only write in its own namespaces \(wt-kube-\*\), not in namespace kube-system/);
    await expectDenied(create(kubeTenant, "/api/v1/namespaces", namespace("kube-evil", labelled("kube"))), /tenant kube may only write cluster-scoped objects named wt-kube-\*/);
    // A token for a host service account.
    await kubectl("-n", "kube-system", "create", "serviceaccount", "upstream-test-robot");
    await expectDenied(
      create(acme, "/api/v1/namespaces/kube-system/serviceaccounts/upstream-test-robot/token", { apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest", spec: {} }),
      /not in namespace kube-system/,
    );
    // Deleting and updating host objects: RBAC lets namespaced kinds be written everywhere, the policy does not.
    await kubectl("-n", "default", "create", "configmap", "upstream-test-host");
    await expectDenied(acme("DELETE", "/api/v1/namespaces/default/configmaps/upstream-test-host"), /not in namespace default/);
    await expectDenied(acme("DELETE", "/api/v1/namespaces/default/configmaps?labelSelector="), /not in namespace default/);
    // A cluster-wide deletecollection is judged object by object: nothing of the host or of another tenant goes.
    const roleNames = async () => ((await admin("GET", `${rbacPath}/clusterroles`)).body!.items as KubeObject[]).map((role) => role.metadata.name as string).sort();
    const rolesBefore = await roleNames();
    await expectDenied(kubeTenant("DELETE", `${rbacPath}/clusterroles`), /tenant kube (may only write cluster-scoped objects named wt-kube-\*|cannot delete or change clusterroles wt-kube-)/);
    expect(await roleNames()).toEqual(rolesBefore);
    // Cluster-scoped objects outside its prefix.
    await expectDenied(create(acme, "/api/v1/namespaces", namespace("wt-acme2-stolen", labelled("acme"))), /may only write cluster-scoped objects named wt-acme-\* .*not namespaces wt-acme2-stolen/);
    await expectDenied(create(acme, "/api/v1/namespaces", namespace("acme-dev", labelled("acme"))), /not namespaces acme-dev/);
    await expectDenied(create(acme, `${rbacPath}/clusterroles`, clusterRole("reader", labelled("acme"))), /not clusterroles reader/);
    await expectDenied(create(acme, `${rbacPath}/clusterroles`, clusterRole("wt-acme2-reader", labelled("acme"))), /not clusterroles wt-acme2-reader/);
    await expectDenied(acme("DELETE", `${rbacPath}/clusterroles/admin`), /not clusterroles admin/);
    // A CRD of another group.
    await expectDenied(create(acme, crdPath, crd("wt-acme2-example.com", labelled("acme"))), /CRDs: of groups wt-acme-\*\), not customresourcedefinitions wt-acme2-example.com/);
    await expectDenied(create(acme, crdPath, crd("example.com", labelled("acme"))), /not customresourcedefinitions example.com/);
    // Without the tenant label, or with another tenant's.
    await expectDenied(create(acme, "/api/v1/namespaces/wt-acme-dev/configmaps", configMap("unlabelled")), /may only write objects labelled tenancy.wharf.dev\/tenant=acme, not unlabelled ones/);
    await expectDenied(create(acme, "/api/v1/namespaces/wt-acme-dev/configmaps", configMap("mislabelled", labelled("acme2"))), /labelled tenancy.wharf.dev\/tenant=acme, not acme2/);
    await expectDenied(create(acme, "/api/v1/namespaces", namespace("wt-acme-unlabelled")), /not unlabelled ones/);
    // Bindings to host ClusterRoles or another tenant's.
    const ref = (name: string) => ({ kind: "ClusterRole", name });
    // cluster-admin: RBAC's own escalation check refuses first (the tenant holds none of it outside its kinds)...
    const root = await create(acme, `${rbacPath}/clusterrolebindings`, binding("ClusterRoleBinding", "wt-acme-root", labelled("acme"), ref("cluster-admin"), [group("wharf:tenant:acme:dev")]));
    expect(root.status, describeResponse(root)).toBe(403);
    expect(root.body?.message).toMatch(/attempting to grant RBAC permissions not currently held/);
    // ...and a host ClusterRole whose rules the tenant does hold is the policy's to refuse.
    await kubectl("create", "clusterrole", "upstream-test-host-reader", "--verb=get", "--resource=configmaps");
    await expectDenied(create(acme, `${rbacPath}/clusterrolebindings`, binding("ClusterRoleBinding", "wt-acme-root", labelled("acme"), ref("upstream-test-host-reader"), [group("wharf:tenant:acme:dev")])), /may only bind its own ClusterRoles \(wt-acme-\*\), not upstream-test-host-reader/);
    await expectDenied(create(acme, `${rbacPath}/namespaces/wt-acme-dev/rolebindings`, binding("RoleBinding", "admins", labelled("acme"), ref("upstream-test-host-reader"), [group("wharf:tenant:acme:dev")])), /not upstream-test-host-reader/);
    await expectDenied(
      create(acme, `${rbacPath}/clusterrolebindings`, binding("ClusterRoleBinding", "wt-acme-theirs", labelled("acme"), ref(tenantRbacNames("acme2").admin), [group("wharf:tenant:acme:dev")])),
      /not wt-acme2-wharf-tenant-admin/,
    );
    // Subjects of another tenant or the host.
    for (const subject of [
      user("wharf:tenant:acme2:bob"),
      group("wharf:tenant:acme2:system:masters"),
      group("system:masters"),
      user("admin"),
      group("wharf:tenant:acme"),
      { kind: "ServiceAccount", name: "default", namespace: "kube-system" },
      { kind: "ServiceAccount", name: "ci", namespace: "wt-acme2-default" },
      user("system:serviceaccount:wt-acme2-default:ci"),
      group("system:serviceaccounts"),
    ]) {
      await expectDenied(
        create(acme, `${rbacPath}/clusterrolebindings`, binding("ClusterRoleBinding", "wt-acme-grant", labelled("acme"), ref("wt-acme-reader"), [group("wharf:tenant:acme:dev"), subject])),
        /tenant acme may only bind its own users, groups and service accounts/,
      );
    }
    // Its own service accounts, but cluster-wide: their tokens would reach the apiserver without the gateway.
    for (const subject of [{ kind: "ServiceAccount", name: "ci", namespace: "wt-acme-dev" }, user("system:serviceaccount:wt-acme-dev:ci"), group("system:serviceaccounts:wt-acme-dev")]) {
      await expectDenied(
        create(acme, `${rbacPath}/clusterrolebindings`, binding("ClusterRoleBinding", "wt-acme-robots", labelled("acme"), ref("wt-acme-reader"), [subject])),
        /tenant acme may bind service accounts only in its namespaces \(RoleBindings\), not cluster-wide in ClusterRoleBinding wt-acme-robots/,
      );
    }
    // What the control plane made for it: not to be deleted or changed, nor the mark set by the tenant.
    await expectDenied(acme("DELETE", "/api/v1/namespaces/wt-acme-default"), /cannot delete or change namespaces wt-acme-default \(made by the control plane\)/);
    await expectDenied(acme("DELETE", `${rbacPath}/clusterrolebindings/${tenantRbacNames("acme").admin}`), /cannot delete or change clusterrolebindings wt-acme-wharf-tenant-admin/);
    await expectDenied(create(acme, "/api/v1/namespaces/wt-acme-dev/configmaps", configMap("marked", { ...labelled("acme"), [systemLabel]: "true" })), /nor set the label tenancy.wharf.dev\/system/);
    const ns = (await acme("GET", "/api/v1/namespaces/wt-acme-default")).body!;
    delete ns.metadata.labels[systemLabel];
    await expectDenied(acme("PUT", "/api/v1/namespaces/wt-acme-default", ns), /cannot delete or change namespaces wt-acme-default/);
  });

  it("refuses CRD conversion webhooks and node-escaping pods in tenant namespaces, whoever writes them", async () => {
    const acme = tenantAdmin("acme");
    const hooked = crd("wt-acme-hooked.example.com", labelled("acme"));
    const withWebhook = {
      ...hooked,
      spec: {
        ...hooked.spec,
        versions: [{ ...hooked.spec.versions[0], name: "v1" }, { ...hooked.spec.versions[0], name: "v2", storage: false }],
        conversion: { strategy: "Webhook", webhook: { conversionReviewVersions: ["v1"], clientConfig: { url: "https://169.254.169.254/latest" } } },
      },
    };
    await expectDenied(create(acme, crdPath, withWebhook), /tenant acme may not give CRD widgets.wt-acme-hooked.example.com a conversion webhook/);
    const pod = (name: string, spec: Record<string, unknown>, container: Record<string, unknown> = {}) => ({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name, labels: labelled("acme") },
      spec: { automountServiceAccountToken: false, containers: [{ name: "c", image: "registry.example/c:1", ...container }], ...spec },
    });
    await expectCreated(acme, "/api/v1/namespaces/wt-acme-default/serviceaccounts", { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "default", labels: labelled("acme") } });
    const escapes: Array<[string, ReturnType<typeof pod>]> = [
      ["privileged", pod("privileged", {}, { securityContext: { privileged: true } })],
      ["sysadmin", pod("sysadmin", {}, { securityContext: { capabilities: { add: ["SYS_ADMIN"] } } })],
      ["hostnet", pod("hostnet", { hostNetwork: true })],
      ["hostpid", pod("hostpid", { hostPID: true })],
      ["hostpath", pod("hostpath", { volumes: [{ name: "root", hostPath: { path: "/" } }] })],
      ["init", pod("init", { initContainers: [{ name: "i", image: "registry.example/i:1", securityContext: { privileged: true } }] })],
    ];
    for (const [name, body] of escapes) {
      await expectDenied(create(acme, "/api/v1/namespaces/wt-acme-default/pods?dryRun=All", body), new RegExp(`pod ${name} in wt-acme-default may not be privileged`));
      // The host admin (as a ReplicaSet controller would be) is held to it in a tenant namespace too.
      await expectDenied(create(admin, "/api/v1/namespaces/wt-acme-default/pods?dryRun=All", body), new RegExp(`pod ${name} in wt-acme-default`));
    }
    // An ordinary pod is admitted; the host's own namespaces are not the policy's business.
    await expectCreated(acme, "/api/v1/namespaces/wt-acme-default/pods?dryRun=All", pod("plain", {}, { securityContext: { capabilities: { add: ["NET_BIND_SERVICE"] } } }));
    await kubectl("-n", "default", "create", "serviceaccount", "default").catch((error: Error) => expect(error.message).toMatch(/AlreadyExists/));
    await expectCreated(admin, "/api/v1/namespaces/default/pods?dryRun=All", escapes[0]![1]);
  });

  it("refuses identities that name no single tenant, including a tenant's service account with another tenant's group", async () => {
    const mixed = asIdentity("wharf:tenant:acme:alice", ["wharf:tenant:acme", "wharf:tenant:acme2:system:masters"]);
    await expectDenied(create(mixed, "/api/v1/namespaces/wt-acme2-default/configmaps", configMap("x", labelled("acme2"))), /does not name exactly one valid tenant/);
    const robot = asIdentity("system:serviceaccount:wt-acme-dev:ci", ["system:serviceaccounts", "wharf:tenant:acme2:system:masters"]);
    await expectDenied(create(robot, "/api/v1/namespaces/wt-acme2-default/configmaps", configMap("x", labelled("acme2"))), /does not name exactly one valid tenant/);
    const malformed = asIdentity("wharf:tenant:Acme:alice", ["wharf:tenant:acme:system:masters"]);
    await expectDenied(create(malformed, "/api/v1/namespaces/wt-acme-dev/configmaps", configMap("x", labelled("acme"))), /does not name exactly one valid tenant/);
  });

  it("refuses wt- names to anyone but the control plane outside a tenant, and keeps the control plane's RBAC writes to tenants", async () => {
    // The host admin (system:masters) too: "wt-" belongs to tenancy.
    await expectDenied(create(admin, "/api/v1/namespaces", namespace("wt-acme-planted", labelled("acme"))), /names and CRD groups starting wt- are reserved for tenants; only wharf:control-plane creates them/);
    await expectDenied(create(admin, `${rbacPath}/clusterroles`, clusterRole("wt-acme-planted", labelled("acme"))), /reserved for tenants/);
    await expectDenied(create(admin, crdPath, crd("wt-acme-planted.example.com", {})), /reserved for tenants/);
    await expectDenied(create(asIdentity("someone", ["system:masters"]), "/api/v1/namespaces", namespace("wt-x-y")), /reserved for tenants/);
    // The host admin keeps its other powers: the policy is selective.
    await expectCreated(admin, "/api/v1/namespaces", namespace("upstream-test-host-ns"));
    await expectCreated(admin, "/api/v1/namespaces/wt-acme-dev/configmaps", configMap("put-by-admin"));
    // The control plane's escalate/bind only reach tenant RBAC objects bound to that tenant's groups.
    await expectDenied(create(controlPlane, `${rbacPath}/clusterroles`, clusterRole("anything", {}, [{ apiGroups: ["*"], resources: ["*"], verbs: ["*"] }])), /wharf:control-plane may only write a tenant's ClusterRoles and bindings/);
    await expectDenied(
      create(controlPlane, `${rbacPath}/clusterrolebindings`, binding("ClusterRoleBinding", "wt-acme-x", labelled("acme"), { kind: "ClusterRole", name: "wt-acme-reader" }, [group("wharf:tenant:acme2:system:masters")])),
      /wharf:control-plane may only write a tenant's ClusterRoles and bindings/,
    );
    await expectDenied(
      create(controlPlane, `${rbacPath}/clusterrolebindings`, binding("ClusterRoleBinding", "wt-acme-x", labelled("acme"), { kind: "ClusterRole", name: "cluster-admin" }, [group("wharf:tenant:acme:system:masters")])),
      /wharf:control-plane may only write/,
    );
  });
});

describe("tenant RBAC", () => {
  it("grants no host resource: nodes, PVs, webhooks, admission policies, CSRs, APIServices, flowcontrol (403 from RBAC)", async () => {
    const acme2 = tenantAdmin("acme2");
    for (const path of [
      "/api/v1/nodes",
      "/api/v1/persistentvolumes",
      "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
      "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
      "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies",
      "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings",
      "/apis/certificates.k8s.io/v1/certificatesigningrequests",
      "/apis/apiregistration.k8s.io/v1/apiservices",
      "/apis/flowcontrol.apiserver.k8s.io/v1/flowschemas",
      "/apis/storage.k8s.io/v1/storageclasses",
    ]) {
      const response = await acme2("GET", path);
      expect(response.status, `${path}: ${describeResponse(response)}`).toBe(403);
      expect(response.body?.message, path).toMatch(/User "wharf:tenant:acme2:alice" cannot list resource/);
    }
    const webhook = await create(acme2, "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations", {
      apiVersion: "admissionregistration.k8s.io/v1",
      kind: "ValidatingWebhookConfiguration",
      metadata: { name: "wt-acme2-hook", labels: labelled("acme2") },
      webhooks: [],
    });
    expect(webhook.status, describeResponse(webhook)).toBe(403);
    expect(webhook.body?.message).toMatch(/cannot create resource "validatingwebhookconfigurations"/);
    // Nor the apiserver's proxy to a tenant's pods and services (it would connect wherever their addresses say).
    for (const path of ["/api/v1/namespaces/wt-acme2-default/services/web:80/proxy/", "/api/v1/namespaces/wt-acme2-default/pods/web/proxy/"]) {
      const response = await acme2("GET", path);
      expect(response.status, `${path}: ${describeResponse(response)}`).toBe(403);
      expect(response.body?.message).toMatch(/cannot get resource "(services|pods)\/proxy"/);
    }
    // Nor impersonation.
    const impersonating = asIdentity("wharf:tenant:acme2:alice", ["wharf:tenant:acme2", "wharf:tenant:acme2:system:masters"], { "Impersonate-User": "wharf-admin" });
    expect((await impersonating("GET", "/api/v1/namespaces/wt-acme2-default/configmaps")).status).toBe(403);
    // Nor a role with host rules: RBAC's own escalation check.
    const escalate = await create(acme2, `${rbacPath}/clusterroles`, clusterRole("wt-acme2-nodes", labelled("acme2"), [{ apiGroups: [""], resources: ["nodes"], verbs: ["get"] }]));
    expect(escalate.status, describeResponse(escalate)).toBe(403);
    expect(escalate.body?.message).toMatch(/attempting to grant RBAC permissions not currently held/);
  });

  it("grants its namespaces, its cluster-scoped kinds, its shared views, and its CRDs' groups once they exist", async () => {
    const acme = tenantAdmin("acme");
    for (const path of ["/api/v1/namespaces/wt-acme-default/configmaps", "/api/v1/namespaces", `${rbacPath}/clusterroles`, crdPath, "/apis/apps/v1/namespaces/wt-acme-default/deployments"]) {
      const response = await acme("GET", path);
      expect(response.status, `${path}: ${describeResponse(response)}`).toBe(200);
    }
    // acme shares the host's nodes, acme2 does not (above).
    expect((await acme("GET", "/api/v1/nodes")).status).toBe(200);
    expect((await acme("DELETE", "/api/v1/nodes/anything")).status).toBe(403);
    // A user without the tenant's system:masters group has only what the tenant grants it.
    const bob = asIdentity("wharf:tenant:acme:bob", ["wharf:tenant:acme"]);
    const readBySomeone = await bob("GET", "/api/v1/namespaces/wt-acme-dev/configmaps/settings");
    expect(readBySomeone.status, describeResponse(readBySomeone)).toBe(200);
    expect((await bob("GET", "/api/v1/namespaces/wt-acme-dev/secrets")).status).toBe(403);
    // Custom resources of its CRD: RBAC names groups exactly, so the admin role learns the group once the CRD exists.
    await waitFor(async () => (await admin("GET", `${crdPath}/widgets.wt-acme-example.com`)).body?.status?.conditions?.some((c: KubeObject) => c.type === "Established" && c.status === "True") === true, 15_000, "the CRD to be established");
    const widget = { apiVersion: "wt-acme-example.com/v1", kind: "Widget", metadata: { name: "w1", labels: labelled("acme") } };
    const before = await create(acme, "/apis/wt-acme-example.com/v1/namespaces/wt-acme-dev/widgets", widget);
    expect(before.status, describeResponse(before)).toBe(403);
    await syncTenantRules(controlPlane, "acme");
    await waitFor(async () => (await create(acme, "/apis/wt-acme-example.com/v1/namespaces/wt-acme-dev/widgets", widget)).status === 201, 10_000, "the widget to be created after the rules sync");
    // The policy still holds custom resources to the tenant's namespaces and label.
    await expectDenied(create(acme, "/apis/wt-acme-example.com/v1/namespaces/wt-acme-dev/widgets", { ...widget, metadata: { name: "w2" } }), /not unlabelled ones/);
    // acme2 has no right on acme's group.
    expect((await tenantAdmin("acme2")("GET", "/apis/wt-acme-example.com/v1/widgets")).status).toBe(403);
  });
});

describe("tenant CRDs", () => {
  it("the control plane's CRD watch grants a tenant its new CRD's group, and a late sync recreates no deleted tenant's role", async () => {
    const upstream = tenantUpstream(controlPlaneKubeconfig);
    const logged: string[] = [];
    const stop = new AbortController();
    const watching = upstream.watchCrds((level, message, fields) => logged.push(`${level} ${message} ${JSON.stringify(fields)}`), stop.signal);
    try {
      const kubeTenant = tenantAdmin("kube");
      await expectCreated(kubeTenant, crdPath, crd("wt-kube-watched.example.com", labelled("kube")));
      const widget = { apiVersion: "wt-kube-watched.example.com/v1", kind: "Widget", metadata: { name: "w1", labels: labelled("kube") } };
      await waitFor(
        async () => (await create(kubeTenant, "/apis/wt-kube-watched.example.com/v1/namespaces/wt-kube-default/widgets", widget)).status === 201,
        15_000,
        () => `tenant kube's widget to be allowed (control plane log: ${logged.join("; ")})`,
      );
      const rules = (await admin("GET", `${rbacPath}/clusterroles/${tenantRbacNames("kube").admin}`)).body!.rules as Array<{ apiGroups: string[] }>;
      expect(rules.filter((rule) => rule.apiGroups.some((g) => g.startsWith("wt-")))).toEqual([expect.objectContaining({ apiGroups: ["wt-kube-watched.example.com"], resources: ["*"] })]);
    } finally {
      stop.abort();
      await watching;
    }
    expect(logged.filter((line) => line.startsWith("error"))).toEqual([]);
    // A tenant that is not (or no longer) set up gets no role from a sync.
    await upstream.syncRules("ghost");
    expect((await admin("GET", `${rbacPath}/clusterroles/${tenantRbacNames("ghost").admin}`)).status).toBe(404);
  });
});

describe("deleteTenant", () => {
  it("removes exactly acme's objects, none of acme2, kube or the host, and is safe to rerun after a crash half-way", async () => {
    const acme = tenantAdmin("acme");
    // Objects of every sort in acme's world, some holding finalizers no controller serves here.
    await expectCreated(acme, "/api/v1/namespaces/wt-acme-default/configmaps", { ...configMap("held", labelled("acme")), metadata: { name: "held", labels: labelled("acme"), finalizers: ["example.com/hold"] } });
    await expectCreated(acme, "/api/v1/namespaces/wt-acme-dev/serviceaccounts", { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "ci", labels: labelled("acme") } });
    await expectCreated(acme, "/api/v1/namespaces/wt-acme-dev/secrets", { apiVersion: "v1", kind: "Secret", metadata: { name: "token", labels: labelled("acme") }, stringData: { k: "v" } });
    await expectCreated(acme, "/api/v1/namespaces/wt-acme-dev/pods", {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "app", labels: labelled("acme") },
      spec: { serviceAccountName: "ci", automountServiceAccountToken: false, nodeName: "node-that-never-answers", containers: [{ name: "app", image: "registry.example/app:1" }] },
    });
    await expectCreated(acme, "/api/v1/namespaces/wt-acme-dev/persistentvolumeclaims", {
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      metadata: { name: "data", labels: labelled("acme") },
      spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
    });
    await expectCreated(acme, "/apis/apps/v1/namespaces/wt-acme-dev/deployments", {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "web", labels: labelled("acme") },
      spec: { selector: { matchLabels: { app: "web" } }, template: { metadata: { labels: { app: "web", ...labelled("acme") } }, spec: { containers: [{ name: "web", image: "registry.example/web:1" }] } } },
    });
    await expectCreated(acme, crdPath, crd("wt-acme-cluster.example.com", labelled("acme"), "Cluster"));
    // Neighbours: acme2 (acme is a prefix of it) and kube (a prefix of kube-system), each with objects alike.
    for (const tenant of ["acme2", "kube"]) {
      const client = tenantAdmin(tenant);
      await expectCreated(client, "/api/v1/namespaces", namespace(`wt-${tenant}-dev`, labelled(tenant)));
      await expectCreated(client, `/api/v1/namespaces/wt-${tenant}-dev/configmaps`, configMap("settings", labelled(tenant)));
      await expectCreated(client, `${rbacPath}/clusterroles`, clusterRole(`wt-${tenant}-reader`, labelled(tenant)));
      await expectCreated(client, crdPath, crd(`wt-${tenant}-example.com`, labelled(tenant)));
    }
    // A host namespace whose name starts like acme's but without the separator.
    await kubectl("create", "namespace", "wt-acmehost").catch((error: Error) => expect(error.message).toMatch(/reserved for tenants/));
    await kubectl("create", "namespace", "acme-dev");

    const served = await servedResources(admin);
    const before = await snapshot(served);
    const acmeBefore = [...before].filter((key) => ownedBy("acme", key));
    const othersBefore = [...before].filter((key) => !ownedBy("acme", key));
    expect(acmeBefore.length).toBeGreaterThan(20);
    expect(othersBefore.some((key) => key.startsWith("configmaps wt-acme2-dev/"))).toBe(true);
    expect(othersBefore.some((key) => key.startsWith("namespaces /acme-dev"))).toBe(true);

    // A crash half-way: the control plane dies while emptying wt-acme-dev, after its bindings and CRDs went.
    let emptied = 0;
    const dying: KubeClient = async (method, path, ...rest) => {
      if (method === "DELETE" && path.includes("/namespaces/wt-acme-dev/") && ++emptied > 5) throw new Error("control plane killed");
      return controlPlane(method, path, ...rest);
    };
    await expect(deleteTenant(dying, "acme")).rejects.toThrow(/control plane killed/);
    const counts = await deleteTenant(controlPlane, "acme");

    const after = await snapshot(await servedResources(admin));
    expect([...after].filter((key) => ownedBy("acme", key))).toEqual([]);
    const lost = othersBefore.filter((key) => !after.has(key));
    expect(lost, "objects of others removed").toEqual([]);
    // What the second run reports is what the first left: every kind it counts was acme's.
    for (const [resource, n] of Object.entries(counts)) {
      expect(n, resource).toBeGreaterThan(0);
      expect(acmeBefore.some((key) => key.startsWith(`${resource} `)), resource).toBe(true);
    }
    expect(Object.keys(counts).length).toBeGreaterThan(0);
    // Rerunning finds nothing more to do.
    expect(await deleteTenant(controlPlane, "acme")).toEqual({});
    expect(await prefixTaken(controlPlane, "acme")).toBeUndefined();
  });

  it("counts exactly what it removes", async () => {
    const acme2 = tenantAdmin("acme2");
    await expectCreated(acme2, "/api/v1/namespaces/wt-acme2-dev/configmaps", configMap("second", labelled("acme2")));
    const served = await servedResources(admin);
    const mine = [...(await snapshot(served))].filter((key) => ownedBy("acme2", key));
    const expected: Record<string, number> = {};
    for (const key of mine) {
      const resource = key.split(" ")[0]!;
      // Custom resources and the CRD group's APIService go with their CRD (the apiserver removes them); everything else is counted.
      if (resource.includes(".wt-acme2-") || resource.startsWith("apiservices.")) continue;
      expected[resource] = (expected[resource] ?? 0) + 1;
    }
    const counts = await deleteTenant(controlPlane, "acme2");
    expect(counts).toEqual(expected);
    expect(expected.configmaps).toBeGreaterThanOrEqual(2);
    expect(expected.namespaces).toBe(5);
  });
});
