// What the request side learned about one tenant request, kept on the
// stream for the response side (response-*.ts): whose world it is, and how
// the tenant's request was classified before its names were mapped.
import { RequestInfo } from "../gateway/request-info";
import { Tenant, TenantFilterConfig } from "./config";
import { PathPlan } from "./request-path";

export class TenantRequest {
  constructor(
    public config: TenantFilterConfig,
    public tenant: Tenant,
    /** The tenant's request as kube-apiserver classifies it (tenant names, not upstream ones). */
    public info: RequestInfo,
  ) {}

  /** Where the request went upstream and how its names were mapped (scope, tenant view of group/resource/namespace/name). */
  plan: PathPlan | null = null;
  /** The client asked for a Table (`as=Table` in Accept): the response rows hold names to unmap. */
  asTable: bool = false;
  /** The client asked for aggregated discovery; the filter asked upstream for plain JSON instead. */
  aggregatedDiscovery: bool = false;
}
