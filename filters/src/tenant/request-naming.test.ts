// The filter's name mapping (filters/assembly/tenant/naming.ts, compiled)
// against the control plane's reference (control-plane/src/tenancy/naming.ts)
// on the same seeded inputs: for every name either both map it to the same
// upstream name or both refuse it. The filter is driven through its real
// entry points (paths and bodies), so the test also proves the filter applies
// the mapping where the apiserver reads each name.
import { describe, expect, it } from "vitest";
import { seededRandom } from "@wharf/testkit";
import {
  builtinGroups,
  hostGroupSet,
  mapApiVersion,
  mapClusterName,
  mapCrdName,
  mapGroup,
  mapNamespace,
  mapRoleRef,
  mapSubject,
  type Subject,
} from "../../../control-plane/src/tenancy/naming.js";
import type { ProxyWasmHost } from "../test-host/host.js";
import { send, tenantEntry, tenantHost } from "./request-harness.js";

const rounds = 3000;
const hostGroups = hostGroupSet(builtinGroups);
/** Host groups the filter refuses outright (a policy, not a naming, refusal). */
const deniedGroups = new Set(["admissionregistration.k8s.io", "apiregistration.k8s.io", "flowcontrol.apiserver.k8s.io"]);
const pathGroups = builtinGroups.filter((group) => group !== "" && !deniedGroups.has(group));

function reference<T>(map: () => T): T | undefined {
  try {
    return map();
  } catch {
    return undefined;
  }
}

/** Names near every rule's edge: reserved prefixes, service-account forms, odd characters, lengths around 55/63/253. */
function nameGenerator(seed: number): { name: () => string; tenant: () => string; random: () => number } {
  const random = seededRandom(seed);
  const pick = <T,>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-----....::_A%é ~";
  const prefixes = ["", "", "", "wt-", "wt-beta-", "wt-acme-", "system:", "system:serviceaccount:", "system:serviceaccounts:", "system:serviceaccount:dev:", "-", "."];
  const lengths = [1, 2, 5, 12, 40, 54, 55, 56, 62, 63, 64, 200, 245, 246, 253, 254];
  const tenant = () => "abcdefghijklmnopqrstuvwxyz".charAt(Math.floor(random() * 26)) + Array.from({ length: Math.floor(random() * 12) }, () => pick([..."abcdefghijklmnopqrstuvwxyz0123456789"])).join("");
  const name = () => {
    const length = random() < 0.3 ? pick(lengths) : 1 + Math.floor(random() * 20);
    const body = Array.from({ length }, () => (random() < 0.7 ? pick([..."abcdefghijklmnopqrstuvwxyz0123456789"]) : alphabet.charAt(Math.floor(random() * alphabet.length)))).join("");
    return (pick(prefixes) + body).slice(0, Math.max(length, 1));
  };
  return { name, tenant, random };
}

const hosts = new Map<string, ProxyWasmHost>();

async function hostFor(tenant: string): Promise<ProxyWasmHost> {
  let host = hosts.get(tenant);
  if (host === undefined) {
    host = await tenantHost({ tenants: [tenantEntry(tenant)], hostGroups: [...builtinGroups] });
    hosts.set(tenant, host);
  }
  return host;
}

/** Segment `index` of the upstream path (decoded), or undefined when the filter refused. */
function mappedSegment(host: ProxyWasmHost, tenant: string, path: string, index: number): string | undefined {
  const { stream } = send(host, "GET", path, tenant);
  const refused = stream.localResponse !== undefined;
  const upstream = stream.header(":path")!;
  stream.finish();
  if (refused) return undefined;
  return decodeURIComponent(upstream.split("?")[0]!.split("/")[index]!);
}

describe("the filter's naming against the control plane's reference", () => {
  it("maps or refuses namespaces, cluster-scoped names, groups and CRD names exactly as the reference does", async () => {
    const { name, tenant, random } = nameGenerator(1201);
    let mapped = 0;
    let refused = 0;
    for (let i = 0; i < rounds; i++) {
      const t = tenant();
      const host = await hostFor(t);
      const n = name();
      const segment = encodeURIComponent(n);
      const cases: Array<[string, string, number, string | undefined]> = [
        ["namespace", `/api/v1/namespaces/${segment}/configmaps`, 4, reference(() => mapNamespace(t, n))],
        ["namespace object", `/api/v1/namespaces/${segment}`, 4, reference(() => mapNamespace(t, n))],
        ["cluster name", `/apis/rbac.authorization.k8s.io/v1/clusterroles/${segment}`, 5, reference(() => mapClusterName(t, n))],
        ["CRD name", `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${segment}`, 5, reference(() => mapCrdName(t, n, hostGroups))],
      ];
      const group = random() < 0.2 ? pathGroups[Math.floor(random() * pathGroups.length)]! : n;
      if (!deniedGroups.has(group)) cases.push(["group", `/apis/${encodeURIComponent(group)}/v1/namespaces/default/widgets`, 2, reference(() => mapGroup(t, group, hostGroups))]);
      for (const [what, path, index, expected] of cases) {
        const actual = mappedSegment(host, t, path, index);
        expect(actual, `${what} ${JSON.stringify(n)} of tenant ${t}`).toBe(expected);
        if (expected === undefined) refused++;
        else mapped++;
      }
    }
    // The inputs reach both sides of every rule.
    expect(mapped).toBeGreaterThan(rounds);
    expect(refused).toBeGreaterThan(rounds);
  });

  it("maps or refuses RBAC subjects, roleRefs and apiVersions in bodies exactly as the reference does", async () => {
    const { name, tenant, random } = nameGenerator(1202);
    const kinds = ["User", "Group", "ServiceAccount"];
    let mapped = 0;
    for (let i = 0; i < rounds; i++) {
      const t = tenant();
      const host = await hostFor(t);
      const kind = kinds[Math.floor(random() * kinds.length)]!;
      const subject: Subject = kind === "ServiceAccount" ? { kind, name: name(), namespace: random() < 0.1 ? "" : name() } : { kind, name: name() };
      const roleRef = { apiGroup: "rbac.authorization.k8s.io", kind: random() < 0.8 ? "ClusterRole" : "Role", name: name() };
      const group = random() < 0.2 ? builtinGroups[Math.floor(random() * builtinGroups.length)]! : name();
      const apiVersion = random() < 0.1 ? name() : `${group}/${random() < 0.9 ? "v1" : name()}`;
      const body = JSON.stringify({ apiVersion, kind: "RoleBinding", metadata: { name: "b" }, roleRef, subjects: [subject] });
      const { stream } = send(host, "POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", t, [["content-type", "application/json"]], body);
      const expected = reference(() => ({ apiVersion: mapApiVersion(t, apiVersion, hostGroups), roleRef: mapRoleRef(t, roleRef), subject: mapSubject(t, subject) }));
      const what = `tenant ${t}: ${body}`;
      if (expected === undefined) {
        expect(stream.localResponse?.status, what).toBe(422);
      } else {
        expect(stream.localResponse, what).toBeUndefined();
        const sent = JSON.parse(stream.body("request")) as { apiVersion: string; roleRef: unknown; subjects: Subject[] };
        expect({ apiVersion: sent.apiVersion, roleRef: sent.roleRef, subject: sent.subjects[0] }, what).toEqual(expected);
        mapped++;
      }
      stream.finish();
    }
    expect(mapped).toBeGreaterThan(rounds / 10);
    expect(mapped).toBeLessThan(rounds);
  });
});
