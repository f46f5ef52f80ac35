// Protobuf request bodies, as kubectl's typed client sends them (create
// namespace/configmap/deployment/role..., auth can-i, auth whoami): the
// "k8s\0" envelope (runtime.Unknown) around the object's message. Every
// Kubernetes object has its ObjectMeta at field 1; the filter maps that and
// the kind-specific fields of the kinds typed clients create (pod templates,
// RBAC, access reviews), keeping every other field's bytes as they came.
// Field numbers are Kubernetes' generated.proto ones.
import { Tenant, TenantFilterConfig } from "./config";
import { isPathSegmentName, mapGroup, mapNamespace, mapSubjectGroup, mapSubjectUser, tenantLabel } from "./naming";
import { namingRefusal, PathPlan, Refusal, Scope, upstreamObjectName } from "./request-path";

const magic: u8[] = [0x6b, 0x38, 0x73, 0x00];

class Field {
  constructor(
    public number: u32,
    public wire: u32,
    /** Where the field (its tag) starts and where it ends. */
    public tagStart: i32,
    public valueStart: i32,
    public end: i32,
  ) {}
  replacement: Uint8Array | null = null;
}

function readVarint(bytes: Uint8Array, at: i32, out: StaticArray<i64>): i32 {
  let value: u64 = 0;
  let shift: u64 = 0;
  while (at < bytes.length && shift < 64) {
    const b = bytes[at++];
    value |= (<u64>(b & 0x7f)) << shift;
    if ((b & 0x80) == 0) {
      out[0] = <i64>value;
      return at;
    }
    shift += 7;
  }
  return -1;
}

