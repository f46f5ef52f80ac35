// attack: policy bypass by subresource, collection, selector, namespace and
// query quirks, on the compiled filter in the test host. Each case asserts
// the filter's own answer (403 from the deny, 400 refusal, or the pool it
// routed to); envoy/policy.attack.test.ts shows the same through real Envoy
// against a real apiserver.
import { describe, expect, it } from "vitest";
import { wasmPath } from "../index.js";
import { ProxyWasmHost } from "../test-host/host.js";
import { clientCertificate, encodeGatewayConfig, gatewayHost, request, type GatewayConfigInit } from "./harness.js";

const deny = (name: string, rules: NonNullable<GatewayConfigInit["policies"]>[number]["rules"]) => ({
  name,
  rules,
  action: { target: { case: "deny" as const, value: { message: `denied by ${name}` } } },
});

const config: GatewayConfigInit = {
  policies: [
    deny("protect-critical", [{ resources: ["configmaps"], resourceNames: ["critical"], namespaces: ["prod"], verbs: ["get", "delete"] }]),
    deny("only-public-in-shared", [{ resources: ["configmaps"], resourceNames: ["-public"], namespaces: ["shared"] }]),
    deny("no-exec", [{ resources: ["pods/exec", "pods/attach"] }]),
    deny("no-pods-in-vault", [{ resources: ["pods"], namespaces: ["vault"] }]),
    deny("no-subresources-in-lab", [{ resources: ["deployments/*"], namespaces: ["lab"] }]),
    deny("no-kube-system", [{ namespaces: ["kube-system"], userGroups: ["tenants"] }]),
    deny("no-listing-dev-secrets", [{ resources: ["secrets"], namespaces: ["dev"], verbs: ["list", "-watch"] }]),
    { name: "watches", rules: [{ verbs: ["watch"] }], action: { target: { case: "upstream", value: "watch-pool" } } },
  ],
  defaultAction: { target: { case: "upstream", value: "main" } },
};

/** "403 <policy>", "400", or the pool, for a caller with a certificate of `subject`. */
async function outcomes(paths: Array<[string, string]>, subject = "/O=tenants/CN=tina"): Promise<string[]> {
  const host = await gatewayHost(config, { clientCert: await clientCertificate({ subject }) });
  return paths.map(([method, path]) => {
    const { stream } = request(host, method, path);
    const local = stream.localResponse;
    const pool = stream.header("x-wharf-upstream");
    stream.finish();
    if (local) return local.status === 403 ? `403 ${(JSON.parse(local.body) as { message: string }).message.replace("denied by ", "")}` : String(local.status);
    return pool ?? "none";
  });
}

const cm = "/api/v1/namespaces/prod/configmaps";

describe("attack: a denied name reached through a collection", () => {
  it("deletecollection with or without a field selector naming the denied object is denied", async () => {
    expect(
      await outcomes([
        ["DELETE", `${cm}/critical`],
        ["DELETE", cm],
        ["DELETE", `${cm}?fieldSelector=metadata.name%3Dcritical`],
        ["DELETE", `${cm}?fieldSelector=metadata.name%3D%3Dcritical`],
        ["DELETE", `${cm}?labelSelector=app%3Dx`],
        ["DELETE", `${cm}?fieldSelector=metadata.name%21%3Dother`],
      ]),
    ).toEqual(Array(6).fill("403 protect-critical"));
  });

  it("list and watch reach it too (get covers them); a selector pinning another name does not", async () => {
    expect(
      await outcomes([
        ["GET", cm],
        ["GET", `${cm}?watch=true`],
        ["GET", "/api/v1/watch/namespaces/prod/configmaps"],
        ["GET", `${cm}?fieldSelector=metadata.name%3Dcritical`],
        ["GET", `${cm}?fieldSelector=metadata.name%3Dzzz,metadata.name%3Dcritical`],
        ["GET", `${cm}?fieldSelector=metadata.name%3Dcritical,metadata.name%3Dzzz`],
      ]),
    ).toEqual(Array(6).fill("403 protect-critical"));
    expect(
      await outcomes([
        ["GET", `${cm}?fieldSelector=metadata.name%3Dother`],
        ["DELETE", `${cm}?fieldSelector=metadata.name%3Dother`],
        ["DELETE", `${cm}/other`],
        ["GET", `${cm}/other`],
        ["PUT", `${cm}/critical`],
        ["GET", "/api/v1/namespaces/dev/configmaps"],
        // Go keeps the first fieldSelector: the apiserver lists only "other".
        ["GET", `${cm}?fieldSelector=metadata.name%3Dother&fieldSelector=metadata.name%3Dcritical`],
      ]),
    ).toEqual(["main", "main", "main", "main", "main", "main", "main"]);
  });

  it("a field selector whose first value is not the pinned one cannot hide it (first value of a repeated key wins)", async () => {
    expect(await outcomes([["GET", `${cm}?fieldSelector=metadata.name%3Dcritical&fieldSelector=metadata.name%3Dother`]])).toEqual(["403 protect-critical"]);
  });

  it("a deny of everything but one name denies collections unless pinned to that name", async () => {
    const shared = "/api/v1/namespaces/shared/configmaps";
    expect(
      await outcomes([
        ["GET", shared],
        ["GET", `${shared}?watch=1`],
        ["DELETE", shared],
        ["GET", `${shared}?fieldSelector=metadata.name%3Dsecret-one`],
        ["GET", `${shared}/secret-one`],
        ["GET", `${shared}?fieldSelector=metadata.name%3Dpublic`],
        ["GET", `${shared}/public`],
      ]),
    ).toEqual(["403 only-public-in-shared", "403 only-public-in-shared", "403 only-public-in-shared", "403 only-public-in-shared", "403 only-public-in-shared", "main", "main"]);
  });
});

