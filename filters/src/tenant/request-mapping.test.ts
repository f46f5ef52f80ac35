// The request side of the tenant filter on its compiled module: paths,
// queries, headers and bodies of a tenant's requests as they leave for the
// apiserver, and the refusals (a Kubernetes Status naming the reason).
import { describe, expect, it } from "vitest";
import { seededRandom } from "@wharf/testkit";
import { builtInGroups, send, statusOf, tenantEntry, tenantHost } from "./request-harness.js";
import { sealContinue } from "./request-continue.js";

const acme = tenantEntry("acme", ["nodes", "storageclasses.storage.k8s.io"]);
const beta = tenantEntry("beta");
const config = { tenants: [acme, beta], hostGroups: builtInGroups };
const label = "tenancy.wharf.dev%2Ftenant%3Dacme";

async function upstreamPath(method: string, path: string, tenant = "acme"): Promise<string> {
  const host = await tenantHost(config);
  const { stream } = send(host, method, path, tenant);
  if (stream.localResponse) throw new Error(`refused: ${stream.localResponse.body}`);
  const result = stream.header(":path")!;
  stream.finish();
  return result;
}

async function refusal(method: string, path: string, headers: Array<[string, string]> = [], body?: string): Promise<{ code: number; reason: string; message: string }> {
  const host = await tenantHost(config);
  const { stream } = send(host, method, path, "acme", headers, body);
  const status = statusOf(stream);
  stream.finish();
  return status;
}

async function mappedBody(method: string, path: string, body: string, contentType = "application/json"): Promise<string> {
  const host = await tenantHost(config);
  const { stream } = send(host, method, path, "acme", [["content-type", contentType], ["content-length", String(Buffer.byteLength(body))]], body);
  if (stream.localResponse) throw new Error(`refused: ${stream.localResponse.body}`);
  expect(stream.header("content-length")).toBeUndefined();
  const result = stream.body("request");
  stream.finish();
  return result;
}

