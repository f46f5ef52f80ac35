// Rewrites of the small subtrees the response transducer buffers, on the
// JSON tree: upstream names back to the tenant's. Each answers whether the
// subtree may reach the tenant: an object whose names do not map into the
// tenant's world is not the tenant's and must never be shown.
import { DomKind, DomNode } from "./response-dom";
import { ResponseScope } from "./response-scope";
import { tenantCrdName, tenantLabel } from "./naming";

export const enum Verdict {
  /** Rewritten; may be shown. */
  Visible,
  /** Not the tenant's: drop it (a list item, a row, a watch event) or, where that is impossible, fail. */
  Invisible,
}

const labelField = "f:" + tenantLabel;
const namespaceNameLabel = "kubernetes.io/metadata.name";

function isCrd(kind: string): bool {
  return kind == "CustomResourceDefinition";
}

/**
 * The metadata of an object (or a list's ListMeta) the tenant reads.
 * `kind` is the object's kind as far as known ("" when not).
 */
export function rewriteObjectMetadata(meta: DomNode, kind: string, scope: ResponseScope): Verdict {
  if (!meta.isObject) return Verdict.Invisible;
  // ListMeta: the continue token is sealed for this tenant.
  const token = meta.getString("continue");
  if (token !== null && token.length > 0) {
    const sealer = scope.sealer;
    if (sealer === null) return Verdict.Invisible;
    const sealed = sealer.seal(token);
    if (sealed === null) return Verdict.Invisible;
    meta.setString("continue", sealed);
  }
  let clusterScoped = true;
  const namespaceNode = meta.get("namespace");
  if (namespaceNode !== null) {
    if (!namespaceNode.isString) return Verdict.Invisible;
    if (namespaceNode.text.length > 0) {
      clusterScoped = false;
      const namespace = scope.namespace(namespaceNode.text);
      if (namespace === null) return Verdict.Invisible;
      namespaceNode.replaceText(namespace!);
    }
  }
  const nameNode = meta.get("name");
  if (nameNode !== null && clusterScoped && !scope.sharedView) {
    if (!nameNode.isString) return Verdict.Invisible;
    if (nameNode.text.length > 0) {
      const name = isCrd(kind) ? tenantCrdName(scope.tenant, nameNode.text) : scope.clusterName(nameNode.text);
      if (name === null) return Verdict.Invisible;
      // The apiserver labels every namespace with its own name.
      const labels = meta.get("labels");
      if (labels !== null) {
        const nameLabel = labels.get(namespaceNameLabel);
        if (nameLabel !== null && nameLabel.isString && nameLabel.text == nameNode.text) nameLabel.replaceText(name!);
      }
      nameNode.replaceText(name!);
    }
  }
  const generateName = meta.get("generateName");
  if (generateName !== null && generateName.isString && clusterScoped && generateName.text.startsWith(scope.prefix)) {
    generateName.replaceText(generateName.text.substring(scope.prefix.length));
  }
  if (!removeTenantLabel(meta, scope)) return Verdict.Invisible;
  const owners = meta.get("ownerReferences");
  if (owners !== null && owners.isArray) {
    for (let i = 0; i < owners.values.length; i++) {
      if (!rewriteOwnerReference(owners.values[i], clusterScoped, scope)) return Verdict.Invisible;
    }
  }
  const managed = meta.get("managedFields");
  if (managed !== null && managed.isArray) {
    rewriteManagedFields(managed, scope);
    if (managed.values.length == 0) meta.remove("managedFields");
  }
  return Verdict.Visible;
}

/**
 * Metadata embedded in an object (pod templates, volume claim templates):
 * the tenant label the request side set comes off, a mapped namespace is
 * unmapped. Never decides visibility.
 */
export function rewriteEmbeddedMetadata(meta: DomNode, scope: ResponseScope): void {
  if (!meta.isObject) return;
  const namespaceNode = meta.get("namespace");
  if (namespaceNode !== null && namespaceNode.isString) {
    const namespace = scope.namespace(namespaceNode.text);
    if (namespace !== null) namespaceNode.replaceText(namespace!);
  }
  removeTenantLabel(meta, scope);
}

