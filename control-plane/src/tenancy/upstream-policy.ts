// The admission policy that holds tenants to their names upstream, whatever
// reaches the apiserver: the gateway's tenant filter maps names, this policy
// refuses (CEL, in kube-apiserver itself) any write by a tenant identity that
// is outside the mapping. docs/tenancy.md, "Admission policy".
import { tenantIdentityPrefix, tenantLabel } from "./naming.js";
import { expectStatus, type KubeClient, type KubeObject } from "./upstream-client.js";

export const policyName = "wharf-tenancy";
/** Label on objects the control plane makes for a tenant (its namespaces and RBAC): the tenant cannot delete them. */
export const systemLabel = "tenancy.wharf.dev/system";
export const defaultControlPlaneUser = "wharf:control-plane";

const fieldManager = "wharf-control-plane";

// CEL string literals: the names below hold no quote or backslash.
const q = (value: string): string => `'${value}'`;

interface Validation {
  expression: string;
  message: string;
  messageExpression?: string;
  reason: "Forbidden";
}

/** The ValidatingAdmissionPolicy and its binding (admissionregistration.k8s.io/v1). */
export function tenancyPolicy(controlPlaneUser = defaultControlPlaneUser): [KubeObject, KubeObject] {
  if (/['\\]/.test(controlPlaneUser)) throw new Error(`control plane user ${JSON.stringify(controlPlaneUser)} may not contain quotes or backslashes`);
  const label = q(tenantLabel);
  const system = q(systemLabel);
  const tenantId = q(tenantIdentityPrefix);
  const cp = q(controlPlaneUser);
  const hasLabel = (obj: string, key: string) => `(${obj} != null && has(${obj}.metadata) && has(${obj}.metadata.labels) && ${key} in ${obj}.metadata.labels)`;
  const variables: Array<{ name: string; expression: string }> = [
    // AdmissionRequest fields left empty are absent (no such key), hence has().
    { name: "user", expression: "has(request.userInfo.username) ? request.userInfo.username : ''" },
    { name: "requestNamespace", expression: "has(request.namespace) ? request.namespace : ''" },
    { name: "requestName", expression: "has(request.name) ? request.name : ''" },
    { name: "subResource", expression: "has(request.subResource) ? request.subResource : ''" },
    { name: "group", expression: "has(request.resource.group) ? request.resource.group : ''" },
    { name: "tenantGroups", expression: `has(request.userInfo.groups) ? request.userInfo.groups.filter(g, g.startsWith(${tenantId})) : []` },
    // A tenant's service accounts live in its namespaces: system:serviceaccount:wt-T-ns:name.
    { name: "saNamespace", expression: "variables.user.startsWith('system:serviceaccount:wt-') ? variables.user.split(':')[2] : ''" },
    { name: "isTenant", expression: `variables.user.startsWith(${tenantId}) || variables.saNamespace != '' || size(variables.tenantGroups) > 0` },
    {
      name: "tenant",
      expression:
        `variables.user.startsWith(${tenantId}) ? variables.user.split(':')[2] : ` +
        "variables.saNamespace != '' ? (variables.saNamespace.split('-').size() > 2 ? variables.saNamespace.split('-')[1] : '') : " +
        "size(variables.tenantGroups) > 0 ? variables.tenantGroups[0].split(':')[2] : ''",
    },
    { name: "prefix", expression: "'wt-' + variables.tenant + '-'" },
    { name: "identityPrefix", expression: `${tenantId} + variables.tenant + ':'` },
    { name: "isNamespace", expression: "variables.group == '' && request.resource.resource == 'namespaces'" },
    {
      name: "ns",
      expression:
        "variables.requestNamespace != '' ? variables.requestNamespace : " +
        "object != null && has(object.metadata) && has(object.metadata.namespace) ? object.metadata.namespace : " +
        "oldObject != null && has(oldObject.metadata) && has(oldObject.metadata.namespace) ? oldObject.metadata.namespace : ''",
    },
    { name: "clusterScoped", expression: "variables.isNamespace || variables.ns == ''" },
    {
      // generateName counts as the name: the generated suffix follows it.
      name: "name",
      expression:
        "variables.requestName != '' ? variables.requestName : " +
        "object != null && has(object.metadata) && has(object.metadata.name) ? object.metadata.name : " +
        "object != null && has(object.metadata) && has(object.metadata.generateName) ? object.metadata.generateName : " +
        "oldObject != null && has(oldObject.metadata) && has(oldObject.metadata.name) ? oldObject.metadata.name : ''",
    },
    { name: "isCrd", expression: "variables.group == 'apiextensions.k8s.io' && request.resource.resource == 'customresourcedefinitions'" },
    {
      name: "crdGroup",
      expression: "!variables.isCrd ? '' : object != null && has(object.spec) ? object.spec.group : oldObject != null && has(oldObject.spec) ? oldObject.spec.group : ''",
    },
    // Not stored, asked by every kubectl auth can-i / whoami: no name, no namespace, no labels.
    { name: "isReview", expression: "variables.group in ['authorization.k8s.io', 'authentication.k8s.io']" },
    { name: "isWrite", expression: "request.operation in ['CREATE', 'UPDATE']" },
    { name: "objectTenant", expression: `${hasLabel("object", label)} ? string(object.metadata.labels[${label}]) : ''` },
    { name: "newSystem", expression: hasLabel("object", system) },
    { name: "oldSystem", expression: hasLabel("oldObject", system) },
    {
      name: "isBinding",
      expression:
        "variables.group == 'rbac.authorization.k8s.io' && request.resource.resource in ['rolebindings', 'clusterrolebindings'] && variables.subResource == '' && variables.isWrite",
    },
    // Pods in tenant namespaces, whoever writes them (a ReplicaSet controller makes a Deployment's).
    {
      name: "tenantPod",
      expression:
        "variables.group == '' && request.resource.resource == 'pods' && variables.subResource in ['', 'ephemeralcontainers'] && variables.isWrite && variables.ns.startsWith('wt-')",
    },
  ];
  // The node-escape essentials of Pod Security "baseline": what would let one tenant's pod own the node all tenants share.
  const privileged = (list: string) =>
    `(has(object.spec.${list}) && object.spec.${list}.exists(c, has(c.securityContext) && ((has(c.securityContext.privileged) && c.securityContext.privileged) || ` +
    "(has(c.securityContext.capabilities) && has(c.securityContext.capabilities.add) && c.securityContext.capabilities.add.exists(x, x in ['SYS_ADMIN', 'NET_ADMIN', 'SYS_PTRACE', 'SYS_MODULE', 'DAC_READ_SEARCH', 'ALL'])))))";
  const tenantMessage = (text: string) => `'wharf tenancy: tenant ' + variables.tenant + ' ${text}'`;
  const validations: Validation[] = [
    {
      expression:
        `!variables.isTenant || (variables.tenant.matches('^[a-z][a-z0-9]{0,11}$') && ` +
        `variables.tenantGroups.all(g, g == ${tenantId} + variables.tenant || g.startsWith(variables.identityPrefix)))`,
      message: "wharf tenancy: the request's identity does not name exactly one valid tenant",
      reason: "Forbidden",
    },
    {
      expression: "!variables.isTenant || variables.clusterScoped || variables.ns.startsWith(variables.prefix)",
      message: "wharf tenancy: a tenant may only write in its own namespaces",
      messageExpression: `${tenantMessage("may only write in its own namespaces (wt-' + variables.tenant + '-*), not in namespace ")} + variables.ns`,
      reason: "Forbidden",
    },
    {
      expression:
        "!variables.isTenant || !variables.clusterScoped || variables.isReview || " +
        "(variables.isCrd ? variables.crdGroup.startsWith(variables.prefix) : variables.name.startsWith(variables.prefix))",
      message: "wharf tenancy: a tenant may only write cluster-scoped objects named with its prefix",
      messageExpression:
        `${tenantMessage("may only write cluster-scoped objects named wt-' + variables.tenant + '-* (CRDs: of groups wt-' + variables.tenant + '-*), not ")} + ` +
        "request.resource.resource + ' ' + (variables.isCrd ? variables.crdGroup : variables.name)",
      reason: "Forbidden",
    },
    {
      expression: "!variables.isTenant || !variables.isWrite || variables.subResource != '' || variables.isReview || variables.objectTenant == variables.tenant",
      message: `wharf tenancy: a tenant's objects must carry the label ${tenantLabel} with its name`,
      messageExpression: tenantMessage("may only write objects labelled " + tenantLabel + "=' + variables.tenant + ', not ") + " + (variables.objectTenant == '' ? 'unlabelled ones' : variables.objectTenant)",
      reason: "Forbidden",
    },
    {
      expression: "!variables.isTenant || !variables.isBinding || object.roleRef.kind != 'ClusterRole' || object.roleRef.name.startsWith(variables.prefix)",
      message: "wharf tenancy: a tenant may only bind its own ClusterRoles",
      messageExpression: `${tenantMessage("may only bind its own ClusterRoles (wt-' + variables.tenant + '-*), not ")} + object.roleRef.name`,
      reason: "Forbidden",
    },
    {
      expression:
        "!variables.isTenant || !variables.isBinding || !has(object.subjects) || object.subjects.all(s, " +
        "s.kind == 'ServiceAccount' ? (has(s.namespace) && s.namespace.startsWith(variables.prefix)) : " +
        "s.kind == 'User' ? (s.name.startsWith(variables.identityPrefix) || s.name.startsWith('system:serviceaccount:' + variables.prefix)) : " +
        "s.kind == 'Group' ? (s.name.startsWith(variables.identityPrefix) || s.name.startsWith('system:serviceaccounts:' + variables.prefix)) : false)",
      message: "wharf tenancy: a tenant may only bind its own users, groups and service accounts",
      messageExpression: `${tenantMessage("may only bind its own users, groups and service accounts (wharf:tenant:' + variables.tenant + ':*, namespaces wt-' + variables.tenant + '-*)")}`,
      reason: "Forbidden",
    },
    {
      // A service account's token reaches the apiserver without the gateway, and a tenant's rules hold namespaced
      // kinds in every namespace (RBAC cannot say "wt-T-*"): a cluster-wide grant to one would read the host's objects.
      expression:
        "!variables.isTenant || !variables.isBinding || request.resource.resource != 'clusterrolebindings' || !has(object.subjects) || " +
        "!object.subjects.exists(s, s.kind == 'ServiceAccount' || (s.kind == 'User' && s.name.startsWith('system:serviceaccount:')) || (s.kind == 'Group' && s.name.startsWith('system:serviceaccounts')))",
      message: "wharf tenancy: a tenant may bind service accounts only in its namespaces (RoleBindings), never cluster-wide",
      messageExpression: tenantMessage("may bind service accounts only in its namespaces (RoleBindings), not cluster-wide in ClusterRoleBinding ") + " + variables.name",
      reason: "Forbidden",
    },
    {
      expression:
        "!variables.isTenant || request.operation == 'CONNECT' || " +
        "(variables.oldSystem ? (request.operation == 'UPDATE' && variables.isNamespace && variables.newSystem) : !variables.newSystem)",
      message: "wharf tenancy: objects the control plane made for a tenant cannot be deleted or changed by it",
      messageExpression: tenantMessage("cannot delete or change ' + request.resource.resource + ' ' + variables.name + ' (made by the control plane) nor set the label " + systemLabel),
      reason: "Forbidden",
    },
    {
      // A conversion webhook would have the apiserver call any URL the tenant names, from inside the control plane's network.
      expression: "!variables.isTenant || !variables.isCrd || !variables.isWrite || variables.subResource != '' || !has(object.spec.conversion) || !has(object.spec.conversion.strategy) || object.spec.conversion.strategy == 'None'",
      message: "wharf tenancy: a tenant's CRD may not have a conversion webhook",
      messageExpression: tenantMessage("may not give CRD ' + variables.name + ' a conversion webhook"),
      reason: "Forbidden",
    },
    {
      expression:
        "!variables.tenantPod || !(" +
        "(has(object.spec.hostNetwork) && object.spec.hostNetwork) || (has(object.spec.hostPID) && object.spec.hostPID) || (has(object.spec.hostIPC) && object.spec.hostIPC) || " +
        "(has(object.spec.volumes) && object.spec.volumes.exists(v, has(v.hostPath))) || " +
        `${privileged("containers")} || ${privileged("initContainers")} || ${privileged("ephemeralContainers")})`,
      message: "wharf tenancy: pods in tenant namespaces may not be privileged, add host-level capabilities, use host networking, PID or IPC, or mount host paths",
      messageExpression:
        "'wharf tenancy: pod ' + variables.name + ' in ' + variables.ns + ' may not be privileged, add host-level capabilities, use host networking, PID or IPC, or mount host paths'",
      reason: "Forbidden",
    },
    {
      expression:
        `variables.isTenant || request.operation != 'CREATE' || variables.user == ${cp} || !variables.clusterScoped || ` +
        "!(variables.isCrd ? variables.crdGroup.startsWith('wt-') : variables.name.startsWith('wt-'))",
      message: `wharf tenancy: cluster-scoped names and CRD groups starting wt- are reserved for tenants; only ${controlPlaneUser} creates them outside a tenant`,
      reason: "Forbidden",
    },
    {
      // The control plane holds escalate/bind (deploy/tenancy-rbac.yaml); this keeps its RBAC writes to tenant objects.
      expression:
        `variables.user != ${cp} || variables.group != 'rbac.authorization.k8s.io' || ` +
        "!(request.resource.resource in ['clusterroles', 'clusterrolebindings']) || !variables.isWrite || " +
        "(variables.objectTenant.matches('^[a-z][a-z0-9]{0,11}$') && variables.name.startsWith('wt-' + variables.objectTenant + '-') && " +
        "(request.resource.resource == 'clusterroles' || (object.roleRef.name.startsWith('wt-' + variables.objectTenant + '-') && has(object.subjects) && " +
        `object.subjects.all(s, s.kind == 'Group' && (s.name == ${tenantId} + variables.objectTenant || s.name.startsWith(${tenantId} + variables.objectTenant + ':'))))))`,
      message: `wharf tenancy: ${controlPlaneUser} may only write a tenant's ClusterRoles and bindings (named wt-<tenant>-*, labelled, bound to that tenant's groups)`,
      reason: "Forbidden",
    },
  ];
  const policy = {
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: "ValidatingAdmissionPolicy",
    metadata: { name: policyName, labels: { "app.kubernetes.io/managed-by": "wharf" } },
    spec: {
      failurePolicy: "Fail",
      matchConstraints: {
        resourceRules: [{ apiGroups: ["*"], apiVersions: ["*"], operations: ["CREATE", "UPDATE", "DELETE", "CONNECT"], resources: ["*/*"], scope: "*" }],
      },
      variables,
      validations,
    },
  };
  const binding = {
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: "ValidatingAdmissionPolicyBinding",
    metadata: { name: policyName, labels: { "app.kubernetes.io/managed-by": "wharf" } },
    spec: { policyName, validationActions: ["Deny"] },
  };
  return [policy, binding];
}

/** Server-side apply of `object` at `path` (create or update, one request), as the control plane's field manager. */
export async function apply(client: KubeClient, path: string, object: KubeObject): Promise<KubeObject> {
  const response = await expectStatus(client, "PATCH", `${path}?fieldManager=${fieldManager}&force=true`, object, [200, 201], {
    contentType: "application/apply-patch+yaml",
  });
  if (response.warnings.length > 0) throw new Error(`${path}: the apiserver warned: ${response.warnings.join("; ")}`);
  return response.body ?? {};
}

/**
 * Who the control plane is upstream, as the apiserver sees it
 * (SelfSubjectReview, what `kubectl auth whoami` asks): the policy exempts
 * exactly that user from the "wt-" reservation, whatever the kubeconfig
 * holds. Refuses an identity that is a tenant's, or system:masters (the
 * control plane should run with deploy/tenancy-rbac.yaml, not as admin).
 */
export async function controlPlaneIdentity(client: KubeClient): Promise<string> {
  const review = await expectStatus(client, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", { apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" }, [200, 201]);
  const user = review.body?.status?.userInfo as { username?: string; groups?: string[] } | undefined;
  const name = user?.username ?? "";
  if (name === "") throw new Error("the apiserver did not say who the control plane is (SelfSubjectReview)");
  if (name.startsWith(tenantIdentityPrefix) || name.startsWith("system:serviceaccount:wt-") || (user?.groups ?? []).some((g) => g.startsWith(tenantIdentityPrefix))) {
    throw new Error(`the control plane's kubeconfig authenticates as ${name}, a tenant identity`);
  }
  if ((user?.groups ?? []).includes("system:masters")) {
    throw new Error(`the control plane's kubeconfig authenticates as ${name} in system:masters; give it its own identity with deploy/tenancy-rbac.yaml`);
  }
  return name;
}

/**
 * Applies the policy and its binding (idempotent). The apiserver compiles
 * every expression on write (a compile error is a 422; `apply` refuses a
 * write with warnings). Where a kube-controller-manager runs, it also
 * type-checks the policy against the resources it matches and reports in
 * status.typeChecking: when that report is there for this generation, any
 * expression warning fails too (a policy that does not type-check would deny
 * every write under failurePolicy Fail, or check nothing).
 */
export async function ensureTenancyPolicy(client: KubeClient, options: { controlPlaneUser?: string } = {}): Promise<void> {
  const [policy, binding] = tenancyPolicy(options.controlPlaneUser ?? (await controlPlaneIdentity(client)));
  const base = "/apis/admissionregistration.k8s.io/v1";
  const applied = await apply(client, `${base}/validatingadmissionpolicies/${policyName}`, policy);
  await apply(client, `${base}/validatingadmissionpolicybindings/${policyName}`, binding);
  const status = applied.status as { observedGeneration?: number; typeChecking?: { expressionWarnings?: Array<{ fieldRef: string; warning: string }> } } | undefined;
  const warnings = status?.observedGeneration === applied.metadata?.generation ? (status?.typeChecking?.expressionWarnings ?? []) : [];
  if (warnings.length > 0) throw new Error(`admission policy ${policyName} does not type-check: ${warnings.map((w) => `${w.fieldRef}: ${w.warning}`).join("; ")}`);
}