describe("paths", () => {
  const cases: Array<[string, string, string]> = [
    ["GET", "/api/v1/namespaces/dev/pods/p1", "/api/v1/namespaces/wt-acme-dev/pods/p1"],
    ["GET", "/api/v1/namespaces/dev/pods/p1/log?container=c", "/api/v1/namespaces/wt-acme-dev/pods/p1/log?container=c"],
    ["GET", "/api/v1/namespaces/dev/services/s:http/proxy/a/b", "/api/v1/namespaces/wt-acme-dev/services/s:http/proxy/a/b"],
    ["GET", "/api/v1/watch/namespaces/dev/pods", "/api/v1/watch/namespaces/wt-acme-dev/pods"],
    ["GET", "/api/v1/namespaces/dev", "/api/v1/namespaces/wt-acme-dev"],
    ["PUT", "/api/v1/namespaces/dev/finalize", "/api/v1/namespaces/wt-acme-dev/finalize"],
    ["PUT", "/api/v1/namespaces/dev/status", "/api/v1/namespaces/wt-acme-dev/status"],
    ["GET", "/api/v1/namespaces", `/api/v1/namespaces?labelSelector=${label}`],
    ["GET", "/api/v1/pods?limit=2", `/api/v1/pods?limit=2&labelSelector=${label}`],
    ["DELETE", "/apis/rbac.authorization.k8s.io/v1/clusterroles", `/apis/rbac.authorization.k8s.io/v1/clusterroles?labelSelector=${label}`],
    ["GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/view", "/apis/rbac.authorization.k8s.io/v1/clusterroles/wt-acme-view"],
    ["GET", "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/roles/view", "/apis/rbac.authorization.k8s.io/v1/namespaces/wt-acme-dev/roles/view"],
    ["GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.wt-acme-example.com"],
    ["GET", "/apis/example.com/v1/namespaces/dev/widgets/w", "/apis/wt-acme-example.com/v1/namespaces/wt-acme-dev/widgets/w"],
    ["GET", "/apis/example.com/v1/clusterwidgets/w", "/apis/wt-acme-example.com/v1/clusterwidgets/wt-acme-w"],
    ["GET", "/apis/example.com/v1/widgets", `/apis/wt-acme-example.com/v1/widgets?labelSelector=${label}`],
    ["GET", "/apis/example.com", "/apis/wt-acme-example.com"],
    ["GET", "/apis/example.com/v1", "/apis/wt-acme-example.com/v1"],
    ["GET", "/apis/apps/v1", "/apis/apps/v1"],
    ["GET", "/openapi/v3/apis/example.com/v1?hash=abc", "/openapi/v3/apis/wt-acme-example.com/v1?hash=abc"],
    ["GET", "/openapi/v3/apis/apps/v1", "/openapi/v3/apis/apps/v1"],
    ["GET", "/openapi/v3", "/openapi/v3"],
    ["GET", "/apis", "/apis"],
    ["GET", "/api", "/api"],
    ["GET", "/version", "/version"],
    ["GET", "/readyz/etcd", "/readyz/etcd"],
    // Shared views are read as they are: no mapping, no tenant label.
    ["GET", "/api/v1/nodes", "/api/v1/nodes"],
    ["GET", "/api/v1/nodes/n1", "/api/v1/nodes/n1"],
    ["GET", "/apis/storage.k8s.io/v1/storageclasses?watch=true", "/apis/storage.k8s.io/v1/storageclasses?watch=true"],
    // An escaped character in a name stays escaped after mapping.
    ["GET", "/api/v1/namespaces/d%65v/pods", "/api/v1/namespaces/wt-acme-dev/pods"],
    ["GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:view", "/apis/rbac.authorization.k8s.io/v1/clusterroles/wt-acme-system:view"],
    ["POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"],
    ["POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", "/apis/authentication.k8s.io/v1/selfsubjectreviews"],
  ];
  for (const [method, path, expected] of cases) {
    it(`${method} ${path}`, async () => {
      expect(await upstreamPath(method, path)).toBe(expected);
    });
  }

  it("maps another tenant's upstream names into the caller's own world", async () => {
    expect(await upstreamPath("GET", "/api/v1/namespaces/wt-beta-dev/pods")).toBe("/api/v1/namespaces/wt-acme-wt-beta-dev/pods");
    expect(await upstreamPath("GET", "/api/v1/namespaces/wt-beta-dev")).toBe("/api/v1/namespaces/wt-acme-wt-beta-dev");
    expect(await upstreamPath("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/wt-beta-admin")).toBe("/apis/rbac.authorization.k8s.io/v1/clusterroles/wt-acme-wt-beta-admin");
    expect(await upstreamPath("GET", "/apis/wt-beta-example.com/v1/widgets")).toBe(`/apis/wt-acme-wt-beta-example.com/v1/widgets?labelSelector=${label}`);
  });

  it("maps the same request for two tenants into disjoint upstream names", async () => {
    expect(await upstreamPath("GET", "/api/v1/namespaces/dev/pods", "beta")).toBe("/api/v1/namespaces/wt-beta-dev/pods");
    expect(await upstreamPath("GET", "/api/v1/namespaces", "beta")).toBe("/api/v1/namespaces?labelSelector=tenancy.wharf.dev%2Ftenant%3Dbeta");
  });

  const refused: Array<[string, string, number, string]> = [
    ["GET", "/api/v1/persistentvolumes", 403, "persistentvolumes belong to the host cluster"],
    ["DELETE", "/api/v1/nodes/n1", 403, "read-only"],
    ["PATCH", "/apis/storage.k8s.io/v1/storageclasses/standard", 403, "read-only"],
    ["GET", "/api/v1/nodes/n1/proxy/stats", 403, "nodes/proxy"],
    ["GET", "/api/v1/proxy/namespaces/dev/pods/p", 403, "/proxy/"],
    ["POST", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations", 403, "webhook configurations"],
    ["GET", "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies", 403, "admission policies"],
    ["GET", "/apis/apiregistration.k8s.io/v1/apiservices", 403, "APIServices"],
    ["GET", "/apis/flowcontrol.apiserver.k8s.io/v1/flowschemas", 403, "priority and fairness"],
    ["POST", "/apis/certificates.k8s.io/v1/certificatesigningrequests", 403, "certificate signing"],
    ["POST", "/apis/authentication.k8s.io/v1/tokenreviews", 403, "TokenReview"],
    ["GET", "/apis/authorization.k8s.io/v1/subjectaccessreviews", 403, "only be created"],
    ["GET", `/api/v1/namespaces/${"n".repeat(56)}/pods`, 422, "may have at most 55"],
    ["GET", "/api/v1/namespaces/Dev/pods", 422, "not a valid name"],
    ["GET", "/apis/Example.com/v1/widgets", 422, "API group"],
    ["GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/deployments.apps", 422, "served by the host"],
    ["GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets", 422, "PLURAL.GROUP"],
    ["GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/a%25b", 422, "not a valid object name"],
    ["GET", "/openapi/v2", 404, "/openapi/v3"],
    ["GET", "/metrics", 403, "host cluster's"],
    ["GET", "/logs/kube-apiserver.log", 403, "host cluster's"],
    ["GET", "/api/v1/namespaces/dev/pods/../secrets", 400, "dot segment"],
    ["GET", "/api/v1/namespaces/dev%2Fx/pods", 400, "encoded slash"],
  ];
  for (const [method, path, code, message] of refused) {
    it(`refuses ${method} ${path} with ${code}`, async () => {
      const status = await refusal(method, path);
      expect(status.code).toBe(code);
      expect(status.message).toContain(message);
    });
  }

  it("refuses a namespace longer than the tenant's limit, and accepts the longest allowed", async () => {
    // "wt-acme-" + 55 characters is a 63-character DNS label.
    expect(await upstreamPath("GET", `/api/v1/namespaces/${"n".repeat(55)}`)).toBe(`/api/v1/namespaces/wt-acme-${"n".repeat(55)}`);
    expect((await refusal("GET", `/api/v1/namespaces/${"n".repeat(56)}`)).code).toBe(422);
    expect(await upstreamPath("GET", `/api/v1/namespaces/${"n".repeat(55)}`, "beta")).toBe(`/api/v1/namespaces/wt-beta-${"n".repeat(55)}`);
  });
});

describe("queries", () => {
  it("maps namespaces and cluster-scoped names in field selectors, keeping other terms and pairs byte for byte", async () => {
    expect(await upstreamPath("GET", "/api/v1/pods?fieldSelector=metadata.namespace%3Ddev%2Cspec.nodeName%3Dn1&limit=5&resourceVersion=0")).toBe(
      `/api/v1/pods?fieldSelector=metadata.namespace%3Dwt-acme-dev%2Cspec.nodeName%3Dn1&limit=5&resourceVersion=0&labelSelector=${label}`,
    );
    expect(await upstreamPath("GET", "/api/v1/namespaces?fieldSelector=metadata.name%3Ddev&watch=1")).toBe(`/api/v1/namespaces?fieldSelector=metadata.name%3Dwt-acme-dev&watch=1&labelSelector=${label}`);
    // A namespaced resource across namespaces: metadata.name is not a cluster-scoped name.
    expect(await upstreamPath("GET", "/api/v1/pods?fieldSelector=metadata.name%3Dp")).toBe(`/api/v1/pods?fieldSelector=metadata.name%3Dp&labelSelector=${label}`);
    expect(await upstreamPath("GET", "/api/v1/namespaces/dev/events?fieldSelector=involvedObject.namespace%3Ddev%2CinvolvedObject.name%3Dp")).toBe(
      "/api/v1/namespaces/wt-acme-dev/events?fieldSelector=involvedObject.namespace%3Dwt-acme-dev%2CinvolvedObject.name%3Dp",
    );
    expect(await upstreamPath("GET", "/api/v1/events?fieldSelector=involvedObject.kind%3DNamespace%2CinvolvedObject.name%3Ddev")).toBe(
      `/api/v1/events?fieldSelector=involvedObject.kind%3DNamespace%2CinvolvedObject.name%3Dwt-acme-dev&labelSelector=${label}`,
    );
  });

  it("puts the tenant requirement first in every label selector of a collection, however the key is spelled", async () => {
    expect(await upstreamPath("GET", "/api/v1/pods?labelSelector=app%3Dweb")).toBe(`/api/v1/pods?labelSelector=${label}%2Capp%3Dweb`);
    expect(await upstreamPath("GET", "/api/v1/pods?label%53elector=app%3Dweb")).toBe(`/api/v1/pods?labelSelector=${label}%2Capp%3Dweb`);
    expect(await upstreamPath("GET", "/api/v1/pods?labelSelector=a&labelSelector=b")).toBe(`/api/v1/pods?labelSelector=${label}%2Ca&labelSelector=${label}%2Cb`);
    expect(await upstreamPath("GET", "/api/v1/pods?labelSelector=+")).toBe(`/api/v1/pods?labelSelector=${label}`);
    // A pair the apiserver drops (";") is dropped, and the tenant requirement still stands.
    expect(await upstreamPath("GET", "/api/v1/pods?labelSelector=a;b")).toBe(`/api/v1/pods?labelSelector=${label}`);
    // Inside a namespace the selector is the tenant's own.
    expect(await upstreamPath("GET", "/api/v1/namespaces/dev/pods?labelSelector=app%3Dweb")).toBe("/api/v1/namespaces/wt-acme-dev/pods?labelSelector=app%3Dweb");
  });

  it("refuses a label selector naming the tenant label", async () => {
    for (const selector of ["tenancy.wharf.dev%2Ftenant%3Dbeta", "tenancy.wharf.dev%2Ftenant", "!tenancy.wharf.dev%2Ftenant", "a%3Db%2Ctenancy.wharf.dev%2Ftenant+in+(acme%2Cbeta)"]) {
      const status = await refusal("GET", `/api/v1/namespaces/dev/pods?labelSelector=${selector}`);
      expect(status.code).toBe(403);
      expect(status.message).toContain("tenancy.wharf.dev/tenant");
    }
  });

  it("unseals the tenant's continue tokens and refuses another tenant's, a tampered one and a raw apiserver token", async () => {
    const token = Buffer.from(JSON.stringify({ v: "meta.k8s.io/v1", rv: 42, start: "wt-acme-dev/c\u0000" })).toString("base64");
    const sealed = sealContinue(acme.continueKey, token);
    expect(await upstreamPath("GET", `/api/v1/namespaces/dev/configmaps?limit=2&continue=${encodeURIComponent(sealed)}`)).toBe(
      `/api/v1/namespaces/wt-acme-dev/configmaps?limit=2&continue=${encodeURIComponent(token)}`,
    );
    const forBeta = sealContinue(beta.continueKey, token);
    const tampered = sealed.slice(0, -2) + (sealed.endsWith("A") ? "BA" : "AA");
    for (const bad of [forBeta, tampered, token, "wt1", "wt1" + "A".repeat(9000)]) {
      const status = await refusal("GET", `/api/v1/namespaces/dev/configmaps?limit=2&continue=${encodeURIComponent(bad)}`);
      expect(status.code).toBe(400);
      expect(status.message).toContain("continue token");
    }
    // An empty continue is no token.
    expect(await upstreamPath("GET", "/api/v1/namespaces/dev/configmaps?continue=")).toBe("/api/v1/namespaces/wt-acme-dev/configmaps?continue=");
  });
});

describe("headers", () => {
  async function headersOf(extra: Array<[string, string]>, path = "/api/v1/namespaces/dev/pods"): Promise<Record<string, string | undefined>> {
    const host = await tenantHost(config);
    const { stream } = send(host, "GET", path, "acme", extra);
    expect(stream.localResponse).toBeUndefined();
    const result = { accept: stream.header("accept"), acceptEncoding: stream.header("accept-encoding"), tenant: stream.header("x-wharf-tenant") };
    stream.finish();
    return result;
  }

  it("asks for JSON instead of protobuf, keeps Table, drops aggregated discovery and compression", async () => {
    expect(await headersOf([["accept", "application/vnd.kubernetes.protobuf, application/json"], ["accept-encoding", "gzip"]])).toEqual({
      accept: "application/json, application/json",
      acceptEncoding: undefined,
      tenant: undefined,
    });
    expect((await headersOf([["accept", "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json"]])).accept).toBe(
      "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
    );
    const table = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
    expect((await headersOf([["accept", table]])).accept).toBe(table);
    expect(
      (await headersOf([["accept", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"]], "/apis")).accept,
    ).toBe("application/json");
    expect((await headersOf([["accept", "application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"]], "/api")).accept).toBe("application/json");
  });

  it("answers 415 for CBOR bodies and protobuf bodies of kinds it maps only as JSON, 400 for a broken protobuf body", async () => {
    for (const type of ["application/cbor", "application/apply-patch+cbor"]) {
      const status = await refusal("POST", "/api/v1/namespaces/dev/configmaps", [["content-type", type]], "\u0000k8s");
      expect(status.code).toBe(415);
      expect(status.message).toContain(type);
    }
    for (const path of ["/api/v1/namespaces/dev/events", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", "/apis/discovery.k8s.io/v1/namespaces/dev/endpointslices"]) {
      expect((await refusal("POST", path, [["content-type", "application/vnd.kubernetes.protobuf"]], "k8s\u0000")).code, path).toBe(415);
    }
    for (const broken of ["k8s", "k8s\u0000\u0012\u0005ab", "xyz\u0000", "k8s\u0000\u0012\u0002\u000a\u0009"]) {
      expect((await refusal("POST", "/api/v1/namespaces/dev/configmaps", [["content-type", "application/vnd.kubernetes.protobuf"]], broken)).code, JSON.stringify(broken)).toBe(400);
    }
  });
});

describe("bodies", () => {
  it("keeps every byte it does not map: whitespace, number spelling, escapes, key order, duplicates", async () => {
    const body = '{ "kind" : "ConfigMap",\n  "apiVersion":"v1", "metadata" : { "name":"c\\u0031", "namespace" : "dev", "labels" : { } },\n "data":{"n":"1.0E+2","\\u0041":"\\ud83d\\ude00"}, "x": -0.000e-0 }';
    expect(await mappedBody("POST", "/api/v1/namespaces/dev/configmaps", body)).toBe(
      '{ "kind" : "ConfigMap",\n  "apiVersion":"v1", "metadata" : { "name":"c\\u0031", "namespace" : "wt-acme-dev", "labels" : { "tenancy.wharf.dev/tenant":"acme"} },\n "data":{"n":"1.0E+2","\\u0041":"\\ud83d\\ude00"}, "x": -0.000e-0 }',
    );
    // Every duplicate of a key is mapped: the apiserver reads the last.
    expect(await mappedBody("POST", "/api/v1/namespaces/dev/configmaps", '{"metadata":{"namespace":"dev","namespace":"kube-system","labels":{"a":"1"}}}')).toBe(
      '{"metadata":{"namespace":"wt-acme-dev","namespace":"wt-acme-kube-system","labels":{"a":"1","tenancy.wharf.dev/tenant":"acme"}}}',
    );
    // An escaped key is the same key.
    expect(await mappedBody("POST", "/api/v1/namespaces/dev/configmaps", '{"met\\u0061data":{"n\\u0061mespace":"dev"}}')).toBe(
      '{"met\\u0061data":{"n\\u0061mespace":"wt-acme-dev","labels":{"tenancy.wharf.dev/tenant":"acme"}}}',
    );
  });

  it("adds metadata with the tenant label to an object without it, and refuses another tenant's label value", async () => {
    expect(await mappedBody("POST", "/api/v1/namespaces/dev/configmaps", '{"data":{}}')).toBe('{"data":{},"metadata":{"labels":{"tenancy.wharf.dev/tenant":"acme"}}}');
    expect(await mappedBody("PUT", "/api/v1/namespaces/dev/configmaps/c", '{"metadata":{"name":"c","labels":{"tenancy.wharf.dev/tenant":"acme"}}}')).toBe(
      '{"metadata":{"name":"c","labels":{"tenancy.wharf.dev/tenant":"acme"}}}',
    );
    const status = await refusal("POST", "/api/v1/namespaces/dev/configmaps", [["content-type", "application/json"]], '{"metadata":{"labels":{"tenancy.wharf.dev/tenant":"beta"}}}');
    expect(status).toMatchObject({ code: 403 });
    expect(status.message).toContain('must be "acme"');
  });

  it("maps a namespace and cluster-scoped objects by name", async () => {
    expect(await mappedBody("POST", "/api/v1/namespaces", '{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"dev"}}')).toBe(
      '{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"wt-acme-dev","labels":{"tenancy.wharf.dev/tenant":"acme"}}}',
    );
    expect(await mappedBody("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", '{"metadata":{"generateName":"r-"},"rules":[{"apiGroups":["","example.com","*"],"resources":["pods"],"verbs":["get"]},{"apiGroups":[""],"resources":["namespaces"],"resourceNames":["dev"],"verbs":["get"]}]}')).toBe(
      '{"metadata":{"generateName":"wt-acme-r-","labels":{"tenancy.wharf.dev/tenant":"acme"}},"rules":[{"apiGroups":["","wt-acme-example.com","*"],"resources":["pods"],"verbs":["get"]},{"apiGroups":[""],"resources":["namespaces"],"resourceNames":["wt-acme-dev"],"verbs":["get"]}]}',
    );
    const status = await refusal("POST", "/api/v1/namespaces", [["content-type", "application/json"]], `{"metadata":{"name":"${"x".repeat(56)}"}}`);
    expect(status.code).toBe(422);
  });

  it("maps workloads' pod templates, CronJob job templates and StatefulSet claim templates", async () => {
    expect(await mappedBody("POST", "/apis/apps/v1/namespaces/dev/deployments", '{"apiVersion":"apps/v1","metadata":{"name":"d","ownerReferences":[{"apiVersion":"example.com/v1","kind":"Widget","name":"w"}]},"spec":{"selector":{"matchLabels":{"app":"d"}},"template":{"metadata":{"labels":{"app":"d"}}}}}')).toBe(
      '{"apiVersion":"apps/v1","metadata":{"name":"d","ownerReferences":[{"apiVersion":"wt-acme-example.com/v1","kind":"Widget","name":"w"}],"labels":{"tenancy.wharf.dev/tenant":"acme"}},"spec":{"selector":{"matchLabels":{"app":"d"}},"template":{"metadata":{"labels":{"app":"d","tenancy.wharf.dev/tenant":"acme"}}}}}',
    );
    expect(await mappedBody("POST", "/apis/batch/v1/namespaces/dev/cronjobs", '{"spec":{"jobTemplate":{"spec":{"template":{"spec":{}}}}}}')).toBe(
      '{"spec":{"jobTemplate":{"spec":{"template":{"spec":{},"metadata":{"labels":{"tenancy.wharf.dev/tenant":"acme"}}}},"metadata":{"labels":{"tenancy.wharf.dev/tenant":"acme"}}}},"metadata":{"labels":{"tenancy.wharf.dev/tenant":"acme"}}}',
    );
    expect(await mappedBody("POST", "/apis/apps/v1/namespaces/dev/statefulsets", '{"metadata":{},"spec":{"template":{},"volumeClaimTemplates":[{"metadata":{"name":"data"}}]}}')).toBe(
      '{"metadata":{"labels":{"tenancy.wharf.dev/tenant":"acme"}},"spec":{"template":{"metadata":{"labels":{"tenancy.wharf.dev/tenant":"acme"}}},"volumeClaimTemplates":[{"metadata":{"name":"data","labels":{"tenancy.wharf.dev/tenant":"acme"}}}]}}',
    );
  });

  it("maps custom resources' apiVersion and CRDs' group, refusing host groups and URL webhooks", async () => {
    expect(await mappedBody("POST", "/apis/example.com/v1/namespaces/dev/widgets", '{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w"}}')).toBe(
      '{"apiVersion":"wt-acme-example.com/v1","kind":"Widget","metadata":{"name":"w","labels":{"tenancy.wharf.dev/tenant":"acme"}}}',
    );
    expect(await mappedBody("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", '{"metadata":{"name":"widgets.example.com"},"spec":{"group":"example.com","conversion":{"strategy":"Webhook","webhook":{"clientConfig":{"service":{"namespace":"dev","name":"conv"}}}}}}')).toBe(
      '{"metadata":{"name":"widgets.wt-acme-example.com","labels":{"tenancy.wharf.dev/tenant":"acme"}},"spec":{"group":"wt-acme-example.com","conversion":{"strategy":"Webhook","webhook":{"clientConfig":{"service":{"namespace":"wt-acme-dev","name":"conv"}}}}}}',
    );
    const hostGroup = await refusal("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", [], '{"metadata":{"name":"widgets.example.com"},"spec":{"group":"apps"}}');
    expect(hostGroup.code).toBe(403);
    expect(hostGroup.message).toContain("host cluster's");
    const hostName = await refusal("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", [], '{"metadata":{"name":"widgets.apps"},"spec":{"group":"apps"}}');
    expect(hostName.code).toBe(422);
    expect(hostName.message).toContain("served by the host");
    const url = await refusal("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", [], '{"metadata":{"name":"w.example.com"},"spec":{"group":"example.com","conversion":{"webhook":{"clientConfig":{"url":"https://10.0.0.1/"}}}}}');
    expect(url.message).toContain("URL");
  });

  it("maps RBAC subjects and roleRef into the tenant, so no binding can name a host ClusterRole or identity", async () => {
    expect(await mappedBody("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/rolebindings", '{"metadata":{"name":"b"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"},"subjects":[{"kind":"User","name":"alice"},{"kind":"Group","name":"system:masters"},{"kind":"Group","name":"system:serviceaccounts:dev"},{"kind":"User","name":"system:serviceaccount:dev:bot"},{"kind":"ServiceAccount","name":"bot","namespace":"dev"}]}')).toBe(
      '{"metadata":{"name":"b","labels":{"tenancy.wharf.dev/tenant":"acme"}},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"wt-acme-cluster-admin"},"subjects":[{"kind":"User","name":"wharf:tenant:acme:alice"},{"kind":"Group","name":"wharf:tenant:acme:system:masters"},{"kind":"Group","name":"system:serviceaccounts:wt-acme-dev"},{"kind":"User","name":"system:serviceaccount:wt-acme-dev:bot"},{"kind":"ServiceAccount","name":"bot","namespace":"wt-acme-dev"}]}',
    );
    expect(await mappedBody("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/rolebindings", '{"roleRef":{"kind":"Role","name":"r"},"subjects":[]}')).toBe(
      '{"roleRef":{"kind":"Role","name":"r"},"subjects":[],"metadata":{"labels":{"tenancy.wharf.dev/tenant":"acme"}}}',
    );
    // Aggregation may only gather the tenant's own ClusterRoles.
    expect(await mappedBody("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", '{"metadata":{"name":"agg"},"aggregationRule":{"clusterRoleSelectors":[{"matchLabels":{"rbac.authorization.k8s.io/aggregate-to-admin":"true"}}]}}')).toBe(
      '{"metadata":{"name":"wt-acme-agg","labels":{"tenancy.wharf.dev/tenant":"acme"}},"aggregationRule":{"clusterRoleSelectors":[{"matchLabels":{"rbac.authorization.k8s.io/aggregate-to-admin":"true","tenancy.wharf.dev/tenant":"acme"}}]}}',
    );
    expect((await refusal("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", [], '{"subjects":[{"kind":"Robot","name":"x"}]}')).code).toBe(422);
    expect((await refusal("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", [], '{"subjects":[{"kind":"ServiceAccount","name":"x"}]}')).message).toContain("no namespace");
    expect((await refusal("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", [], '{"roleRef":{"kind":"Secret","name":"x"}}')).message).toContain("not Role or ClusterRole");
  });

  it("maps events' references, Endpoints and EndpointSlice targets", async () => {
    expect(await mappedBody("POST", "/api/v1/namespaces/dev/events", '{"involvedObject":{"kind":"Pod","namespace":"dev","name":"p"},"related":{"kind":"Namespace","name":"dev"},"source":{"host":"node-1"}}')).toBe(
      '{"involvedObject":{"kind":"Pod","namespace":"wt-acme-dev","name":"p"},"related":{"kind":"Namespace","name":"wt-acme-dev"},"source":{"host":"node-1"},"metadata":{"labels":{"tenancy.wharf.dev/tenant":"acme"}}}',
    );
    expect(await mappedBody("POST", "/apis/events.k8s.io/v1/namespaces/dev/events", '{"metadata":{"name":"e"},"regarding":{"apiVersion":"example.com/v1","kind":"Widget","namespace":"dev","name":"w"}}')).toBe(
      '{"metadata":{"name":"e","labels":{"tenancy.wharf.dev/tenant":"acme"}},"regarding":{"apiVersion":"wt-acme-example.com/v1","kind":"Widget","namespace":"wt-acme-dev","name":"w"}}',
    );
    expect(await mappedBody("PUT", "/api/v1/namespaces/dev/endpoints/s", '{"metadata":{"name":"s","labels":{}},"subsets":[{"addresses":[{"ip":"10.0.0.1","targetRef":{"kind":"Pod","namespace":"dev","name":"p"}}],"notReadyAddresses":[{"ip":"10.0.0.2","targetRef":{"kind":"Pod","namespace":"dev","name":"q"}}]}]}')).toBe(
      '{"metadata":{"name":"s","labels":{"tenancy.wharf.dev/tenant":"acme"}},"subsets":[{"addresses":[{"ip":"10.0.0.1","targetRef":{"kind":"Pod","namespace":"wt-acme-dev","name":"p"}}],"notReadyAddresses":[{"ip":"10.0.0.2","targetRef":{"kind":"Pod","namespace":"wt-acme-dev","name":"q"}}]}]}',
    );
    expect(await mappedBody("POST", "/apis/discovery.k8s.io/v1/namespaces/dev/endpointslices", '{"metadata":{"name":"s"},"endpoints":[{"addresses":["10.0.0.1"],"targetRef":{"kind":"Pod","namespace":"dev","name":"p"}}]}')).toBe(
      '{"metadata":{"name":"s","labels":{"tenancy.wharf.dev/tenant":"acme"}},"endpoints":[{"addresses":["10.0.0.1"],"targetRef":{"kind":"Pod","namespace":"wt-acme-dev","name":"p"}}]}',
    );
  });

  it("maps access reviews to the tenant's upstream identities and names", async () => {
    expect(await mappedBody("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", '{"spec":{"user":"bob","groups":["devs"],"resourceAttributes":{"namespace":"dev","verb":"get","group":"example.com","resource":"widgets"}}}')).toBe(
      '{"spec":{"user":"wharf:tenant:acme:bob","groups":["wharf:tenant:acme:devs"],"resourceAttributes":{"namespace":"wt-acme-dev","verb":"get","group":"wt-acme-example.com","resource":"widgets"}}}',
    );
    expect(await mappedBody("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", '{"spec":{"user":"bob","resourceAttributes":{"verb":"delete","resource":"namespaces","name":"dev"}}}')).toBe(
      '{"spec":{"user":"wharf:tenant:acme:bob","resourceAttributes":{"verb":"delete","resource":"namespaces","name":"wt-acme-dev"}}}',
    );
    expect(await mappedBody("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", '{"spec":{"resourceAttributes":{"namespace":"dev","verb":"create","resource":"pods"}}}')).toBe(
      '{"spec":{"resourceAttributes":{"namespace":"wt-acme-dev","verb":"create","resource":"pods"}}}',
    );
    expect(await mappedBody("POST", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", '{"spec":{"namespace":"dev"}}')).toBe('{"spec":{"namespace":"wt-acme-dev"}}');
    expect(await mappedBody("POST", "/apis/authorization.k8s.io/v1/namespaces/dev/localsubjectaccessreviews", '{"metadata":{"namespace":"dev"},"spec":{"user":"system:serviceaccount:dev:bot","resourceAttributes":{"namespace":"dev","verb":"get","resource":"pods"}}}')).toBe(
      '{"metadata":{"namespace":"wt-acme-dev"},"spec":{"user":"system:serviceaccount:wt-acme-dev:bot","resourceAttributes":{"namespace":"wt-acme-dev","verb":"get","resource":"pods"}}}',
    );
  });

  it("maps merge and strategic merge patches where they name something, and refuses what would drop the tenant label", async () => {
    expect(await mappedBody("PATCH", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/w.example.com", '{"spec":{"group":"example.com"}}', "application/merge-patch+json")).toBe('{"spec":{"group":"wt-acme-example.com"}}');
    const untouched = '{"data":{"a":"1"}, "metadata":{"labels":{"x":"y"}}}';
    expect(await mappedBody("PATCH", "/api/v1/namespaces/dev/configmaps/c", untouched, "application/strategic-merge-patch+json")).toBe(untouched);
    const refusals: Array<[string, string]> = [
      ['{"metadata":{"labels":null}}', "application/merge-patch+json"],
      ['{"metadata":null}', "application/merge-patch+json"],
      ['{"metadata":{"labels":{"tenancy.wharf.dev/tenant":null}}}', "application/merge-patch+json"],
      ['{"metadata":{"labels":{"$patch":"replace","a":"b"}}}', "application/strategic-merge-patch+json"],
      ['{"metadata":{"$patch":"replace"}}', "application/strategic-merge-patch+json"],
      ['{"$patch":"replace","data":{}}', "application/strategic-merge-patch+json"],
      ['{"spec":{"template":{"metadata":{"labels":null}}}}', "application/merge-patch+json"],
    ];
    for (const [patch, type] of refusals) {
      const status = await refusal("PATCH", "/apis/apps/v1/namespaces/dev/deployments/d", [["content-type", type]], patch);
      expect(status.code, patch).toBe(403);
    }
  });

  it("maps JSON patch values at their path and refuses operations on the tenant label", async () => {
    expect(await mappedBody("PATCH", "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/rolebindings/b", '[{"op":"add","path":"/subjects/-","value":{"kind":"User","name":"carol"}},{"op":"replace","path":"/roleRef/name","value":"x"},{"op":"test","path":"/metadata/namespace","value":"dev"}]', "application/json-patch+json")).toBe(
      '[{"op":"add","path":"/subjects/-","value":{"kind":"User","name":"wharf:tenant:acme:carol"}},{"op":"replace","path":"/roleRef/name","value":"x"},{"op":"test","path":"/metadata/namespace","value":"wt-acme-dev"}]',
    );
    expect(await mappedBody("PATCH", "/api/v1/namespaces/dev/configmaps/c", '[{"op":"replace","path":"/metadata/labels","value":{"a":"b"}}]', "application/json-patch+json")).toBe(
      '[{"op":"replace","path":"/metadata/labels","value":{"a":"b","tenancy.wharf.dev/tenant":"acme"}}]',
    );
    for (const patch of [
      '[{"op":"remove","path":"/metadata/labels/tenancy.wharf.dev~1tenant"}]',
      '[{"op":"replace","path":"/metadata/labels/tenancy.wharf.dev~1tenant","value":"beta"}]',
      '[{"op":"remove","path":"/metadata/labels"}]',
      '[{"op":"move","from":"/metadata/labels","path":"/data/x"}]',
      '[{"op":"copy","from":"/data/x","path":"/metadata"}]',
      '[{"op":"remove","path":"/spec/template"}]',
      '[{"op":"replace","path":"/metadata/labels","value":{"tenancy.wharf.dev/tenant":"beta"}}]',
    ]) {
      expect((await refusal("PATCH", "/apis/apps/v1/namespaces/dev/deployments/d", [["content-type", "application/json-patch+json"]], patch)).code, patch).toBe(403);
    }
  });

  it("maps a server-side apply patch sent as JSON and refuses one in YAML", async () => {
    expect(await mappedBody("PATCH", "/api/v1/namespaces/dev/configmaps/c?fieldManager=kubectl", '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","namespace":"dev"}}', "application/apply-patch+yaml")).toBe(
      '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","namespace":"wt-acme-dev","labels":{"tenancy.wharf.dev/tenant":"acme"}}}',
    );
    const status = await refusal("PATCH", "/api/v1/namespaces/dev/configmaps/c", [["content-type", "application/apply-patch+yaml"]], "apiVersion: v1\nkind: ConfigMap\n");
    expect(status.code).toBe(400);
    expect(status.message).toContain("as JSON");
  });

  it("refuses a body that ends in trailers instead of letting it through unmapped", async () => {
    const host = await tenantHost(config);
    const stream = host.stream();
    stream.sendRequestHeaders([[":method", "POST"], [":path", "/api/v1/namespaces"], ["content-type", "application/json"], ["x-wharf-tenant", "acme"]], false);
    expect(stream.sendRequestBody('{"metadata":{"name":"kube-system"}}', false)).toBe(1);
    expect(stream.sendRequestTrailers([["x-trailer", "1"]])).toBe(1);
    expect(statusOf(stream)).toMatchObject({ code: 400 });
    stream.finish();
  });

  it("passes a DELETE body (DeleteOptions) untouched", async () => {
    const host = await tenantHost(config);
    const body = '{"propagationPolicy":"Foreground"}';
    const { stream } = send(host, "DELETE", "/api/v1/namespaces/dev/configmaps/c", "acme", [["content-type", "application/json"], ["content-length", String(body.length)]], body);
    expect(stream.localResponse).toBeUndefined();
    expect(stream.body("request")).toBe(body);
    expect(stream.header("content-length")).toBe(String(body.length));
    stream.finish();
  });

  it("answers 413 past 3 MiB and 400 for bodies that are not JSON or not UTF-8", async () => {
    const big = `{"data":{"x":"${"a".repeat(3 * 1024 * 1024)}"}}`;
    expect((await refusal("POST", "/api/v1/namespaces/dev/configmaps", [["content-type", "application/json"]], big)).code).toBe(413);
    for (const bad of ["", "{", '{"a":1,}', "[1 2]", '{"a":01}', '{"a":"\u0001"}', '{"a":tru}', "{} {}", '{"a":"\\x"}', "\uFEFF{}"]) {
      if (bad === "") continue;
      const status = await refusal("POST", "/api/v1/namespaces/dev/configmaps", [["content-type", "application/json"]], bad);
      expect(status.code, bad).toBe(400);
    }
  });
});

describe("floods and garbage", () => {
  it("maps a flood of unique names in bounded memory, each exactly", async () => {
    const host = await tenantHost(config);
    const random = seededRandom(12);
    const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-";
    const name = (length: number) => "n" + Array.from({ length: length - 1 }, () => alphabet.charAt(Math.floor(random() * 36))).join("");
    let grownAfterWarmup = 0;
    let warm = 0;
    for (let i = 0; i < 10000; i++) {
      const namespace = name(1 + Math.floor(random() * 53));
      const object = name(1 + Math.floor(random() * 200));
      const { stream } = send(host, "PUT", `/api/v1/namespaces/${namespace}/configmaps/${object}`, "acme", [["content-type", "application/json"]], `{"metadata":{"name":"${object}","namespace":"${namespace}"},"data":{"k":"${object}"}}`);
      expect(stream.header(":path")).toBe(`/api/v1/namespaces/wt-acme-${namespace}/configmaps/${object}`);
      expect(stream.body("request")).toBe(`{"metadata":{"name":"${object}","namespace":"wt-acme-${namespace}","labels":{"tenancy.wharf.dev/tenant":"acme"}},"data":{"k":"${object}"}}`);
      stream.finish();
      if (i === 2000) warm = host.memoryBytes;
      if (i > 2000) grownAfterWarmup = host.memoryBytes - warm;
    }
    expect(grownAfterWarmup).toBeLessThanOrEqual(1 << 20);
  });

  it("never traps on mangled bodies, paths and queries: each request is mapped or refused with a Status", async () => {
    const host = await tenantHost(config);
    const random = seededRandom(7);
    const seeds = [
      '{"apiVersion":"apps/v1","metadata":{"name":"d","namespace":"dev","labels":{"a":"b"},"ownerReferences":[{"apiVersion":"example.com/v1","kind":"Namespace","name":"x"}]},"spec":{"template":{"metadata":{}}}}',
      '[{"op":"add","path":"/metadata/labels/x","value":{"kind":"User","name":"u"}},{"op":"replace","path":"/subjects/0","value":[1,2,{"a":null}]}]',
      '{"subjects":[{"kind":"Group","name":"g"}],"roleRef":{"kind":"ClusterRole","name":"r"},"metadata":{"managedFields":[{"apiVersion":"example.com/v1"}]}}',
    ];
    const paths = ["/apis/apps/v1/namespaces/dev/deployments", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", "/apis/example.com/v1/namespaces/dev/widgets/w", "/api/v1/namespaces"];
    const types = ["application/json", "application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json", "application/apply-patch+yaml"];
    const pick = <T>(list: T[]): T => list[Math.floor(random() * list.length)]!;
    const junk = ['"', "{", "}", "[", "]", ",", ":", "\\", "\\u12", "null", "-", "1e", "\u0000", "é", "💥"];
    for (let i = 0; i < 4000; i++) {
      let body = pick(seeds);
      for (let m = Math.floor(random() * 4); m > 0; m--) {
        const at = Math.floor(random() * body.length);
        body = random() < 0.5 ? body.slice(0, at) + pick(junk) + body.slice(at) : body.slice(0, at) + body.slice(at + 1 + Math.floor(random() * 5));
      }
      let path = pick(paths);
      if (random() < 0.3) path += "?labelSelector=" + encodeURIComponent(pick(junk)) + "&fieldSelector=metadata.name%3D" + pick(junk);
      const method = random() < 0.5 ? "POST" : random() < 0.5 ? "PATCH" : "PUT";
      const { stream } = send(host, method, path, "acme", [["content-type", pick(types)]], body);
      if (stream.localResponse) {
        const status = statusOf(stream);
        expect([400, 403, 404, 413, 415, 422]).toContain(status.code);
      } else {
        expect(stream.body("request").length).toBeGreaterThan(0);
      }
      stream.finish();
    }
  });
});
