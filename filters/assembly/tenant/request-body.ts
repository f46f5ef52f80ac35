// A tenant's request body with its names mapped into the tenant's upstream
// world, and the tenant label set on what it stores. What the filter maps
// depends on the path's group and resource (never on the body's own kind,
// which the apiserver ignores for routing too). Objects and apply patches
// are complete intents ("full": the tenant label is set where labels
// belong); merge and strategic merge patches name only what changes
// ("patch": names are mapped, the tenant label may not be touched); JSON
// patch operations carry values that are mapped as if they stood at their
// path in an object.
import { jsonString } from "../gateway/json";
import { Tenant, TenantFilterConfig } from "./config";
import { JsonDocument, JsonKind, JsonNode, parseDocument, parseError } from "./json-dom";
import { isDnsSubdomain, isPathSegmentName, mapApiVersion, mapGroup, mapNamespace, mapSubjectGroup, mapSubjectUser, tenantLabel } from "./naming";
import { BodyFormat } from "./request-headers";
import { isTenantClusterKind, namingRefusal, PathPlan, Refusal, Scope, upstreamObjectName } from "./request-path";

export class BodyResult {
  refusal: Refusal | null = null;
  /** The mapped body; null: send the body as it came. */
  body: string | null = null;
}


function isTenantClusterKindName(kind: string): bool {
  return kind == "Namespace" || kind == "ClusterRole" || kind == "ClusterRoleBinding" || kind == "CustomResourceDefinition";
}

function kindGroup(kind: string): string {
  if (kind == "ClusterRole" || kind == "ClusterRoleBinding") return "rbac.authorization.k8s.io";
  if (kind == "CustomResourceDefinition") return "apiextensions.k8s.io";
  return "";
}

function kindResource(kind: string): string {
  if (kind == "Namespace") return "namespaces";
  if (kind == "ClusterRole") return "clusterroles";
  if (kind == "ClusterRoleBinding") return "clusterrolebindings";
  return "customresourcedefinitions";
}

class Mapper {
  refusal: Refusal | null = null;

  constructor(
    public config: TenantFilterConfig,
    public tenant: Tenant,
    public plan: PathPlan,
    /** A complete intent: the tenant label is set (else only checked). */
    public full: bool,
  ) {}

  get failed(): bool {
    return this.refusal !== null;
  }

  forbid(message: string): void {
    if (this.refusal === null) this.refusal = new Refusal(403, "Forbidden", message);
  }

  // --- names ---

  /** Sets `node` to `mapped`, or records naming.ts's refusal. */
  private set(node: JsonNode, mapped: string | null): void {
    if (mapped === null) {
      if (this.refusal === null) this.refusal = namingRefusal();
      return;
    }
    node.setString(mapped!);
  }

  namespace(node: JsonNode): void {
    if (!node.isString) return;
    const value = node.text();
    if (value.length == 0) return;
    this.set(node, mapNamespace(this.tenant.name, value));
  }

  clusterName(node: JsonNode, group: string, resource: string): void {
    if (!node.isString) return;
    const value = node.text();
    if (value.length == 0) return;
    this.set(node, upstreamObjectName(this.config, this.tenant, group, resource, value));
  }

  apiVersion(node: JsonNode): void {
    if (!node.isString) return;
    this.set(node, mapApiVersion(this.tenant.name, node.text(), this.config.hostGroups));
  }

  group(node: JsonNode): void {
    if (!node.isString) return;
    const value = node.text();
    if (value == "*") return;
    this.set(node, mapGroup(this.tenant.name, value, this.config.hostGroups));
  }

  /** A user the tenant names: its own user, or one of its service accounts. */
  user(node: JsonNode): void {
    if (!node.isString || node.text().length == 0) return;
    this.set(node, mapSubjectUser(this.tenant.name, node.text()));
  }

  userGroup(node: JsonNode): void {
    if (!node.isString || node.text().length == 0) return;
    this.set(node, mapSubjectGroup(this.tenant.name, node.text()));
  }

  // --- labels ---