describe("attack: a denied namespace reached through an all-namespace request", () => {
  it("list, watch and deletecollection across namespaces are denied; a metadata.namespace selector narrows them", async () => {
    expect(
      await outcomes([
        ["GET", "/api/v1/services"],
        ["GET", "/api/v1/services?watch=true"],
        ["GET", "/api/v1/watch/services"],
        ["DELETE", "/api/v1/services"],
        ["GET", "/apis/example.com/v1/widgets"],
        ["GET", "/api/v1/namespaces/kube-system/services"],
        ["GET", "/api/v1/namespaces/kube-system"],
        ["GET", "/api/v1/namespaces"],
        ["GET", "/api/v1/services?fieldSelector=metadata.namespace%3Dkube-system"],
      ]),
    ).toEqual(Array(9).fill("403 no-kube-system"));
    expect(
      await outcomes([
        ["GET", "/api/v1/services?fieldSelector=metadata.namespace%3Dteam-a"],
        ["GET", "/api/v1/nodes"],
        ["GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles"],
        ["GET", "/api/v1/namespaces/team-a/services"],
      ]),
    ).toEqual(["main", "main", "main", "main"]);
  });

  it("does not bind callers the rule does not name", async () => {
    expect(await outcomes([["GET", "/api/v1/services"]], "/CN=ops")).toEqual(["main"]);
    // Every configmap of every namespace includes prod/critical, whoever asks.
    expect(await outcomes([["GET", "/api/v1/configmaps"]], "/CN=ops")).toEqual(["403 protect-critical"]);
  });
});

describe("attack: subresources", () => {
  it("pods/exec and pods/attach are denied; other pod requests are not", async () => {
    expect(
      await outcomes([
        ["POST", "/api/v1/namespaces/dev/pods/p/exec?command=sh"],
        ["GET", "/api/v1/namespaces/dev/pods/p/exec?command=sh"],
        ["POST", "/api/v1/namespaces/dev/pods/p/attach"],
      ]),
    ).toEqual(["403 no-exec", "403 no-exec", "403 no-exec"]);
    expect(
      await outcomes([
        ["GET", "/api/v1/namespaces/dev/pods/p"],
        ["GET", "/api/v1/namespaces/dev/pods/p/log"],
        ["POST", "/api/v1/namespaces/dev/pods/p/portforward"],
      ]),
    ).toEqual(["main", "main", "main"]);
  });

  it("a plain resource covers all of its subresources", async () => {
    const vault = "/api/v1/namespaces/vault/pods";
    expect(
      await outcomes([
        ["GET", `${vault}/p/log`],
        ["GET", `${vault}/p/status`],
        ["POST", `${vault}/p/portforward`],
        ["GET", `${vault}/p/proxy/metrics`],
        ["POST", `${vault}/p/eviction`],
        ["GET", vault],
      ]),
    ).toEqual(Array(6).fill("403 no-pods-in-vault"));
  });

  it("resource/* covers the subresources, not the resource", async () => {
    expect(
      await outcomes([
        ["PUT", "/apis/apps/v1/namespaces/lab/deployments/d/scale"],
        ["GET", "/apis/apps/v1/namespaces/lab/deployments/d/status"],
        ["GET", "/apis/apps/v1/namespaces/lab/deployments/d"],
      ]),
    ).toEqual(["403 no-subresources-in-lab", "403 no-subresources-in-lab", "main"]);
  });
});

