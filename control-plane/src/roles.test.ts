// The two roles, end to end with real parts: one control plane serving a
// config file, a gateway Envoy and a client-sidecar Envoy, each configured
// only by what its xDS certificate's role selects, in front of a real
// kube-apiserver. The pod's own service-account token goes through the
// client sidecar and the gateway and is the identity the apiserver sees.
import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { toJson, type JsonValue } from "@bufbuild/protobuf";
import { anyUnpack, type Any } from "@bufbuild/protobuf/wkt";
import type { DeltaDiscoveryResponse, DiscoveryResponse } from "@wharf/proto/envoy/service/discovery/v3/discovery_pb.js";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { parse, stringify } from "yaml";
import { wasmPath } from "@wharf/filters";
import {
  createClusterPki,
  freePort,
  issueCertificate,
  kubectlOn,
  makeWorkDir,
  removeWorkDir,
  startKubeApiserver,
  startXdsEnvoy,
  toolPath,
  waitFor,
  writeKubeconfig,
  type ClusterPki,
  type Envoy,
  type KeyPair,
  type KubeApiserver,
} from "@wharf/testkit";
import { startControlPlane, type RunningControlPlane } from "./control-plane.js";
import { writeCredentials, type IssuedCredentials } from "./credentials/node-ca.js";
import { adsExchange } from "./xds/ads-client.js";
import { pushOrder, registry } from "./xds/snapshot.js";

const run = promisify(execFile);

let dir: string;
let pki: ClusterPki;
let kube: KubeApiserver;
let controlPlane: RunningControlPlane;
let gatewayEnvoy: Envoy;
let sidecarEnvoy: Envoy;
let gatewayUrl: string;
let sidecarUrl: string;
let admin: KeyPair;
let token: string;

async function credentials(name: string, role: "gateway" | "client-sidecar"): Promise<string> {
  const out = join(dir, `xds-${name}`);
  await writeCredentials(out, controlPlane.ca.issueNode({ name, role }));
  return out;
}

beforeAll(async () => {
  dir = await makeWorkDir("roles");
  pki = await createClusterPki(dir);
  kube = await startKubeApiserver({ etcdServers: [inject("referenceEtcd").endpoint], pki, extraArgs: ["--etcd-prefix=/roles-test"] });
  const serving = await issueCertificate(dir, pki.ca, { name: "gateway", commonName: "gateway", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], usage: "server" });
  admin = await issueCertificate(dir, pki.ca, { name: "erin", commonName: "erin", organizations: ["system:masters"], usage: "client" });
  const [gatewayPort, sidecarPort] = [await freePort(), await freePort()];
  gatewayUrl = `https://127.0.0.1:${gatewayPort}`;
  sidecarUrl = `http://127.0.0.1:${sidecarPort}`;
  const configFile = join(dir, "wharf.yaml");
  await writeFile(
    configFile,
    stringify({
      listener: { port: gatewayPort, cert_file: serving.certFile, key_file: serving.keyFile, client_ca_file: pki.ca.certFile },
      upstream_cluster: {
        pools: [{ name: "main", servers: [`127.0.0.1:${new URL(kube.url).port}`] }],
        default_pool: "main",
        ca_file: pki.ca.certFile,
        client_cert_file: pki.frontProxyClient.certFile,
        client_key_file: pki.frontProxyClient.keyFile,
        token_review: { cluster: "main", authority: "localhost", reviewer: "wharf:gateway" },
      },
      client_sidecar: { port: sidecarPort, gateways: [`127.0.0.1:${gatewayPort}`], gateway_server_name: "localhost", gateway_ca_file: pki.ca.certFile },
    }),
  );
  controlPlane = await startControlPlane({ stateDir: join(dir, "control-plane"), xds: { host: "127.0.0.1", port: 0 }, config: { file: configFile }, wasmFile: wasmPath("gateway") });
  gatewayEnvoy = await startXdsEnvoy({ nodeId: "gateway-1", xdsAddress: controlPlane.xdsAddress, credentialsDir: await credentials("gateway-1", "gateway") });
  sidecarEnvoy = await startXdsEnvoy({ nodeId: "pod-a", xdsAddress: controlPlane.xdsAddress, credentialsDir: await credentials("pod-a", "client-sidecar") });

  const kubectl = kubectlOn(await writeKubeconfig(join(dir, "admin.kubeconfig"), kube.url, pki.ca.certFile, admin));
  await kubectl("create", "clusterrolebinding", "wharf-gateway-token-reviews", "--clusterrole=system:auth-delegator", "--user=wharf:gateway");
  await kubectl("create", "serviceaccount", "robot");
  token = (await kubectl("create", "token", "robot")).trim();
}, 120_000);

