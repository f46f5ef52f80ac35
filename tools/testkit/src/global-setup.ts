import { join } from "node:path";
import type { TestProject } from "vitest/node";
import type { ClusterPki } from "./cluster-pki.js";
import { startReferenceEtcd } from "./etcd.js";
import { startKubeApiserver } from "./kube-apiserver.js";
import { kubectlOn } from "./kubectl.js";
import { repoRoot } from "./tools.js";

/**
 * Starts the real parts that many test files share, once per `vitest run`:
 * the reference etcd and a kube-apiserver on it, with wharf's CRDs installed
 * (several files create custom resources or dry-run manifests that name
 * them; installing once avoids racing creates). Test files read where they
 * are with `inject(...)`. A part that cannot start fails the whole run.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const etcd = await startReferenceEtcd();
  let kube;
  try {
    kube = await startKubeApiserver({ etcdServers: [etcd.endpoint] });
    const kubectl = kubectlOn(kube.kubeconfig);
    await kubectl("apply", "-f", join(repoRoot, "deploy", "crds"));
    await kubectl("wait", "--for=condition=Established", "crd/gatewayconfigs.wharf.dev", "--timeout=60s");
  } catch (error) {
    await kube?.stop();
    await etcd.stop();
    throw error;
  }
  project.provide("referenceEtcd", { endpoint: etcd.endpoint });
  project.provide("kube", {
    url: kube.url,
    kubeconfig: kube.kubeconfig,
    caFile: kube.pki.ca.certFile,
    admin: kube.pki.admin,
    pki: kube.pki,
  });
  return async () => {
    await kube.stop();
    await etcd.stop();
  };
}

declare module "vitest" {
  export interface ProvidedContext {
    referenceEtcd: { endpoint: string };
    kube: {
      url: string;
      kubeconfig: string;
      caFile: string;
      admin: { certFile: string; keyFile: string };
      /** The apiserver's PKI, for a gateway Envoy in front of it (front-proxy client, CA to issue clients from). */
      pki: ClusterPki;
    };
  }
}
