// Health of each process of a local stack (.wharf/stack.json, written by
// `npm start`), probed the way a user would check it by hand.
import { readFile } from "node:fs/promises";
import { request as httpsRequest } from "node:https";
import { fromJson } from "@bufbuild/protobuf";
import { LocalStackSchema, type LocalStack, type StackComponent } from "@wharf/proto/wharf/admin/v1/stack_pb.js";

export interface ComponentHealth {
  component: StackComponent;
  healthy: boolean;
  detail: string;
}

export async function readStackFile(file: string): Promise<LocalStack> {
  return fromJson(LocalStackSchema, JSON.parse(await readFile(file, "utf8")));
}

async function get(component: StackComponent, timeoutMs: number): Promise<{ status: number; body: string }> {
  const url = new URL(component.healthUrl);
  if (url.protocol === "http:") {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    return { status: response.status, body: await response.text() };
  }
  // fetch cannot present a client certificate; kube-apiserver's /readyz wants one.
  const [ca, cert, key] = await Promise.all(
    [component.caFile, component.clientCertFile, component.clientKeyFile].map((file) => (file ? readFile(file) : undefined)),
  );
  return new Promise((resolve, reject) => {
    const request = httpsRequest(url, { ca, cert, key, timeout: timeoutMs }, (response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => (body += chunk));
      response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
      response.on("error", reject);
    });
    request.on("timeout", () => request.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    request.on("error", reject);
    request.end();
  });
}

export async function probeComponent(component: StackComponent, timeoutMs = 3000): Promise<ComponentHealth> {
  try {
    const { status, body } = await get(component, timeoutMs);
    const bodyOk = component.healthyBody === "" || body.trim() === component.healthyBody;
    if (status === 200 && bodyOk) return { component, healthy: true, detail: "ok" };
    return { component, healthy: false, detail: `${status} ${body.trim().split("\n")[0]?.slice(0, 80) ?? ""}`.trim() };
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause?.code;
    return { component, healthy: false, detail: cause ?? (error as Error).message };
  }
}

export function probeStack(stack: LocalStack): Promise<ComponentHealth[]> {
  return Promise.all(stack.components.map((component) => probeComponent(component)));
}
