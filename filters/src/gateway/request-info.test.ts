// The gateway's request classification against kube-apiserver's RequestInfo
// rules, on the compiled filter in the test host.
import { describe, expect, it, beforeAll } from "vitest";
import { clientCertificate, gatewayHost, request, requestInfoOf } from "./harness.js";
import type { ProxyWasmHost } from "../test-host/host.js";

interface Expected {
  isResource: boolean;
  verb: string;
  group?: string;
  version?: string;
  namespace?: string;
  resource?: string;
  subresource?: string;
  name?: string;
}

const r = (verb: string, group: string, version: string, namespace: string, resource: string, name = "", subresource = ""): Expected => ({
  isResource: true,
  verb,
  group,
  version,
  namespace,
  resource,
  subresource,
  name,
});
const nr = (verb: string): Expected => ({ isResource: false, verb });

const table: Array<[string, string, Expected]> = [
  // core group, cluster scope
  ["GET", "/api/v1/namespaces", r("list", "", "v1", "", "namespaces")],
  ["GET", "/api/v1/namespaces/default", r("get", "", "v1", "default", "namespaces", "default")],
  ["GET", "/api/v1/namespaces/default/status", r("get", "", "v1", "default", "namespaces", "default", "status")],
  ["PUT", "/api/v1/namespaces/default/finalize", r("update", "", "v1", "default", "namespaces", "default", "finalize")],
  ["DELETE", "/api/v1/namespaces/default", r("delete", "", "v1", "default", "namespaces", "default")],
  ["GET", "/api/v1/nodes", r("list", "", "v1", "", "nodes")],
  ["GET", "/api/v1/nodes/n1", r("get", "", "v1", "", "nodes", "n1")],
  ["PATCH", "/api/v1/nodes/n1/status", r("patch", "", "v1", "", "nodes", "n1", "status")],
  ["GET", "/api/v1/pods", r("list", "", "v1", "", "pods")],
  ["GET", "/api/v1/pods?watch=true", r("watch", "", "v1", "", "pods")],
  // core group, namespaced
  ["GET", "/api/v1/namespaces/ns/pods", r("list", "", "v1", "ns", "pods")],
  ["GET", "/api/v1/namespaces/ns/pods?watch=1", r("watch", "", "v1", "ns", "pods")],
  ["GET", "/api/v1/namespaces/ns/pods?watch=true&resourceVersion=10", r("watch", "", "v1", "ns", "pods")],
  ["GET", "/api/v1/namespaces/ns/pods?watch=false", r("list", "", "v1", "ns", "pods")],
  ["GET", "/api/v1/namespaces/ns/pods?watch=0", r("list", "", "v1", "ns", "pods")],
  ["GET", "/api/v1/namespaces/ns/pods?watch=FALSE", r("list", "", "v1", "ns", "pods")],
  ["GET", "/api/v1/namespaces/ns/pods?watch=yes", r("watch", "", "v1", "ns", "pods")],
  ["GET", "/api/v1/namespaces/ns/pods?watch=", r("watch", "", "v1", "ns", "pods")],
  ["GET", "/api/v1/namespaces/ns/pods/p1", r("get", "", "v1", "ns", "pods", "p1")],
  ["HEAD", "/api/v1/namespaces/ns/pods/p1", r("get", "", "v1", "ns", "pods", "p1")],
  ["GET", "/api/v1/namespaces/ns/pods/p1/log", r("get", "", "v1", "ns", "pods", "p1", "log")],
  ["POST", "/api/v1/namespaces/ns/pods/p1/eviction", r("create", "", "v1", "ns", "pods", "p1", "eviction")],
  ["POST", "/api/v1/namespaces/ns/pods", r("create", "", "v1", "ns", "pods")],
  ["PUT", "/api/v1/namespaces/ns/pods/p1", r("update", "", "v1", "ns", "pods", "p1")],
  ["PATCH", "/api/v1/namespaces/ns/pods/p1", r("patch", "", "v1", "ns", "pods", "p1")],
  ["DELETE", "/api/v1/namespaces/ns/pods/p1", r("delete", "", "v1", "ns", "pods", "p1")],
  ["DELETE", "/api/v1/namespaces/ns/pods", r("deletecollection", "", "v1", "ns", "pods")],
  ["DELETE", "/api/v1/namespaces/ns/pods?labelSelector=a%3Db", r("deletecollection", "", "v1", "ns", "pods")],
  ["GET", "/api/v1/namespaces/ns/pods/p1/exec?command=ls", r("get", "", "v1", "ns", "pods", "p1", "exec")],
  ["POST", "/api/v1/namespaces/ns/pods/p1/exec?command=ls", r("create", "", "v1", "ns", "pods", "p1", "exec")],
  ["GET", "/api/v1/namespaces/ns/services/s1:http/proxy/x", r("get", "", "v1", "ns", "services", "s1:http", "proxy")],
  ["GET", "/api/v1/namespaces/ns/configmaps/a%20b", r("get", "", "v1", "ns", "configmaps", "a b")],
  // fieldSelector=metadata.name
  ["GET", "/api/v1/namespaces/ns/pods?fieldSelector=metadata.name%3Dp1", r("list", "", "v1", "ns", "pods", "p1")],
  ["GET", "/api/v1/namespaces/ns/pods?fieldSelector=metadata.name%3D%3Dp1", r("list", "", "v1", "ns", "pods", "p1")],
  ["GET", "/api/v1/namespaces/ns/pods?watch=true&fieldSelector=metadata.name%3Dp1", r("watch", "", "v1", "ns", "pods", "p1")],
  ["GET", "/api/v1/namespaces/ns/pods?fieldSelector=metadata.name%21%3Dp1", r("list", "", "v1", "ns", "pods")],
  ["GET", "/api/v1/namespaces/ns/pods?fieldSelector=spec.nodeName%3Dn1", r("list", "", "v1", "ns", "pods")],
  ["GET", "/api/v1/namespaces/ns/pods?fieldSelector=spec.nodeName%3Dn1,metadata.name%3Dp2", r("list", "", "v1", "ns", "pods", "p2")],
  ["GET", "/api/v1/namespaces/ns/pods?fieldSelector=metadata.name%3Da%2Fb", r("list", "", "v1", "ns", "pods")],
  // legacy /watch/ and /proxy/ prefixes
  ["GET", "/api/v1/watch/pods", r("watch", "", "v1", "", "pods")],
  ["GET", "/api/v1/watch/namespaces/ns/pods", r("watch", "", "v1", "ns", "pods")],
  ["GET", "/api/v1/watch/namespaces/ns/pods/p1", r("watch", "", "v1", "ns", "pods", "p1")],
  ["GET", "/api/v1/proxy/namespaces/ns/pods/p1/some/path", r("proxy", "", "v1", "ns", "pods", "p1")],
  ["GET", "/api/v1/proxy/nodes/n1", r("proxy", "", "v1", "", "nodes", "n1")],
  // named groups
  ["GET", "/apis/apps/v1/deployments", r("list", "apps", "v1", "", "deployments")],
  ["GET", "/apis/apps/v1/namespaces/ns/deployments", r("list", "apps", "v1", "ns", "deployments")],
  ["GET", "/apis/apps/v1/namespaces/ns/deployments/d1", r("get", "apps", "v1", "ns", "deployments", "d1")],
  ["PUT", "/apis/apps/v1/namespaces/ns/deployments/d1/scale", r("update", "apps", "v1", "ns", "deployments", "d1", "scale")],
  ["GET", "/apis/apps/v1/namespaces/ns/deployments?watch=true", r("watch", "apps", "v1", "ns", "deployments")],
  ["GET", "/apis/apps/v1/watch/namespaces/ns/deployments", r("watch", "apps", "v1", "ns", "deployments")],
  ["DELETE", "/apis/batch/v1/namespaces/ns/jobs", r("deletecollection", "batch", "v1", "ns", "jobs")],
  ["POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", r("create", "authorization.k8s.io", "v1", "", "selfsubjectaccessreviews")],
  ["GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/admin", r("get", "rbac.authorization.k8s.io", "v1", "", "clusterroles", "admin")],
  ["GET", "/apis/wharf.dev/v1/namespaces/ns/harbors/h1/status", r("get", "wharf.dev", "v1", "ns", "harbors", "h1", "status")],
  ["GET", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/l", r("get", "coordination.k8s.io", "v1", "kube-system", "leases", "l")],
  ["GET", "/apis/apps/v1/namespaces/ns/deployments/d1/", r("get", "apps", "v1", "ns", "deployments", "d1")],
  // discovery and non-resource URLs
  ["GET", "/api", nr("get")],
  ["GET", "/api/v1", nr("get")],
  ["GET", "/apis", nr("get")],
  ["GET", "/apis/apps", nr("get")],
  ["GET", "/apis/apps/v1", nr("get")],
  ["GET", "/healthz", nr("get")],
  ["GET", "/readyz?verbose", nr("get")],
  ["GET", "/livez/etcd", nr("get")],
  ["GET", "/version", nr("get")],
  ["GET", "/metrics", nr("get")],
  ["GET", "/openapi/v2", nr("get")],
  ["GET", "/openapi/v3/apis/apps/v1", nr("get")],
  ["POST", "/some/random/path", nr("post")],
  ["DELETE", "/logs/x", nr("delete")],
  ["GET", "/", nr("get")],
  // Go's query rules: ";" drops a pair, bad escapes drop a pair, the first value wins, "+" is a space
  ["GET", "/api/v1/namespaces/ns/pods?watch=1;", r("list", "", "v1", "ns", "pods")],
  ["GET", "/api/v1/namespaces/ns/pods?watch=1;&watch=0", r("list", "", "v1", "ns", "pods")],
  ["GET", "/api/v1/namespaces/ns/pods?watch=%ZZ", r("list", "", "v1", "ns", "pods")],
  ["GET", "/api/v1/namespaces/ns/pods?watch=%ZZ&watch=1", r("watch", "", "v1", "ns", "pods")],
  ["GET", "/api/v1/namespaces/ns/pods?watch=false&watch=true", r("list", "", "v1", "ns", "pods")],
  ["GET", "/api/v1/namespaces/ns/pods?w%61tch=1", r("watch", "", "v1", "ns", "pods")],
  ["GET", "/api/v1/namespaces/ns/pods?watch=0+", r("watch", "", "v1", "ns", "pods")],
  ["GET", "/api/v1/namespaces/ns/pods?watch", r("watch", "", "v1", "ns", "pods")],
  ["GET", "/api/v1/namespaces/ns/pods?watch=fal%C5%BFe", r("list", "", "v1", "ns", "pods")],
  ["GET", "/api/v1/namespaces/ns/pods?watch=fals%C1%A5", r("watch", "", "v1", "ns", "pods")],
  ["GET", "/api/v1/namespaces/ns/pods?watch=fa%E2%84%AAse", r("watch", "", "v1", "ns", "pods")],
  // field selectors as fields.ParseSelector reads them
  ["GET", "/api/v1/namespaces/ns/pods?fieldSelector=metadata.name%3Dzeta,metadata.name%3Dalpha", r("list", "", "v1", "ns", "pods", "alpha")],
  ["GET", "/api/v1/namespaces/ns/pods?fieldSelector=metadata.name%3D%3Dzeta,metadata.name%3Dalpha", r("list", "", "v1", "ns", "pods", "zeta")],
  ["GET", "/api/v1/namespaces/ns/pods?fieldSelector=%20metadata.name%3Dp1", r("list", "", "v1", "ns", "pods")],
  ["GET", "/api/v1/namespaces/ns/pods?fieldSelector=metadata.name%3Dp%5C%2C1", r("list", "", "v1", "ns", "pods", "p,1")],
  ["GET", "/api/v1/namespaces/ns/pods?fieldSelector=metadata.name%3Dp1&fieldSelector=metadata.name%3Dp2", r("list", "", "v1", "ns", "pods", "p1")],
  ["GET", "/api/v1/namespaces/ns/pods?fieldSelector=metadata.name%3D..", r("list", "", "v1", "ns", "pods")],
  ["GET", "/api/v1/namespaces/ns/pods?labelSelector=app%3Dweb&fieldSelector=metadata.name%3Dp1", r("list", "", "v1", "ns", "pods", "p1")],
  ["GET", "/api/v1/namespaces/ns/pods?labelSelector=app+in+(web)", r("list", "", "v1", "ns", "pods")],
  ["GET", "/api/v1/namespaces/ns/pods?limit=%2B5&timeoutSeconds=-0", r("list", "", "v1", "ns", "pods")],
  ["DELETE", "/api/v1/namespaces/ns/pods?fieldSelector=metadata.name%3Dp1", r("deletecollection", "", "v1", "ns", "pods")],
  ["GET", "/api/v1/namespaces/ns/pods/a+b", r("get", "", "v1", "ns", "pods", "a+b")],
  ["GET", "/api/v1/namespaces/ns/pods/p1//", r("get", "", "v1", "ns", "pods", "p1")],
  ["GET", "/api/v1/namespaces/ns/pods/%C3%A9", r("get", "", "v1", "ns", "pods", "é")],
];

/** Requests the gateway refuses (400) because it cannot be sure it reads them as the apiserver does. */
const refused: Array<[string, string]> = [
  ["GET", "/api/v1/namespaces/ns/pods?fieldSelector=garbage"],
  ["GET", "/api/v1/namespaces/ns/pods?fieldSelector=metadata.name%3Dp1&limit=abc"],
  ["GET", "/api/v1/namespaces/ns/pods?limit="],
  ["GET", "/api/v1/namespaces/ns/pods?limit=9223372036854775808"],
  ["GET", "/api/v1/namespaces/ns/pods?fieldSelector=metadata.name%3Dp1,garbage"],
  ["GET", "/api/v1/namespaces/ns/pods?fieldSelector=metadata.name%3Dp%5Cx1"],
  ["GET", "/api/v1/namespaces/ns/pods?fieldSelector=metadata.name%3Da%3Db"],
  ["GET", "/api/v1/namespaces/ns/pods?fieldSelector=metadata.name%3D%FF"],
  ["GET", "/api/v1/namespaces/ns/pods?labelSelector=app+in+(web)&fieldSelector=metadata.name%3Dp1"],
  ["GET", "/api/v1/namespaces/ns/pods?labelSelector=a+b&watch=fal%C5%BFe"],
  ["GET", `/api/v1/namespaces/ns/pods?${"a&".repeat(1000)}watch=1`],
  ["GET", "/api/v1/namespaces/ns/pods/a%2Fb"],
  ["GET", "/api/v1/namespaces/ns/pods/a%5cb"],
  ["GET", "/api/v1/namespaces/ns/pods/%ZZ"],
  ["GET", "/api/v1/namespaces/ns/pods/%C1%A5"],
  ["GET", "/api/v1/namespaces//pods"],
  ["GET", "//api/v1/pods"],
  ["GET", "/api/v1/namespaces/ns/./pods"],
  ["GET", "/api/v1/namespaces/ns/pods/.."],
  ["GET", "/api/v1/namespaces/other/../ns/pods"],
  ["GET", "/api/v1/namespaces/ns/pods/%2e%2e"],
  ["GET", "/api/v1/namespaces/ns/pods/p%00"],
  ["GET", "/api/v1/namespaces/ns/pods#x"],
  ["GET", "/api/v1/namespaces/ns/pods/\u00e9"],
  ["GET", "/api/v1/watch"],
  ["GET", "/healthz/../metrics"],
];

let host: ProxyWasmHost;
beforeAll(async () => {
  host = await gatewayHost({ annotateRequests: true }, { clientCert: await clientCertificate({ subject: "/CN=classifier" }) });
});

describe("request classification (kube-apiserver RequestInfo rules)", () => {
  it(`covers at least 60 paths (${table.length})`, () => {
    expect(table.length).toBeGreaterThanOrEqual(60);
  });

  it.each(table)("%s %s", (method, path, expected) => {
    const info = requestInfoOf(host, method, path);
    const want = {
      isResource: String(expected.isResource),
      verb: expected.verb,
      ...(expected.isResource
        ? {
            group: expected.group,
            version: expected.version,
            namespace: expected.namespace,
            resource: expected.resource,
            subresource: expected.subresource,
            name: expected.name,
          }
        : {}),
    };
    expect(info).toMatchObject(want);
  });

  it.each(refused)("refuses %s %s with 400 and a Status", (method, path) => {
    const { stream } = request(host, method, path.replace("\\u00e9", "\u00e9"));
    expect(stream.localResponse?.status).toBe(400);
    expect(JSON.parse(stream.localResponse!.body)).toMatchObject({ kind: "Status", reason: "BadRequest", code: 400 });
    expect(stream.header("x-wharf-request-info")).toBeUndefined();
    stream.finish();
  });

  it("parses in linear time: a 60 KB field selector and 1,000 parameters", () => {
    const name = "a".repeat(60_000);
    const started = performance.now();
    const info = requestInfoOf(host, "GET", `/api/v1/namespaces/ns/pods?fieldSelector=metadata.name%3D${name}`);
    const selector = `metadata.name=x,${"y=a\\,b,".repeat(10_000)}`;
    const second = requestInfoOf(host, "GET", `/api/v1/namespaces/ns/pods?fieldSelector=${encodeURIComponent(selector)}&${"a=1&".repeat(998)}`);
    const elapsed = performance.now() - started;
    expect(info.name).toBe(name);
    expect(second.name).toBe("x");
    expect(elapsed).toBeLessThan(250);
  });
});
