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

let workDir: Promise<string> | undefined;
let authority: Promise<KeyPair> | undefined;
let issued = 0;

function certDir(): Promise<string> {
  workDir ??= makeWorkDir("gateway-host-certs");
  return workDir;
}

export type ClientCertificateRequest = Omit<CertificateRequest, "name" | "commonName" | "usage"> & {
  usage?: CertificateRequest["usage"];
  /** The issuing CA (default: one throwaway host CA). */
  ca?: KeyPair;
};

/** A client certificate's PEM from a throwaway CA (openssl), e.g. { subject: "/O=devs/CN=alice" }. */
export async function clientCertificate(request: ClientCertificateRequest): Promise<string> {
  const { ca: issuer, ...rest } = request;
  const dir = await certDir();
  authority ??= createCertificateAuthority(dir, "host-test-ca");
  const ca = issuer ?? (await authority);
  const pair = await issueCertificate(dir, ca, { usage: "client", ...rest, name: `client-${++issued}`, commonName: "unused" });
  return readFile(pair.certFile, "utf8");
}

/** A throwaway CA with this subject (openssl -subj syntax), e.g. a tenant CA. */
export async function certificateAuthority(subject: string): Promise<KeyPair & { pem: string; issuerSha256: string }> {
  const pair = await createCertificateAuthority(await certDir(), `ca-${++issued}`, subject);
  const pem = await readFile(pair.certFile, "utf8");
  return { ...pair, pem, issuerSha256: subjectSha256(pem) };
}

/** [tag, content start, content end] of the DER element at `at`. */
function derElement(der: Uint8Array, at: number): [number, number, number] {
  const tag = der[at]!;
  let length = der[at + 1]!;
  let start = at + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + der[start + i]!;
    start += count;
  }
  return [tag, start, start + length];
}

/**
 * Lowercase hex SHA-256 of a certificate's subject Name DER: for a CA, what
 * a TenantIssuer's issuer_sha256 holds (the issuer Name of every
 * certificate it signs is these bytes).
 */
export function subjectSha256(pem: string): string {
  const der = new Uint8Array(new X509Certificate(pem).raw);
  const [, certificateStart] = derElement(der, 0);
  const [, tbsStart] = derElement(der, certificateStart);
  let [tag, , end] = derElement(der, tbsStart);
  let at = tbsStart;
  if (tag === 0xa0) at = end;
  // serial, signature algorithm, issuer, validity, then the subject.
  for (let i = 0; i < 4; i++) at = derElement(der, at)[2];
  [tag, , end] = derElement(der, at);
  if (tag !== 0x30) throw new Error("no subject in the certificate");
  return createHash("sha256").update(der.subarray(at, end)).digest("hex");
}

/** A certificate's serial as revoked_serials spells it: lowercase hex, whole bytes, no leading zero bytes. */
export function serialOf(pem: string): string {
  let serial = new X509Certificate(pem).serialNumber.toLowerCase();
  if (serial.length % 2) serial = `0${serial}`;
  while (serial.length > 2 && serial.startsWith("00")) serial = serial.slice(2);
  return serial;
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
