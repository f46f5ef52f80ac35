import type { TestProject } from "vitest/node";
import { startReferenceEtcd } from "./etcd.js";
import { startKubeApiserver } from "./kube-apiserver.js";

/**
 * Starts the real parts that many test files share, once per `vitest run`:
 * the reference etcd and a kube-apiserver on it. Test files read where they
 * are with `inject(...)`. A part that cannot start fails the whole run.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const etcd = await startReferenceEtcd();
  let kube;
  try {
    kube = await startKubeApiserver({ etcdServers: [etcd.endpoint] });
  } catch (error) {
    await etcd.stop();
    throw error;
  }
  project.provide("referenceEtcd", { endpoint: etcd.endpoint });
  project.provide("kube", {
    url: kube.url,
    kubeconfig: kube.kubeconfig,
    caFile: kube.pki.ca.certFile,
    admin: kube.pki.admin,
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
    };
  }
}
