// Runs the compiled gateway filter in the test host with a GatewayConfig.
import { createHash, X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { GatewayConfigSchema } from "@wharf/proto/wharf/gateway/v1/gateway_pb.js";
import { createCertificateAuthority, issueCertificate, makeWorkDir, type CertificateRequest, type KeyPair } from "@wharf/testkit";
import { wasmPath } from "../index.js";
import { ProxyWasmHost, type Headers, type HostOptions, type StreamHandle } from "../test-host/host.js";

export type GatewayConfigInit = MessageInitShape<typeof GatewayConfigSchema>;

export function encodeGatewayConfig(config: GatewayConfigInit): Uint8Array {
  return toBinary(GatewayConfigSchema, create(GatewayConfigSchema, config));
}

export interface GatewayHostOptions extends Omit<HostOptions, "pluginConfiguration"> {
  /** PEM of the verified client certificate every request of this host comes with, as Envoy forwards it. */
  clientCert?: string;
}

const hostHeaders = new WeakMap<ProxyWasmHost, Headers>();

export async function gatewayHost(config: GatewayConfigInit, options: GatewayHostOptions = {}): Promise<ProxyWasmHost> {
  const { clientCert, ...hostOptions } = options;
  const host = await ProxyWasmHost.load(wasmPath("gateway"), { ...hostOptions, pluginConfiguration: encodeGatewayConfig(config) });
  if (!host.start()) throw new Error(`gateway refused its configuration: ${JSON.stringify(host.logs)}`);
  if (clientCert !== undefined) setClientCert(host, clientCert);
  return host;
}

/** Every later request() on `host` comes with this verified client certificate. */
export function setClientCert(host: ProxyWasmHost, pem: string): void {
  hostHeaders.set(host, [["x-forwarded-client-cert", forwardedClientCert(pem)]]);
}

/** The x-forwarded-client-cert value Envoy sets for a verified certificate (SANITIZE_SET, cert: true). */
export function forwardedClientCert(pem: string): string {
  const hash = createHash("sha256").update(new X509Certificate(pem).raw).digest("hex");
  return `Hash=${hash};Cert="${encodeURIComponent(pem)}"`;
}

let authority: Promise<{ dir: string; ca: KeyPair }> | undefined;
let issued = 0;

/** A client certificate's PEM from a throwaway CA (openssl), e.g. { subject: "/O=devs/CN=alice" }. */
export async function clientCertificate(request: Omit<CertificateRequest, "name" | "commonName" | "usage"> & { usage?: CertificateRequest["usage"] }): Promise<string> {
  authority ??= makeWorkDir("gateway-host-certs").then(async (dir) => ({ dir, ca: await createCertificateAuthority(dir, "host-test-ca") }));
  const { dir, ca } = await authority;
  const pair = await issueCertificate(dir, ca, { usage: "client", ...request, name: `client-${++issued}`, commonName: "unused" });
  return readFile(pair.certFile, "utf8");
}

/** Sends request headers for METHOD PATH through a new stream. */
export function request(host: ProxyWasmHost, method: string, path: string, extra: Headers = []): { stream: StreamHandle; status: number } {
  const stream = host.stream();
  const status = stream.sendRequestHeaders([[":method", method], [":path", path], [":authority", "kube"], [":scheme", "https"], ...(hostHeaders.get(host) ?? []), ...extra]);
  return { stream, status };
}

/** The classification the filter wrote into x-wharf-request-info. */
export function requestInfoOf(host: ProxyWasmHost, method: string, path: string): Record<string, string> {
  const { stream } = request(host, method, path);
  const header = stream.header("x-wharf-request-info");
  stream.finish();
  if (header === undefined) throw new Error(`no x-wharf-request-info for ${method} ${path}`);
  return Object.fromEntries(
    header.split(";").map((field) => {
      const eq = field.indexOf("=");
      return [field.slice(0, eq), field.slice(eq + 1)];
    }),
  );
}

/**
 * Host calls one request costs, from request headers to the end of the
 * stream (a response with `status`), once the filter is warm: what the
 * filter asks of Envoy per request.
 */
export function hostCallsPerRequest(host: ProxyWasmHost, method: string, path: string, extra: Headers = [], status = "200"): number {
  const once = () => {
    const before = host.hostCalls;
    const { stream } = request(host, method, path, extra);
    stream.sendResponseHeaders([[":status", status]]);
    stream.finish();
    return host.hostCalls - before;
  };
  once();
  return once();
}
