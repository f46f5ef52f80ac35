// TenantFilterConfig (proto/wharf/tenant/v1/tenant.proto) decoded from the
// plugin configuration bytes. A config the filter cannot apply safely is
// refused whole, with the field named: a half-understood tenant list could
// hand one tenant another's world.
import { ProtoReader } from "../gateway/protobuf";
import { isTenantName } from "./naming";

export class Tenant {
  name: string = "";
  /** "resource" (core group) or "resource.group": readable as they are, get/list/watch only. */
  sharedViews: string[] = [];
  /** 32 bytes: seals the continue tokens this tenant is handed. */
  continueKey: Uint8Array = new Uint8Array(0);
  /** Derived from continueKey by continue-token.ts on first use. */
  continueMacKey: Uint8Array = new Uint8Array(0);
  continueEncKey: Uint8Array = new Uint8Array(0);
  /** "wt-<name>-": every upstream name of this tenant starts with it. */
  prefix: string = "";

  /** Whether `resource` of `group` is one of this tenant's shared views. */
  sharesView(group: string, resource: string): bool {
    const wanted = group.length == 0 ? resource : resource + "." + group;
    for (let i = 0; i < this.sharedViews.length; i++) if (this.sharedViews[i] == wanted) return true;
    return false;
  }
}

export class TenantFilterConfig {
  tenants: Tenant[] = [];
  /** Groups served by the host that tenants see unmapped; "" (core) is always one. */
  hostGroups: string[] = [""];
  tenantHeader: string = "x-wharf-tenant";

  tenant(name: string): Tenant | null {
    for (let i = 0; i < this.tenants.length; i++) if (this.tenants[i].name == name) return this.tenants[i];
    return null;
  }

  isHostGroup(group: string): bool {
    return this.hostGroups.includes(group);
  }
}

export class ConfigResult {
  config: TenantFilterConfig | null = null;
  error: string = "";
}

export const continueKeyBytes = 32;

function decodeTenant(bytes: Uint8Array, reader: ProtoReader): Tenant {
  const tenant = new Tenant();
  const r = new ProtoReader(bytes);
  let tag = r.tag();
  while (tag != 0) {
    const field = tag >> 3;
    const wire = tag & 7;
    if (field == 1 && wire == 2) tenant.name = r.string();
    else if (field == 2 && wire == 2) tenant.sharedViews.push(r.string());
    else if (field == 3 && wire == 2) tenant.continueKey = r.bytes().slice();
    else r.skip(wire);
    tag = r.tag();
  }
  if (r.failed) reader.failed = true;
  tenant.prefix = "wt-" + tenant.name + "-";
  return tenant;
}

/** "pods", "storageclasses.storage.k8s.io": lowercase DNS-ish, no '/' or '*'. */
function isViewName(view: string): bool {
  if (view.length == 0 || view.length > 253) return false;
  for (let i = 0; i < view.length; i++) {
    const c = view.charCodeAt(i);
    const ok = (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c == 0x2d || c == 0x2e;
    if (!ok) return false;
  }
  return view.charCodeAt(0) != 0x2e && view.charCodeAt(view.length - 1) != 0x2e;
}

/** A header name Envoy would keep as given: lowercase token characters. */
function isHeaderName(name: string): bool {
  if (name.length == 0 || name.startsWith(":")) return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    const ok = (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c == 0x2d || c == 0x5f;
    if (!ok) return false;
  }
  return true;
}

export function decodeConfig(bytes: Uint8Array): ConfigResult {
  const result = new ConfigResult();
  const config = new TenantFilterConfig();
  let header = "";
  const r = new ProtoReader(bytes);
  let tag = r.tag();
  while (tag != 0) {
    const field = tag >> 3;
    const wire = tag & 7;
    if (field == 1 && wire == 2) config.tenants.push(decodeTenant(r.bytes(), r));
    else if (field == 2 && wire == 2) {
      const group = r.string();
      if (!config.hostGroups.includes(group)) config.hostGroups.push(group);
    } else if (field == 3 && wire == 2) header = r.string();
    else r.skip(wire);
    tag = r.tag();
  }
  if (r.failed) {
    result.error = "configuration is not a wharf.tenant.v1.TenantFilterConfig (malformed protobuf)";
    return result;
  }
  if (header.length > 0) {
    if (!isHeaderName(header)) {
      result.error = "tenant_header: \"" + header + "\" is not a lowercase header name";
      return result;
    }
    config.tenantHeader = header;
  }
  for (let i = 0; i < config.hostGroups.length; i++) {
    const group = config.hostGroups[i];
    // A host group named like a tenant group would make "wt-" names ambiguous.
    if (group.startsWith("wt-") || group.indexOf("/") >= 0) {
      result.error = "host_groups: \"" + group + "\" cannot be a host group (no '/', and \"wt-\" is reserved for tenants)";
      return result;
    }
  }
  for (let i = 0; i < config.tenants.length; i++) {
    const tenant = config.tenants[i];
    const at = "tenants[" + i.toString() + "]";
    if (!isTenantName(tenant.name)) {
      result.error = at + ".name: \"" + tenant.name + "\" is not a tenant name ([a-z][a-z0-9]{0,11})";
      return result;
    }
    for (let j = 0; j < i; j++) {
      if (config.tenants[j].name == tenant.name) {
        result.error = at + ".name: \"" + tenant.name + "\" is configured twice";
        return result;
      }
    }
    if (tenant.continueKey.length != continueKeyBytes) {
      result.error = at + ".continue_key: must be " + continueKeyBytes.toString() + " bytes, is " + tenant.continueKey.length.toString();
      return result;
    }
    for (let j = 0; j < tenant.sharedViews.length; j++) {
      const view = tenant.sharedViews[j];
      if (view == "namespaces" || view == "clusterroles.rbac.authorization.k8s.io" || view == "clusterrolebindings.rbac.authorization.k8s.io" || view == "customresourcedefinitions.apiextensions.k8s.io") {
        result.error = at + ".shared_views[" + j.toString() + "]: \"" + view + "\" is a kind every tenant has its own of; it cannot be shared";
        return result;
      }
      if (!isViewName(view)) {
        result.error = at + ".shared_views[" + j.toString() + "]: \"" + tenant.sharedViews[j] + "\" is not \"resource\" or \"resource.group\"";
        return result;
      }
    }
  }
  result.config = config;
  return result;
}
