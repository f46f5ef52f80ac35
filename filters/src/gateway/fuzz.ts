// Random and mutated kube-apiserver requests for fuzzing the gateway filter:
// a seeded generator (the same seed gives the same requests, so a failure
// can be replayed) shared by the test-host and the real-Envoy fuzz tests.

import type { GatewayConfigInit } from "./harness.js";

// Replayable from a seed; the fuzz tests import it from here.
export { seededRandom } from "@wharf/testkit";

/** The seed of this run: WHARF_FUZZ_SEED replays one, otherwise a fresh one. */
export function fuzzSeed(): number {
  const given = process.env.WHARF_FUZZ_SEED;
  return given !== undefined && given !== "" ? Number(given) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
}

export interface FuzzRequest {
  method: string;
  path: string;
  headers: Array<[string, string]>;
}

/**
 * Every header value a client sends to claim an identity or a pool carries
 * this marker; identities the fuzzer grants never do, so a forwarded header
 * holding it is a spoof that got through.
 */
export const spoofMarker = "spoof";

const chars = [..."/?=&%+:.-_aZ09\\,;*! ()\"'\u00e9\u017f\u212a\u{1F600}\u0000\t\r\n"];
const methods = ["GET", "GET", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "CONNECT", "TRACE", "get", "Get", "", "BREW", "G\u0000T", "GÉT"];
const segments = [
  "api", "apis", "v1", "v1beta1", "apps", "batch", "rbac.authorization.k8s.io", "namespaces", "default", "kube-system", "a",
  "pods", "secrets", "configmaps", "deployments", "nodes", "services", "status", "finalize", "proxy", "watch", "log", "exec",
  "attach", "portforward", "scale", "eviction", "binding", "*", ".", "..", "", "%2F", "%2f", "%2e%2e", "%", "%zz", "%00", "%E2%80%AE",
  "é", "😀", ";", "a;b", "~", "+", " ", "\\", "?", "#", "healthz", "readyz", "livez", "version", "metrics", "openapi",
];
const queryKeys = ["watch", "watch", "fieldSelector", "fieldSelector", "labelSelector", "limit", "timeoutSeconds", "resourceVersion", "dryRun", "", "WATCH", "watch;", "field%53elector", "continue", "allowWatchBookmarks"];
const queryValues = [
  "true", "false", "1", "0", "False", "FALSE", "fal\u017Fe", "tRuE", "", "metadata.name=critical", "metadata.name==x,metadata.name!=y",
  "metadata.name=a,metadata.name=b", "metadata.name=a\\,b", "metadata.name", "spec.nodeName=n1", "a%zz", "%", "%2C", "metadata.name%3Dx",
  "app=web,tier!=db", "x in (a,b)", "!x", "-1", "10", "1e3", "9".repeat(30), "a=b=c", "\\", "==", "!=", "=", ",,,",
];
const identityHeaders = [
  "x-remote-user", "x-remote-group", "x-remote-uid", "x-remote-extra-scopes", "X-Remote-Extra-Foo%2Fbar", "impersonate-user", "impersonate-group",
  "impersonate-uid", "impersonate-extra-scopes", "Impersonate-Extra-a%2Fb", "x-wharf-upstream", "x-wharf-request-info",
  "x-wharf-tenant", "X-Wharf-Tenant",
];
const otherHeaders = ["content-type", "accept", "user-agent", "x-forwarded-for", "connection", "upgrade", "sec-websocket-protocol", "te", "x-custom", "cookie"];

/** Envoy refuses request headers over 60 KiB in all (max_request_headers_kb) before any filter runs. */
export const maxHeaderBytes = 60 * 1024;