  /** The tenant label in a labels map: set (full) or checked (patch). */
  labels(owner: JsonNode, key: string): void {
    const found = owner.all(key);
    const own = jsonString(this.tenant.name);
    if (found.length == 0) {
      if (this.full) owner.add(key, "{" + jsonString(tenantLabel) + ":" + own + "}");
      return;
    }
    for (let i = 0; i < found.length; i++) {
      const labels = found[i];
      if (labels.isNull) {
        if (this.full) labels.setRaw("{" + jsonString(tenantLabel) + ":" + own + "}", JsonKind.Object);
        else return this.forbid("a patch may not remove the labels of a tenant object (" + tenantLabel + " must stay)");
        continue;
      }
      if (!labels.isObject) continue;
      const keys = labels.memberKeys();
      for (let k = 0; k < keys.length; k++) {
        if (keys[k].startsWith("$")) return this.forbid("strategic merge directives on labels (" + keys[k] + ") could remove " + tenantLabel);
      }
      const values = labels.all(tenantLabel);
      for (let k = 0; k < values.length; k++) {
        if (!values[k].isString || values[k].text() != this.tenant.name) return this.forbid("the label " + tenantLabel + " is set by the gateway and must be \"" + this.tenant.name + "\"");
      }
      if (values.length == 0 && this.full) labels.add(tenantLabel, own);
    }
  }

  /** The metadata of an object (or pod template) under `owner`. */
  metadataOf(owner: JsonNode, mapName: bool, setLabels: bool): void {
    const found = owner.all("metadata");
    if (found.length == 0) {
      if (this.full && setLabels) owner.add("metadata", "{\"labels\":{" + jsonString(tenantLabel) + ":" + jsonString(this.tenant.name) + "}}");
      return;
    }
    for (let i = 0; i < found.length && !this.failed; i++) {
      const metadata = found[i];
      if (metadata.isNull && !this.full && setLabels) return this.forbid("a patch may not remove the metadata of a tenant object");
      if (!metadata.isObject) continue;
      this.metadata(metadata, mapName, setLabels);
    }
  }

  metadata(metadata: JsonNode, mapName: bool, setLabels: bool): void {
    const plan = this.plan;
    const keys = metadata.memberKeys();
    for (let k = 0; k < keys.length; k++) {
      if (keys[k] == "$patch" || keys[k] == "$retainKeys") return this.forbid("strategic merge directives on metadata (" + keys[k] + ") could remove " + tenantLabel);
    }
    const namespaces = metadata.all("namespace");
    for (let i = 0; i < namespaces.length; i++) this.namespace(namespaces[i]);
    if (mapName) {
      const names = metadata.all("name");
      for (let i = 0; i < names.length; i++) this.clusterName(names[i], plan.group, plan.resource);
      const generated = metadata.all("generateName");
      for (let i = 0; i < generated.length; i++) this.clusterName(generated[i], plan.group, plan.resource);
    }
    if (setLabels) this.labels(metadata, "labels");
    const owners = metadata.all("ownerReferences");
    for (let i = 0; i < owners.length; i++) {
      const references = owners[i].items();
      for (let j = 0; j < references.length; j++) this.ownerReference(references[j], mapName);
    }
    const managed = metadata.all("managedFields");
    for (let i = 0; i < managed.length; i++) {
      const entries = managed[i].items();
      for (let j = 0; j < entries.length; j++) {
        const versions = entries[j].all("apiVersion");
        for (let k = 0; k < versions.length; k++) this.apiVersion(versions[k]);
      }
    }
  }

  ownerReference(reference: JsonNode, dependentIsClusterScoped: bool): void {
    if (!reference.isObject) return;
    const versions = reference.all("apiVersion");
    for (let i = 0; i < versions.length; i++) this.apiVersion(versions[i]);
    const kind = reference.get("kind");
    const kindName = kind !== null && kind.isString ? kind.text() : "";
    // A cluster-scoped dependent can only have cluster-scoped owners; a namespaced one
    // names a cluster-scoped owner only by a kind the filter knows.
    if (!dependentIsClusterScoped && !isTenantClusterKindName(kindName)) return;
    const names = reference.all("name");
    for (let i = 0; i < names.length; i++) {
      if (isTenantClusterKindName(kindName)) this.clusterName(names[i], kindGroup(kindName), kindResource(kindName));
      else this.clusterName(names[i], "", "");
    }
  }

