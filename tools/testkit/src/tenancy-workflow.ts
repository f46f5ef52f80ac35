// One kubectl workflow, run once by the cluster admin straight against the
// apiserver (the reference: a plain cluster) and once by each tenant through
// the gateway; its outputs, with what differs between any two runs (ages,
// uids, resource versions, timestamps, cluster IPs) normalised away, must be
// equal. Nothing here knows about tenants: whatever the filter gets wrong
// shows up as a difference from the reference.
import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { stringify } from "yaml";
import { kubectlOn } from "./kubectl.js";
import { toolPath } from "./tools.js";
import { waitFor } from "./wait.js";

/** Objects created by the workflow carry this label, so lists of them can be compared on any cluster. */
export const workflowLabel = "workflow=e2e";

const crds = [
  {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: "widgets.example.com" },
    spec: {
      group: "example.com",
      scope: "Namespaced",
      names: { plural: "widgets", singular: "widget", kind: "Widget", shortNames: ["wd"] },
      versions: [
        {
          name: "v1",
          served: true,
          storage: true,
          schema: { openAPIV3Schema: { type: "object", properties: { spec: { type: "object", properties: { size: { type: "integer" } } } } } },
          additionalPrinterColumns: [{ name: "Size", type: "integer", jsonPath: ".spec.size" }],
        },
      ],
    },
  },
  {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: "gadgets.example.com" },
    spec: {
      group: "example.com",
      scope: "Cluster",
      names: { plural: "gadgets", singular: "gadget", kind: "Gadget" },
      versions: [{ name: "v1", served: true, storage: true, schema: { openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true } } }],
    },
  },
];

const labels = { workflow: "e2e" };

function deployment(namespace: string, name: string) {
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name, namespace, labels },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: name } },
      template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: "main", image: "registry.example/app:1" }] } },
    },
  };
}

const objects = [
  deployment("default", "web"),
  deployment("dev", "api"),
  { apiVersion: "example.com/v1", kind: "Widget", metadata: { name: "w1", namespace: "default", labels }, spec: { size: 1 } },
  { apiVersion: "example.com/v1", kind: "Widget", metadata: { name: "w2", namespace: "dev", labels }, spec: { size: 2 } },
  { apiVersion: "example.com/v1", kind: "Widget", metadata: { name: "w3", namespace: "dev", labels }, spec: { size: 3 } },
  { apiVersion: "example.com/v1", kind: "Gadget", metadata: { name: "g1", labels }, colour: "blue" },
  {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "ClusterRole",
    metadata: { name: "widget-reader", labels },
    rules: [{ apiGroups: ["example.com"], resources: ["widgets"], verbs: ["get", "list", "watch"] }],
  },
  {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "ClusterRoleBinding",
    metadata: { name: "widget-readers", labels },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "widget-reader" },
    subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "Group", name: "readers" }],
  },
  {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "RoleBinding",
    metadata: { name: "alice-reads-widgets", namespace: "dev", labels },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "widget-reader" },
    subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: "alice" }],
  },
  ...Array.from({ length: 5 }, (_, i) => ({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: `c${i}`, namespace: "dev", labels }, data: { index: String(i) } })),
  { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "c-default", namespace: "default", labels }, data: { index: "default" } },
];

/** Columns whose values differ between any two runs of the same workflow. */
const volatileColumns = new Set(["AGE", "CREATED AT", "CLUSTER-IP", "LAST SEEN", "FIRST SEEN"]);

/**
 * A kubectl table with volatile columns blanked and cells separated by " | "
 * (column widths follow the longest cell, which is the same in every run
 * anyway, but a reader of a diff wants cells).
 */
export function normaliseTable(text: string): string {
  const lines = text.replace(/\n+$/, "").split("\n");
  if (lines.length === 0 || lines[0] === "") return "";
  const header = lines[0]!;
  // Header cells are separated by 2+ spaces (single spaces occur inside "CREATED AT").
  const starts: number[] = [];
  const names: string[] = [];
  for (const match of header.matchAll(/\S+(?: \S+)*/g)) {
    starts.push(match.index);
    names.push(match[0]);
  }
  return lines
    .map((line, row) =>
      starts
        .map((start, column) => {
          const cell = line.slice(start, starts[column + 1] ?? line.length).trim();
          return row > 0 && volatileColumns.has(names[column]!) && cell !== "" ? "<volatile>" : cell;
        })
        .join(" | "),
    )
    .join("\n");
}

