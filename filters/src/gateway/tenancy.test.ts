// Tenant identities in the gateway filter, on the compiled module in the
// test host: certificates from a tenant's CA are forwarded as the tenant's
// mapped identity with the tenant header; host identities cannot claim a
// tenant name; revocation and a dropped tenant take effect at once.
import { createHash, X509Certificate } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { LogLevel, ProxyWasmHost } from "../test-host/host.js";
import { wasmPath } from "../index.js";
import {
  certificateAuthority,
  clientCertificate,
  encodeGatewayConfig,
  forwardedClientCert,
  gatewayHost,
  request,
  serialOf,
  type GatewayConfigInit,
} from "./harness.js";

type Authority = Awaited<ReturnType<typeof certificateAuthority>>;
/** A GatewayConfig as a plain object (not a built message), so it can be spread. */
type ConfigFields = Exclude<GatewayConfigInit, { $typeName: string }>;

const acmeSubject = "/CN=wharf tenant acme CA 0123456789abcdef/O=wharf.dev";
let acmeCa: Authority;
let betaCa: Authority;
/** Differs from acme's CA subject in its last byte: the same shape, another CA. */
let nearAcmeCa: Authority;
/** Differs from acme's CA subject in one byte of O: not tenant-shaped at all. */
let notTenantCa: Authority;
let acmeAdmin: string;
let acmeDev: string;
let acmeHighSerial: string;
let betaAdmin: string;
let nearAcmeAdmin: string;
let notTenantAdmin: string;
let hostAlice: string;

beforeAll(async () => {
  [acmeCa, betaCa, nearAcmeCa, notTenantCa] = await Promise.all([
    certificateAuthority(acmeSubject),
    certificateAuthority("/CN=wharf tenant beta CA fedcba9876543210/O=wharf.dev"),
    certificateAuthority("/CN=wharf tenant acme CA 0123456789abcdeg/O=wharf.dev"),
    certificateAuthority("/CN=wharf tenant acme CA 0123456789abcdef/O=wharf.dew"),
  ]);
  [acmeAdmin, acmeDev, acmeHighSerial, betaAdmin, nearAcmeAdmin, notTenantAdmin, hostAlice] = await Promise.all([
    clientCertificate({ ca: acmeCa, subject: "/O=system:masters/CN=admin" }),
    clientCertificate({ ca: acmeCa, subject: "/O=devs/O=ops/CN=dev" }),
    // Positive with the top bit set: DER puts a 0x00 byte first, revoked_serials drops it.
    clientCertificate({ ca: acmeCa, subject: "/CN=high", serial: "80aa0000000000000000000000000001" }),
    clientCertificate({ ca: betaCa, subject: "/O=system:masters/CN=admin" }),
    clientCertificate({ ca: nearAcmeCa, subject: "/O=system:masters/CN=admin" }),
    clientCertificate({ ca: notTenantCa, subject: "/O=system:masters/CN=admin" }),
    clientCertificate({ subject: "/O=devs/CN=alice" }),
  ]);
});

const acme = () => ({ name: "acme", issuerSha256: acmeCa.issuerSha256 });
const beta = () => ({ name: "beta", issuerSha256: betaCa.issuerSha256 });
const tenancy = (overrides: ConfigFields = {}): ConfigFields => ({
  tenants: [acme(), beta()],
  defaultAction: { target: { case: "upstream", value: "main" } },
  ...overrides,
});

const credentialId = (pem: string) => `X509SHA256=${createHash("sha256").update(new X509Certificate(pem).raw).digest("hex")}`;
const forwarded = (stream: { requestHeaders: Array<[string, string]> }) =>
  stream.requestHeaders.filter(([name]) => name.startsWith("x-remote-") || name === "x-wharf-tenant");

/** One request with this certificate (and headers); the stream after the filter's request headers. */
async function send(config: GatewayConfigInit, pem: string, headers: Array<[string, string]> = [], path = "/api/v1/namespaces/default/pods") {
  const host = await gatewayHost(config, { clientCert: pem });
  return request(host, "GET", path, headers).stream;
}