  /** An object reference (events' involvedObject/regarding/related, endpoints' targetRef). */
  objectReference(reference: JsonNode): void {
    if (!reference.isObject) return;
    const namespaces = reference.all("namespace");
    let namespaced = false;
    for (let i = 0; i < namespaces.length; i++) {
      if (namespaces[i].isString && namespaces[i].text().length > 0) namespaced = true;
      this.namespace(namespaces[i]);
    }
    const versions = reference.all("apiVersion");
    for (let i = 0; i < versions.length; i++) this.apiVersion(versions[i]);
    const kind = reference.get("kind");
    const kindName = kind !== null && kind.isString ? kind.text() : "";
    if (namespaced || !isTenantClusterKindName(kindName)) return;
    const names = reference.all("name");
    for (let i = 0; i < names.length; i++) this.clusterName(names[i], kindGroup(kindName), kindResource(kindName));
  }

  // --- kinds ---

  /** `template` (a PodTemplateSpec) under `owner`. */
  podTemplate(owner: JsonNode, key: string): void {
    const templates = owner.all(key);
    for (let i = 0; i < templates.length; i++) {
      const template = templates[i];
      if (template.isNull && !this.full) return this.forbid("a patch may not remove a pod template's labels");
      if (template.isObject) this.metadataOf(template, false, true);
    }
  }

  /** Pod templates of the workload kinds, so the pods their controllers make carry the tenant label. */
  workload(root: JsonNode): void {
    const plan = this.plan;
    const group = plan.group;
    const resource = plan.resource;
    const specs = root.all("spec");
    if (group == "" && resource == "podtemplates") {
      this.podTemplate(root, "template");
      return;
    }
    const templated =
      (group == "apps" && (resource == "deployments" || resource == "replicasets" || resource == "statefulsets" || resource == "daemonsets")) ||
      (group == "batch" && resource == "jobs") ||
      (group == "" && resource == "replicationcontrollers");
    for (let i = 0; i < specs.length && !this.failed; i++) {
      const spec = specs[i];
      if (!spec.isObject) continue;
      if (templated) this.podTemplate(spec, "template");
      if (group == "apps" && resource == "statefulsets") {
        const claims = spec.all("volumeClaimTemplates");
        for (let c = 0; c < claims.length; c++) {
          const items = claims[c].items();
          for (let j = 0; j < items.length; j++) if (items[j].isObject) this.metadataOf(items[j], false, true);
        }
      }
      if (group == "batch" && resource == "cronjobs") {
        const jobs = spec.all("jobTemplate");
        for (let j = 0; j < jobs.length; j++) {
          if (!jobs[j].isObject) continue;
          this.metadataOf(jobs[j], false, true);
          const jobSpecs = jobs[j].all("spec");
          for (let s = 0; s < jobSpecs.length; s++) if (jobSpecs[s].isObject) this.podTemplate(jobSpecs[s], "template");
        }
      }
    }
  }

  subject(subject: JsonNode): void {
    if (!subject.isObject) return;
    const kind = subject.get("kind");
    const kindName = kind !== null && kind.isString ? kind.text() : "";
    const names = subject.all("name");
    if (kindName == "User") {
      for (let i = 0; i < names.length; i++) if (names[i].isString) this.set(names[i], mapSubjectUser(this.tenant.name, names[i].text()));
    } else if (kindName == "Group") {
      for (let i = 0; i < names.length; i++) if (names[i].isString) this.set(names[i], mapSubjectGroup(this.tenant.name, names[i].text()));
    } else if (kindName == "ServiceAccount") {
      const namespaces = subject.all("namespace");
      if (namespaces.length == 0 || !namespaces[namespaces.length - 1].isString || namespaces[namespaces.length - 1].text().length == 0) {
        return this.invalid("ServiceAccount subject has no namespace");
      }
      for (let i = 0; i < names.length; i++) if (!names[i].isString || !isDnsSubdomain(names[i].text())) return this.invalid("ServiceAccount subject \"" + names[i].text() + "\" is not a valid name");
      for (let i = 0; i < namespaces.length; i++) if (namespaces[i].isString) this.set(namespaces[i], mapNamespace(this.tenant.name, namespaces[i].text()));
    } else {
      this.invalid("subject kind \"" + kindName + "\" is not User, Group or ServiceAccount");
    }
  }