function withinEnvoyLimit(request: FuzzRequest): FuzzRequest {
  const size = () => request.method.length + request.path.length + request.headers.reduce((total, [name, value]) => total + name.length + value.length, 0);
  while (size() > maxHeaderBytes) {
    const biggest = request.headers.reduce((best, header, i) => (header[1].length > (request.headers[best]?.[1].length ?? -1) ? i : best), 0);
    const header = request.headers[biggest];
    if (header !== undefined && header[1].length >= request.path.length) header[1] = header[1].slice(0, Math.max(0, header[1].length - (size() - maxHeaderBytes)));
    else request.path = request.path.slice(0, Math.max(1, request.path.length - (size() - maxHeaderBytes)));
  }
  return request;
}

/** Tokens the review answers for; a small set so the cache is hit as well as missed. */
export const knownTokens = Array.from({ length: 40 }, (_, i) => `good-${i}`);

export class RequestFuzzer {
  constructor(readonly random: () => number) {}

  int(max: number): number {
    return Math.floor(this.random() * max);
  }

  chance(p: number): boolean {
    return this.random() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  /** Random text over an alphabet of the characters parsers trip on. */
  text(max: number): string {
    let out = "";
    const length = this.int(max + 1);
    for (let i = 0; i < length; i++) out += chars[this.int(chars.length)];
    return out;
  }

  /** Sometimes a big input: a long run of one character, or random text. */
  huge(): string {
    const size = 1 + this.int(60 * 1024);
    const unit = this.chance(0.5) ? this.pick(["a", ",", "\\", "%", "=", "/", "é", "%2", "a=b,", "\\,"]) : this.text(16) || "x";
    return unit.repeat(Math.ceil(size / unit.length)).slice(0, size);
  }

  path(): string {
    const parts: string[] = [];
    const count = this.int(9);
    for (let i = 0; i < count; i++) parts.push(this.chance(0.9) ? this.pick(segments) : this.text(12));
    let path = (this.chance(0.95) ? "/" : "") + parts.join(this.chance(0.95) ? "/" : "//");
    if (this.chance(0.1)) path += "/";
    if (this.chance(0.5)) {
      const terms: string[] = [];
      const n = 1 + this.int(4);
      for (let i = 0; i < n; i++) {
        const key = this.chance(0.9) ? this.pick(queryKeys) : this.text(8);
        terms.push(this.chance(0.1) ? key : `${key}=${this.chance(0.9) ? this.pick(queryValues) : this.text(30)}`);
      }
      path += (this.chance(0.9) ? "?" : "?&") + terms.join(this.chance(0.9) ? "&" : ";");
    }
    return path;
  }

  authorization(): string {
    const roll = this.random();
    if (roll < 0.5) return `Bearer ${this.pick(knownTokens)}`;
    if (roll < 0.6) return `bearer   bad-${this.int(1000)}  `;
    if (roll < 0.7) return this.pick(["Bearer", "Bearer ", "Basic YWxpY2U6cHc=", "Bearer a b", "Bearer\ttab", "BEARER x", "Bearer \u00e9"]);
    if (roll < 0.75) return `Bearer ${this.huge()}`;
    return `Bearer ${this.text(40)}`;
  }

  headers(): Array<[string, string]> {
    const headers: Array<[string, string]> = [];
    const count = this.int(6);
    for (let i = 0; i < count; i++) {
      const roll = this.random();
      if (roll < 0.4) {
        const name = this.pick(identityHeaders);
        // Impersonation is the client's to ask for (the apiserver authorizes it); everything else it claims is a spoof.
        const value = name.toLowerCase().startsWith("impersonate-") ? `imp-${this.text(10)}` : `${spoofMarker}-${this.text(10)}`;
        headers.push([name, value]);
      } else if (roll < 0.6) {
        headers.push(["authorization", this.authorization()]);
      } else if (roll < 0.9) {
        headers.push([this.pick(otherHeaders), this.text(40)]);
      } else if (roll < 0.97) {
        headers.push([`x-${this.text(10).toLowerCase().replace(/[^a-z0-9-]/g, "a")}`, this.text(100)]);
      } else {
        const name = this.pick(["x-big", "authorization", "impersonate-user", "x-remote-extra-big"]);
        headers.push([name, name.startsWith("x-remote-") ? spoofMarker + this.huge() : this.huge()]);
      }
    }
    return headers;
  }

  /** A plausible request, or one with a huge part, or a mutation of a plausible one. */
  request(): FuzzRequest {
    const request: FuzzRequest = { method: this.pick(methods), path: this.path(), headers: this.headers() };
    const roll = this.random();
    if (roll < 0.01) request.path = `/api/v1/namespaces/a/configmaps?${this.pick(["fieldSelector", "labelSelector", "watch", "limit"])}=${this.huge()}`;
    else if (roll < 0.015) request.path = `/${this.huge()}`;
    else if (roll < 0.3) request.path = this.mutate(request.path);
    return withinEnvoyLimit(request);
  }

  /** Byte-level edits: flip, insert, delete, duplicate a slice. */
  mutate(text: string): string {
    let out = text;
    const edits = 1 + this.int(4);
    for (let i = 0; i < edits; i++) {
      const at = this.int(out.length + 1);
      const roll = this.random();
      if (roll < 0.3 && out.length > 0) out = out.slice(0, at) + String.fromCharCode(out.charCodeAt(Math.min(at, out.length - 1)) ^ (1 << this.int(7))) + out.slice(at + 1);
      else if (roll < 0.6) out = out.slice(0, at) + this.text(4) + out.slice(at);
      else if (roll < 0.8) out = out.slice(0, at) + out.slice(at + 1 + this.int(4));
      else out = out.slice(0, at) + out.slice(Math.max(0, at - 8), at) + out.slice(at);
    }
    return out;
  }

  /**
   * The x-forwarded-client-cert Envoy would set (one of `certs`, headers
   * made by forwardedClientCert), none, or a mangled one: the filter must
   * refuse what it cannot read, never guess.
   */
  forwardedCert(certs: string[]): string | undefined {
    const roll = this.random();
    if (roll < 0.3) return undefined;
    if (roll < 0.95) return this.pick(certs);
    if (roll < 0.98) return this.mutate(this.pick(certs));
    return this.pick([`Hash=${this.text(8)}`, `Cert="${this.text(60)}"`, "Cert=", 'Hash=;Cert="";Cert=""', `By=spiffe://x;Cert="${this.text(20)}"`]);
  }
}

const deny = (message: string) => ({ target: { case: "deny" as const, value: { message } } });
const upstream = (pool: string, flowControl = "") => ({ target: { case: "upstream" as const, value: pool }, flowControl });

export const perUserInflight = 5;
/** Policies, limits and token review that give every code path of the filter a share of the traffic. */
export const fuzzConfig = {
  flowControlSchemas: [
    { name: "shared", qps: 400, burst: 40, maxInflight: 24, maxWatches: 8 },
    { name: "per-user", qps: 200, burst: 20, maxInflight: perUserInflight, maxWatches: 3, perUser: true },
    { name: "exempt", exempt: true },
  ],
  policies: [
    { name: "no-secrets", rules: [{ resources: ["secrets"], userGroups: ["devs"] }], action: deny("devs may not read secrets") },
    { name: "critical", rules: [{ resources: ["configmaps"], resourceNames: ["critical"] }], action: deny("") },
    { name: "watches", rules: [{ verbs: ["watch"] }], action: upstream("pool-b", "shared") },
    { name: "robots", rules: [{ users: ["system:serviceaccount:*"] }], action: upstream("pool-a", "per-user") },
    { name: "health", rules: [{ nonResourceUrls: ["/healthz*", "/readyz"] }], action: upstream("pool-a", "exempt") },
  ],
  defaultAction: upstream("pool-a", "shared"),
  tokenReview: { cluster: "pool-a", authority: "kubernetes.default", reviewer: "wharf:gateway", successTtlSeconds: 30, failureTtlSeconds: 5 },
} satisfies GatewayConfigInit;