function writeVarint(out: Array<u8>, value: u64): void {
  while (value >= 0x80) {
    out.push(<u8>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out.push(<u8>value);
}

/** A message's fields, each kept as its source bytes unless replaced or added. */
class Message {
  fields: Field[] = [];
  changed: bool = false;

  constructor(public bytes: Uint8Array) {}

  static parse(bytes: Uint8Array): Message | null {
    const message = new Message(bytes);
    const scratch = new StaticArray<i64>(1);
    let at = 0;
    while (at < bytes.length) {
      const tagStart = at;
      at = readVarint(bytes, at, scratch);
      if (at < 0) return null;
      const tag = <u64>scratch[0];
      const wire = <u32>(tag & 7);
      const number = <u32>(tag >> 3);
      if (number == 0) return null;
      let valueStart = at;
      if (wire == 0) {
        at = readVarint(bytes, at, scratch);
        if (at < 0) return null;
      } else if (wire == 1) at += 8;
      else if (wire == 5) at += 4;
      else if (wire == 2) {
        at = readVarint(bytes, at, scratch);
        if (at < 0 || scratch[0] < 0 || scratch[0] > <i64>(bytes.length - at)) return null;
        valueStart = at;
        at += <i32>scratch[0];
      } else return null;
      if (at > bytes.length) return null;
      message.fields.push(new Field(number, wire, tagStart, valueStart, at));
    }
    return message;
  }

  /** Length-delimited fields numbered `number`. */
  all(number: u32): Field[] {
    const found = new Array<Field>();
    for (let i = 0; i < this.fields.length; i++) if (this.fields[i].number == number && this.fields[i].wire == 2) found.push(this.fields[i]);
    return found;
  }

  value(field: Field): Uint8Array {
    return field.replacement !== null ? field.replacement! : this.bytes.subarray(field.valueStart, field.end);
  }

  text(field: Field): string {
    const value = this.value(field);
    return String.UTF8.decodeUnsafe(value.dataStart, <usize>value.length);
  }

  setText(field: Field, text: string): void {
    if (this.text(field) == text) return;
    field.replacement = Uint8Array.wrap(String.UTF8.encode(text));
    this.changed = true;
  }

  setMessage(field: Field, message: Message): void {
    // An added (empty) field is written even when nothing was put in it.
    if (!message.changed && field.tagStart >= 0) return;
    field.replacement = message.encode();
    this.changed = true;
  }

  /** Appends a length-delimited field (visible to all() like the parsed ones). */
  add(number: u32, value: Uint8Array): void {
    const field = new Field(number, 2, -1, -1, -1);
    field.replacement = value;
    this.fields.push(field);
    this.changed = true;
  }

  encode(): Uint8Array {
    const parts = new Array<Uint8Array>();
    let size = 0;
    for (let i = 0; i < this.fields.length; i++) {
      const field = this.fields[i];
      let part: Uint8Array;
      if (field.replacement === null) part = this.bytes.subarray(field.tagStart, field.end);
      else {
        const head = new Array<u8>();
        writeVarint(head, (<u64>field.number << 3) | 2);
        writeVarint(head, <u64>field.replacement!.length);
        part = new Uint8Array(head.length + field.replacement!.length);
        for (let k = 0; k < head.length; k++) part[k] = head[k];
        part.set(field.replacement!, head.length);
      }
      parts.push(part);
      size += part.length;
    }
    const out = new Uint8Array(size);
    let at = 0;
    for (let i = 0; i < parts.length; i++) {
      out.set(parts[i], at);
      at += parts[i].length;
    }
    return out;
  }
}

function utf8(text: string): Uint8Array {
  return Uint8Array.wrap(String.UTF8.encode(text));
}

/** A map<string,string> entry message {key = 1; value = 2}. */
function entry(key: string, value: string): Uint8Array {
  const message = new Message(new Uint8Array(0));
  message.add(1, utf8(key));
  message.add(2, utf8(value));
  return message.encode();
}

export class ProtobufResult {
  refusal: Refusal | null = null;
  body: Uint8Array | null = null;
}

class ProtoMapper {
  refusal: Refusal | null = null;
  /** The workload's PodTemplateSpec field in its spec (0: none). */
  templateField: u32 = 0;
  /** The top-level object's own ObjectMeta: name mapped (cluster-scoped), labels set (stored). */
  mapName: bool = false;
  stored: bool = false;

  constructor(
    public config: TenantFilterConfig,
    public tenant: Tenant,
    public plan: PathPlan,
  ) {}

  private set(message: Message, field: Field, mapped: string | null): void {
    if (mapped === null) {
      if (this.refusal === null) this.refusal = namingRefusal();
      return;
    }
    message.setText(field, mapped!);
  }

  /** Runs `edit` on each sub-message `number` of `message` and writes it back. */
  private each(message: Message, number: u32, edit: (mapper: ProtoMapper, sub: Message) => void): void {
    const fields = message.all(number);
    for (let i = 0; i < fields.length && this.refusal === null; i++) {
      const sub = Message.parse(message.value(fields[i]));
      if (sub === null) {
        this.refusal = new Refusal(400, "BadRequest", "the protobuf request body is malformed");
        return;
      }
      edit(this, sub!);
      message.setMessage(fields[i], sub!);
    }
  }

  /** The tenant label in a labels map (field `number` of map entries). */
  labels(message: Message, number: u32): void {
    const entries = message.all(number);
    for (let i = 0; i < entries.length; i++) {
      const pair = Message.parse(message.value(entries[i]));
      if (pair === null) continue;
      const keys = pair!.all(1);
      if (keys.length == 0 || pair!.text(keys[keys.length - 1]) != tenantLabel) continue;
      const values = pair!.all(2);
      if (values.length == 0 || pair!.text(values[values.length - 1]) != this.tenant.name) {
        if (this.refusal === null) this.refusal = new Refusal(403, "Forbidden", "the label " + tenantLabel + " is set by the gateway and must be \"" + this.tenant.name + "\"");
      }
      return;
    }
    message.add(number, entry(tenantLabel, this.tenant.name));
  }

  /** ObjectMeta: namespace, cluster-scoped name, the tenant label, owner apiVersions. */
  objectMeta(meta: Message, mapName: bool, setLabels: bool): void {
    const namespaces = meta.all(3);
    for (let i = 0; i < namespaces.length; i++) {
      const value = meta.text(namespaces[i]);
      if (value.length > 0) this.set(meta, namespaces[i], mapNamespace(this.tenant.name, value));
    }
    if (mapName) {
      for (let number: u32 = 1; number <= 2; number++) {
        const names = meta.all(number);
        for (let i = 0; i < names.length; i++) {
          const value = meta.text(names[i]);
          if (value.length > 0) this.set(meta, names[i], upstreamObjectName(this.config, this.tenant, this.plan.group, this.plan.resource, value));
        }
      }
    }
    if (setLabels) this.labels(meta, 11);
    this.each(meta, 13, (mapper: ProtoMapper, owner: Message): void => {
      const versions = owner.all(5);
      for (let i = 0; i < versions.length; i++) {
        const value = owner.text(versions[i]);
        const slash = value.indexOf("/");
        if (slash > 0) {
          const group = mapGroup(mapper.tenant.name, value.substring(0, slash), mapper.config.hostGroups);
          mapper.set(owner, versions[i], group === null ? null : group! + value.substring(slash));
        }
      }
    });
  }

  /** Field `number` of `owner` is a PodTemplateSpec (metadata = 1): its labels get the tenant label. */
  template(owner: Message, number: u32): void {
    this.each(owner, number, (mapper: ProtoMapper, template: Message): void => {
      if (template.all(1).length == 0) template.add(1, new Uint8Array(0));
      mapper.each(template, 1, (inner: ProtoMapper, meta: Message): void => inner.objectMeta(meta, false, true));
    });
  }

  workload(object: Message): void {
    const group = this.plan.group;
    const resource = this.plan.resource;
    let templateField: u32 = 0;
    if (group == "apps" && (resource == "deployments" || resource == "replicasets" || resource == "statefulsets")) templateField = 3;
    else if (group == "apps" && resource == "daemonsets") templateField = 2;
    else if (group == "" && resource == "replicationcontrollers") templateField = 3;
    else if (group == "batch" && resource == "jobs") templateField = 6;
    if (group == "" && resource == "podtemplates") {
      this.template(object, 2);
      return;
    }
    this.templateField = templateField;
    this.each(object, 2, (mapper: ProtoMapper, spec: Message): void => {
      if (mapper.templateField > 0) mapper.template(spec, mapper.templateField);
      if (mapper.plan.group == "apps" && mapper.plan.resource == "statefulsets") {
        mapper.each(spec, 4, (inner: ProtoMapper, claim: Message): void => {
          if (claim.all(1).length == 0) claim.add(1, new Uint8Array(0));
          inner.each(claim, 1, (deepest: ProtoMapper, meta: Message): void => deepest.objectMeta(meta, false, true));
        });
      }
      if (mapper.plan.group == "batch" && mapper.plan.resource == "cronjobs") {
        mapper.each(spec, 5, (inner: ProtoMapper, jobTemplate: Message): void => {
          if (jobTemplate.all(1).length == 0) jobTemplate.add(1, new Uint8Array(0));
          inner.each(jobTemplate, 1, (deepest: ProtoMapper, meta: Message): void => deepest.objectMeta(meta, false, true));
          inner.each(jobTemplate, 2, (deepest: ProtoMapper, jobSpec: Message): void => deepest.template(jobSpec, 6));
        });
      }
    });
  }

  rbac(object: Message): void {
    const resource = this.plan.resource;
    if (resource == "rolebindings" || resource == "clusterrolebindings") {
      this.each(object, 2, (mapper: ProtoMapper, subject: Message): void => {
        const kinds = subject.all(1);
        const kind = kinds.length == 0 ? "" : subject.text(kinds[kinds.length - 1]);
        const names = subject.all(3);
        if (kind == "User") for (let i = 0; i < names.length; i++) mapper.set(subject, names[i], mapSubjectUser(mapper.tenant.name, subject.text(names[i])));
        else if (kind == "Group") for (let i = 0; i < names.length; i++) mapper.set(subject, names[i], mapSubjectGroup(mapper.tenant.name, subject.text(names[i])));
        else if (kind == "ServiceAccount") {
          const namespaces = subject.all(4);
          if (namespaces.length == 0 || subject.text(namespaces[namespaces.length - 1]).length == 0) {
            if (mapper.refusal === null) mapper.refusal = new Refusal(422, "Invalid", "ServiceAccount subject has no namespace");
            return;
          }
          for (let i = 0; i < namespaces.length; i++) mapper.set(subject, namespaces[i], mapNamespace(mapper.tenant.name, subject.text(namespaces[i])));
        } else if (mapper.refusal === null) mapper.refusal = new Refusal(422, "Invalid", "subject kind \"" + kind + "\" is not User, Group or ServiceAccount");
      });
      this.each(object, 3, (mapper: ProtoMapper, ref: Message): void => {
        const kinds = ref.all(2);
        const kind = kinds.length == 0 ? "" : ref.text(kinds[kinds.length - 1]);
        const names = ref.all(3);
        if (kind == "ClusterRole") {
          for (let i = 0; i < names.length; i++) mapper.set(ref, names[i], upstreamObjectName(mapper.config, mapper.tenant, "rbac.authorization.k8s.io", "clusterroles", ref.text(names[i])));
        } else if (kind == "Role") {
          for (let i = 0; i < names.length; i++) {
            if (!isPathSegmentName(ref.text(names[i])) && mapper.refusal === null) mapper.refusal = new Refusal(422, "Invalid", "roleRef \"" + ref.text(names[i]) + "\" is not a valid name");
          }
        } else if (kind.length > 0 && mapper.refusal === null) mapper.refusal = new Refusal(422, "Invalid", "roleRef kind \"" + kind + "\" is not Role or ClusterRole");
      });
      return;
    }
    if (resource != "roles" && resource != "clusterroles") return;
    this.each(object, 2, (mapper: ProtoMapper, rule: Message): void => {
      const groups = rule.all(2);
      for (let i = 0; i < groups.length; i++) {
        const value = rule.text(groups[i]);
        if (value != "*") mapper.set(rule, groups[i], mapGroup(mapper.tenant.name, value, mapper.config.hostGroups));
      }
      // resourceNames of the tenant's cluster-scoped kinds are upstream names: a rule naming them
      // is refused here rather than half-mapped (JSON bodies map them; kubectl create role sends few).
      const resources = rule.all(3);
      for (let i = 0; i < resources.length; i++) {
        const value = rule.text(resources[i]);
        if ((value == "namespaces" || value == "clusterroles" || value == "clusterrolebindings" || value == "customresourcedefinitions") && rule.all(4).length > 0 && mapper.refusal === null) {
          mapper.refusal = new Refusal(415, "UnsupportedMediaType", "send rules naming resourceNames of " + value + " as JSON");
        }
      }
    });
    this.each(object, 3, (mapper: ProtoMapper, aggregation: Message): void => {
      mapper.each(aggregation, 1, (inner: ProtoMapper, selector: Message): void => {
        if (selector.all(2).length > 0 && inner.refusal === null) inner.refusal = new Refusal(415, "UnsupportedMediaType", "send aggregation rules with matchExpressions as JSON");
        inner.labels(selector, 1);
      });
    });
  }

  resourceAttributes(attributes: Message): void {
    const namespaces = attributes.all(1);
    let namespaced = false;
    for (let i = 0; i < namespaces.length; i++) {
      const value = attributes.text(namespaces[i]);
      if (value.length == 0) continue;
      namespaced = true;
      this.set(attributes, namespaces[i], mapNamespace(this.tenant.name, value));
    }
    const groups = attributes.all(3);
    const group = groups.length == 0 ? "" : attributes.text(groups[groups.length - 1]);
    const resources = attributes.all(5);
    const resource = resources.length == 0 ? "" : attributes.text(resources[resources.length - 1]);
    for (let i = 0; i < groups.length; i++) {
      const value = attributes.text(groups[i]);
      if (value != "*") this.set(attributes, groups[i], mapGroup(this.tenant.name, value, this.config.hostGroups));
    }
    if (namespaced || group == "*" || resource == "*") return;
    const hostGroup = this.config.isHostGroup(group);
    const tenantKind = (group == "" && resource == "namespaces") || (group == "rbac.authorization.k8s.io" && (resource == "clusterroles" || resource == "clusterrolebindings")) || (group == "apiextensions.k8s.io" && resource == "customresourcedefinitions");
    if (hostGroup && !tenantKind) return;
    const names = attributes.all(7);
    for (let i = 0; i < names.length; i++) {
      const value = attributes.text(names[i]);
      if (value.length > 0) this.set(attributes, names[i], upstreamObjectName(this.config, this.tenant, group, resource, value));
    }
  }

  review(object: Message): void {
    this.each(object, 2, (mapper: ProtoMapper, spec: Message): void => {
      const resource = mapper.plan.resource;
      if (resource == "selfsubjectrulesreviews") {
        const namespaces = spec.all(1);
        for (let i = 0; i < namespaces.length; i++) {
          const value = spec.text(namespaces[i]);
          if (value.length > 0) mapper.set(spec, namespaces[i], mapNamespace(mapper.tenant.name, value));
        }
        return;
      }
      mapper.each(spec, 1, (inner: ProtoMapper, attributes: Message): void => inner.resourceAttributes(attributes));
      if (resource != "subjectaccessreviews" && resource != "localsubjectaccessreviews") return;
      const users = spec.all(3);
      for (let i = 0; i < users.length; i++) if (spec.text(users[i]).length > 0) mapper.set(spec, users[i], mapSubjectUser(mapper.tenant.name, spec.text(users[i])));
      const groups = spec.all(4);
      for (let i = 0; i < groups.length; i++) if (spec.text(groups[i]).length > 0) mapper.set(spec, groups[i], mapSubjectGroup(mapper.tenant.name, spec.text(groups[i])));
    });
  }

  object(object: Message): void {
    const plan = this.plan;
    const resource = plan.resource;
    const review = plan.scope == Scope.Review || resource == "localsubjectaccessreviews";
    this.stored = plan.subresource.length == 0 && (plan.scope == Scope.Namespaced || plan.scope == Scope.TenantCluster) && !review;
    this.mapName = plan.scope == Scope.TenantCluster && plan.namesAreClusterScoped;
    if (this.stored && object.all(1).length == 0) object.add(1, new Uint8Array(0));
    this.each(object, 1, (mapper: ProtoMapper, meta: Message): void => mapper.objectMeta(meta, mapper.mapName, mapper.stored));
    if (this.refusal !== null) return;
    if (review) this.review(object);
    else if (plan.group == "rbac.authorization.k8s.io") this.rbac(object);
    else if (plan.subresource.length == 0) this.workload(object);
  }
}

/** Kinds whose protobuf bodies the filter maps; others must come as JSON. */
function mapsProtobuf(plan: PathPlan): bool {
  const group = plan.group;
  if (!(group == "" || plan.scope == Scope.Review || group == "apps" || group == "batch" || group == "rbac.authorization.k8s.io" || group == "policy" || group == "networking.k8s.io" || group == "autoscaling" || group == "coordination.k8s.io" || group == "authorization.k8s.io" || group == "scheduling.k8s.io" || group == "discovery.k8s.io" || group == "events.k8s.io")) return false;
  // Kinds whose bodies name other objects the protobuf path does not map.
  if ((group == "" && (plan.resource == "events" || plan.resource == "endpoints")) || group == "discovery.k8s.io" || group == "events.k8s.io") return false;
  return true;
}

/** Maps a protobuf ("k8s\0" + runtime.Unknown) request body. */
export function mapProtobufBody(config: TenantFilterConfig, tenant: Tenant, plan: PathPlan, bytes: Uint8Array): ProtobufResult {
  const result = new ProtobufResult();
  if (!mapsProtobuf(plan)) {
    result.refusal = new Refusal(415, "UnsupportedMediaType", "the gateway maps " + (plan.group.length == 0 ? plan.resource : plan.resource + "." + plan.group) + " bodies as JSON only; send application/json");
    return result;
  }
  for (let i = 0; i < 4; i++) {
    if (bytes.length < 4 || bytes[i] != magic[i]) {
      result.refusal = new Refusal(400, "BadRequest", "the protobuf request body has no k8s envelope");
      return result;
    }
  }
  const envelope = Message.parse(bytes.subarray(4));
  if (envelope === null) {
    result.refusal = new Refusal(400, "BadRequest", "the protobuf request body is malformed");
    return result;
  }
  const encodings = envelope!.all(3);
  if (encodings.length > 0 && envelope!.text(encodings[0]).length > 0) {
    result.refusal = new Refusal(415, "UnsupportedMediaType", "encoded protobuf bodies are not supported");
    return result;
  }
  const mapper = new ProtoMapper(config, tenant, plan);
  const raws = envelope!.all(2);
  for (let i = 0; i < raws.length && mapper.refusal === null; i++) {
    const object = Message.parse(envelope!.value(raws[i]));
    if (object === null) {
      result.refusal = new Refusal(400, "BadRequest", "the protobuf request body is malformed");
      return result;
    }
    mapper.object(object!);
    envelope!.setMessage(raws[i], object!);
  }
  if (mapper.refusal !== null) {
    result.refusal = mapper.refusal;
    return result;
  }
  if (!envelope!.changed) return result;
  const encoded = envelope!.encode();
  const out = new Uint8Array(4 + encoded.length);
  for (let i = 0; i < 4; i++) out[i] = magic[i];
  out.set(encoded, 4);
  result.body = out;
  return result;
}