  invalid(message: string): void {
    if (this.refusal === null) this.refusal = new Refusal(422, "Invalid", message);
  }

  rbac(root: JsonNode): void {
    const resource = this.plan.resource;
    if (resource == "rolebindings" || resource == "clusterrolebindings") {
      const lists = root.all("subjects");
      for (let i = 0; i < lists.length; i++) {
        const subjects = lists[i].items();
        for (let j = 0; j < subjects.length; j++) this.subject(subjects[j]);
      }
      const refs = root.all("roleRef");
      for (let i = 0; i < refs.length; i++) {
        const ref = refs[i];
        if (!ref.isObject) continue;
        const kind = ref.get("kind");
        const kindName = kind !== null && kind.isString ? kind.text() : "";
        // Without a kind the apiserver refuses a new roleRef, and a stored one cannot change.
        if (kindName == "Role") {
          const names = ref.all("name");
          for (let j = 0; j < names.length; j++) if (names[j].isString && !isPathSegmentName(names[j].text())) return this.invalid("roleRef \"" + names[j].text() + "\" is not a valid name");
          continue;
        }
        if (kindName.length == 0) continue;
        if (kindName != "ClusterRole") return this.invalid("roleRef kind \"" + kindName + "\" is not Role or ClusterRole");
        const names = ref.all("name");
        for (let j = 0; j < names.length; j++) {
          if (names[j].isString) this.set(names[j], upstreamObjectName(this.config, this.tenant, "rbac.authorization.k8s.io", "clusterroles", names[j].text()));
        }
      }
      return;
    }
    if (resource != "roles" && resource != "clusterroles") return;
    const lists = root.all("rules");
    for (let i = 0; i < lists.length; i++) {
      const rules = lists[i].items();
      for (let j = 0; j < rules.length; j++) this.policyRule(rules[j]);
    }
    const aggregations = root.all("aggregationRule");
    for (let i = 0; i < aggregations.length; i++) {
      if (!aggregations[i].isObject) continue;
      const selectorLists = aggregations[i].all("clusterRoleSelectors");
      for (let j = 0; j < selectorLists.length; j++) {
        const selectors = selectorLists[j].items();
        // Aggregation copies the rules of every ClusterRole the selector matches: only the tenant's own.
        for (let s = 0; s < selectors.length; s++) this.labelSelector(selectors[s]);
      }
    }
  }

  /** A LabelSelector that must only match the tenant's objects. */
  labelSelector(selector: JsonNode): void {
    if (!selector.isObject) return;
    const expressions = selector.all("matchExpressions");
    for (let i = 0; i < expressions.length; i++) {
      const items = expressions[i].items();
      for (let j = 0; j < items.length; j++) {
        const key = items[j].get("key");
        if (key !== null && key.isString && key.text() == tenantLabel) return this.forbid("label selectors may not name " + tenantLabel + ": the gateway sets it");
      }
    }
    const saved = this.full;
    this.full = true;
    this.labels(selector, "matchLabels");
    this.full = saved;
  }

