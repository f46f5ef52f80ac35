// attack: xDS access. The control plane serves ADS over mTLS only: a stream
// without a node certificate of its CA gets nothing, and an authenticated
// node gets its own role's snapshot, whatever node id it claims.
import { join } from "node:path";
import { status as grpcStatus } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeWorkDir, removeWorkDir } from "@wharf/testkit";
import { startControlPlane, type RunningControlPlane } from "../control-plane.js";
import { NodeCa, type IssuedCredentials } from "../credentials/node-ca.js";
import { gatewayResources } from "../resources/gateway-resources.js";
import { adsExchange } from "./ads-client.js";
import { Snapshot, pushOrder } from "./snapshot.js";

let dir: string;
let controlPlane: RunningControlPlane;
let gateway: IssuedCredentials;
let otherCaGateway: IssuedCredentials;
const frontProxyKey = "-----BEGIN PRIVATE KEY-----\nthe-front-proxy-key\n-----END PRIVATE KEY-----\n";
const servingKey = "-----BEGIN PRIVATE KEY-----\nthe-serving-key\n-----END PRIVATE KEY-----\n";

beforeAll(async () => {
  dir = await makeWorkDir("xds-auth");
  controlPlane = await startControlPlane({ stateDir: join(dir, "control-plane"), xds: { host: "127.0.0.1", port: 0 } });
  const cert = "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n";
  controlPlane.cache.setRoleSnapshot(
    "gateway",
    Snapshot.build(
      "1",
      gatewayResources({
        listenPort: 7443,
        servingCert: cert,
        servingKey,
        clientCa: cert,
        upstreamCa: cert,
        frontProxyCert: cert,
        frontProxyKey,
        wasmModule: new Uint8Array([0, 97, 115, 109]),
        gatewayConfig: new Uint8Array(),
        pools: [{ name: "main", endpoints: [{ host: "127.0.0.1", port: 6443 }] }],
        defaultPool: "main",
      }),
    ),
  );
  gateway = controlPlane.ca.issueNode({ name: "gateway-1", role: "gateway" });
  // Same shape, same names, another CA: what someone without our CA's key can make.
  otherCaGateway = (await NodeCa.loadOrCreate(join(dir, "other-ca"))).issueNode({ name: "gateway-1", role: "gateway" });
}, 60_000);

afterAll(async () => {
  await controlPlane?.stop();
  if (dir) await removeWorkDir(dir);
});

const everything = pushOrder.map((kind) => ({ kind }));

describe.each(["sotw", "delta"] as const)("attack: unauthenticated ADS (%s)", (variant) => {
  it("control: the gateway's own certificate gets the gateway snapshot", async () => {
    const { responses, error } = await adsExchange(variant, controlPlane.xdsAddress, { ca: gateway.caCert, cert: gateway.cert, key: gateway.key }, "gateway-1", everything, pushOrder.length);
    expect(error).toBeUndefined();
    expect(responses).toHaveLength(pushOrder.length);
    const secrets = responses.find((response) => response.typeUrl.endsWith(".Secret"));
    expect(secrets?.resources).toHaveLength(4);
  });

  it("a plaintext stream is refused and gets nothing", async () => {
    const { responses, error } = await adsExchange(variant, controlPlane.xdsAddress, {}, "gateway-1", everything, 1);
    expect(error?.code).toBe(grpcStatus.UNAVAILABLE);
    expect(responses).toEqual([]);
  });

  it("TLS without a client certificate is refused and gets nothing", async () => {
    const { responses, error } = await adsExchange(variant, controlPlane.xdsAddress, { ca: gateway.caCert }, "gateway-1", everything, 1);
    expect(error?.code).toBe(grpcStatus.UNAVAILABLE);
    expect(responses).toEqual([]);
  });

  it("a certificate of the right shape from another CA is refused and gets nothing", async () => {
    const { responses, error } = await adsExchange(variant, controlPlane.xdsAddress, { ca: gateway.caCert, cert: otherCaGateway.cert, key: otherCaGateway.key }, "gateway-1", everything, 1);
    expect(error?.code).toBe(grpcStatus.UNAVAILABLE);
    expect(responses).toEqual([]);
  });
});

describe.each(["sotw", "delta"] as const)("attack: a node claiming another node's id (%s)", (variant) => {
  it("a client-sidecar certificate claiming the gateway's node id is refused and gets nothing", async () => {
    const sidecar = controlPlane.ca.issueNode({ name: `sidecar-${variant}`, role: "client-sidecar" });
    const { responses, error } = await adsExchange(variant, controlPlane.xdsAddress, { ca: sidecar.caCert, cert: sidecar.cert, key: sidecar.key }, "gateway-1", everything, 1);
    expect(error?.code).toBe(grpcStatus.PERMISSION_DENIED);
    expect(error?.details).toMatch(`node sidecar-${variant}'s; it cannot ask as node gateway-1`);
    expect(responses).toEqual([]);
  });

  it("a stream that starts as itself and then names another node is ended, with nothing of the other's", async () => {
    const sidecar = controlPlane.ca.issueNode({ name: `switcher-${variant}`, role: "client-sidecar" });
    const { responses, error } = await adsExchange(
      variant,
      controlPlane.xdsAddress,
      { ca: sidecar.caCert, cert: sidecar.cert, key: sidecar.key },
      `switcher-${variant}`,
      [{ kind: "listener" }, { kind: "secret", names: ["front-proxy-client"], nodeId: "gateway-1" }],
      3,
    );
    expect(error?.code).toBe(grpcStatus.PERMISSION_DENIED);
    // Whatever came before the switch was the sidecar's own (empty) role: no gateway resource.
    for (const response of responses) expect(response.resources).toEqual([]);
  });

  it("a client-sidecar node asking by name for the gateway's secrets gets none of them", async () => {
    const sidecar = controlPlane.ca.issueNode({ name: `asker-${variant}`, role: "client-sidecar" });
    controlPlane.cache.setRoleSnapshot("client-sidecar", Snapshot.build("cs-1", {}));
    const { responses, error } = await adsExchange(
      variant,
      controlPlane.xdsAddress,
      { ca: sidecar.caCert, cert: sidecar.cert, key: sidecar.key },
      `asker-${variant}`,
      [{ kind: "secret", names: ["front-proxy-client", "gateway-serving"] }],
      1,
    );
    expect(error).toBeUndefined();
    expect(responses).toHaveLength(1);
    expect(responses[0]!.resources).toEqual([]);
  });
});