afterAll(async () => {
  await sidecarEnvoy?.stop();
  await gatewayEnvoy?.stop();
  await controlPlane?.stop();
  await kube?.stop();
  if (dir) await removeWorkDir(dir);
});

/** `kubectl auth whoami` as the robot's token, against `server`. */
async function whoami(server: string): Promise<string> {
  const tls = [`--certificate-authority=${pki.ca.certFile}`];
  const { stdout } = await run(toolPath("kubectl"), ["--kubeconfig", "/dev/null", `--server=${server}`, ...tls, `--token=${token}`, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]);
  return stdout;
}

describe("two roles from one config", () => {
  it("the gateway node is configured from the config file and serves", async () => {
    await waitFor(async () => controlPlane.cache.nodeStatus("gateway-1", "gateway")?.acked.listener === controlPlane.config!.currentVersion, 20_000, "the gateway's ACK");
    const kubeconfig = await writeKubeconfig(join(dir, "erin-gateway.kubeconfig"), gatewayUrl, pki.ca.certFile, admin);
    await waitFor(async () => (await run(toolPath("kubectl"), ["--kubeconfig", kubeconfig, "get", "--raw", "/readyz"]).catch(() => ({ stdout: "" }))).stdout === "ok", 20_000, "the gateway listener");
    const { stdout } = await run(toolPath("kubectl"), ["--kubeconfig", kubeconfig, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]);
    expect(stdout).toBe("erin");
  });

  it("a client sidecar forwards the pod's service-account token through the gateway: the apiserver sees the pod, as it would directly", async () => {
    await waitFor(async () => controlPlane.cache.nodeStatus("pod-a", "client-sidecar")?.acked.listener === controlPlane.config!.currentVersion, 20_000, "the sidecar's ACK");
    const direct = await whoami(kube.url);
    expect(direct).toBe("system:serviceaccount:default:robot");
    await waitFor(async () => (await fetch(`${sidecarUrl}/readyz`, { headers: { authorization: `Bearer ${token}` } })).status === 200, 20_000, "the sidecar listener");
    // kubectl sends no token to an http:// server (kubernetes/kubectl#744), so
    // ask as a client that builds its own requests (a rest.Config with a
    // BearerToken does the same).
    const review = await fetch(`${sidecarUrl}/apis/authentication.k8s.io/v1/selfsubjectreviews`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" }),
    });
    expect(review.status).toBe(201);
    expect(((await review.json()) as { status: { userInfo: { username: string } } }).status.userInfo.username).toBe(direct);
    // It went through the gateway: the gateway's router counted it.
    const stats = await (await fetch(`${gatewayEnvoy.adminUrl}/stats?filter=^http\\.gateway\\.downstream_rq_completed$`)).text();
    expect(Number(/: (\d+)/.exec(stats)?.[1])).toBeGreaterThan(0);
  });

  it("a wrong token through the client sidecar is refused: the sidecar lends it no identity of its own", async () => {
    const through = await fetch(`${sidecarUrl}/api/v1/namespaces/default/pods`, { headers: { authorization: "Bearer not-a-token" } });
    expect(through.status).toBe(401);
  });

  it("a local limit in client_sidecar stops the pod's excess requests in the pod: they never reach the gateway", async () => {
    const completed = async () => Number(/: (\d+)/.exec(await (await fetch(`${gatewayEnvoy.adminUrl}/stats?filter=^http\\.gateway\\.downstream_rq_completed$`)).text())?.[1]);
    const config = parse(controlPlane.config!.currentText) as { client_sidecar: Record<string, unknown> };
    config.client_sidecar.local_limit = { requests_per_second: 1, burst: 2 };
    const version = await controlPlane.config!.apply(stringify(config));
    await waitFor(async () => controlPlane.cache.nodeStatus("pod-a", "client-sidecar")?.acked.listener === version, 10_000, "the sidecar's ACK of the limit");
    const before = await completed();
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await fetch(`${sidecarUrl}/readyz`, { headers: { authorization: `Bearer ${token}` } })).status);
    const passed = statuses.filter((status) => status === 200).length;
    expect(statuses.filter((status) => status === 429).length).toBeGreaterThanOrEqual(3);
    expect(passed + statuses.filter((status) => status === 429).length).toBe(6);
    await waitFor(async () => (await completed()) - before === passed, 5000, "the gateway's count of the requests that passed");
    // The gateway config did not change: only the sidecar limits.
    expect(controlPlane.cache.nodeStatus("gateway-1", "gateway")?.acked.listener).toBe(version);
  });
});

