// What other packages (the test kit, benchmarks) take from the control plane:
// the gateway's Envoy resources and their static-bootstrap form.
export {
  envoyClusterName,
  gatewayResources,
  type GatewayDeployment,
  type SingleClusterDeployment,
  type UpstreamClusterDeployment,
  type UpstreamPool,
} from "./gateway-resources.js";
export { staticBootstrap } from "./static-bootstrap.js";
export { clientSidecarResources, type ClientSidecarDeployment } from "./client-sidecar-resources.js";
export { accessLogFields, type AccessLogDeployment } from "./access-log.js";