const volatileMetadata = ["uid", "resourceVersion", "creationTimestamp", "generation", "selfLink"];

/** A JSON object (or list) with what differs between runs removed, recursively. */
export function normaliseObject(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(normaliseObject);
  if (value === null || typeof value !== "object") return value;
  const out: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(value as Record<string, unknown>)) {
    if (key === "metadata" && field !== null && typeof field === "object") {
      const metadata = { ...(field as Record<string, unknown>) };
      for (const name of volatileMetadata) delete metadata[name];
      if (Array.isArray(metadata.managedFields)) metadata.managedFields = (metadata.managedFields as Array<Record<string, unknown>>).map(({ time: _time, ...rest }) => normaliseObject(rest));
      out[key] = normaliseObject(metadata);
    } else if (key === "lastTransitionTime" || key === "clusterIP" || key === "clusterIPs") {
      out[key] = "<volatile>";
    } else {
      out[key] = normaliseObject(field);
    }
  }
  return out;
}

export function normaliseJson(text: string): string {
  return JSON.stringify(normaliseObject(JSON.parse(text)), null, 2);
}

export interface WorkflowUsers {
  /** Kubeconfig of the cluster's (or tenant's) admin. */
  admin: string;
  /** User alice, no groups. */
  alice: string;
  /** User bob, group readers. */
  bob: string;
}

export interface WorkflowOutputs {
  [step: string]: string;
}

/** Lines a `kubectl get -w --output-watch-events` prints until `until` is printed. */
export async function watchLines(kubeconfig: string, args: string[], whenWatching: () => Promise<void>, first: RegExp, until: RegExp, timeoutMs = 20_000): Promise<string[]> {
  const child = spawn(toolPath("kubectl"), ["--kubeconfig", kubeconfig, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  const lines: string[] = [];
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  try {
    return await new Promise<string[]>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`kubectl ${args.join(" ")}: no line matching ${until} within ${timeoutMs} ms; saw ${JSON.stringify(lines)}; stderr ${stderr}`)), timeoutMs);
      let started = false;
      child.on("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`kubectl ${args.join(" ")} exited ${code} before ${until}; saw ${JSON.stringify(lines)}; stderr ${stderr}`));
      });
      createInterface({ input: child.stdout }).on("line", (line) => {
        lines.push(line);
        if (!started && first.test(line)) {
          started = true;
          whenWatching().catch((error: Error) => reject(error));
        }
        if (until.test(line)) {
          clearTimeout(timer);
          resolve(lines);
        }
      });
    });
  } finally {
    child.kill("SIGKILL");
  }
}