/** Every resource of a response, unpacked: its type name, its JSON, and its bytes. */
function resourcesOf(response: DiscoveryResponse | DeltaDiscoveryResponse): Array<{ typeName: string; json: JsonValue; bytes: Uint8Array }> {
  const packed: Any[] =
    response.$typeName === "envoy.service.discovery.v3.DiscoveryResponse"
      ? response.resources
      : response.resources.map((resource) => resource.resource).filter((any): any is Any => any !== undefined);
  return packed.map((any) => {
    const message = anyUnpack(any, registry);
    if (!message) throw new Error(`cannot decode ${any.typeUrl}`);
    const desc = registry.getMessage(message.$typeName)!;
    return { typeName: message.$typeName, json: toJson(desc, message, { registry }), bytes: any.value };
  });
}

/** Names of every field set anywhere in `json`. */
function fieldNames(json: JsonValue, into = new Set<string>()): Set<string> {
  if (Array.isArray(json)) for (const item of json) fieldNames(item, into);
  else if (json !== null && typeof json === "object") {
    for (const [key, value] of Object.entries(json)) {
      into.add(key);
      fieldNames(value, into);
    }
  }
  return into;
}

const keyMaterial = /PRIVATE KEY|BEGIN EC|BEGIN RSA/;
const keyFields = ["privateKey", "tlsCertificate", "tlsCertificates", "tlsCertificateSdsSecretConfigs", "sessionTicketKeys", "genericSecret", "privateKeyProvider", "password"];

describe.each(["sotw", "delta"] as const)("attack: a client-sidecar node reads everything it is sent (%s)", (variant) => {
  async function everythingFor(credentials: IssuedCredentials, nodeId: string) {
    // Every kind, wildcard, and by name the gateway's secrets as well.
    const requests = [...pushOrder.map((kind) => ({ kind })), { kind: "secret" as const, names: ["gateway-serving", "front-proxy-client", "client-ca", "upstream-ca", "gateway-ca"] }];
    return adsExchange(variant, controlPlane.xdsAddress, { ca: credentials.caCert, cert: credentials.cert, key: credentials.key }, nodeId, requests, pushOrder.length + (variant === "sotw" ? 1 : 0));
  }

  it("control: the same inspection finds the keys a gateway node is sent", async () => {
    const { responses, error } = await everythingFor(controlPlane.ca.issueNode({ name: `inspect-gateway-${variant}`, role: "gateway" }), `inspect-gateway-${variant}`);
    expect(error).toBeUndefined();
    const decoded = responses.flatMap(resourcesOf);
    expect(decoded.some((resource) => keyMaterial.test(Buffer.from(resource.bytes).toString("latin1")))).toBe(true);
    expect(decoded.some((resource) => fieldNames(resource.json).has("privateKey"))).toBe(true);
  });

  it("no resource of any type carries a private key, a certificate of its own, or any secret but the gateway's CA", async () => {
    const { responses, error } = await everythingFor(controlPlane.ca.issueNode({ name: `inspect-sidecar-${variant}`, role: "client-sidecar" }), `inspect-sidecar-${variant}`);
    expect(error).toBeUndefined();
    const decoded = responses.flatMap(resourcesOf);
    // It was sent its configuration: a listener, a route, a cluster, the CA.
    expect(new Set(decoded.map((resource) => resource.typeName))).toEqual(
      new Set(["envoy.config.listener.v3.Listener", "envoy.config.route.v3.RouteConfiguration", "envoy.config.cluster.v3.Cluster", "envoy.extensions.transport_sockets.tls.v3.Secret"]),
    );
    for (const resource of decoded) {
      expect(Buffer.from(resource.bytes).toString("latin1")).not.toMatch(keyMaterial);
      expect(JSON.stringify(resource.json)).not.toMatch(keyMaterial);
      const fields = fieldNames(resource.json);
      for (const field of keyFields) expect(fields.has(field), `${resource.typeName} sets ${field}`).toBe(false);
    }
    const secrets = decoded.filter((resource) => resource.typeName.endsWith(".Secret"));
    expect(new Set(secrets.map((secret) => (secret.json as { name: string }).name))).toEqual(new Set(["gateway-ca"]));
    expect(Object.keys(secrets[0]!.json as object).sort()).toEqual(["name", "validationContext"]);
  });
});
