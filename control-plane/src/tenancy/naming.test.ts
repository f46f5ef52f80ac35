// Property test of the tenant name mapping (naming.ts): seeded random and
// adversarial tenant names and object names, checked against Kubernetes' own
// validation rules written out as regular expressions (the oracle, apart
// from the code under test). A failure prints its seed so it can be replayed
// with WHARF_NAMING_SEED.
import { seededRandom } from "@wharf/testkit";
import { describe, expect, it } from "vitest";
import {
  builtinGroups,
  hostGroupSet,
  isTenantName,
  mapApiVersion,
  mapClusterName,
  mapCrdName,
  mapGroup,
  mapIdentity,
  mapNamespace,
  mapRoleRef,
  mapSubject,
  mapUser,
  NamingError,
  splitUpstreamName,
  tenantNameError,
  tenantOfIdentity,
  tenantPrefix,
  tenantSystemNamespaces,
  unmapApiVersion,
  unmapClusterName,
  unmapCrdName,
  unmapGroup,
  unmapNamespace,
  unmapRoleRef,
  unmapSubject,
  unmapUser,
  type Subject,
} from "./naming.js";

const seed = Number(process.env.WHARF_NAMING_SEED ?? 0x5eed12);
const cases = 4000;

// Kubernetes' rules (k8s.io/apimachinery/pkg/util/validation), the oracle.
const dnsLabel = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const dnsSubdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const isLabel = (s: string): boolean => s.length <= 63 && dnsLabel.test(s);
const isSubdomain = (s: string): boolean => s.length <= 253 && dnsSubdomain.test(s);
const isPathSegment = (s: string): boolean => s !== "" && s !== "." && s !== ".." && !/[/%]/.test(s);
const tenantRule = /^[a-z][a-z0-9]{0,11}$/;

const hostNamespaces = ["kube-system", "kube-public", "kube-node-lease", "default"];
const hosts = hostGroupSet();

// Tenants that are prefixes of each other, of "kube-*", of "wt-", at the length limit.
const adversarialTenants = ["a", "ac", "acme", "acme2", "acme22", "kube", "kubes", "k", "wt", "w", "default", "system", "abcdefghijkl", "z9", "wharf"];

function randomTenant(random: () => number): string {
  if (random() < 0.5) return adversarialTenants[Math.floor(random() * adversarialTenants.length)]!;
  const length = 1 + Math.floor(random() * 12);
  let name = "abcdefghijklmnopqrstuvwxyz"[Math.floor(random() * 26)]!;
  while (name.length < length) name += "abcdefghijklmnopqrstuvwxyz0123456789"[Math.floor(random() * 36)]!;
  return name;
}

/** Names biased towards the edges: empty, separators, prefixes of other tenants, system names, lengths at each limit. */
function randomName(random: () => number, tenants: readonly string[]): string {
  const pick = random();
  const other = tenants[Math.floor(random() * tenants.length)]!;
  if (pick < 0.1) {
    const fixed = ["", "-", ".", "..", "wt-", "wt", "wt-" + other, "wt-" + other + "-", "wt-" + other + "-x", "kube-system", "default", "kube",
      "-a", "a-", "a.b", "a..b", "A", "x/y", "x%2f", "system:masters", "a".repeat(63), "a".repeat(64), "b".repeat(253), "c".repeat(254)];
    return fixed[Math.floor(random() * fixed.length)]!;
  }
  const alphabet = pick < 0.7 ? "abcz019-" : pick < 0.9 ? "abz09-." : "aZ9-._:/%é";
  const length = random() < 0.9 ? Math.floor(random() * 20) : Math.floor(random() * 300);
  let name = random() < 0.2 ? "wt-" + other + (random() < 0.5 ? "-" : "") : "";
  while (name.length < length) name += alphabet[Math.floor(random() * alphabet.length)]!;
  return name;
}

function refused(fn: () => unknown): NamingError | undefined {
  try {
    fn();
    return undefined;
  } catch (error) {
    if (error instanceof NamingError) return error;
    throw error;
  }
}

function otherTenant(tenant: string, random: () => number): string {
  for (;;) {
    const other = randomTenant(random);
    if (other !== tenant) return other;
  }
}