describe("attack: a list the filter would take for a watch", () => {
  it("query quirks that make the apiserver serve a list are denied as lists", async () => {
    const secrets = "/api/v1/namespaces/dev/secrets";
    expect(
      await outcomes([
        ["GET", `${secrets}?watch=1;`],
        ["GET", `${secrets}?watch=%ZZ`],
        ["GET", `${secrets}?watch=fal%C5%BFe`],
        ["GET", `${secrets}?watch=FALSE&watch=true`],
        ["GET", `${secrets}?watch=true;x`],
        ["GET", secrets],
      ]),
    ).toEqual(Array(6).fill("403 no-listing-dev-secrets"));
    // The rule excludes watches, so real watches pass: the deny is not a blanket one.
    expect(
      await outcomes([
        ["GET", `${secrets}?watch=1`],
        ["GET", `${secrets}?watch=%ZZ&watch=1`],
        ["GET", `${secrets}?watch=fals%C1%A5`],
      ]),
    ).toEqual(["watch-pool", "watch-pool", "watch-pool"]);
  });

  it("path tricks that could change the classification are refused, not guessed", async () => {
    expect(
      await outcomes([
        ["GET", "/api/v1/namespaces/prod/configmaps/critical%2Fx"],
        ["GET", "/api/v1/namespaces/dev/../prod/configmaps/critical"],
        ["GET", "/api/v1/namespaces/prod/configmaps/%2e%2e"],
        ["GET", "/api/v1//namespaces/prod/configmaps"],
        ["GET", "/api/v1/namespaces/prod/configmaps/%ZZ"],
        ["GET", `/api/v1/namespaces/prod/configmaps?${"x&".repeat(10_001)}fieldSelector=metadata.name%3Dother`],
        ["GET", `${cm}?fieldSelector=metadata.name%3Dother,metadata.name`],
      ]),
    ).toEqual(Array(7).fill("400"));
    expect(await outcomes([["GET", "/api/v1/namespaces/prod/configmaps/critical/"]])).toEqual(["403 protect-critical"]);
  });
});

describe("attack: a deny that would silently deny nothing is refused at configuration", () => {
  it.each([
    [{ verbs: ["GET"] }, 'policies[0].rules[0].verbs[0]: "GET" is not a request verb'],
    [{ verbs: ["get", "-Watch"] }, 'policies[0].rules[0].verbs[1]: "-Watch" is not a request verb'],
    [{ resources: ["pods/"] }, 'policies[0].rules[0].resources[0]: "pods/" is not'],
    [{ resources: ["secrets", "/exec"] }, 'policies[0].rules[0].resources[1]: "/exec" is not'],
    [{ resources: ["pods/exec/x"] }, 'policies[0].rules[0].resources[0]: "pods/exec/x" is not'],
  ])("%j", async (rule, message) => {
    const host = await ProxyWasmHost.load(wasmPath("gateway"), { pluginConfiguration: encodeGatewayConfig({ policies: [deny("p", [rule])] }) });
    expect(host.start()).toBe(false);
    expect(host.logs.map((entry) => entry.message).join("\n")).toContain(message);
  });

  it("accepts every documented form", async () => {
    const rule = { verbs: ["get", "-watch", "*", "deletecollection", "post"], resources: ["pods", "pods/exec", "pods/*", "*/scale", "*", "-pods/*"] };
    const host = await ProxyWasmHost.load(wasmPath("gateway"), { pluginConfiguration: encodeGatewayConfig({ policies: [deny("p", [rule])] }) });
    expect(host.start()).toBe(true);
  });
});
