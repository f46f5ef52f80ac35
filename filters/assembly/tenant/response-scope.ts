// Whose world a response is rewritten into, and the reverse name mapping
// the response side needs on top of naming.ts (free text, identities).
import {
  identityPrefix,
  tenantApiVersion,
  tenantClusterName,
  tenantGroup,
  tenantIdentityGroup,
  tenantNamespace,
  tenantPrefix,
  tenantUser,
  tenantUserGroup,
} from "./naming";

/** Seals a list's continue token for the tenant (continue-token.ts); null: cannot seal (fail closed). */
export abstract class ContinueSealer {
  abstract seal(upstreamToken: string): string | null;
}

export class ResponseScope {
  /** "wt-<tenant>-" */
  prefix: string = "";
  /** "wharf:tenant:<tenant>:" */
  identity: string = "";

  constructor(
    public tenant: string,
    public hostGroups: string[],
    /** Sealing of list continue tokens; null answers every non-empty token with a failure. */
    public sealer: ContinueSealer | null,
    /** The request read one of the tenant's shared views: host objects, names as they are. */
    public sharedView: bool = false,
    /** The request was about CustomResourceDefinitions: rows of a Table name CRDs ("plural.wt-T-group"). */
    public crdRequest: bool = false,
  ) {
    // meta.k8s.io (Table, PartialObjectMetadata, WatchEvent) is served by
    // every apiserver but missing from discovery, so a host_groups list
    // taken from /apis would lack it.
    if (!hostGroups.includes("meta.k8s.io")) {
      this.hostGroups = hostGroups.slice(0);
      this.hostGroups.push("meta.k8s.io");
    }
    this.prefix = tenantPrefix(tenant);
    this.identity = identityPrefix + tenant + ":";
  }

  namespace(upstream: string): string | null {
    return tenantNamespace(this.tenant, upstream);
  }

  clusterName(upstream: string): string | null {
    return tenantClusterName(this.tenant, upstream);
  }

  group(upstream: string): string | null {
    return tenantGroup(this.tenant, upstream, this.hostGroups);
  }

  apiVersion(upstream: string): string | null {
    return tenantApiVersion(this.tenant, upstream, this.hostGroups);
  }

  /**
   * Free text (Status messages, Table cells, event notes): every "wt-T-"
   * and "wharf:tenant:T:" removed, as the tenant would have read it had
   * its objects and users been named as it names them.
   */
  scrub(text: string): string {
    if (text.indexOf(this.prefix) < 0 && text.indexOf(this.identity) < 0) return text;
    return text.replaceAll(this.prefix, "").replaceAll(this.identity, "");
  }

  /**
   * An upstream user name as the tenant knows it: "wharf:tenant:T:u" → "u",
   * "system:serviceaccount:wt-T-ns:sa" → "system:serviceaccount:ns:sa";
   * null for anyone else (another tenant, a host identity).
   */
  user(upstream: string): string | null {
    const user = tenantUser(this.tenant, upstream);
    if (user !== null) return user;
    const serviceAccount = "system:serviceaccount:";
    if (upstream.startsWith(serviceAccount)) {
      const rest = upstream.substring(serviceAccount.length);
      const colon = rest.indexOf(":");
      if (colon < 0) return null;
      const namespace = this.namespace(rest.substring(0, colon));
      if (namespace === null) return null;
      return serviceAccount + namespace! + rest.substring(colon);
    }
    return null;
  }

  /**
   * An upstream group as the tenant knows it: "wharf:tenant:T:g" → "g",
   * "system:serviceaccounts:wt-T-ns" → "system:serviceaccounts:ns",
   * Kubernetes' own "system:authenticated" and "system:serviceaccounts" as
   * they are; "" for "wharf:tenant:T" (every identity of T has it: the
   * tenant never named it, so it is dropped); null for anything else.
   */
  userGroup(upstream: string): string | null {
    if (upstream == tenantIdentityGroup(this.tenant)) return "";
    const group = tenantUserGroup(this.tenant, upstream);
    if (group !== null) return group;
    if (upstream == "system:authenticated" || upstream == "system:serviceaccounts") return upstream;
    const serviceAccounts = "system:serviceaccounts:";
    if (upstream.startsWith(serviceAccounts)) {
      const namespace = this.namespace(upstream.substring(serviceAccounts.length));
      return namespace === null ? null : serviceAccounts + namespace!;
    }
    return null;
  }
}
