// Runs the compiled gateway filter in the test host with a GatewayConfig.
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { GatewayConfigSchema } from "@wharf/proto/wharf/gateway/v1/gateway_pb.js";
import { wasmPath } from "../index.js";
import { ProxyWasmHost, type Headers, type HostOptions, type StreamHandle } from "../test-host/host.js";

export type GatewayConfigInit = MessageInitShape<typeof GatewayConfigSchema>;

export function encodeGatewayConfig(config: GatewayConfigInit): Uint8Array {
  return toBinary(GatewayConfigSchema, create(GatewayConfigSchema, config));
}

export async function gatewayHost(config: GatewayConfigInit, options: Omit<HostOptions, "pluginConfiguration"> = {}): Promise<ProxyWasmHost> {
  const host = await ProxyWasmHost.load(wasmPath("gateway"), { ...options, pluginConfiguration: encodeGatewayConfig(config) });
  if (!host.start()) throw new Error(`gateway refused its configuration: ${JSON.stringify(host.logs)}`);
  return host;
}

/** Sends request headers for METHOD PATH through a new stream. */
export function request(host: ProxyWasmHost, method: string, path: string, extra: Headers = []): { stream: StreamHandle; status: number } {
  const stream = host.stream();
  const status = stream.sendRequestHeaders([[":method", method], [":path", path], [":authority", "kube"], [":scheme", "https"], ...extra]);
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
