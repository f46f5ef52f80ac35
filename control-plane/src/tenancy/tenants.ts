// The tenant operations behind the admin API: create, delete, list, issue a
// kubeconfig, revoke a user. A tenant exists when the served config lists it
// (tenants: in the YAML, so the file always says what is served); its CA and
// records live in the state directory (tenant-store.ts); its objects
// upstream are made and removed by the upstream side (TenantUpstream).
//
// Order matters for safety: create sets a tenant up upstream before any
// credential of it is trusted, and delete stops trusting its credentials
// (and waits for the gateways to have that config) before removing its
// objects, so a tenant is never half there with live credentials.
import { parseDocument, isMap, isSeq } from "yaml";
import type { ConfigSource, Log } from "../config-source.js";
import type { SnapshotCache } from "../xds/cache.js";
import { tenantKubeconfig } from "./kubeconfig.js";
import { TenantCaError, checkTenantName, defaultTtlSeconds, maxTtlSeconds } from "./tenant-ca.js";
import type { TenantStore } from "./tenant-store.js";
import { shareableViews, type TenantUpstream } from "./upstream.js";

export type { TenantUpstream } from "./upstream.js";

export type TenantErrorCode = "invalid" | "not-found" | "exists" | "precondition";

export class TenantError extends Error {
  constructor(
    readonly code: TenantErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "TenantError";
  }
}

export interface TenantSummary {
  name: string;
  sharedViews: string[];
  createdAt: Date;
  activeCertificates: Record<string, number>;
}

export interface IssuedKubeconfig {
  kubeconfig: string;
  expiresAt: Date;
}

export interface KubeconfigRequest {
  /** Default "admin". */
  user?: string;
  /** Default ["system:masters"] for admin, none for anyone else. */
  groups?: string[];
  /** Default 8 h, at most 720 h. */
  ttlSeconds?: number;
}

export interface TenantsOptions {
  config: ConfigSource;
  store: TenantStore;
  cache: SnapshotCache;
  /** The upstream side, for the control plane's kubeconfig (tenancy.kubeconfig). */
  upstream: (kubeconfig: string) => TenantUpstream;
  log: Log;
  /** How long an operation waits for connected gateways to acknowledge its config; default 5 s. */
  ackTimeoutMs?: number;
}

export class Tenants {
  /** Tenants being created or deleted: one operation per name at a time. */
  private readonly busy = new Set<string>();
  private readonly upstreams = new Map<string, TenantUpstream>();
  private reconciling: Promise<void> = Promise.resolve();
  /** Upstreams (by kubeconfig) whose admission policy this control plane has applied. */
  private readonly policyApplied = new Set<string>();

  constructor(private readonly options: TenantsOptions) {}

  async create(name: string, sharedViews: string[]): Promise<{ tenant: TenantSummary; kubeconfig: IssuedKubeconfig }> {
    const { config, store, log } = this.options;
    const tenancy = this.tenancy();
    if (config.readOnly) throw new TenantError("precondition", config.readOnly);
    checked(() => checkTenantName(name));
    sharedViews.forEach((view, index) => {
      if (!shareableViews.has(view)) throw new TenantError("invalid", `shared_views[${index}]: "${view}" cannot be shared (one of ${[...shareableViews.keys()].join(", ")})`);
    });
    const views = [...new Set(sharedViews)];
    return this.exclusive(name, async () => {
      if (tenancy.tenants.some((tenant) => tenant.name === name)) throw new TenantError("exists", `tenant ${name} exists`);
      const upstream = this.upstream(tenancy.kubeconfig);
      const taken = await upstream.prefixTaken(name);
      if (taken !== undefined) throw new TenantError("exists", `tenant name ${name} is taken upstream: ${taken}`);
      // State left by a create or delete that did not finish belongs to no tenant: start afresh.
      if (store.has(name)) await store.remove(name);
      try {
        await Promise.all([
          store.ensure(name),
          (async () => {
            await this.ensurePolicy(tenancy.kubeconfig);
            await upstream.setUp({ name, sharedViews: views });
          })(),
        ]);
        await store.markUpstreamReady(name);
        await config.edit((text) => withTenant(text, name, views));
      } catch (error) {
        log("warn", "tenant create failed; undoing it", { tenant: name, error: (error as Error).message });
        await upstream.remove(name).catch((undo: Error) => log("error", "could not remove a failed tenant's objects upstream", { tenant: name, error: undo.message }));
        await store.remove(name);
        throw error;
      }
      await this.gatewaysHave(["secret", "extension"]);
      log("info", "tenant created", { tenant: name, sharedViews: views });
      const kubeconfig = await this.issueNow(name, {});
      return { tenant: await this.summary(name, views), kubeconfig };
    });
  }