describe("tenant names", () => {
  it("accepts exactly [a-z][a-z0-9]{0,11} and says why it refuses", () => {
    const random = seededRandom(seed);
    const alphabet = "ab09-_.Az:é ";
    for (let i = 0; i < cases; i++) {
      let name = "";
      const length = Math.floor(random() * 15);
      while (name.length < length) name += alphabet[Math.floor(random() * alphabet.length)]!;
      expect(isTenantName(name), `seed ${seed}: "${name}"`).toBe(tenantRule.test(name));
    }
    expect(tenantNameError("")).toMatch(/empty/);
    expect(tenantNameError("ac-me")).toMatch(/may not contain '-'/);
    expect(tenantNameError("wt-")).toMatch(/may not contain '-'/);
    expect(tenantNameError("kube-system")).toMatch(/at most 12|may not contain '-'/);
    expect(tenantNameError("abcdefghijklm")).toMatch(/13 characters; at most 12/);
    expect(tenantNameError("1abc")).toMatch(/must start with a lowercase letter/);
    expect(tenantNameError("Acme")).toMatch(/must start with a lowercase letter/);
    expect(tenantNameError("acme_")).toMatch(/only a-z and 0-9/);
    expect(tenantNameError("abcdefghijkl")).toBeUndefined();
    // Every mapping refuses an invalid tenant rather than produce a name.
    for (const bad of ["", "ac-me", "wt-", "Kube", "abcdefghijklm"]) {
      expect(refused(() => mapNamespace(bad, "default"))).toBeInstanceOf(NamingError);
      expect(refused(() => mapClusterName(bad, "x"))).toBeInstanceOf(NamingError);
      expect(refused(() => mapGroup(bad, "apps", hosts))).toBeInstanceOf(NamingError);
      expect(refused(() => mapUser(bad, "alice"))).toBeInstanceOf(NamingError);
      expect(refused(() => unmapNamespace(bad, "wt-ac-me-x"))).toBeInstanceOf(NamingError);
    }
  });
});

describe("namespaces", () => {
  it("map injectively into wt-T-, valid 63-character labels, never a system namespace, and round-trip", () => {
    const random = seededRandom(seed + 1);
    const seen = new Map<string, string>();
    let mapped = 0;
    for (let i = 0; i < cases; i++) {
      const tenant = randomTenant(random);
      const ns = i < tenantSystemNamespaces.length ? tenantSystemNamespaces[i]! : randomName(random, adversarialTenants);
      const context = `seed ${seed + 1}: tenant "${tenant}" namespace "${ns}"`;
      const error = refused(() => mapNamespace(tenant, ns));
      const shouldMap = isLabel(ns) && ns.length <= 63 - 4 - tenant.length;
      expect(error === undefined, `${context}: ${error?.message}`).toBe(shouldMap);
      if (error) {
        expect(error.message, context).toMatch(/namespace ".*" (is not a valid name|is \d+ characters; a tenant ".*" namespace may have at most \d+)/);
        continue;
      }
      mapped++;
      const upstream = mapNamespace(tenant, ns);
      expect(isLabel(upstream), context).toBe(true);
      expect(upstream.startsWith(`wt-${tenant}-`), context).toBe(true);
      expect(hostNamespaces, context).not.toContain(upstream);
      expect(splitUpstreamName(upstream), context).toEqual({ tenant, rest: ns });
      expect(unmapNamespace(tenant, upstream), context).toBe(ns);
      expect(unmapNamespace(otherTenant(tenant, random), upstream), context).toBeNull();
      const owner = seen.get(upstream);
      if (owner !== undefined) expect(owner, `${context}: collides`).toBe(`${tenant}/${ns}`);
      seen.set(upstream, `${tenant}/${ns}`);
    }
    expect(mapped).toBeGreaterThan(cases / 3);
  });

  it("unmap is null for the host's namespaces and for what no mapping produces, and inverts map otherwise", () => {
    const random = seededRandom(seed + 2);
    for (const tenant of adversarialTenants) {
      for (const host of [...hostNamespaces, "wt-", "wt", `wt-${tenant}`, `wt-${tenant}-`, `wt-${tenant}--x`, `wt-${tenant}x-y`]) {
        expect(unmapNamespace(tenant, host), `${tenant} ${host}`).toBeNull();
      }
    }
    expect(unmapNamespace("kube", "kube-system")).toBeNull();
    expect(unmapNamespace("acme", "wt-acme2-default")).toBeNull();
    expect(unmapNamespace("acme2", "wt-acme-default")).toBeNull();
    for (let i = 0; i < cases; i++) {
      const tenant = randomTenant(random);
      const upstream = random() < 0.5 ? `wt-${randomTenant(random)}-${randomName(random, adversarialTenants)}` : randomName(random, adversarialTenants);
      const ns = unmapNamespace(tenant, upstream);
      if (ns !== null) expect(mapNamespace(tenant, ns), `seed ${seed + 2}: ${tenant} ${upstream}`).toBe(upstream);
    }
  });
});

