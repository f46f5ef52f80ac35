import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { request } from "node:https";
import type { Socket } from "node:net";
import type { KeyPair } from "./pki.js";

export type UpgradeProtocol =
  | { kind: "websocket"; subprotocols: string[] }
  | { kind: "spdy"; streamProtocols: string[] }
  | { kind: "other"; upgrade: string };

export interface UpgradeResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** The response body when the server did not switch protocols. */
  body: string;
  /** The upgraded connection, after a 101; the caller ends it. */
  socket?: Socket;
  /** Bytes that came with the 101, before the caller could read the socket. */
  head?: Buffer;
}

/**
 * An HTTP/1.1 upgrade request the way kubectl sends one (WebSocket with the
 * channel subprotocols, or SPDY/3.1 with X-Stream-Protocol-Version), over TLS
 * with a client certificate or a bearer token.
 */
export function upgradeRequest(
  url: string,
  caFile: string,
  protocol: UpgradeProtocol,
  auth: { client?: KeyPair; token?: string; headers?: Record<string, string> } = {},
  method = "GET",
  timeoutMs = 10_000,
): Promise<UpgradeResponse> {
  const headers: Record<string, string | string[]> = { connection: "Upgrade", ...auth.headers };
  if (protocol.kind === "websocket") {
    headers.upgrade = "websocket";
    headers["sec-websocket-version"] = "13";
    headers["sec-websocket-key"] = randomBytes(16).toString("base64");
    headers["sec-websocket-protocol"] = protocol.subprotocols.join(", ");
  } else if (protocol.kind === "spdy") {
    headers.upgrade = "SPDY/3.1";
    headers["x-stream-protocol-version"] = protocol.streamProtocols;
  } else {
    headers.upgrade = protocol.upgrade;
  }
  if (auth.token !== undefined) headers.authorization = `Bearer ${auth.token}`;
  return new Promise((resolve, reject) => {
    const req = request(url, {
      method,
      headers,
      ca: readFileSync(caFile),
      cert: auth.client ? readFileSync(auth.client.certFile) : undefined,
      key: auth.client ? readFileSync(auth.client.keyFile) : undefined,
      timeout: timeoutMs,
      agent: false,
    });
    req.on("upgrade", (res, socket, head) => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: "", socket, head }));
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`upgrade ${url} timed out after ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end();
  });
}

/**
 * The payload of the first complete WebSocket frame the server sends on an
 * upgraded socket (server frames are unmasked), waiting up to `timeoutMs`.
 */
export function readWebSocketFrame(socket: Socket, head: Buffer | undefined, timeoutMs = 10_000): Promise<{ opcode: number; payload: Buffer }> {
  return new Promise((resolve, reject) => {
    let buffered = head ?? Buffer.alloc(0);
    const timer = setTimeout(() => done(new Error(`no WebSocket frame within ${timeoutMs} ms`)), timeoutMs);
    const done = (error?: Error, frame?: { opcode: number; payload: Buffer }) => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("error", done);
      if (error) reject(error);
      else resolve(frame!);
    };
    const tryParse = () => {
      if (buffered.length < 2) return;
      const opcode = buffered[0]! & 0x0f;
      let length = buffered[1]! & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (buffered.length < 4) return;
        length = buffered.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (buffered.length < 10) return;
        length = Number(buffered.readBigUInt64BE(2));
        offset = 10;
      }
      if (buffered.length < offset + length) return;
      done(undefined, { opcode, payload: buffered.subarray(offset, offset + length) });
    };
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      tryParse();
    };
    socket.on("data", onData);
    socket.on("error", done);
    tryParse();
  });
}
