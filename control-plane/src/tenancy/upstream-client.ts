// A small JSON client for kube-apiserver over HTTPS: the control plane's own
// identity (a kubeconfig), or any TLS client identity plus headers (tests use
// the front-proxy certificate with X-Remote-User to act as a tenant). Generic
// paths, because tenant deletion walks every resource discovery lists.
import { request } from "node:https";
import { KubeConfig } from "@kubernetes/client-node";

export interface KubeConnection {
  /** https://host:port */
  server: string;
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
  /** Bearer token, for kubeconfigs that carry one. */
  token?: string;
  /** Sent with every request (e.g. X-Remote-User / X-Remote-Group for a front proxy). */
  headers?: Record<string, string | string[]>;
}

export interface KubeResponse {
  status: number;
  /** The parsed JSON body, or undefined when the body is not JSON. */
  body: KubeObject | undefined;
  text: string;
  /** Warning headers (e.g. admission policy expression warnings). */
  warnings: string[];
}

// Kubernetes JSON is open-ended; callers read the fields they need.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type KubeObject = Record<string, any>;

export interface RequestOptions {
  contentType?: string;
  accept?: string;
  timeoutMs?: number;
}

export type KubeClient = (method: string, path: string, body?: unknown, options?: RequestOptions) => Promise<KubeResponse>;

/** The connection a kubeconfig file's current context describes (certificates, CA, token). */
export async function connectionFromKubeconfig(file: string): Promise<KubeConnection> {
  const config = new KubeConfig();
  config.loadFromFile(file);
  const cluster = config.getCurrentCluster();
  if (!cluster) throw new Error(`kubeconfig ${file}: no current cluster`);
  const options: { ca?: string | Buffer; cert?: string | Buffer; key?: string | Buffer; headers?: Record<string, string> } = {};
  await config.applyToHTTPSOptions(options as Parameters<KubeConfig["applyToHTTPSOptions"]>[0]);
  const authorization = options.headers?.Authorization ?? options.headers?.authorization;
  return {
    server: cluster.server.replace(/\/+$/, ""),
    ca: options.ca,
    cert: options.cert,
    key: options.key,
    token: authorization?.startsWith("Bearer ") ? authorization.slice("Bearer ".length) : undefined,
  };
}

/** A KubeClient on `connection`. Bodies are JSON unless `contentType` says otherwise and `body` is a string. */
export function kubeClient(connection: KubeConnection): KubeClient {
  return (method, path, body, options = {}) =>
    new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
      const headers: Record<string, string | string[]> = {
        accept: options.accept ?? "application/json",
        ...(connection.headers ?? {}),
      };
      if (payload !== undefined) {
        headers["content-type"] = options.contentType ?? "application/json";
        headers["content-length"] = String(Buffer.byteLength(payload));
      }
      if (connection.token) headers.authorization = `Bearer ${connection.token}`;
      const timeoutMs = options.timeoutMs ?? 30_000;
      const req = request(
        connection.server + path,
        { method, headers, ca: connection.ca, cert: connection.cert, key: connection.key, timeout: timeoutMs },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (chunk: Buffer) => chunks.push(chunk));
          res.on("error", reject);
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            let parsed: KubeObject | undefined;
            try {
              parsed = text.length > 0 ? (JSON.parse(text) as KubeObject) : undefined;
            } catch {
              parsed = undefined;
            }
            const warning = res.headers.warning;
            const warnings = warning === undefined ? [] : Array.isArray(warning) ? warning : [warning];
            resolve({ status: res.statusCode ?? 0, body: parsed, text, warnings });
          });
        },
      );
      req.on("timeout", () => req.destroy(new Error(`${method} ${path} timed out after ${timeoutMs} ms`)));
      req.on("error", reject);
      if (payload !== undefined) req.write(payload);
      req.end();
    });
}

/** A response's status, or an Error naming the request and the apiserver's message. */
export class KubeError extends Error {
  override readonly name = "KubeError";
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number,
    readonly apiMessage: string,
  ) {
    super(`${method} ${path}: ${status} ${apiMessage}`);
  }
}

/** The response when its status is one of `ok`, else a KubeError. */
export async function expectStatus(client: KubeClient, method: string, path: string, body: unknown, ok: readonly number[], options?: RequestOptions): Promise<KubeResponse> {
  const response = await client(method, path, body, options);
  if (!ok.includes(response.status)) {
    throw new KubeError(method, path, response.status, (response.body?.message as string | undefined) ?? response.text.slice(0, 500));
  }
  return response;
}