describe("cluster-scoped names", () => {
  it("map injectively into wt-T-, keep the name's own rule, stay within 253 or refuse, and round-trip", () => {
    const random = seededRandom(seed + 3);
    const seen = new Map<string, string>();
    for (let i = 0; i < cases; i++) {
      const tenant = randomTenant(random);
      const name = randomName(random, adversarialTenants);
      const context = `seed ${seed + 3}: tenant "${tenant}" name "${name}"`;
      const error = refused(() => mapClusterName(tenant, name));
      expect(error === undefined, `${context}: ${error?.message}`).toBe(isPathSegment(name) && name.length <= 253 - 4 - tenant.length);
      if (error) continue;
      const upstream = mapClusterName(tenant, name);
      expect(upstream.length, context).toBeLessThanOrEqual(253);
      expect(isPathSegment(upstream), context).toBe(true);
      if (isSubdomain(name)) expect(isSubdomain(upstream), context).toBe(true);
      if (isLabel(name) && upstream.length <= 63) expect(isLabel(upstream), context).toBe(true);
      expect(upstream.startsWith(`wt-${tenant}-`), context).toBe(true);
      expect(splitUpstreamName(upstream), context).toEqual({ tenant, rest: name });
      expect(unmapClusterName(tenant, upstream), context).toBe(name);
      expect(unmapClusterName(otherTenant(tenant, random), upstream), context).toBeNull();
      const owner = seen.get(upstream);
      if (owner !== undefined) expect(owner, `${context}: collides`).toBe(`${tenant}/${name}`);
      seen.set(upstream, `${tenant}/${name}`);
    }
    for (const host of ["cluster-admin", "admin", "system:masters", "wt-", "wt-acme", "kube-system"]) {
      expect(unmapClusterName("acme", host)).toBeNull();
      expect(unmapClusterName("kube", host)).toBeNull();
    }
    expect(unmapClusterName("acme", "wt-acme2-admin")).toBeNull();
  });

  it("roleRefs: a ClusterRole is always the tenant's own, a Role keeps its name", () => {
    expect(mapRoleRef("acme", { kind: "ClusterRole", name: "cluster-admin", apiGroup: "rbac.authorization.k8s.io" }).name).toBe("wt-acme-cluster-admin");
    expect(mapRoleRef("acme", { kind: "Role", name: "edit" }).name).toBe("edit");
    expect(refused(() => mapRoleRef("acme", { kind: "Group", name: "x" }))?.message).toMatch(/not Role or ClusterRole/);
    expect(unmapRoleRef("acme", { kind: "ClusterRole", name: "cluster-admin" })).toBeNull();
    expect(unmapRoleRef("acme", { kind: "ClusterRole", name: "wt-acme2-x" })).toBeNull();
    expect(unmapRoleRef("acme", { kind: "ClusterRole", name: "wt-acme-x" })?.name).toBe("x");
  });
});

