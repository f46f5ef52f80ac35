// A tenant CA's certificates, read back by parsers other than the one that
// wrote them: node:crypto's X509Certificate (OpenSSL) and a DER walk over
// the raw bytes, which is exactly what the gateway filter hashes.
import { createHash, X509Certificate } from "node:crypto";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeWorkDir, removeWorkDir } from "@wharf/testkit";
import { TenantCa, TenantCaError, checkTenantName, maxTtlSeconds, newSerial } from "./tenant-ca.js";

/** One DER element at `at`: its tag, where its content starts and where it ends. */
function element(der: Buffer, at: number): { tag: number; start: number; end: number } {
  const tag = der[at]!;
  let length = der[at + 1]!;
  let start = at + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + der[start + i]!;
    start += count;
  }
  return { tag, start, end: start + length };
}

/** TBSCertificate's serial content bytes, issuer Name (whole TLV) and subject Name. */
function tbsParts(raw: Buffer): { serial: Buffer; issuer: Buffer; subject: Buffer } {
  const certificate = element(raw, 0);
  const tbs = element(raw, certificate.start);
  let at = tbs.start;
  const next = () => {
    const part = element(raw, at);
    const whole = raw.subarray(at, part.end);
    at = part.end;
    return { ...part, whole };
  };
  let field = next();
  if (field.tag === 0xa0) field = next(); // [0] version
  expect(field.tag).toBe(0x02); // INTEGER serial
  const serial = raw.subarray(field.start, field.end);
  next(); // signature AlgorithmIdentifier
  const issuer = next();
  expect(issuer.tag).toBe(0x30);
  next(); // validity
  const subject = next();
  return { serial, issuer: issuer.whole, subject: subject.whole };
}

/** The tag of each attribute value in a Name (SEQUENCE OF SET OF SEQUENCE { type, value }). */
function attributeValueTags(name: Buffer): number[] {
  const tags: number[] = [];
  const outer = element(name, 0);
  for (let at = outer.start; at < outer.end; ) {
    const set = element(name, at);
    const attribute = element(name, set.start);
    const type = element(name, attribute.start);
    tags.push(element(name, type.end).tag);
    at = set.end;
  }
  return tags;
}

let dir: string;
let ca: TenantCa;

beforeAll(async () => {
  dir = await makeWorkDir("tenant-ca");
  ca = await TenantCa.loadOrCreate(join(dir, "acme"), "acme");
});
afterAll(async () => {
  await removeWorkDir(dir);
});