/** DER length octets. */
function derLength(length: number): number[] {
  if (length < 0x80) return [length];
  const bytes: number[] = [];
  for (let rest = length; rest > 0; rest >>= 8) bytes.unshift(rest & 0xff);
  return [0x80 | bytes.length, ...bytes];
}

/** [start of element, start of content, end] of the DER element at `at`. */
function element(der: Uint8Array, at: number): [number, number, number] {
  let length = der[at + 1]!;
  let start = at + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + der[start + i]!;
    start += count;
  }
  return [at, start, start + length];
}

/** The certificate with its serial's content bytes replaced (the signature no longer matches: the test host does not check it). */
function withSerial(pem: string, serial: number[]): string {
  const der = new Uint8Array(new X509Certificate(pem).raw);
  const [, certStart, certEnd] = element(der, 0);
  const [, tbsStart, tbsEnd] = element(der, certStart);
  let at = tbsStart;
  if (der[at] === 0xa0) at = element(der, at)[2];
  const serialEnd = element(der, at)[2];
  const tbsContent = [...der.subarray(tbsStart, at), 0x02, ...derLength(serial.length), ...serial, ...der.subarray(serialEnd, tbsEnd)];
  const rest = der.subarray(tbsEnd, certEnd);
  const certContent = [0x30, ...derLength(tbsContent.length), ...tbsContent, ...rest];
  const out = Buffer.from([0x30, ...derLength(certContent.length), ...certContent]);
  return `-----BEGIN CERTIFICATE-----\n${out.toString("base64")}\n-----END CERTIFICATE-----\n`;
}

function refusal(stream: { localResponse?: { status: number; body: string } }): { code: number; message: string } {
  expect(stream.localResponse, "a local reply").toBeDefined();
  const body = JSON.parse(stream.localResponse!.body) as { code: number; message: string; kind: string };
  expect(body.kind).toBe("Status");
  return { code: stream.localResponse!.status, message: body.message };
}

describe("tenant identities", () => {
  it("forwards a tenant CA's certificate as the tenant's mapped identity with the tenant header", async () => {
    expect(forwarded(await send(tenancy(), acmeDev))).toEqual([
      ["x-wharf-tenant", "acme"],
      ["x-remote-user", "wharf:tenant:acme:dev"],
      ["x-remote-group", "wharf:tenant:acme"],
      ["x-remote-group", "wharf:tenant:acme:devs"],
      ["x-remote-group", "wharf:tenant:acme:ops"],
      ["x-remote-group", "system:authenticated"],
      ["x-remote-extra-authentication.kubernetes.io%2fcredential-id", credentialId(acmeDev)],
    ]);
    // The tenant's own system:masters is a tenant group upstream, nothing more.
    expect(forwarded(await send(tenancy(), betaAdmin)).filter(([name]) => name !== "x-remote-extra-authentication.kubernetes.io%2fcredential-id")).toEqual([
      ["x-wharf-tenant", "beta"],
      ["x-remote-user", "wharf:tenant:beta:admin"],
      ["x-remote-group", "wharf:tenant:beta"],
      ["x-remote-group", "wharf:tenant:beta:system:masters"],
      ["x-remote-group", "system:authenticated"],
    ]);
  });

  it("uses the configured tenant_header", async () => {
    const stream = await send(tenancy({ tenantHeader: "X-Tenant-Of" }), acmeDev, [["x-tenant-of", "beta"], ["x-wharf-tenant", "beta"]]);
    expect(stream.requestHeaders.filter(([name]) => name === "x-tenant-of")).toEqual([["x-tenant-of", "acme"]]);
    // Only the configured header is the gateway's word; any other is the client's business.
    expect(stream.header("x-wharf-tenant")).toBe("beta");
  });

  it("leaves host identities as they were, without a tenant header", async () => {
    const stream = await send(tenancy(), hostAlice);
    expect(forwarded(stream)).toEqual([
      ["x-remote-user", "alice"],
      ["x-remote-group", "devs"],
      ["x-remote-group", "system:authenticated"],
      ["x-remote-extra-authentication.kubernetes.io%2fcredential-id", credentialId(hostAlice)],
    ]);
  });

  it("matches dispatch policies against the upstream identity, never the tenant's own names", async () => {
    const config = tenancy({
      policies: [
        { name: "host-admins", rules: [{ users: ["admin"] }, { userGroups: ["system:masters"] }], action: { target: { case: "upstream", value: "admin-pool" } } },
        { name: "acme", rules: [{ userGroups: ["wharf:tenant:acme"] }], action: { target: { case: "upstream", value: "acme-pool" } } },
        { name: "tenants", rules: [{ users: ["wharf:tenant:*"] }], action: { target: { case: "upstream", value: "tenant-pool" } } },
      ],
    });
    expect((await send(config, acmeAdmin)).header("x-wharf-upstream")).toBe("acme-pool");
    expect((await send(config, betaAdmin)).header("x-wharf-upstream")).toBe("tenant-pool");
  });
});

