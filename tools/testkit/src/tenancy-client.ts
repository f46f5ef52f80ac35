// Raw HTTPS requests as whoever a kubeconfig (or a key pair) names, with the
// path sent byte for byte as given: the isolation suite's attacks (encoded
// slashes, dot segments, forged headers) must reach the gateway unaltered,
// which kubectl and client libraries would not allow.
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { request as httpsRequest } from "node:https";
import { parse } from "yaml";
import type { KeyPair } from "./pki.js";

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  /** The body as JSON, or undefined when it is not JSON. */
  json: unknown;
}

export interface RawRequest {
  method?: string;
  headers?: Record<string, string | string[]>;
  body?: string | Buffer;
  timeoutMs?: number;
}

/** TLS material and the server of a kubeconfig's current context (embedded data or files). */
export interface Credentials {
  server: string;
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

interface KubeconfigFile {
  "current-context"?: string;
  contexts?: Array<{ name: string; context: { cluster: string; user: string } }>;
  clusters?: Array<{ name: string; cluster: { server: string; "certificate-authority-data"?: string; "certificate-authority"?: string } }>;
  users?: Array<{ name: string; user: { "client-certificate-data"?: string; "client-key-data"?: string; "client-certificate"?: string; "client-key"?: string } }>;
}

const fromData = (data: string | undefined, file: string | undefined, what: string): Buffer => {
  if (data) return Buffer.from(data, "base64");
  if (file) return readFileSync(file);
  throw new Error(`kubeconfig has no ${what}`);
};

export async function credentialsOf(kubeconfig: string): Promise<Credentials> {
  const config = parse(await readFile(kubeconfig, "utf8")) as KubeconfigFile;
  const context = config.contexts?.find((entry) => entry.name === config["current-context"])?.context;
  const cluster = config.clusters?.find((entry) => entry.name === context?.cluster)?.cluster;
  const user = config.users?.find((entry) => entry.name === context?.user)?.user;
  if (!cluster || !user) throw new Error(`${kubeconfig}: no current context with a cluster and a user`);
  return {
    server: cluster.server,
    ca: fromData(cluster["certificate-authority-data"], cluster["certificate-authority"], "certificate authority"),
    cert: fromData(user["client-certificate-data"], user["client-certificate"], "client certificate"),
    key: fromData(user["client-key-data"], user["client-key"], "client key"),
  };
}

export function credentialsFromPair(server: string, caFile: string, pair: KeyPair): Credentials {
  return { server, ca: readFileSync(caFile), cert: readFileSync(pair.certFile), key: readFileSync(pair.keyFile) };
}

/** One request; `path` goes on the request line exactly as given. */
export function rawRequest(credentials: Credentials, path: string, options: RawRequest = {}): Promise<RawResponse> {
  const url = new URL(credentials.server);
  const timeoutMs = options.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: url.hostname,
        port: url.port,
        method: options.method ?? "GET",
        path,
        headers: { ...(options.body !== undefined ? { "content-type": "application/json" } : {}), ...options.headers },
        ca: credentials.ca,
        cert: credentials.cert,
        key: credentials.key,
        servername: url.hostname === "127.0.0.1" ? undefined : url.hostname,
        timeout: timeoutMs,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => {
          const body = Buffer.concat(chunks).toString("utf8");
          let json: unknown;
          try {
            json = JSON.parse(body);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json });
        });
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${options.method ?? "GET"} ${path} timed out after ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end(options.body);
  });
}

/** A client bound to one set of credentials. */
export function rawClient(credentials: Credentials): (path: string, options?: RawRequest) => Promise<RawResponse> {
  return (path, options) => rawRequest(credentials, path, options);
}