describe("a tenant CA", () => {
  it("has a subject with the tenant and a random id, and its key is readable by its owner only", async () => {
    const cert = new X509Certificate(ca.certPem);
    expect(cert.subject).toMatch(/^CN=wharf tenant acme CA [0-9a-f]{16}\nO=wharf\.dev$/);
    expect(cert.ca).toBe(true);
    expect((await stat(join(dir, "acme", "ca.key"))).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, "acme"))).mode & 0o777).toBe(0o700);
  });

  it("is the same CA when loaded again, and another CA (same tenant name, new state) is told apart by its issuer hash", async () => {
    expect((await TenantCa.loadOrCreate(join(dir, "acme"), "acme")).issuerSha256).toBe(ca.issuerSha256);
    const again = await TenantCa.loadOrCreate(join(dir, "acme-recreated"), "acme");
    expect(again.issuerSha256).not.toBe(ca.issuerSha256);
    expect(again.issuerSha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it("refuses to load another tenant's CA", async () => {
    await expect(TenantCa.load(join(dir, "acme"), "other")).rejects.toThrow(/not tenant other's CA/);
  });

  it("signs leaves whose issuer Name DER hashes to issuerSha256 (walked from the raw certificate)", async () => {
    const leaf = await ca.issue({ user: "alice", groups: ["system:masters", "dev"] });
    const parsed = new X509Certificate(leaf.cert);
    const { issuer, subject } = tbsParts(parsed.raw);
    expect(createHash("sha256").update(issuer).digest("hex")).toBe(ca.issuerSha256);
    // The same bytes as the CA's own subject.
    expect(issuer.equals(tbsParts(new X509Certificate(ca.certPem).raw).subject)).toBe(true);
    expect(issuer.equals(subject)).toBe(false);
    expect(parsed.checkIssued(new X509Certificate(ca.certPem))).toBe(true);
    expect(parsed.verify(new X509Certificate(ca.certPem).publicKey)).toBe(true);
  });

  it("puts the user in CN and the groups in O (UTF8String, in order), client auth only", async () => {
    const leaf = await ca.issue({ user: "bob@example.com", groups: ["system:masters", "team_a"] });
    const parsed = new X509Certificate(leaf.cert);
    expect(parsed.subject).toBe("O=system:masters\nO=team_a\nCN=bob@example.com");
    expect(parsed.keyUsage).toEqual(["1.3.6.1.5.5.7.3.2"]);
    expect(parsed.ca).toBe(false);
    const { subject } = tbsParts(parsed.raw);
    // Every attribute value is a UTF8String (tag 0x0c): '@' and '_' are not PrintableString.
    expect(attributeValueTags(subject)).toEqual([0x0c, 0x0c, 0x0c]);
  });

  it("gives each leaf a 16-byte positive serial, written as gateway.proto's revoked_serials want it", async () => {
    const serials = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const leaf = await ca.issue({ user: `u${i}`, groups: [] });
      const parsed = new X509Certificate(leaf.cert);
      const content = tbsParts(parsed.raw).serial;
      expect(content.length).toBe(16);
      expect(content[0]! & 0x80).toBe(0); // positive
      expect(content[0]).not.toBe(0); // minimal: no padding byte
      expect(leaf.serial).toBe(content.toString("hex"));
      expect(leaf.serial).toBe(parsed.serialNumber.toLowerCase());
      serials.add(leaf.serial);
    }
    expect(serials.size).toBe(20);
    for (let i = 0; i < 2000; i++) expect(newSerial()).toMatch(/^(0[1-9a-f]|[1-7][0-9a-f])[0-9a-f]{30}$/);
  });

  it("lives 8 hours by default, up to 720 hours, and no longer", async () => {
    const now = new Date("2030-01-01T00:00:00Z");
    const leaf = await ca.issue({ user: "carol", groups: [] }, now);
    expect(new Date(new X509Certificate(leaf.cert).validTo).getTime()).toBe(now.getTime() + 8 * 3600 * 1000);
    expect(leaf.notAfter.getTime()).toBe(now.getTime() + 8 * 3600 * 1000);
    const longest = await ca.issue({ user: "carol", groups: [], ttlSeconds: maxTtlSeconds }, now);
    expect(new Date(new X509Certificate(longest.cert).validTo).getTime()).toBe(now.getTime() + 720 * 3600 * 1000);
    await expect(ca.issue({ user: "carol", groups: [], ttlSeconds: maxTtlSeconds + 1 })).rejects.toThrow(/ttl 2592001s: want 1s to 720h/);
    await expect(ca.issue({ user: "carol", groups: [], ttlSeconds: 0 })).rejects.toThrow(TenantCaError);
  });

  it("refuses bad names and subjects", async () => {
    for (const bad of ["", "a-b", "Acme", "1abc", "abcdefghijklm", "a.b", "a_b"]) expect(() => checkTenantName(bad)).toThrow(TenantCaError);
    expect(checkTenantName("abcdefghijkl")).toBe("abcdefghijkl");
    await expect(ca.issue({ user: "", groups: [] })).rejects.toThrow(/user "": want 1 to 253/);
    await expect(ca.issue({ user: "eve\nadmin", groups: [] })).rejects.toThrow(/control characters/);
    await expect(ca.issue({ user: "eve", groups: ["ok", "bad\u0000"] })).rejects.toThrow(/group .*control characters/);
  });
});
