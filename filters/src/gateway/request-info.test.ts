// The gateway's request classification against kube-apiserver's RequestInfo
// rules, on the compiled filter in the test host.
import { describe, expect, it, beforeAll } from "vitest";
import { gatewayHost, requestInfoOf } from "./harness.js";
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
  ["GET", "/api/v1/namespaces/ns/pods?fieldSelector=garbage", r("list", "", "v1", "ns", "pods")],
  ["GET", "/api/v1/namespaces/ns/pods?fieldSelector=metadata.name%3Dp1&limit=abc", r("list", "", "v1", "ns", "pods")],
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
];

let host: ProxyWasmHost;
beforeAll(async () => {
  host = await gatewayHost({ annotateRequests: true });
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
});
