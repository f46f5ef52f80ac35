// Every manifest in deploy/ goes through a real kube-apiserver's admission
// and strict field validation with `kubectl apply --dry-run=server`; the
// sidecar's bootstrap is what the CLI generates and what Envoy accepts.
import { execFile } from "node:child_process";
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { parse, parseAllDocuments, stringify } from "yaml";
import { makeWorkDir, repoRoot, toolPath } from "@wharf/testkit";

const run = promisify(execFile);
const deploy = join(repoRoot, "deploy");
const kube = inject("kube");

async function kubectl(...args: string[]): Promise<string> {
  try {
    return (await run(toolPath("kubectl"), ["--kubeconfig", kube.kubeconfig, ...args])).stdout;
  } catch (error) {
    const { stderr, stdout } = error as { stderr: string; stdout: string };
    throw new Error(`kubectl ${args.join(" ")}: ${stderr || stdout}`, { cause: error });
  }
}

/** "kind/name" of every object a multi-document YAML text holds. */
function objectNames(text: string): string[] {
  return parseAllDocuments(text)
    .map((document) => document.toJS() as { kind?: string; metadata?: { name?: string } } | null)
    .filter((object) => object?.kind !== undefined)
    .map((object) => `${object!.kind!.toLowerCase()}/${object!.metadata!.name!}`);
}

describe("deploy/ manifests", () => {
  let dir: string;

  beforeAll(async () => {
    dir = await makeWorkDir("deploy");
    // A server-side dry run of namespaced objects needs their namespace to exist.
    await kubectl("apply", "-f", join(deploy, "namespace.yaml"));
  });

  afterAll(async () => {
    await kubectl("delete", "namespace", "wharf-system", "--wait=false").catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it("kubectl apply -k deploy/ passes a server-side dry run, object by object", async () => {
    const rendered = await kubectl("kustomize", deploy);
    const expected = objectNames(rendered);
    for (const kind of ["namespace", "customresourcedefinition", "deployment", "statefulset", "service", "role", "rolebinding", "serviceaccount", "networkpolicy", "gatewayconfig"]) {
      expect(expected.some((name) => name.startsWith(`${kind}/`)), `no ${kind} in deploy/`).toBe(true);
    }
    const output = await kubectl("apply", "-k", deploy, "--dry-run=server", "--validate=strict");
    for (const name of expected) {
      const [kind, objectName] = name.split("/");
      expect(output).toMatch(new RegExp(`^${kind}[.\\w/-]*/${objectName} \\w+ \\(server dry run\\)$`, "m"));
    }
    // Nothing was created by the dry run.
    await expect(kubectl("-n", "wharf-system", "get", "deployment", "wharf-control-plane")).rejects.toThrow(/NotFound/);
  });

  it("the dry run is a real check: a misspelt field is refused", async () => {
    const broken = (await readFile(join(deploy, "control-plane.yaml"), "utf8")).replace("  replicas: 2", "  replica: 2");
    const file = join(dir, "broken.yaml");
    await writeFile(file, broken);
    await expect(kubectl("apply", "-f", file, "--dry-run=server", "--validate=strict")).rejects.toThrow(/unknown field "spec.replica"/);
  });

  it("the sidecar fragment in a pod, with its ConfigMap, passes a server-side dry run", async () => {
    const fragment = parse(await readFile(join(deploy, "sidecar", "envoy-sidecar.yaml"), "utf8")) as Record<string, unknown>;
    const pod = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "controller", namespace: "wharf-system", labels: { "wharf.dev/gateway-sidecar": "true" } },
      spec: { ...fragment, serviceAccountName: "controller", containers: [{ name: "controller", image: "registry.example/controller:1", args: ["--kubeconfig=/etc/kube/gateway.kubeconfig"] }] },
    };
    const file = join(dir, "pod.yaml");
    await writeFile(file, `${stringify(pod)}---\n${await readFile(join(deploy, "sidecar", "bootstrap-configmap.yaml"), "utf8")}`);
    // Pods are admitted only with an existing service account (no controller manager makes one here).
    await kubectl("-n", "wharf-system", "create", "serviceaccount", "controller");
    const output = await kubectl("apply", "-n", "wharf-system", "-f", file, "--dry-run=server", "--validate=strict", "-o", "json");
    const list = JSON.parse(output) as { items: Array<{ kind: string; spec?: { initContainers?: Array<{ name: string; restartPolicy?: string }> } }> };
    const admittedPod = list.items.find((item) => item.kind === "Pod")!;
    // Admitted as a native sidecar: the API server kept restartPolicy Always on the init container.
    expect(admittedPod.spec!.initContainers).toEqual([expect.objectContaining({ name: "wharf-gateway", restartPolicy: "Always" })]);
    expect(list.items.map((item) => item.kind).sort()).toEqual(["ConfigMap", "Pod"]);
  });

  it("the bootstrap ConfigMap is what `wharf envoy bootstrap` generates, and Envoy validates it", async () => {
    const committed = await readFile(join(deploy, "sidecar", "bootstrap-configmap.yaml"), "utf8");
    const command = /^# Generated by: wharf (.+)$/m.exec(committed)![1]!.split(" ");
    const { stdout } = await run(process.execPath, [join(repoRoot, "control-plane", "dist", "cli.js"), ...command]);
    expect(committed, "regenerate deploy/sidecar/bootstrap-configmap.yaml with the command in its first line").toBe(stdout);

    const bootstrap = (parse(committed) as { data: Record<string, string> }).data["bootstrap.yaml"]!;
    const file = join(dir, "bootstrap.yaml");
    await writeFile(file, bootstrap);
    const validation = await run(toolPath("envoy"), ["--mode", "validate", "--config-path", file, "--service-node", "default.controller", "--service-cluster", "wharf-gateway"]);
    expect(validation.stdout + validation.stderr).toMatch(/configuration '.*' OK/);
  });
});
