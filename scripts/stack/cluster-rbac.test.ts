// The gateway's RBAC, applied as `npm start` applies it, on the shared real
// kube-apiserver: it lets the reviewer send TokenReviews, nothing more, and
// applying it again (the next start) changes nothing.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, inject, it } from "vitest";
import { kubectlOn, makeWorkDir, removeWorkDir, toolPath } from "@wharf/testkit";
import { grantTokenReviews } from "./cluster-rbac.js";

const run = promisify(execFile);

describe("the gateway's TokenReview grant", () => {
  it("lets the reviewer create tokenreviews and nothing else, idempotently", async () => {
    const { kubeconfig } = inject("kube");
    const kubectl = kubectlOn(kubeconfig);
    const reviewer = `wharf:gateway-rbac-test-${process.pid}`;
    // can-i prints its answer on stdout and exits 1 for "no".
    const canI = (...args: string[]) =>
      run(toolPath("kubectl"), ["--kubeconfig", kubeconfig, "auth", "can-i", ...args, `--as=${reviewer}`]).then(
        ({ stdout }) => stdout.trim(),
        (error: { stdout: string }) => error.stdout.trim(),
      );
    const dir = await makeWorkDir("cluster-rbac");
    try {
      expect(await canI("create", "tokenreviews.authentication.k8s.io")).toBe("no");
      await grantTokenReviews(kubeconfig, reviewer, dir);
      const first = JSON.parse(await kubectl("get", "clusterrolebinding", "wharf-gateway-token-reviews", "-o", "json")) as { metadata: { resourceVersion: string } };
      await grantTokenReviews(kubeconfig, reviewer, dir);
      const second = JSON.parse(await kubectl("get", "clusterrolebinding", "wharf-gateway-token-reviews", "-o", "json")) as { metadata: { resourceVersion: string } };
      expect(second.metadata.resourceVersion).toBe(first.metadata.resourceVersion);
      expect(await canI("create", "tokenreviews.authentication.k8s.io")).toBe("yes");
      expect(await canI("get", "secrets", "--all-namespaces")).toBe("no");
      expect(await canI("create", "serviceaccounts/token", "-n", "default")).toBe("no");
    } finally {
      await kubectl("delete", "clusterrolebinding", "wharf-gateway-token-reviews", "--ignore-not-found");
      await removeWorkDir(dir);
    }
  });
});