  /** Credentials first (served config without the tenant, acknowledged), then its objects upstream, then its state. */
  async delete(name: string): Promise<Record<string, number>> {
    const { config, store, log } = this.options;
    const tenancy = this.tenancy();
    if (config.readOnly) throw new TenantError("precondition", config.readOnly);
    checked(() => checkTenantName(name));
    return this.exclusive(name, async () => {
      const listed = tenancy.tenants.some((tenant) => tenant.name === name);
      // Not listed but with state: a delete that did not finish; finish it.
      if (!listed && !store.has(name)) throw new TenantError("not-found", `no tenant ${name}`);
      if (listed) {
        await config.edit((text) => withoutTenant(text, name));
        if (!(await this.gatewaysHave(["secret", "extension"]))) log("warn", "not every gateway acknowledged the config without the tenant in time", { tenant: name });
      }
      const deleted = await this.upstream(tenancy.kubeconfig).remove(name);
      await store.remove(name);
      log("info", "tenant deleted", { tenant: name, deleted });
      return deleted;
    });
  }

  async list(): Promise<TenantSummary[]> {
    const tenancy = this.options.config.currentTenancy;
    return Promise.all((tenancy?.tenants ?? []).map((tenant) => this.summary(tenant.name, tenant.sharedViews)));
  }

  async issueKubeconfig(tenant: string, request: KubeconfigRequest): Promise<IssuedKubeconfig> {
    this.listed(tenant);
    return this.issueNow(tenant, request);
  }

  /** Every unexpired certificate of `user` refused from the next request on; returns how many. */
  async revokeUser(tenant: string, user: string): Promise<number> {
    this.listed(tenant);
    if (user === "") throw new TenantError("invalid", "user: required");
    const count = await this.options.store.revokeUser(tenant, user);
    if (count > 0) {
      await this.options.config.refresh();
      if (!(await this.gatewaysHave(["extension"]))) this.options.log("warn", "not every gateway acknowledged the revocation in time", { tenant, user });
    }
    this.options.log("info", "tenant user revoked", { tenant, user, certificates: count });
    return count;
  }

  /**
   * Makes what the served config's tenants need upstream and is not there
   * yet (a tenant added to the file by hand, a create cut short by a crash
   * after its config was saved): the admission policy, then each such
   * tenant's RBAC and system namespaces. Run at start and after each applied
   * config; one run at a time. State of a tenant the config no longer lists
   * is left alone (removing it would be a delete): it is only reported.
   */
  reconcile(): Promise<void> {
    this.reconciling = this.reconciling.then(() => this.reconcileNow()).catch((error: Error) => this.options.log("error", "tenancy: setting tenants up upstream failed; the next config apply tries again", { error: error.message }));
    return this.reconciling;
  }

  private async reconcileNow(): Promise<void> {
    const tenancy = this.options.config.currentTenancy;
    if (!tenancy) return;
    const listed = new Set(tenancy.tenants.map((tenant) => tenant.name));
    for (const name of await this.options.store.names()) {
      if (!listed.has(name) && !this.busy.has(name)) this.options.log("warn", "tenancy: a tenant has state but is not in the config; `wharf tenant delete` removes it upstream", { tenant: name });
    }
    if (tenancy.tenants.length === 0) return;
    const upstream = this.upstream(tenancy.kubeconfig);
    await this.ensurePolicy(tenancy.kubeconfig);
    for (const tenant of tenancy.tenants) {
      if (this.busy.has(tenant.name) || (await this.options.store.get(tenant.name)).upstreamReady) continue;
      await upstream.setUp(tenant);
      await this.options.store.markUpstreamReady(tenant.name);
      this.options.log("info", "tenancy: tenant set up upstream", { tenant: tenant.name });
    }
  }

  /** Keeps each tenant's admin role in step with its CRDs' groups until `signal` aborts (upstream.ts's watchTenantCrds). */
  watchCrds(kubeconfig: string, signal: AbortSignal): Promise<void> {
    return this.upstream(kubeconfig).watchCrds(this.options.log, signal);
  }