/** Counts the list requests kubectl sent (its -v=6 log) that asked for a page of 2. */
async function pagedRequests(kubeconfig: string, args: string[]): Promise<{ stdout: string; pages: number }> {
  const child = spawn(toolPath("kubectl"), ["--kubeconfig", kubeconfig, "-v=6", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  if (code !== 0) throw new Error(`kubectl ${args.join(" ")}: exit ${code}: ${stderr}`);
  return { stdout, pages: stderr.split("\n").filter((line) => /limit=2/.test(line) && /Response/.test(line)).length };
}

/**
 * The workflow. `dir` receives the manifests; `users` are kubeconfigs of
 * the same three users on the cluster under test. Returns each step's
 * normalised output by step name.
 */
export async function runWorkflow(dir: string, users: WorkflowUsers): Promise<WorkflowOutputs> {
  const k = kubectlOn(users.admin);
  const out: WorkflowOutputs = {};
  const crdFile = join(dir, "crds.yaml");
  const objectsFile = join(dir, "objects.yaml");
  await writeFile(crdFile, crds.map((crd) => stringify(crd)).join("---\n"));
  await writeFile(objectsFile, objects.map((object) => stringify(object)).join("---\n"));

  // Declaratively: `kubectl create namespace` sends a protobuf body (typed
  // client), `apply` JSON; runTypedCommands is about protobuf bodies.
  const namespaceFile = join(dir, "namespace.yaml");
  await writeFile(namespaceFile, stringify({ apiVersion: "v1", kind: "Namespace", metadata: { name: "dev" } }));
  out["apply namespace dev"] = await k("apply", "-f", namespaceFile);
  out["apply crds"] = await k("apply", "-f", crdFile);
  out["wait crds"] = await k("wait", "--for=condition=Established", "crd/widgets.example.com", "crd/gadgets.example.com", "--timeout=30s");
  // Discovery of a new group can lag the Established condition by a moment in kubectl's cache.
  // Without client-side validation here: runValidatedApply covers it (OpenAPI through the gateway) on its own.
  out["apply objects"] = await applyWithRetry(k, objectsFile);

  out["get ns"] = normaliseTable(await k("get", "ns"));
  out["get all -A (workflow)"] = normaliseTable(await k("get", "all", "-A", "-l", workflowLabel));
  out["get crd"] = normaliseTable(await k("get", "crd"));
  out["get widgets -A"] = normaliseTable(await k("get", "widgets", "-A"));
  out["get gadgets"] = normaliseTable(await k("get", "gadgets"));
  out["get clusterroles (workflow)"] = normaliseTable(await k("get", "clusterroles", "-l", workflowLabel));
  out["get clusterrolebindings (workflow) -o wide"] = normaliseTable(await k("get", "clusterrolebindings", "-l", workflowLabel, "-o", "wide"));
  out["get rolebindings -n dev -o wide"] = normaliseTable(await k("get", "rolebindings", "-n", "dev", "-o", "wide"));
  out["get clusterrolebinding widget-readers -o json"] = normaliseJson(await k("get", "clusterrolebinding", "widget-readers", "-o", "json"));
  out["get deployment api -n dev -o json"] = normaliseJson(await k("get", "deployment", "api", "-n", "dev", "-o", "json"));
  out["get crd widgets.example.com -o json"] = normaliseJson(await k("get", "crd", "widgets.example.com", "-o", "json"));
  out["get gadget g1 -o json"] = normaliseJson(await k("get", "gadget", "g1", "-o", "json"));
  out["api-resources"] = await k("api-resources");
  out["api-resources --api-group example.com"] = await k("api-resources", "--api-group", "example.com");

  const pagedDev = await pagedRequests(users.admin, ["get", "configmaps", "-n", "dev", "--chunk-size", "2", "-o", "name"]);
  out["get cm -n dev --chunk-size 2"] = pagedDev.stdout;
  out["get cm -n dev --chunk-size 2: pages"] = String(pagedDev.pages);
  const pagedAll = await pagedRequests(users.admin, ["get", "configmaps", "-A", "-l", workflowLabel, "--chunk-size", "2"]);
  out["get cm -A --chunk-size 2"] = normaliseTable(pagedAll.stdout);
  // Pages of a selector-filtered list end where the apiserver's scan of its
  // keys ends, which depends on what else is stored: only "paged" is compared.
  out["get cm -A --chunk-size 2: paged"] = String(pagedAll.pages >= 3);

  const configMapFile = async (name: string, data: Record<string, string>) => {
    const file = join(dir, `${name}.yaml`);
    await writeFile(file, stringify({ apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace: "dev" }, data }));
    return file;
  };
  const watched = await watchLines(
    users.admin,
    ["get", "configmaps", "-n", "dev", "-l", workflowLabel, "-w", "--output-watch-events", "-o", 'jsonpath={.type} {.object.metadata.name} {.object.data.index} {.object.metadata.labels.workflow}{"\\n"}'],
    async () => {
      await k("apply", "-f", await configMapFile("c5", { index: "5" }));
      await k("label", "configmap", "c5", "-n", "dev", workflowLabel);
      await k("patch", "configmap", "c5", "-n", "dev", "--type=merge", "-p", '{"data":{"index":"five"}}');
      await k("delete", "configmap", "c5", "-n", "dev");
    },
    /c4/,
    /^DELETED\s+c5\b/,
  );
  out["get cm -w --output-watch-events"] = watched.join("\n");

  const ssa = (data: Record<string, string>) =>
    writeFile(join(dir, "ssa.yaml"), stringify({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "ssa", namespace: "dev", labels }, data })).then(() => join(dir, "ssa.yaml"));
  out["apply --server-side (create)"] = await k("apply", "--server-side", "-f", await ssa({ a: "1" }));
  out["apply --server-side (update)"] = await k("apply", "--server-side", "-f", await ssa({ a: "2", b: "3" }));
  out["apply --server-side: object"] = normaliseJson(await k("get", "configmap", "ssa", "-n", "dev", "-o", "json"));
  out["apply --server-side (conflict)"] = await k("apply", "--server-side", "--field-manager=other", "-f", await ssa({ a: "9" })).catch((error: Error) => error.message.replace(/^kubectl [^:]*: /, ""));

  out["alice lists widgets in dev"] = normaliseTable(await kubectlOn(users.alice)("get", "widgets", "-n", "dev"));
  out["alice lists widgets in default"] = await kubectlOn(users.alice)("get", "widgets", "-n", "default").catch((error: Error) => error.message.replace(/^kubectl [^:]*: /, ""));
  return out;
}

