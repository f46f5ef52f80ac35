// Every manifest in deploy/ goes through a real kube-apiserver's admission
// and strict field validation with `kubectl apply --dry-run=server`; the
// sidecar's bootstrap is what the CLI generates and what Envoy accepts.
import { execFile } from "node:child_process";
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { parse, parseAllDocuments, stringify } from "yaml";
import { NodeCa, writeCredentials } from "@wharf/control-plane/credentials";
import { kubectlOn, makeWorkDir, repoRoot, toolPath } from "@wharf/testkit";

const run = promisify(execFile);
const deploy = join(repoRoot, "deploy");
const kube = inject("kube");

const kubectl = kubectlOn(kube.kubeconfig);

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

  it("the client-sidecar fragment in a workload pod, with its ConfigMap, passes a server-side dry run and mounts no Kubernetes credential", async () => {
    const fragment = parse(await readFile(join(deploy, "client-sidecar", "envoy-sidecar.yaml"), "utf8")) as Record<string, unknown>;
    const pod = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "controller", namespace: "wharf-system", labels: { "wharf.dev/envoy-role": "client-sidecar" } },
      spec: { ...fragment, serviceAccountName: "controller", containers: [{ name: "controller", image: "registry.example/controller:1" }] },
    };
    const file = join(dir, "pod.yaml");
    await writeFile(file, `${stringify(pod)}---\n${await readFile(join(deploy, "client-sidecar", "bootstrap-configmap.yaml"), "utf8")}`);
    // Pods are admitted only with an existing service account (no controller manager makes one here).
    await kubectl("-n", "wharf-system", "create", "serviceaccount", "controller");
    const output = await kubectl("apply", "-n", "wharf-system", "-f", file, "--dry-run=server", "--validate=strict", "-o", "json");
    type Mount = { name: string; mountPath: string };
    type Container = { name: string; restartPolicy?: string; volumeMounts?: Mount[] };
    type Volume = { name: string; secret?: { secretName: string }; projected?: unknown; emptyDir?: unknown };
    const list = JSON.parse(output) as { items: Array<{ kind: string; spec?: { initContainers?: Container[]; containers?: Container[]; volumes?: Volume[] } }> };
    const admittedPod = list.items.find((item) => item.kind === "Pod")!;
    // Admitted as a native sidecar: the API server kept restartPolicy Always on the init container.
    expect(admittedPod.spec!.initContainers).toEqual([expect.objectContaining({ name: "wharf-client-sidecar", restartPolicy: "Always" })]);
    // As admitted (after the service-account admission added the token
    // volume): the sidecar mounts its xDS certificate and nothing else
    // secret, no projected token; the workload container keeps its token.
    const volumes = new Map((admittedPod.spec!.volumes ?? []).map((volume) => [volume.name, volume]));
    const sidecar = admittedPod.spec!.initContainers![0]!;
    const sidecarVolumes = (sidecar.volumeMounts ?? []).map((mount) => volumes.get(mount.name)!);
    expect(sidecarVolumes.filter((volume) => volume.secret).map((volume) => volume.secret!.secretName)).toEqual(["wharf-client-sidecar-xds"]);
    expect(sidecarVolumes.filter((volume) => volume.projected)).toEqual([]);
    const workload = admittedPod.spec!.containers![0]!;
    expect((workload.volumeMounts ?? []).map((mount) => volumes.get(mount.name)!).some((volume) => volume.projected)).toBe(true);
    expect(list.items.map((item) => item.kind).sort()).toEqual(["ConfigMap", "Pod"]);
  });

  it("the gateway as a container of the kube-apiserver static pod passes a server-side dry run", async () => {
    const fragment = parse(await readFile(join(deploy, "gateway", "apiserver-static-pod.yaml"), "utf8")) as { containers: unknown[]; volumes: unknown[] };
    const pod = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "kube-apiserver", namespace: "kube-system" },
      spec: {
        hostNetwork: true,
        priorityClassName: "system-node-critical",
        containers: [{ name: "kube-apiserver", image: "registry.k8s.io/kube-apiserver:v1.36.3", command: ["kube-apiserver"] }, ...fragment.containers],
        volumes: fragment.volumes,
      },
    };
    const file = join(dir, "static-pod.yaml");
    await writeFile(file, stringify(pod));
    // The dry run goes through service-account admission, which a mirror pod skips.
    await kubectl("-n", "kube-system", "create", "serviceaccount", "default").catch((error: Error) => {
      if (!/AlreadyExists/.test(error.message)) throw error;
    });
    const output = await kubectl("apply", "-f", file, "--dry-run=server", "--validate=strict", "-o", "json");
    const admitted = JSON.parse(output) as { spec: { containers: Array<{ name: string }> } };
    expect(admitted.spec.containers.map((container) => container.name)).toEqual(["kube-apiserver", "wharf-gateway"]);
  });

  it.each([
    ["gateway", "gateway"],
    ["client-sidecar", "client-sidecar"],
  ] as const)("the %s bootstrap ConfigMap is what `wharf envoy bootstrap` generates, and Envoy validates it with that role's credentials", async (directory, role) => {
    const committed = await readFile(join(deploy, directory, "bootstrap-configmap.yaml"), "utf8");
    const command = /^# Generated by: wharf (.+)$/m.exec(committed)![1]!.split(" ");
    const { stdout } = await run(process.execPath, [join(repoRoot, "control-plane", "dist", "cli.js"), ...command]);
    expect(committed, `regenerate deploy/${directory}/bootstrap-configmap.yaml with the command in its first line`).toBe(stdout);

    const bootstrap = (parse(committed) as { data: Record<string, string> }).data["bootstrap.yaml"]!;
    const node = (parse(bootstrap) as { node: { id: string } }).node.id;
    // Envoy reads the xDS credentials the pod mounts: real ones, where the test can put them.
    const credentials = join(dir, `xds-credentials-${directory}`);
    await writeCredentials(credentials, (await NodeCa.loadOrCreate(join(dir, "node-ca"))).issueNode({ name: node, role }));
    expect(bootstrap).toContain("/etc/wharf/xds/node.key");
    const file = join(dir, `bootstrap-${directory}.yaml`);
    await writeFile(file, bootstrap.replaceAll("/etc/wharf/xds/", `${credentials}/`));
    const validation = await run(toolPath("envoy"), ["--mode", "validate", "--config-path", file]);
    expect(validation.stdout + validation.stderr).toMatch(/configuration '.*' OK/);
  });
});