/** Drops `tenancy.wharf.dev/tenant: T`; false when it names another tenant. */
function removeTenantLabel(meta: DomNode, scope: ResponseScope): bool {
  const labels = meta.get("labels");
  if (labels === null || !labels.isObject) return true;
  const value = labels.get(tenantLabel);
  if (value === null) return true;
  if (!value.isString || value.text != scope.tenant) return false;
  labels.remove(tenantLabel);
  // The apiserver omits an empty label map; so does the tenant's view.
  if (labels.keys.length == 0) meta.remove("labels");
  return true;
}

function rewriteOwnerReference(owner: DomNode, clusterScoped: bool, scope: ResponseScope): bool {
  if (!owner.isObject) return false;
  const apiVersion = owner.get("apiVersion");
  if (apiVersion !== null && apiVersion.isString) {
    const mapped = scope.apiVersion(apiVersion.text);
    if (mapped === null) return false;
    apiVersion.replaceText(mapped!);
  }
  // A cluster-scoped object can only be owned by cluster-scoped objects,
  // whose names are mapped; a namespaced object's owners in its namespace keep theirs.
  const name = owner.get("name");
  if (clusterScoped && !scope.sharedView && name !== null && name.isString) {
    const mapped = scope.clusterName(name.text);
    if (mapped === null) return false;
    name.replaceText(mapped!);
  }
  return true;
}

/**
 * managedFields: apiVersion unmapped; the tenant label the filter set comes
 * out of fieldsV1 (under every "f:labels"), and an entry left owning
 * nothing (a manager that only set the label) goes.
 */
function rewriteManagedFields(managed: DomNode, scope: ResponseScope): void {
  const kept = new Array<DomNode>();
  for (let i = 0; i < managed.values.length; i++) {
    const entry = managed.values[i];
    if (!entry.isObject) continue;
    const apiVersion = entry.get("apiVersion");
    if (apiVersion !== null && apiVersion.isString) {
      const mapped = scope.apiVersion(apiVersion.text);
      if (mapped === null) continue;
      apiVersion.replaceText(mapped!);
    }
    const fields = entry.get("fieldsV1");
    if (fields !== null && fields.isObject && containsSpan(fields, labelField)) {
      pruneTenantLabel(fields);
      if (fields.keys.length == 0) continue;
    }
    kept.push(entry);
  }
  managed.setValues(kept);
}

/** Whether the node's source text contains `text` (a cheap test before reading the node). */
function containsSpan(node: DomNode, text: string): bool {
  const at = node.source.indexOf(text, node.start);
  return at >= 0 && at + text.length <= node.end;
}

/**
 * Removes "f:tenancy.wharf.dev/tenant" from "f:labels" where the request
 * side sets the label (the object's metadata, and pod templates:
 * spec.template, spec.jobTemplate.spec.template); prunes what only held it.
 * Answers whether `node` became empty.
 */
function pruneTenantLabel(node: DomNode): bool {
  let changed = false;
  for (let i = node.keys.length - 1; i >= 0; i--) {
    const child = node.values[i];
    if (!child.isObject) continue;
    const key = node.keys[i];
    if (key != "f:labels" && key != "f:metadata" && key != "f:spec" && key != "f:template" && key != "f:jobTemplate") continue;
    if (node.keys[i] == "f:labels") {
      const at = child.indexOf(labelField);
      if (at < 0) continue;
      child.removeAt(at);
      changed = true;
      if (isOnlySelf(child)) node.removeAt(i);
    } else if (pruneTenantLabel(child)) {
      node.removeAt(i);
      changed = true;
    }
  }
  return changed && isOnlySelf(node);
}

/** A fieldsV1 set that owns nothing but the container itself ({} or {".":{}}). */
function isOnlySelf(node: DomNode): bool {
  if (node.keys.length == 0) return true;
  return node.keys.length == 1 && node.keys[0] == ".";
}