describe("attack: tenant identities", () => {
  it("strips a client's own tenant header and front-proxy headers, for host and tenant callers alike", async () => {
    const spoof: Array<[string, string]> = [
      ["x-wharf-tenant", "beta"],
      ["x-wharf-tenant", "acme"],
      ["x-remote-user", "wharf:tenant:beta:admin"],
      ["x-remote-group", "wharf:tenant:beta:system:masters"],
    ];
    const host = await send(tenancy(), hostAlice, spoof);
    expect(host.header("x-wharf-tenant")).toBeUndefined();
    expect(host.requestHeaders.filter(([name]) => name === "x-remote-user")).toEqual([["x-remote-user", "alice"]]);
    expect(host.requestHeaders.some(([, value]) => value.includes("beta"))).toBe(false);
    const tenant = await send(tenancy(), acmeDev, spoof);
    expect(tenant.requestHeaders.filter(([name]) => name === "x-wharf-tenant")).toEqual([["x-wharf-tenant", "acme"]]);
    expect(tenant.requestHeaders.some(([, value]) => value.includes("beta"))).toBe(false);
  });

  it("refuses a host certificate whose user or groups claim a tenant name", async () => {
    for (const subject of ["/CN=wharf:tenant:acme:admin", "/O=wharf:tenant:acme:system:masters/CN=eve", "/O=wharf:tenant:acme/CN=eve"]) {
      const pem = await clientCertificate({ subject });
      const stream = await send(tenancy(), pem);
      expect(refusal(stream), subject).toEqual({ code: 401, message: expect.stringContaining('reserved for tenant identities') });
      expect(forwarded(stream)).toEqual([]);
    }
    // The same holds with no tenant configured at all.
    expect((await send({}, await clientCertificate({ subject: "/CN=wharf:tenant:acme:admin" }))).localResponse?.status).toBe(401);
  });

  it("refuses a revoked serial with 401 and a clear message; the tenant's other certificates still pass", async () => {
    const config = tenancy({ tenants: [{ ...acme(), revokedSerials: [serialOf(acmeAdmin), serialOf(acmeHighSerial)] }, beta()] });
    expect(serialOf(acmeHighSerial)).toBe("80aa0000000000000000000000000001");
    for (const pem of [acmeAdmin, acmeHighSerial]) {
      const stream = await send(config, pem);
      expect(refusal(stream)).toEqual({ code: 401, message: `client certificate: revoked (serial ${serialOf(pem)} of tenant acme)` });
      expect(forwarded(stream)).toEqual([]);
    }
    expect((await send(config, acmeDev)).header("x-remote-user")).toBe("wharf:tenant:acme:dev");
  });

  it("revokes at once when a new configuration arrives, though the certificate's parse is cached", async () => {
    const host = await gatewayHost(tenancy(), { clientCert: acmeAdmin });
    expect(request(host, "GET", "/api/v1/pods").stream.header("x-remote-user")).toBe("wharf:tenant:acme:admin");
    expect(host.configure(encodeGatewayConfig(tenancy({ tenants: [{ ...acme(), revokedSerials: [serialOf(acmeAdmin)] }, beta()] })))).toBe(true);
    expect(request(host, "GET", "/api/v1/pods").stream.localResponse?.status).toBe(401);
    // Unrevoked again (e.g. the revocation was a mistake): forwarded again.
    expect(host.configure(encodeGatewayConfig(tenancy()))).toBe(true);
    expect(request(host, "GET", "/api/v1/pods").stream.header("x-remote-user")).toBe("wharf:tenant:acme:admin");
  });

  it("refuses at once a certificate of a tenant dropped from the configuration, though Envoy still trusts its CA", async () => {
    const host = await gatewayHost(tenancy(), { clientCert: betaAdmin });
    expect(request(host, "GET", "/api/v1/pods").stream.header("x-wharf-tenant")).toBe("beta");
    expect(host.configure(encodeGatewayConfig(tenancy({ tenants: [acme()] })))).toBe(true);
    const stream = request(host, "GET", "/api/v1/pods").stream;
    // Never the host's system:masters, which the certificate's O names.
    expect(refusal(stream)).toEqual({ code: 401, message: "client certificate: issued by a wharf tenant CA of no configured tenant" });
    expect(forwarded(stream)).toEqual([]);
  });

  it("maps only the exact issuer: a CA whose subject differs by one byte is not the tenant's", async () => {
    // Same shape as a tenant CA: refused (the tenant it would be is not configured).
    expect(refusal(await send(tenancy(), nearAcmeAdmin)).code).toBe(401);
    // Not tenant-shaped (O=wharf.dew): an ordinary host identity, if Envoy trusts its CA at all.
    const host = await send(tenancy(), notTenantAdmin);
    expect(host.header("x-wharf-tenant")).toBeUndefined();
    expect(host.header("x-remote-user")).toBe("admin");
    expect(acmeCa.issuerSha256).not.toBe(nearAcmeCa.issuerSha256);
    expect(acmeCa.issuerSha256).not.toBe(notTenantCa.issuerSha256);
  });

  it("refuses impersonation by a tenant identity with 403; host callers keep it", async () => {
    for (const header of ["impersonate-user", "impersonate-group", "impersonate-uid", "impersonate-extra-scopes"]) {
      const stream = await send(tenancy(), acmeAdmin, [[header, "system:admin"]]);
      expect(refusal(stream), header).toEqual({ code: 403, message: "impersonation is not available to tenant identities" });
    }
    expect((await send(tenancy(), hostAlice, [["impersonate-user", "bob"]])).header("impersonate-user")).toBe("bob");
  });

  it("refuses a certificate whose serial Go's parser refuses (negative)", async () => {
    const pem = await clientCertificate({ ca: acmeCa, subject: "/CN=negative", serial: "-1234" });
    expect(new X509Certificate(pem).serialNumber).toMatch(/1234/);
    expect(refusal(await send(tenancy(), pem))).toEqual({ code: 401, message: expect.stringContaining("serial number") });
  });

  it("reads the serial as Go does: refuses empty and non-minimal encodings, drops a positive number's 00 byte", async () => {
    // The filter trusts Envoy for the signature, so a re-encoded TBS shows how the serial alone is read.
    const revoked = tenancy({ tenants: [{ ...acme(), revokedSerials: ["80", "01"] }] });
    const host = await gatewayHost(revoked);
    const outcome = (serial: number[]) => {
      // Not forwardedClientCert: node's own parser refuses some of these serials.
      const xfcc = `Hash=00;Cert="${encodeURIComponent(withSerial(acmeDev, serial))}"`;
      const stream = request(host, "GET", "/api/v1/pods", [["x-forwarded-client-cert", xfcc]]).stream;
      return stream.localResponse ? refusal(stream).message : stream.header("x-remote-user");
    };
    expect(outcome([0x00, 0x80])).toBe("client certificate: revoked (serial 80 of tenant acme)");
    expect(outcome([0x01])).toBe("client certificate: revoked (serial 01 of tenant acme)");
    expect(outcome([0x02])).toBe("wharf:tenant:acme:dev");
    expect(outcome([0x00])).toBe("wharf:tenant:acme:dev");
    for (const bad of [[], [0x00, 0x01], [0xff, 0x80], [0x80], [0xff]]) expect(outcome(bad), JSON.stringify(bad)).toContain("serial number is empty, not minimally encoded or negative");
  });

  it("holds at most a bounded cache however many certificates and configurations pass", async () => {
    const host = await gatewayHost(tenancy());
    const before = host.memoryBytes;
    for (let round = 0; round < 40; round++) {
      const revoked = Array.from({ length: 200 }, (_, i) => (0x10000000 + round * 1000 + i).toString(16));
      expect(host.configure(encodeGatewayConfig(tenancy({ tenants: [{ ...acme(), revokedSerials: revoked }, beta()] })))).toBe(true);
      for (const pem of [acmeAdmin, acmeDev, betaAdmin, hostAlice]) {
        const { stream } = request(host, "GET", "/api/v1/pods", [["x-forwarded-client-cert", forwardedClientCert(pem)]]);
        expect(stream.header("x-remote-user")).toBeDefined();
        stream.finish();
      }
    }
    expect(host.memoryBytes - before).toBeLessThan(4 * 1024 * 1024);
  });
});