  policyRule(rule: JsonNode): void {
    if (!rule.isObject) return;
    const groupLists = rule.all("apiGroups");
    let hostOnly = true;
    for (let i = 0; i < groupLists.length; i++) {
      const groups = groupLists[i].items();
      for (let j = 0; j < groups.length; j++) {
        if (groups[j].isString && !this.config.isHostGroup(groups[j].text())) hostOnly = false;
        this.group(groups[j]);
      }
    }
    // resourceNames of the tenant's cluster-scoped kinds are upstream names.
    const resourceLists = rule.all("resources");
    let kindGroupName = "";
    let kindResourceName = "";
    let clusterKinds = hostOnly && resourceLists.length > 0;
    for (let i = 0; i < resourceLists.length && clusterKinds; i++) {
      const resources = resourceLists[i].items();
      for (let j = 0; j < resources.length; j++) {
        const text = resources[j].text();
        const slash = text.indexOf("/");
        const base = slash < 0 ? text : text.substring(0, slash);
        const known = base == "namespaces" ? "" : base == "clusterroles" || base == "clusterrolebindings" ? "rbac.authorization.k8s.io" : base == "customresourcedefinitions" ? "apiextensions.k8s.io" : "-";
        if (known == "-" || !isTenantClusterKind(known, base) || (kindResourceName.length > 0 && kindResourceName != base)) {
          clusterKinds = false;
          break;
        }
        kindGroupName = known;
        kindResourceName = base;
      }
    }
    if (!clusterKinds) return;
    const nameLists = rule.all("resourceNames");
    for (let i = 0; i < nameLists.length; i++) {
      const names = nameLists[i].items();
      for (let j = 0; j < names.length; j++) this.clusterName(names[j], kindGroupName, kindResourceName);
    }
  }

  crd(root: JsonNode): void {
    const specs = root.all("spec");
    for (let i = 0; i < specs.length; i++) {
      const spec = specs[i];
      if (!spec.isObject) continue;
      const groups = spec.all("group");
      for (let j = 0; j < groups.length; j++) {
        if (!groups[j].isString) continue;
        const group = groups[j].text();
        if (this.config.isHostGroup(group)) return this.forbid("API group \"" + group + "\" is the host cluster's; a tenant's CRD must use a group of its own");
        this.group(groups[j]);
      }
      const conversions = spec.all("conversion");
      for (let j = 0; j < conversions.length; j++) {
        if (!conversions[j].isObject) continue;
        const webhooks = conversions[j].all("webhook");
        for (let w = 0; w < webhooks.length; w++) {
          if (!webhooks[w].isObject) continue;
          const configs = webhooks[w].all("clientConfig");
          for (let c = 0; c < configs.length; c++) {
            if (!configs[c].isObject) continue;
            if (configs[c].has("url")) return this.forbid("a tenant's conversion webhook must be a service in its namespaces, not a URL");
            const services = configs[c].all("service");
            for (let s = 0; s < services.length; s++) {
              if (!services[s].isObject) continue;
              const namespaces = services[s].all("namespace");
              for (let n = 0; n < namespaces.length; n++) this.namespace(namespaces[n]);
            }
          }
        }
      }
    }
  }

  events(root: JsonNode): void {
    const keys = ["involvedObject", "regarding", "related"];
    for (let k = 0; k < keys.length; k++) {
      const references = root.all(keys[k]);
      for (let i = 0; i < references.length; i++) this.objectReference(references[i]);
    }
  }

  endpoints(root: JsonNode): void {
    if (this.plan.group == "discovery.k8s.io") {
      const lists = root.all("endpoints");
      for (let i = 0; i < lists.length; i++) {
        const endpoints = lists[i].items();
        for (let j = 0; j < endpoints.length; j++) {
          if (!endpoints[j].isObject) continue;
          const refs = endpoints[j].all("targetRef");
          for (let r = 0; r < refs.length; r++) this.objectReference(refs[r]);
        }
      }
      return;
    }
    const subsetLists = root.all("subsets");
    for (let i = 0; i < subsetLists.length; i++) {
      const subsets = subsetLists[i].items();
      for (let j = 0; j < subsets.length; j++) {
        if (!subsets[j].isObject) continue;
        const keys = ["addresses", "notReadyAddresses"];
        for (let k = 0; k < keys.length; k++) {
          const addressLists = subsets[j].all(keys[k]);
          for (let a = 0; a < addressLists.length; a++) {
            const addresses = addressLists[a].items();
            for (let b = 0; b < addresses.length; b++) {
              if (!addresses[b].isObject) continue;
              const refs = addresses[b].all("targetRef");
              for (let r = 0; r < refs.length; r++) this.objectReference(refs[r]);
            }
          }
        }
      }
    }
  }

