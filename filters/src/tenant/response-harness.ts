// Drives the tenant filter's response side on the compiled module: one
// request as tenant T, then an upstream response fed in chosen chunks.
import type { Headers, LocalResponse, ProxyWasmHost } from "../test-host/host.js";
import { builtInGroups, tenantEntry, tenantHost } from "./request-harness.js";

/** A filter serving tenants "acme" and "other" with Kubernetes' built-in groups as host groups. */
export async function responseHost(): Promise<ProxyWasmHost> {
  return tenantHost({ tenants: [tenantEntry("acme"), tenantEntry("other")], hostGroups: builtInGroups });
}

export interface ResponseRun {
  /** What the client receives (every chunk as the filter left it). */
  bytes: Uint8Array;
  text: string;
  headers: Headers;
  /** A local reply: a refusal, or (after the headers went out) Envoy's reset of a failed stream. */
  local?: LocalResponse;
  /** The filter's answer to each body chunk (0 Continue). */
  statuses: number[];
}

export interface ResponseInput {
  tenant?: string;
  path?: string;
  method?: string;
  /** The tenant's request body (JSON), for a POST. */
  requestBody?: string;
  status?: string;
  contentType?: string;
  extraHeaders?: Headers;
  chunks: Uint8Array[];
}

export function runResponse(host: ProxyWasmHost, input: ResponseInput): ResponseRun {
  const stream = host.stream();
  const requestHeaders: Headers = [
    [":method", input.method ?? "GET"],
    [":path", input.path ?? "/api/v1/namespaces/dev/configmaps"],
    [":authority", "kubernetes"],
    ["x-wharf-tenant", input.tenant ?? "acme"],
  ];
  if (input.requestBody === undefined) stream.sendRequestHeaders(requestHeaders);
  else {
    stream.sendRequestHeaders([...requestHeaders, ["content-type", "application/json"]], false);
    if (stream.localResponse === undefined) stream.sendRequestBody(input.requestBody, true);
  }
  // The request side must have let the request through, or there is no response to rewrite.
  if (stream.localResponse !== undefined) throw new Error(`the request side answered ${input.method ?? "GET"} ${input.path}: ${stream.localResponse.body}`);
  const total = input.chunks.reduce((sum, chunk) => sum + chunk.length, 0);
  stream.sendResponseHeaders(
    [[":status", input.status ?? "200"], ["content-type", input.contentType ?? "application/json"], ["content-length", String(total)], ...(input.extraHeaders ?? [])],
    false,
  );
  const out: Uint8Array[] = [];
  const statuses: number[] = [];
  const headers = [...stream.responseHeaders];
  if (stream.localResponse === undefined) {
    input.chunks.forEach((chunk, index) => {
      statuses.push(stream.sendResponseBody(chunk, index === input.chunks.length - 1));
      out.push(stream.bodyBytes("response"));
    });
  }
  const local = stream.localResponse;
  stream.finish();
  const bytes = Buffer.concat(out);
  return { bytes, text: new TextDecoder().decode(bytes), headers, local, statuses };
}

/** `bytes` cut at the given offsets. */
export function splitAt(bytes: Uint8Array, offsets: number[]): Uint8Array[] {
  const cuts = [0, ...offsets.filter((offset) => offset > 0 && offset < bytes.length).sort((a, b) => a - b), bytes.length];
  const chunks: Uint8Array[] = [];
  for (let i = 0; i + 1 < cuts.length; i++) chunks.push(bytes.subarray(cuts[i], cuts[i + 1]));
  return chunks;
}

export const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);