/** RBAC subjects: users and groups of T unmapped, service accounts' namespaces unmapped; anyone else dropped. */
export function rewriteSubjects(subjects: DomNode, scope: ResponseScope): void {
  if (!subjects.isArray) return;
  const kept = new Array<DomNode>();
  for (let i = 0; i < subjects.values.length; i++) {
    const subject = subjects.values[i];
    if (!subject.isObject) continue;
    const kind = subject.getString("kind");
    const name = subject.get("name");
    if (kind === null || name === null || !name.isString) continue;
    if (kind == "User") {
      const user = scope.user(name.text);
      if (user === null) continue;
      name.replaceText(user!);
    } else if (kind == "Group") {
      const group = scope.userGroup(name.text);
      if (group === null || group!.length == 0) continue;
      name.replaceText(group!);
    } else if (kind == "ServiceAccount") {
      const namespace = subject.get("namespace");
      if (namespace === null || !namespace.isString) continue;
      const mapped = scope.namespace(namespace.text);
      if (mapped === null) continue;
      namespace.replaceText(mapped!);
    } else continue;
    kept.push(subject);
  }
  subjects.setValues(kept);
}

/** roleRef: ClusterRole "wt-T-N" → "N"; a Role keeps its name. False: names a role outside the tenant. */
export function rewriteRoleRef(roleRef: DomNode, scope: ResponseScope): bool {
  if (!roleRef.isObject) return false;
  if (roleRef.getString("kind") != "ClusterRole") return true;
  const name = roleRef.get("name");
  if (name === null || !name.isString) return false;
  const mapped = scope.clusterName(name.text);
  if (mapped === null) return false;
  name.replaceText(mapped!);
  return true;
}

/** RBAC rules: tenant groups in apiGroups unmapped; a group outside the tenant is removed. */
export function rewriteRules(rules: DomNode, scope: ResponseScope): void {
  if (!rules.isArray) return;
  for (let i = 0; i < rules.values.length; i++) {
    const rule = rules.values[i];
    if (!rule.isObject) continue;
    const groups = rule.get("apiGroups");
    if (groups === null || !groups.isArray) continue;
    const kept = new Array<DomNode>();
    for (let j = 0; j < groups.values.length; j++) {
      const group = groups.values[j];
      if (!group.isString) continue;
      if (group.text == "*") {
        kept.push(group);
        continue;
      }
      const mapped = scope.group(group.text);
      if (mapped === null) continue;
      group.replaceText(mapped!);
      kept.push(group);
    }
    groups.setValues(kept);
  }
}

/** An ObjectReference (events' involvedObject/regarding/related). False: refers outside the tenant. */
export function rewriteObjectReference(ref: DomNode, scope: ResponseScope): bool {
  if (ref.kind == DomKind.Null) return true;
  if (!ref.isObject) return false;
  const apiVersion = ref.get("apiVersion");
  if (apiVersion !== null && apiVersion.isString && apiVersion.text.length > 0) {
    const mapped = scope.apiVersion(apiVersion.text);
    if (mapped === null) return false;
    apiVersion.replaceText(mapped!);
  }
  const namespace = ref.get("namespace");
  let clusterScoped = true;
  if (namespace !== null && namespace.isString && namespace.text.length > 0) {
    clusterScoped = false;
    const mapped = scope.namespace(namespace.text);
    if (mapped === null) return false;
    namespace.replaceText(mapped!);
  }
  const name = ref.get("name");
  if (clusterScoped && !scope.sharedView && name !== null && name.isString && name.text.length > 0) {
    const mapped = scope.clusterName(name.text);
    if (mapped === null) return false;
    name.replaceText(mapped!);
  }
  return true;
}

/** Scrubs every string in a subtree (a Status's details: name, group, causes' messages and fields). */
export function scrubStrings(node: DomNode, scope: ResponseScope): void {
  if (node.isString) node.replaceText(scope.scrub(node.text));
  else for (let i = 0; i < node.values.length; i++) scrubStrings(node.values[i], scope);
}

/** Status.details: group unmapped, every text scrubbed. */
export function rewriteStatusDetails(details: DomNode, scope: ResponseScope): void {
  if (!details.isObject) return;
  const group = details.get("group");
  if (group !== null && group.isString) {
    const mapped = scope.group(group.text);
    group.replaceText(mapped === null ? scope.scrub(group.text) : mapped!);
  }
  scrubStrings(details, scope);
}

/** UserInfo (SelfSubjectReview status.userInfo, TokenReview status.user): the tenant's own names. False: not the tenant's identity. */
export function rewriteUserInfo(info: DomNode, scope: ResponseScope): bool {
  if (!info.isObject) return false;
  const username = info.get("username");
  if (username !== null && username.isString && username.text.length > 0) {
    const user = scope.user(username.text);
    if (user === null) return false;
    username.replaceText(user!);
  }
  const groups = info.get("groups");
  if (groups !== null && groups.isArray) rewriteUserGroups(groups, scope);
  return true;
}