  resourceAttributes(attributes: JsonNode): void {
    if (!attributes.isObject) return;
    const namespaces = attributes.all("namespace");
    let namespaced = false;
    for (let i = 0; i < namespaces.length; i++) {
      if (namespaces[i].isString && namespaces[i].text().length > 0) namespaced = true;
      this.namespace(namespaces[i]);
    }
    const groupNode = attributes.get("group");
    const group = groupNode !== null && groupNode.isString ? groupNode.text() : "";
    const resourceNode = attributes.get("resource");
    const resource = resourceNode !== null && resourceNode.isString ? resourceNode.text() : "";
    const groups = attributes.all("group");
    for (let i = 0; i < groups.length; i++) this.group(groups[i]);
    if (namespaced) return;
    const hostGroup = this.config.isHostGroup(group);
    if (group == "*" || resource == "*" || (hostGroup && !isTenantClusterKind(group, resource))) return;
    const names = attributes.all("name");
    for (let i = 0; i < names.length; i++) this.clusterName(names[i], group, resource);
  }

  review(root: JsonNode): void {
    const resource = this.plan.resource;
    const specs = root.all("spec");
    for (let i = 0; i < specs.length; i++) {
      const spec = specs[i];
      if (!spec.isObject) continue;
      if (resource == "selfsubjectrulesreviews") {
        const namespaces = spec.all("namespace");
        for (let j = 0; j < namespaces.length; j++) this.namespace(namespaces[j]);
        continue;
      }
      const attributes = spec.all("resourceAttributes");
      for (let j = 0; j < attributes.length; j++) this.resourceAttributes(attributes[j]);
      if (resource != "subjectaccessreviews" && resource != "localsubjectaccessreviews") continue;
      // Groups are mapped as they are given, none added: a SubjectAccessReview without groups asks about the
      // user alone, as on a plain cluster (where it would not include system:authenticated either).
      const users = spec.all("user");
      for (let j = 0; j < users.length; j++) this.user(users[j]);
      const groupLists = spec.all("groups");
      for (let j = 0; j < groupLists.length; j++) {
        const groups = groupLists[j].items();
        for (let g = 0; g < groups.length; g++) this.userGroup(groups[g]);
      }
    }
  }

  /** Maps an object (or a patch shaped like one) at the document root. */
  object(root: JsonNode): void {
    if (!root.isObject) return;
    const plan = this.plan;
    const keys = root.memberKeys();
    if (!this.full) {
      for (let k = 0; k < keys.length; k++) if (keys[k] == "$patch") return this.forbid("strategic merge directive $patch on a whole tenant object is not allowed");
    }
    const versions = root.all("apiVersion");
    for (let i = 0; i < versions.length; i++) this.apiVersion(versions[i]);
    const group = plan.group;
    const resource = plan.resource;
    const stored = plan.subresource.length == 0 && (plan.scope == Scope.Namespaced || plan.scope == Scope.TenantCluster) && resource != "localsubjectaccessreviews";
    const mapName = plan.scope == Scope.TenantCluster && plan.namesAreClusterScoped;
    this.metadataOf(root, mapName, stored);
    if (this.failed) return;
    if (plan.scope == Scope.Review || resource == "localsubjectaccessreviews") this.review(root);
    else if (group == "rbac.authorization.k8s.io") this.rbac(root);
    else if (group == "apiextensions.k8s.io" && resource == "customresourcedefinitions") this.crd(root);
    else if (resource == "events" && (group == "" || group == "events.k8s.io")) this.events(root);
    else if ((group == "" && resource == "endpoints") || (group == "discovery.k8s.io" && resource == "endpointslices")) this.endpoints(root);
    else if (plan.subresource.length == 0 || plan.subresource == "status") this.workload(root);
  }
}

function nodeText(node: JsonNode): string {
  return node.toJson();
}

/** Decodes a JSON pointer token (~1 is '/', ~0 is '~'). */
function pointerToken(token: string): string {
  return token.replaceAll("~1", "/").replaceAll("~0", "~");
}