/** A failure is the step's output: the comparison shows it beside the reference's answer. */
const failure = (error: Error) => error.message.replace(/^kubectl [^:]*: /, "");

/**
 * The commands kubectl runs through its typed client, which sends
 * protobuf request bodies (kubectl 1.36: create namespace/configmap/...,
 * auth can-i, auth whoami): run after runWorkflow, on the same users.
 */
export async function runTypedCommands(users: WorkflowUsers): Promise<WorkflowOutputs> {
  const out: WorkflowOutputs = {};
  const k = kubectlOn(users.admin);
  out["create namespace typed"] = await k("create", "namespace", "typed").catch(failure);
  out["create configmap (typed)"] = await k("create", "configmap", "made", "-n", "typed", "--from-literal=a=b").catch(failure);
  out["create clusterrole (typed)"] = await k("create", "clusterrole", "typed-reader", "--verb=get", "--resource=configmaps").catch(failure);
  out["create rolebinding (typed)"] = await k("create", "rolebinding", "typed-readers", "-n", "typed", "--clusterrole=typed-reader", "--user=alice", "--group=readers").catch(failure);
  out["get rolebinding typed-readers -o wide"] = normaliseTable(await k("get", "rolebinding", "typed-readers", "-n", "typed", "-o", "wide").catch(failure));
  out["get configmap made -o json"] = normaliseJson(await k("get", "configmap", "made", "-n", "typed", "-o", "json"));
  const canI = async (kubeconfig: string, ...question: string[]) =>
    `${question.join(" ")}: ${(await kubectlOn(kubeconfig)("auth", "can-i", ...question).catch(failure)).trim()}`;
  out["auth can-i (admin)"] = [
    await canI(users.admin, "create", "deployments", "-n", "dev"),
    await canI(users.admin, "delete", "widgets.example.com", "-n", "default"),
    await canI(users.admin, "create", "clusterroles"),
    await canI(users.admin, "list", "namespaces"),
  ].join("\n");
  out["auth can-i (alice)"] = [
    await canI(users.alice, "list", "widgets.example.com", "-n", "dev"),
    await canI(users.alice, "list", "widgets.example.com", "-n", "default"),
    await canI(users.alice, "create", "widgets.example.com", "-n", "dev"),
    await canI(users.alice, "list", "configmaps", "-n", "dev"),
  ].join("\n");
  out["auth can-i (bob)"] = [await canI(users.bob, "list", "widgets.example.com", "-A"), await canI(users.bob, "delete", "widgets.example.com", "-n", "dev")].join("\n");
  out["auth whoami (alice)"] = withoutCredentialId(await kubectlOn(users.alice)("auth", "whoami").catch(failure));
  out["auth whoami (bob)"] = withoutCredentialId(await kubectlOn(users.bob)("auth", "whoami").catch(failure));
  return out;
}

/**
 * kubectl apply with its default client-side validation, which reads the
 * server's OpenAPI (v3, else v2) for every kind in the file: the
 * workflow's objects applied again (so "unchanged"), after runWorkflow.
 */
export async function runValidatedApply(dir: string, users: WorkflowUsers): Promise<WorkflowOutputs> {
  const k = kubectlOn(users.admin);
  return {
    "apply (validated) objects again": await k("apply", "-f", join(dir, "objects.yaml")).catch(failure),
    "explain widget.spec": await k("explain", "widget.spec").catch(failure),
  };
}

/** kubectl apply, again while kubectl's discovery does not know a just-established kind yet (a throw is "not yet" to waitFor). */
async function applyWithRetry(k: (...args: string[]) => Promise<string>, file: string): Promise<string> {
  let output = "";
  let last: Error | undefined;
  await waitFor(
    async () => {
      output = await k("apply", "--validate=false", "-f", file).catch((error: Error) => {
        last = error;
        throw error;
      });
      return true;
    },
    10_000,
    () => `kubectl apply -f ${file}: ${last?.message}`,
  );
  return output;
}

/**
 * kubectl auth whoami without the row naming the client certificate's
 * fingerprint: the apiserver reports it only for a certificate it verified
 * itself, which no proxy in front of it (tenant or not) forwards.
 */
function withoutCredentialId(table: string): string {
  return table
    .split("\n")
    .filter((line) => !line.startsWith("Extra: authentication.kubernetes.io/credential-id"))
    .join("\n");
}