describe("API groups, apiVersions and CRDs", () => {
  it("keep host groups, map every other group injectively, and round-trip", () => {
    const random = seededRandom(seed + 4);
    const seen = new Map<string, string>();
    for (let i = 0; i < cases; i++) {
      const tenant = randomTenant(random);
      const group = random() < 0.15 ? [...builtinGroups, "meta.k8s.io"][Math.floor(random() * (builtinGroups.length + 1))]! : randomName(random, adversarialTenants);
      const context = `seed ${seed + 4}: tenant "${tenant}" group "${group}"`;
      const host = group === "" || group === "meta.k8s.io" || builtinGroups.includes(group);
      const error = refused(() => mapGroup(tenant, group, hosts));
      expect(error === undefined, `${context}: ${error?.message}`).toBe(host || (isSubdomain(group) && group.length <= 253 - 4 - tenant.length));
      if (error) continue;
      const upstream = mapGroup(tenant, group, hosts);
      expect(unmapGroup(tenant, upstream, hosts), context).toBe(group);
      const version = mapApiVersion(tenant, group === "" ? "v1" : `${group}/v1beta1`, hosts);
      expect(version, context).toBe(group === "" ? "v1" : `${upstream}/v1beta1`);
      expect(unmapApiVersion(tenant, version, hosts), context).toBe(group === "" ? "v1" : `${group}/v1beta1`);
      if (host) {
        expect(upstream, context).toBe(group);
        continue;
      }
      expect(isSubdomain(upstream), context).toBe(true);
      expect(upstream.startsWith(`wt-${tenant}-`), context).toBe(true);
      expect(unmapGroup(otherTenant(tenant, random), upstream, hosts), context).toBeNull();
      const owner = seen.get(upstream);
      if (owner !== undefined) expect(owner, `${context}: collides`).toBe(`${tenant}/${group}`);
      seen.set(upstream, `${tenant}/${group}`);
    }
    expect(unmapGroup("acme", "wharf.dev", hosts)).toBeNull();
    expect(unmapGroup("acme", "wt-acme2-example.com", hosts)).toBeNull();
    expect(unmapGroup("acme", "wt-acme-apps", hosts)).toBeNull();
    expect(refused(() => hostGroupSet(["apps", "wt-x-y"]))?.message).toMatch(/reserved for tenants/);
  });

  it("CRDs: plural.group ↔ plural.wt-T-group, never a host group, within 253, round-trip", () => {
    const random = seededRandom(seed + 5);
    const seen = new Map<string, string>();
    for (let i = 0; i < cases; i++) {
      const tenant = randomTenant(random);
      const plural = random() < 0.9 ? "widgets" : randomName(random, adversarialTenants);
      const group = random() < 0.1 ? builtinGroups[Math.floor(random() * builtinGroups.length)]! : randomName(random, adversarialTenants);
      const name = random() < 0.05 ? plural : `${plural}.${group}`;
      const context = `seed ${seed + 5}: tenant "${tenant}" CRD "${name}"`;
      const error = refused(() => mapCrdName(tenant, name, hosts));
      const dot = name.indexOf(".");
      const [p, g] = dot < 0 ? [name, ""] : [name.slice(0, dot), name.slice(dot + 1)];
      const valid = isLabel(p) && g !== "" && g !== "meta.k8s.io" && !builtinGroups.includes(g) && isSubdomain(g) && name.length + 4 + tenant.length <= 253;
      expect(error === undefined, `${context}: ${error?.message}`).toBe(valid);
      if (error) continue;
      const upstream = mapCrdName(tenant, name, hosts);
      expect(upstream, context).toBe(`${p}.wt-${tenant}-${g}`);
      expect(isSubdomain(upstream), context).toBe(true);
      expect(unmapCrdName(tenant, upstream, hosts), context).toBe(name);
      expect(unmapCrdName(otherTenant(tenant, random), upstream, hosts), context).toBeNull();
      const owner = seen.get(upstream);
      if (owner !== undefined) expect(owner, `${context}: collides`).toBe(`${tenant}/${name}`);
      seen.set(upstream, `${tenant}/${name}`);
    }
    expect(refused(() => mapCrdName("acme", "deployments.apps", hosts))?.message).toMatch(/served by the host/);
    expect(unmapCrdName("acme", "gatewayconfigs.wharf.dev", hosts)).toBeNull();
    expect(unmapCrdName("acme", "widgets.wt-acme2-example.com", hosts)).toBeNull();
  });
});