function isIndexToken(token: string): bool {
  if (token == "-") return true;
  if (token.length == 0) return false;
  for (let i = 0; i < token.length; i++) {
    const c = token.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

const labelPointer = "tenancy.wharf.dev~1tenant";

/** Pointers whose removal or overwrite by move/copy could drop the tenant label. */
function coversLabels(pointer: string): bool {
  if (pointer.length == 0) return true;
  return pointer.endsWith("/metadata") || pointer.endsWith("/labels") || pointer.endsWith("/template") || pointer.endsWith("/jobTemplate") || pointer == "/spec";
}

function mapJsonPatch(mapper: Mapper, doc: JsonDocument): void {
  const root = doc.root;
  if (!root.isArray) return;
  const operations = root.items();
  for (let i = 0; i < operations.length && !mapper.failed; i++) {
    const operation = operations[i];
    if (!operation.isObject) continue;
    const opNode = operation.get("op");
    const op = opNode !== null && opNode.isString ? opNode.text() : "";
    const pathNodes = operation.all("path");
    const fromNodes = operation.all("from");
    for (let p = 0; p < pathNodes.length + fromNodes.length; p++) {
      const node = p < pathNodes.length ? pathNodes[p] : fromNodes[p - pathNodes.length];
      const pointer = node.isString ? node.text() : "";
      if (pointer.indexOf(labelPointer) >= 0) return mapper.forbid("JSON patch operations may not touch the label " + tenantLabel);
      const moving = op == "move" || op == "copy";
      if ((op == "remove" || moving) && coversLabels(pointer)) return mapper.forbid("JSON patch " + op + " of " + pointer + " could drop the label " + tenantLabel);
    }
    if (op != "add" && op != "replace" && op != "test") continue;
    const path = operation.get("path");
    if (path === null || !path.isString) continue;
    const values = operation.all("value");
    for (let v = 0; v < values.length && !mapper.failed; v++) mapPatchValue(mapper, path.text(), values[v], op != "test");
  }
}

/**
 * Maps a JSON patch value by placing it at its path in an otherwise empty
 * object, mapping that object, and taking the value back out.
 */
function mapPatchValue(mapper: Mapper, pointer: string, value: JsonNode, full: bool): void {
  const tokens = pointer.length == 0 ? new Array<string>() : pointer.substring(1).split("/");
  if (pointer.length > 0 && !pointer.startsWith("/")) return;
  const valueText = nodeText(value);
  const before = new Array<string>();
  const after = new Array<string>();
  for (let i = 0; i < tokens.length; i++) {
    if (isIndexToken(tokens[i])) {
      before.push("[");
      after.unshift("]");
    } else {
      before.push("{" + jsonString(pointerToken(tokens[i])) + ":");
      after.unshift("}");
    }
  }
  const prefix = before.join("");
  const wrapped = parseDocument(prefix + valueText + after.join(""));
  if (wrapped === null) return;
  const saved = mapper.full;
  mapper.full = full;
  mapper.object(wrapped.root);
  mapper.full = saved;
  if (!wrapped.changed) return;
  // Walk back down to the value.
  let node: JsonNode | null = wrapped.root;
  for (let i = 0; i < tokens.length && node !== null; i++) {
    if (isIndexToken(tokens[i])) {
      const items = node!.items();
      node = items.length == 0 ? null : items[0];
    } else {
      node = node!.get(pointerToken(tokens[i]));
    }
  }
  if (node === null) return;
  const mapped = nodeText(node!);
  if (mapped != valueText) value.setRaw(mapped, node!.kind);
}

/** Maps a tenant's request body; `text` is the whole body, decoded. */
export function mapBody(config: TenantFilterConfig, tenant: Tenant, plan: PathPlan, format: BodyFormat, text: string): BodyResult {
  const result = new BodyResult();
  const doc = parseDocument(text);
  if (doc === null) {
    const what = format == BodyFormat.ApplyPatch ? "apply patches must be sent as JSON for tenants" : "the request body is not JSON";
    result.refusal = new Refusal(400, "BadRequest", what + " (" + parseError + ")");
    return result;
  }
  const full = format == BodyFormat.Object || format == BodyFormat.ApplyPatch;
  const mapper = new Mapper(config, tenant, plan, full);
  if (format == BodyFormat.JsonPatch) mapJsonPatch(mapper, doc!);
  else mapper.object(doc!.root);
  if (mapper.refusal !== null) {
    result.refusal = mapper.refusal;
    return result;
  }
  if (doc!.changed) result.body = doc!.toString();
  return result;
}
