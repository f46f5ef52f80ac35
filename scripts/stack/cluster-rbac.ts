// What the gateway needs granted in the cluster it fronts, applied by
// `npm start` with the admin's credentials on every start (kubectl apply, so
// a second start changes nothing). The gateway verifies bearer tokens with
// TokenReviews that it sends as its reviewer user (wharf:gateway unless the
// config's token_review.reviewer says otherwise); without this binding the
// apiserver forbids them and every token through the gateway gets 503.
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { kubectlOn } from "@wharf/testkit";
import { stringify } from "yaml";

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