describe("identities and RBAC subjects", () => {
  it("users, groups and subjects map injectively into the tenant's identities and round-trip", () => {
    const random = seededRandom(seed + 6);
    const seen = new Map<string, string>();
    const kinds = ["User", "Group", "ServiceAccount", "Nobody"];
    for (let i = 0; i < cases; i++) {
      const tenant = randomTenant(random);
      const kind = kinds[Math.floor(random() * kinds.length)]!;
      const special = random();
      const name =
        special < 0.15 ? `system:serviceaccount:${randomName(random, adversarialTenants)}:sa` :
        special < 0.3 ? `system:serviceaccounts:${randomName(random, adversarialTenants)}` :
        special < 0.35 ? ["system:masters", "system:authenticated", "system:serviceaccounts", "system:serviceaccount:x", "wharf:tenant:acme2:alice"][Math.floor(random() * 5)]! :
        randomName(random, adversarialTenants);
      const subject: Subject = kind === "ServiceAccount" ? { kind, name: "builder", namespace: name } : { kind, name };
      const context = `seed ${seed + 6}: tenant "${tenant}" subject ${JSON.stringify(subject)}`;
      const error = refused(() => mapSubject(tenant, subject));
      if (error) continue;
      const upstream = mapSubject(tenant, subject);
      expect(unmapSubject(tenant, upstream), context).toEqual(subject);
      expect(unmapSubject(otherTenant(tenant, random), upstream), context).toBeNull();
      // Every upstream subject is one of the tenant's: its identities, or its service accounts.
      if (upstream.kind === "ServiceAccount") expect(unmapNamespace(tenant, upstream.namespace!), context).not.toBeNull();
      else if (upstream.name.startsWith("system:serviceaccount")) {
        expect(upstream.name, context).toMatch(new RegExp(`^system:serviceaccounts?:wt-${tenant}-`));
      } else expect(tenantOfIdentity(upstream.name), context).toBe(tenant);
      const key = `${upstream.kind}/${upstream.namespace ?? ""}/${upstream.name}`;
      const owner = seen.get(key);
      if (owner !== undefined) expect(owner, `${context}: collides`).toBe(`${tenant}/${JSON.stringify(subject)}`);
      seen.set(key, `${tenant}/${JSON.stringify(subject)}`);
    }
    expect(mapSubject("acme", { kind: "Group", name: "system:masters" }).name).toBe("wharf:tenant:acme:system:masters");
    expect(mapSubject("acme", { kind: "Group", name: "system:serviceaccounts:dev" }).name).toBe("system:serviceaccounts:wt-acme-dev");
    expect(mapSubject("acme", { kind: "User", name: "system:serviceaccount:dev:ci" }).name).toBe("system:serviceaccount:wt-acme-dev:ci");
    expect(mapSubject("acme", { kind: "ServiceAccount", name: "ci", namespace: "dev" }).namespace).toBe("wt-acme-dev");
    expect(refused(() => mapSubject("acme", { kind: "ServiceAccount", name: "ci" }))?.message).toMatch(/no namespace/);
    expect(unmapSubject("acme", { kind: "Group", name: "system:masters" })).toBeNull();
    expect(unmapSubject("acme", { kind: "User", name: "wharf:tenant:acme2:alice" })).toBeNull();
    expect(unmapSubject("acme", { kind: "Group", name: "system:serviceaccounts:kube-system" })).toBeNull();
  });

  it("the gateway's identity: user and groups inside wharf:tenant:T, never a host group", () => {
    const identity = mapIdentity("acme", "alice", ["system:masters", "dev"]);
    expect(identity).toEqual({ user: "wharf:tenant:acme:alice", groups: ["wharf:tenant:acme", "wharf:tenant:acme:system:masters", "wharf:tenant:acme:dev"] });
    expect(unmapUser("acme", identity.user)).toBe("alice");
    expect(unmapUser("acme2", identity.user)).toBeNull();
    expect(unmapUser("acme", "wharf:tenant:acme:")).toBeNull();
    expect(tenantOfIdentity("wharf:tenant:acme")).toBe("acme");
    expect(tenantOfIdentity("wharf:tenant:acme2:bob")).toBe("acme2");
    expect(tenantOfIdentity("wharf:tenant:Acme:bob")).toBeNull();
    expect(tenantOfIdentity("system:masters")).toBeNull();
    expect(refused(() => mapUser("acme", ""))?.message).toMatch(/empty/);
    const random = seededRandom(seed + 7);
    for (let i = 0; i < cases; i++) {
      const tenant = randomTenant(random);
      const user = randomName(random, adversarialTenants);
      if (user === "") continue;
      const mapped = mapUser(tenant, user);
      expect(tenantOfIdentity(mapped)).toBe(tenant);
      expect(unmapUser(tenant, mapped)).toBe(user);
    }
  });

  it("tenantPrefix never names a system namespace's prefix or another tenant's", () => {
    for (const a of adversarialTenants) {
      for (const b of adversarialTenants) {
        if (a !== b) expect(tenantPrefix(a).startsWith(tenantPrefix(b)), `${a} ${b}`).toBe(false);
      }
      for (const ns of hostNamespaces) expect(ns.startsWith(tenantPrefix(a))).toBe(false);
    }
  });
});
