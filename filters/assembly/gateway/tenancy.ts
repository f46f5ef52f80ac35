// Tenant identities. A verified certificate whose issuer is a configured
// tenant's CA (by the SHA-256 of the issuer Name's DER) belongs to that
// tenant: its user u and groups g reach the apiserver as
// "wharf:tenant:<T>:u" with the groups "wharf:tenant:<T>" and
// "wharf:tenant:<T>:g", so upstream RBAC and the admission policy see a
// tenant-scoped identity, never the tenant's own "system:masters". Names
// starting "wharf:tenant:" belong to tenants alone: a host certificate or
// token claiming one is refused. A tenant's service account token
// (system:serviceaccount:wt-<T>-<ns>:<name>) keeps its upstream identity
// and is marked as acting in tenant T.
import { ClientCertificate } from "./client-cert";
import { GatewayConfig, TenantIssuer } from "./config";
import { isTenantName } from "../tenant/naming";
import { Identity, refusedIdentity } from "./identity";

export const tenantPrefix = "wharf:tenant:";
const serviceAccountPrefix = "system:serviceaccount:wt-";

/** A refusal when a host identity uses a name reserved for tenants; else the identity itself. */
function hostIdentity(identity: Identity, source: string): Identity {
  if (identity.user.startsWith(tenantPrefix)) return refusedIdentity(source + ": user names starting \"" + tenantPrefix + "\" are reserved for tenant identities");
  for (let i = 0; i < identity.groups.length; i++) {
    if (identity.groups[i].startsWith(tenantPrefix)) return refusedIdentity(source + ": group names starting \"" + tenantPrefix + "\" are reserved for tenant identities");
  }
  return identity;
}

/** The certificate's identity as tenant T's, mapped to its upstream names. */
function tenantIdentity(own: Identity, tenant: TenantIssuer): Identity {
  const prefix = tenantPrefix + tenant.name + ":";
  const identity = new Identity();
  identity.authenticated = true;
  identity.tenant = tenant.name;
  identity.user = prefix + own.user;
  identity.uid = own.uid;
  identity.groups.push(tenantPrefix + tenant.name);
  // The last group is the parser's own system:authenticated, not a name from the certificate.
  const fromCertificate = own.groups.length - 1;
  for (let i = 0; i < fromCertificate; i++) identity.groups.push(prefix + own.groups[i]);
  identity.groups.push("system:authenticated");
  identity.extraKeys = own.extraKeys;
  identity.extraValues = own.extraValues;
  return identity;
}

function deriveCertificateIdentity(certificate: ClientCertificate, config: GatewayConfig): Identity {
  const own = certificate.identity;
  if (!own.authenticated) return own;
  if (!config.tenantsByIssuer.has(certificate.issuerSha256)) {
    // A tenant CA Envoy still trusts while its tenant is gone (see client-cert.ts isTenantShaped).
    if (certificate.tenantShapedIssuer) return refusedIdentity("client certificate: issued by a wharf tenant CA of no configured tenant");
    return hostIdentity(own, "client certificate");
  }
  const tenant = config.tenantsByIssuer.get(certificate.issuerSha256);
  if (tenant.revoked.has(certificate.serial)) return refusedIdentity("client certificate: revoked (serial " + certificate.serial + " of tenant " + tenant.name + ")");
  return tenantIdentity(own, tenant);
}

/**
 * The identity to forward for a verified certificate under `config`: the
 * tenant's mapped identity, the host identity, or a refusal. Derived once
 * per certificate and configuration (a new configuration, e.g. a revoked
 * serial, derives it again).
 */
export function certificateIdentity(certificate: ClientCertificate, config: GatewayConfig): Identity {
  const cached = certificate.forwarded;
  if (cached !== null && certificate.forwardedUnder == config.generation) return cached;
  const identity = deriveCertificateIdentity(certificate, config);
  certificate.forwarded = identity;
  certificate.forwardedUnder = config.generation;
  return identity;
}

/**
 * A bearer token's identity (fresh from a review or the cache, owned by
 * this request): refused when it claims a tenant name; a configured
 * tenant's service account acts in that tenant.
 */
export function tokenIdentity(identity: Identity, config: GatewayConfig): Identity {
  if (!identity.authenticated) return identity;
  const checked = hostIdentity(identity, "bearer token");
  if (checked !== identity) return checked;
  const user = identity.user;
  if (config.tenants.length > 0 && user.startsWith(serviceAccountPrefix)) {
    const dash = user.indexOf("-", serviceAccountPrefix.length);
    if (dash > 0) {
      const tenant = user.substring(serviceAccountPrefix.length, dash);
      if (isTenantName(tenant) && config.tenantsByName.has(tenant)) identity.tenant = tenant;
    }
  }
  return identity;
}
