import { request } from "node:https";
import { readFileSync } from "node:fs";
import type { KeyPair } from "./pki.js";

export interface HttpResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** GET over TLS with a client certificate, trusting only `caFile`. */
export function httpsGet(url: string, caFile: string, client?: KeyPair, timeoutMs = 5000): Promise<HttpResponse> {
  return new Promise((resolveResponse, reject) => {
    const req = request(
      url,
      {
        method: "GET",
        ca: readFileSync(caFile),
        cert: client ? readFileSync(client.certFile) : undefined,
        key: client ? readFileSync(client.keyFile) : undefined,
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () =>
          resolveResponse({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }),
        );
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`GET ${url} timed out after ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end();
  });
}
