// One place that starts a real part for tests (and for `npm start`).
export { repoRoot, toolPath, type Tool } from "./tools.js";
export { freePort, freePortRange } from "./ports.js";
export { startProcess, waitUntilReady, type LineSink, type RunningProcess } from "./process.js";
export { makeWorkDir, removeWorkDir } from "./workdir.js";
export { createCertificateAuthority, issueCertificate, createSigningKey, type CertificateRequest, type KeyPair } from "./pki.js";
export { createClusterPki, loadOrCreateClusterPki, frontProxyClientName, type ClusterPki } from "./cluster-pki.js";
export { writeKubeconfig } from "./kubeconfig.js";
export { httpsGet, type HttpResponse } from "./https.js";
export { renderTemplate } from "./template.js";
export { startReferenceEtcd, type ReferenceEtcd } from "./etcd.js";
export { startKubeApiserver, type KubeApiserver } from "./kube-apiserver.js";
export { startEnvoy, type Envoy } from "./envoy.js";
export { startBrainProcess, type Brain } from "./brain.js";
export { rawEtcdClient, etcdServices, type RawEtcdClient } from "./etcd-client.js";
export { startGatewayEnvoy, type GatewayEnvoy, type GatewayEnvoyOptions } from "./gateway-envoy.js";
export { waitFor } from "./wait.js";
export { kubectlOn } from "./kubectl.js";
export { renderXdsBootstrap, startXdsEnvoy, type XdsEnvoyOptions } from "./xds-envoy.js";