  private async issueNow(tenant: string, request: KubeconfigRequest): Promise<IssuedKubeconfig> {
    const tenancy = this.tenancy();
    const user = request.user || "admin";
    const groups = request.groups ?? (user === "admin" ? ["system:masters"] : []);
    const ttlSeconds = request.ttlSeconds || defaultTtlSeconds;
    if (ttlSeconds > maxTtlSeconds) throw new TenantError("invalid", `ttl: at most ${maxTtlSeconds / 3600}h`);
    const leaf = await checkedAsync(() => this.options.store.issue(tenant, { user, groups, ttlSeconds }));
    return {
      kubeconfig: tenantKubeconfig({ tenant, user, server: tenancy.server, serverCa: tenancy.serverCa, cert: leaf.cert, key: leaf.key }),
      expiresAt: leaf.notAfter,
    };
  }

  private async summary(name: string, sharedViews: string[]): Promise<TenantSummary> {
    const state = await this.options.store.get(name);
    return { name, sharedViews, createdAt: state.createdAt, activeCertificates: state.activeCertificates };
  }

  private tenancy() {
    const tenancy = this.options.config.currentTenancy;
    if (!tenancy) throw new TenantError("precondition", "the config has no tenancy: set tenancy.kubeconfig (the control plane's upstream identity) first");
    return tenancy;
  }

  private listed(tenant: string): void {
    checked(() => checkTenantName(tenant));
    if (!this.tenancy().tenants.some((entry) => entry.name === tenant)) throw new TenantError("not-found", `no tenant ${tenant}`);
  }

  /** The admission policy, applied once per upstream while this control plane runs (it is idempotent; this saves the calls). */
  private async ensurePolicy(kubeconfig: string): Promise<void> {
    if (this.policyApplied.has(kubeconfig)) return;
    await this.upstream(kubeconfig).ensurePolicy();
    this.policyApplied.add(kubeconfig);
  }

  private upstream(kubeconfig: string): TenantUpstream {
    let upstream = this.upstreams.get(kubeconfig);
    if (!upstream) {
      upstream = this.options.upstream(kubeconfig);
      this.upstreams.set(kubeconfig, upstream);
    }
    return upstream;
  }

  /** Waits (bounded) until every connected gateway acknowledged the served version of `kinds`. */
  private gatewaysHave(kinds: Array<"secret" | "extension">): Promise<boolean> {
    const version = this.options.config.currentVersion;
    const reached = (acked: string | undefined) => acked !== undefined && Number(acked) >= Number(version);
    return this.options.cache.whenNodes("gateway", (node) => kinds.every((kind) => reached(node.acked[kind])), this.options.ackTimeoutMs ?? 5000);
  }

  private async exclusive<T>(name: string, work: () => Promise<T>): Promise<T> {
    if (this.busy.has(name)) throw new TenantError("precondition", `tenant ${name} is being created or deleted; try again`);
    this.busy.add(name);
    try {
      return await work();
    } finally {
      this.busy.delete(name);
    }
  }
}

function checked<T>(work: () => T): T {
  try {
    return work();
  } catch (error) {
    if (error instanceof TenantCaError) throw new TenantError("invalid", error.message);
    throw error;
  }
}

async function checkedAsync<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof TenantCaError) throw new TenantError("invalid", error.message);
    throw error;
  }
}

/** The config text with one more tenant (comments and layout of the rest kept). */
export function withTenant(text: string, name: string, sharedViews: string[]): string {
  const document = parseDocument(text);
  const entry = sharedViews.length > 0 ? { name, shared_views: sharedViews } : { name };
  const tenants = document.get("tenants");
  if (tenants === undefined || tenants === null) document.set("tenants", document.createNode([entry]));
  else if (isSeq(tenants)) tenants.add(document.createNode(entry));
  else throw new TenantError("precondition", "the config's tenants is not a list");
  return document.toString();
}

/** The config text without the tenant `name`. */
export function withoutTenant(text: string, name: string): string {
  const document = parseDocument(text);
  const tenants = document.get("tenants");
  if (!isSeq(tenants)) return text;
  const index = tenants.items.findIndex((item) => isMap(item) && item.get("name") === name);
  if (index < 0) return text;
  tenants.delete(index);
  if (tenants.items.length === 0) document.delete("tenants");
  return document.toString();
}