function rewriteUserGroups(groups: DomNode, scope: ResponseScope): void {
  const kept = new Array<DomNode>();
  for (let i = 0; i < groups.values.length; i++) {
    const group = groups.values[i];
    if (!group.isString) continue;
    const mapped = scope.userGroup(group.text);
    if (mapped === null || mapped!.length == 0) continue;
    group.replaceText(mapped!);
    kept.push(group);
  }
  groups.setValues(kept);
}

/**
 * spec or status of an authentication.k8s.io / authorization.k8s.io review
 * (SelfSubjectReview, TokenReview, SubjectAccessReview and its local/self
 * forms, SelfSubjectRulesReview). False: names an identity outside the tenant.
 */
export function rewriteReview(kind: string, field: string, node: DomNode, scope: ResponseScope): bool {
  if (!node.isObject) return true;
  if (field == "status") {
    const userInfo = node.get("userInfo");
    if (userInfo !== null && !rewriteUserInfo(userInfo, scope)) return false;
    const user = node.get("user");
    if (user !== null && kind == "TokenReview" && !rewriteUserInfo(user, scope)) return false;
    const reason = node.get("reason");
    if (reason !== null && reason.isString) reason.replaceText(scope.scrub(reason.text));
    const evaluationError = node.get("evaluationError");
    if (evaluationError !== null && evaluationError.isString) evaluationError.replaceText(scope.scrub(evaluationError.text));
    const resourceRules = node.get("resourceRules");
    if (resourceRules !== null) rewriteRules(resourceRules, scope);
    return true;
  }
  // spec
  const user = node.get("user");
  if (user !== null && user.isString && user.text.length > 0) {
    const mapped = scope.user(user.text);
    if (mapped === null) return false;
    user.replaceText(mapped!);
  }
  const groups = node.get("groups");
  if (groups !== null && groups.isArray) rewriteUserGroups(groups, scope);
  const namespace = node.get("namespace");
  if (namespace !== null && namespace.isString && namespace.text.length > 0) {
    const mapped = scope.namespace(namespace.text);
    if (mapped === null) return false;
    namespace.replaceText(mapped!);
  }
  const attributes = node.get("resourceAttributes");
  if (attributes !== null && attributes.isObject) {
    const attributeNamespace = attributes.get("namespace");
    if (attributeNamespace !== null && attributeNamespace.isString && attributeNamespace.text.length > 0) {
      const mapped = scope.namespace(attributeNamespace.text);
      if (mapped === null) return false;
      attributeNamespace.replaceText(mapped!);
    }
    const group = attributes.get("group");
    if (group !== null && group.isString && group.text != "*") {
      const mapped = scope.group(group.text);
      if (mapped === null) return false;
      group.replaceText(mapped!);
    }
  }
  return true;
}

/** "g/v" of a discovery document; null outside the tenant's world. */
function groupVersion(node: DomNode | null, scope: ResponseScope): bool {
  if (node === null || !node.isString) return true;
  const mapped = scope.apiVersion(node.text);
  if (mapped === null) return false;
  node.replaceText(mapped!);
  return true;
}

/**
 * One APIGroup (an entry of /apis, or /apis/<group> itself): host groups and
 * the tenant's own (unmapped) stay, every other group is dropped (false).
 */
export function rewriteDiscoveryGroup(group: DomNode, scope: ResponseScope): bool {
  if (!group.isObject) return false;
  const name = group.get("name");
  if (name === null || !name.isString) return false;
  const mapped = scope.group(name.text);
  if (mapped === null) return false;
  name.replaceText(mapped!);
  const versions = group.get("versions");
  if (versions !== null && versions.isArray) {
    for (let i = 0; i < versions.values.length; i++) {
      const version = versions.values[i];
      if (version.isObject && !groupVersion(version.get("groupVersion"), scope)) return false;
    }
  }
  const preferred = group.get("preferredVersion");
  if (preferred !== null && preferred.isObject && !groupVersion(preferred.get("groupVersion"), scope)) return false;
  return true;
}
