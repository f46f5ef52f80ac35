// What the gateway needs granted in the cluster it fronts, applied by
// `npm start` with the admin's credentials on every start (kubectl apply, so
// a second start changes nothing). The gateway verifies bearer tokens with
// TokenReviews that it sends as its reviewer user (wharf:gateway unless the
// config's token_review.reviewer says otherwise); without this binding the
// apiserver forbids them and every token through the gateway gets 503.
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { issueCertificate, kubectlOn, repoRoot, writeKubeconfig, type ClusterPki } from "@wharf/testkit";
import { parseAllDocuments, stringify } from "yaml";

export const defaultReviewer = "wharf:gateway";

export async function grantTokenReviews(adminKubeconfig: string, reviewer: string, workDir: string): Promise<void> {
  const binding = {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "ClusterRoleBinding",
    metadata: { name: "wharf-gateway-token-reviews", labels: { "app.kubernetes.io/managed-by": "wharf" } },
    // Kubernetes' own role for delegated authentication: create tokenreviews
    // and subjectaccessreviews, nothing else.
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "system:auth-delegator" },
    subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: reviewer }],
  };
  const file = join(workDir, "gateway-rbac.yaml");
  await writeFile(file, stringify(binding));
  await kubectlOn(adminKubeconfig)("apply", "-f", file);
}

/**
 * The control plane's kubeconfig for setting tenants up (the config's
 * tenancy.kubeconfig): the user deploy/tenancy-rbac.yaml grants its least
 * privilege to, with a client certificate from the cluster CA (never the
 * admin's: the control plane refuses to act upstream as system:masters).
 */
export async function upstreamKubeconfig(adminKubeconfig: string, pki: ClusterPki, server: string, file: string): Promise<void> {
  const rbacFile = join(repoRoot, "deploy", "tenancy-rbac.yaml");
  if (!existsSync(rbacFile)) throw new Error(`${rbacFile} is missing: the control plane's identity upstream is not defined`);
  const documents = parseAllDocuments(await readFile(rbacFile, "utf8")).map((document) => document.toJS() as { kind?: string; subjects?: Array<{ kind: string; name: string }> } | null);
  const user = documents.flatMap((document) => (document?.kind === "ClusterRoleBinding" ? (document.subjects ?? []) : [])).find((subject) => subject.kind === "User")?.name;
  if (!user) throw new Error(`${rbacFile}: no ClusterRoleBinding with a User subject (the control plane's identity upstream)`);
  await kubectlOn(adminKubeconfig)("apply", "--server-side", "--force-conflicts", "-f", rbacFile);
  const pair = await issueCertificate(dirname(file), pki.ca, { name: "control-plane-upstream", commonName: user, usage: "client" });
  await writeKubeconfig(file, server, pki.ca.certFile, pair);
}