describe("bearer tokens and tenants", () => {
  const withReview = (overrides: ConfigFields = {}): ConfigFields => tenancy({ tokenReview: { cluster: "pool-a", successTtlSeconds: 60, failureTtlSeconds: 10 }, ...overrides });
  const answer = (user: Record<string, unknown>) => JSON.stringify({ kind: "TokenReview", apiVersion: "authentication.k8s.io/v1", status: { authenticated: true, user } });

  async function review(token: string, user: Record<string, unknown>, config = withReview()) {
    const host = await gatewayHost(config);
    const first = request(host, "GET", "/api/v1/pods", [["authorization", `Bearer ${token}`], ["x-wharf-tenant", "beta"]]).stream;
    host.respondToCall(host.calls[0]!, [[":status", "201"]], answer(user));
    // The same token again: answered from the cache, decided the same way.
    const cached = request(host, "GET", "/api/v1/pods", [["authorization", `Bearer ${token}`], ["x-wharf-tenant", "beta"]]).stream;
    expect(host.calls).toHaveLength(1);
    return [first, cached];
  }

  it("refuses a token whose user or groups claim a tenant name", async () => {
    for (const user of [
      { username: "wharf:tenant:acme:admin", groups: ["system:authenticated"] },
      { username: "eve", groups: ["wharf:tenant:acme:system:masters", "system:authenticated"] },
    ]) {
      for (const stream of await review("claims-a-tenant", user)) {
        expect(refusal(stream)).toEqual({ code: 401, message: expect.stringContaining("reserved for tenant identities") });
        expect(forwarded(stream).filter(([name]) => name.startsWith("x-remote-"))).toEqual([]);
      }
    }
  });

  it("marks a configured tenant's service account with the tenant header, its identity unchanged", async () => {
    const user = { username: "system:serviceaccount:wt-acme-dev:builder", uid: "u-1", groups: ["system:serviceaccounts", "system:serviceaccounts:wt-acme-dev", "system:authenticated"] };
    for (const stream of await review("acme-robot", user)) {
      expect(forwarded(stream)).toEqual([
        ["x-wharf-tenant", "acme"],
        ["x-remote-user", "system:serviceaccount:wt-acme-dev:builder"],
        ["x-remote-uid", "u-1"],
        ["x-remote-group", "system:serviceaccounts"],
        ["x-remote-group", "system:serviceaccounts:wt-acme-dev"],
        ["x-remote-group", "system:authenticated"],
      ]);
    }
  });

  it("gives no tenant header to a service account of an unconfigured tenant or a look-alike namespace", async () => {
    for (const username of ["system:serviceaccount:wt-gone-dev:builder", "system:serviceaccount:wt-acmex-dev:builder", "system:serviceaccount:wt-acme:builder", "system:serviceaccount:xwt-acme-dev:builder"]) {
      for (const stream of await review(`token-${username}`, { username, groups: ["system:authenticated"] })) {
        expect(stream.localResponse, username).toBeUndefined();
        expect(stream.header("x-wharf-tenant"), username).toBeUndefined();
        expect(stream.header("x-remote-user")).toBe(username);
      }
    }
  });
});

