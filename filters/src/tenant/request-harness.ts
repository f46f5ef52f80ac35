// Runs the compiled tenant filter in the test host with a TenantFilterConfig.
import { randomBytes } from "node:crypto";
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { TenantFilterConfigSchema } from "@wharf/proto/wharf/tenant/v1/tenant_pb.js";
import { wasmPath } from "../index.js";
import { ProxyWasmHost, type Headers, type HostOptions, type StreamHandle } from "../test-host/host.js";
import { builtinGroups } from "../../../control-plane/src/tenancy/naming.js";

export type TenantFilterConfigInit = MessageInitShape<typeof TenantFilterConfigSchema>;

export function encodeTenantConfig(config: TenantFilterConfigInit): Uint8Array {
  return toBinary(TenantFilterConfigSchema, create(TenantFilterConfigSchema, config));
}

/** Kubernetes' built-in groups: what the control plane sends as host_groups (checked against a real apiserver there). */
export const builtInGroups: string[] = [...builtinGroups];

/** A tenant entry with a fresh continue key. */
export function tenantEntry(name: string, sharedViews: string[] = []): { name: string; sharedViews: string[]; continueKey: Uint8Array } {
  return { name, sharedViews, continueKey: new Uint8Array(randomBytes(32)) };
}

export async function tenantHost(config: TenantFilterConfigInit, options: Omit<HostOptions, "pluginConfiguration"> = {}): Promise<ProxyWasmHost> {
  const host = await ProxyWasmHost.load(wasmPath("tenant"), { ...options, pluginConfiguration: encodeTenantConfig(config) });
  if (!host.start()) throw new Error(`tenant filter refused its configuration: ${JSON.stringify(host.logs)}`);
  return host;
}

/** Whether the filter accepts `config`, and the error it logged if not. */
export async function configure(config: TenantFilterConfigInit): Promise<{ accepted: boolean; error: string }> {
  const host = await ProxyWasmHost.load(wasmPath("tenant"), { pluginConfiguration: encodeTenantConfig(config) });
  const accepted = host.start();
  return { accepted, error: host.logs.map((entry) => entry.message).join("\n") };
}

export interface Sent {
  stream: StreamHandle;
  /** Status of the request-headers callback: 0 Continue, 1 StopIteration. */
  status: number;
}

/** Sends METHOD PATH as tenant `tenant` (undefined: a host identity's request). */
export function send(host: ProxyWasmHost, method: string, path: string, tenant: string | undefined, extra: Headers = [], body?: string): Sent {
  const stream = host.stream();
  const headers: Headers = [[":method", method], [":path", path], [":authority", "kube"], [":scheme", "https"], ...extra];
  if (tenant !== undefined) headers.push(["x-wharf-tenant", tenant]);
  const status = stream.sendRequestHeaders(headers, body === undefined);
  if (body !== undefined && stream.localResponse === undefined) stream.sendRequestBody(body, true);
  return { stream, status };
}

/** The Kubernetes Status the filter answered with. */
export function statusOf(stream: StreamHandle): { code: number; reason: string; message: string } {
  const local = stream.localResponse;
  if (!local) throw new Error("the filter did not answer the request");
  const body = JSON.parse(local.body) as { kind: string; code: number; reason: string; message: string };
  if (body.kind !== "Status" || body.code !== local.status) throw new Error(`not a Status body: ${local.body}`);
  return { code: body.code, reason: body.reason, message: body.message };
}