describe("bad tenant configuration", () => {
  const refused = async (config: GatewayConfigInit) => {
    const host = await ProxyWasmHost.load(wasmPath("gateway"), { pluginConfiguration: encodeGatewayConfig(config) });
    expect(host.start()).toBe(false);
    return host.logs.filter((entry) => entry.level === LogLevel.Error).map((entry) => entry.message).join("\n");
  };
  const hash = "a".repeat(64);

  it("refuses bad tenant names, duplicates, bad hashes and bad serials, naming the field", async () => {
    const cases: Array<[GatewayConfigInit, string]> = [
      [{ tenants: [{ name: "Acme", issuerSha256: hash }] }, 'tenants[0].name: "Acme" is not a tenant name'],
      [{ tenants: [{ name: "ac-me", issuerSha256: hash }] }, 'tenants[0].name: "ac-me" is not a tenant name'],
      [{ tenants: [{ name: "1acme", issuerSha256: hash }] }, 'tenants[0].name: "1acme" is not a tenant name'],
      [{ tenants: [{ name: "abcdefghijklm", issuerSha256: hash }] }, 'tenants[0].name: "abcdefghijklm" is not a tenant name'],
      [{ tenants: [{ name: "", issuerSha256: hash }] }, 'tenants[0].name: "" is not a tenant name'],
      [{ tenants: [{ name: "a", issuerSha256: hash }, { name: "a", issuerSha256: "b".repeat(64) }] }, 'tenants[1].name: "a" is configured twice'],
      [{ tenants: [{ name: "a", issuerSha256: hash }, { name: "b", issuerSha256: hash }] }, 'tenants[1].issuer_sha256: the same issuer as tenant "a"'],
      [{ tenants: [{ name: "a", issuerSha256: "A".repeat(64) }] }, "tenants[0].issuer_sha256: not 64 lowercase hex digits"],
      [{ tenants: [{ name: "a", issuerSha256: "a".repeat(63) }] }, "tenants[0].issuer_sha256: not 64 lowercase hex digits"],
      [{ tenants: [{ name: "a", issuerSha256: hash, revokedSerials: ["0a1b"] }, { name: "b", issuerSha256: "b".repeat(64), revokedSerials: ["01", "00ff"] }] }, 'tenants[1].revoked_serials[1]: "00ff" is not lowercase hex'],
      [{ tenants: [{ name: "a", issuerSha256: hash, revokedSerials: ["abc"] }] }, 'tenants[0].revoked_serials[0]: "abc"'],
      [{ tenants: [{ name: "a", issuerSha256: hash, revokedSerials: ["AB"] }] }, 'tenants[0].revoked_serials[0]: "AB"'],
      [{ tenants: [{ name: "a", issuerSha256: hash, revokedSerials: [""] }] }, 'tenants[0].revoked_serials[0]: ""'],
      [{ tenantHeader: "x-remote-tenant" }, 'tenant_header: "x-remote-tenant" is a header the gateway already gives another meaning'],
      [{ tenantHeader: "x-wharf-upstream" }, 'tenant_header: "x-wharf-upstream" is a header'],
      [{ tenantHeader: "x tenant" }, 'tenant_header: "x tenant" is not a header name'],
    ];
    for (const [config, message] of cases) expect(await refused(config), message).toContain(message);
  });

  it("keeps the previous configuration when a new one is refused", async () => {
    const host = await gatewayHost(tenancy(), { clientCert: acmeDev });
    expect(host.configure(encodeGatewayConfig({ tenants: [{ name: "acme", issuerSha256: "nope" }] }))).toBe(false);
    expect(request(host, "GET", "/api/v1/pods").stream.header("x-wharf-tenant")).toBe("acme");
  });

  it("accepts the largest tenant name and a zero serial", async () => {
    const host = await gatewayHost({ tenants: [{ name: "a12345678901", issuerSha256: acmeCa.issuerSha256, revokedSerials: ["00"] }] }, { clientCert: acmeDev });
    expect(request(host, "GET", "/api/v1/pods").stream.header("x-wharf-tenant")).toBe("a12345678901");
  });
});
