// One tenant's certificate authority (docs/tenancy.md, "Identity"). It lives
// in the control plane's state directory, <stateDir>/tenants/<T>/, and its
// key never leaves it. The gateway tells a tenant's users from host users by
// the issuer Name of their verified certificate: every tenant CA's subject
// carries a random id, so SHA-256 of that Name (issuerSha256) names exactly
// one tenant CA, and the listener's trust bundle holds all of them.
//
// Leaves: CN = user, O = groups (what kube-apiserver would read as user and
// groups, mapped by the gateway filter to wharf:tenant:T:...), a 16-byte
// positive random serial that the revocation list names, client auth only,
// short-lived (default 8 h, at most 720 h).
import { createHash, generateKeyPair as generateKeyPairCallback, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import forge from "node-forge";
import { tenantNameError } from "./naming.js";

const generateKeyPair = promisify(generateKeyPairCallback);

export const defaultTtlSeconds = 8 * 60 * 60;
export const maxTtlSeconds = 720 * 60 * 60;
const caDays = 3650;
const day = 24 * 60 * 60 * 1000;
// Clocks that disagree a little still accept a fresh certificate.
const clockSlackMs = 5 * 60 * 1000;
// node-forge writes an attribute as PrintableString unless told; users and
// groups may hold any character ('@', '_'), so they are UTF8String. (Its
// typings call the field a class; at run time it is the universal tag.)
const utf8String = forge.asn1.Type.UTF8 as unknown as forge.asn1.Class;

export class TenantCaError extends Error {}

export interface TenantLeafRequest {
  user: string;
  groups: string[];
  /** Default 8 h; at most 720 h. */
  ttlSeconds?: number;
}

export interface TenantLeaf {
  cert: string;
  key: string;
  /** Lowercase hex of the serial's content bytes (gateway.proto's TenantIssuer.revoked_serials form). */
  serial: string;
  notAfter: Date;
}

export function checkTenantName(name: string): string {
  const error = tenantNameError(name);
  if (error !== undefined) throw new TenantCaError(error);
  return name;
}

// A user or group goes into a subject attribute as a UTF8String: refuse what
// a header (X-Remote-User) or a person reading a log would trip over.
function checkSubjectText(field: string, value: string): void {
  if (value === "" || value.length > 253) throw new TenantCaError(`${field} "${value}": want 1 to 253 characters`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value)) throw new TenantCaError(`${field} ${JSON.stringify(value)}: control characters are not allowed`);
}

interface KeyPair {
  pem: string;
  publicKey: forge.pki.rsa.PublicKey;
  forgeKey: forge.pki.rsa.PrivateKey;
}

async function generateKey(): Promise<KeyPair> {
  // Off the event loop: a create should not stall the xDS streams.
  const { privateKey, publicKey } = await generateKeyPair("rsa", {
    modulusLength: 2048,
    privateKeyEncoding: { type: "pkcs1", format: "pem" },
    publicKeyEncoding: { type: "spki", format: "pem" },
  });
  return { pem: privateKey, publicKey: forge.pki.publicKeyFromPem(publicKey), forgeKey: forge.pki.privateKeyFromPem(privateKey) };
}

// A tenant create needs two RSA keys (its CA's, its admin's), a large part
// of its latency: once keys are asked for, a few are made ahead (in the
// background, at most `spareKeys`, never used twice) for the next ones.
const spareKeys = 2;
const spare: KeyPair[] = [];
let refilling = false;

function refill(): void {
  if (refilling || spare.length >= spareKeys) return;
  refilling = true;
  generateKey().then(
    (key) => {
      spare.push(key);
      refilling = false;
      refill();
    },
    () => (refilling = false),
  );
}

async function newKey(): Promise<KeyPair> {
  const key = spare.shift();
  refill();
  return key ?? generateKey();
}

/**
 * 16 random bytes, positive and minimally encoded: the first byte is 0x01 to
 * 0x7f, so DER needs no padding byte, no content byte is dropped, and the
 * hex is always 32 digits (what TenantIssuer.revoked_serials holds).
 */
export function newSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f || 0x01;
  return bytes.toString("hex");
}

/** SHA-256 (lowercase hex) of a Name's DER: the issuer_sha256 of the CA whose subject it is. */
export function nameSha256(name: forge.pki.Certificate["subject"]): string {
  const der = forge.asn1.toDer(forge.pki.distinguishedNameToAsn1(name)).getBytes();
  return createHash("sha256").update(Buffer.from(der, "binary")).digest("hex");
}

export class TenantCa {
  /** SHA-256 of the CA's subject Name DER, the issuer Name of every leaf it signs. */
  readonly issuerSha256: string;

  private constructor(
    readonly tenant: string,
    readonly certPem: string,
    private readonly cert: forge.pki.Certificate,
    private readonly key: forge.pki.rsa.PrivateKey,
  ) {
    this.issuerSha256 = nameSha256(cert.subject);
  }

  /** The CA in `dir` (ca.crt, ca.key), created there if missing. */
  static async loadOrCreate(dir: string, tenant: string): Promise<TenantCa> {
    checkTenantName(tenant);
    if (existsSync(join(dir, "ca.crt")) && existsSync(join(dir, "ca.key"))) return TenantCa.load(dir, tenant);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await chmod(dir, 0o700);
    const key = await newKey();
    const cert = forge.pki.createCertificate();
    cert.publicKey = key.publicKey;
    cert.serialNumber = newSerial();
    cert.validity.notBefore = new Date(Date.now() - clockSlackMs);
    cert.validity.notAfter = new Date(Date.now() + caDays * day);
    const subject = [
      { name: "commonName", value: `wharf tenant ${tenant} CA ${randomBytes(8).toString("hex")}` },
      { name: "organizationName", value: "wharf.dev" },
    ];
    cert.setSubject(subject);
    cert.setIssuer(subject);
    cert.setExtensions([
      { name: "basicConstraints", cA: true, pathLenConstraint: 0, critical: true },
      { name: "keyUsage", keyCertSign: true, cRLSign: true, critical: true },
      { name: "subjectKeyIdentifier" },
    ]);
    cert.sign(key.forgeKey, forge.md.sha256.create());
    // Key first, certificate last (each by rename): a crash in between leaves
    // no certificate without its key, and the next start makes a fresh pair.
    await writeAtomically(join(dir, "ca.key"), key.pem, 0o600);
    await writeAtomically(join(dir, "ca.crt"), forge.pki.certificateToPem(cert), 0o644);
    return TenantCa.load(dir, tenant);
  }

  static async load(dir: string, tenant: string): Promise<TenantCa> {
    let certPem: string;
    let keyPem: string;
    try {
      [certPem, keyPem] = await Promise.all([readFile(join(dir, "ca.crt"), "utf8"), readFile(join(dir, "ca.key"), "utf8")]);
    } catch (error) {
      throw new TenantCaError(`no CA for tenant ${tenant} in ${dir} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
    }
    const cert = forge.pki.certificateFromPem(certPem);
    const cn = cert.subject.getField("CN") as { value: string } | null;
    if (!cn?.value.startsWith(`wharf tenant ${tenant} CA `)) throw new TenantCaError(`${dir}/ca.crt is not tenant ${tenant}'s CA (subject CN "${cn?.value ?? ""}")`);
    return new TenantCa(tenant, certPem, cert, forge.pki.privateKeyFromPem(keyPem));
  }

  /** A client certificate for one user of the tenant. */
  async issue(request: TenantLeafRequest, now = new Date()): Promise<TenantLeaf> {
    checkSubjectText("user", request.user);
    request.groups.forEach((group) => checkSubjectText("group", group));
    const ttl = request.ttlSeconds ?? defaultTtlSeconds;
    if (!Number.isInteger(ttl) || ttl <= 0 || ttl > maxTtlSeconds) throw new TenantCaError(`ttl ${ttl}s: want 1s to ${maxTtlSeconds / 3600}h`);
    const key = await newKey();
    const cert = forge.pki.createCertificate();
    cert.publicKey = key.publicKey;
    const serial = newSerial();
    cert.serialNumber = serial;
    cert.validity.notBefore = new Date(now.getTime() - clockSlackMs);
    // Whole seconds: X.509 times have no fractions, so the record matches the certificate.
    const notAfter = new Date(Math.floor(now.getTime() / 1000) * 1000 + ttl * 1000);
    cert.validity.notAfter = notAfter;
    cert.setSubject([
      // kube-apiserver reads every O as a group, in order, and the CN as the user.
      ...request.groups.map((group) => ({ name: "organizationName", value: group, valueTagClass: utf8String })),
      { name: "commonName", value: request.user, valueTagClass: utf8String },
    ]);
    cert.setIssuer(this.cert.subject.attributes);
    cert.setExtensions([
      { name: "basicConstraints", cA: false, critical: true },
      { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
      { name: "extKeyUsage", clientAuth: true },
    ]);
    cert.sign(this.key, forge.md.sha256.create());
    return { cert: forge.pki.certificateToPem(cert), key: key.pem, serial, notAfter };
  }
}

/** Writes `text` to `file` by rename, so a reader never sees half of it. */
export async function writeAtomically(file: string, text: string | Uint8Array, mode: number): Promise<void> {
  const temporary = `${file}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  await writeFile(temporary, text, { mode });
  await chmod(temporary, mode);
  await rename(temporary, file);
}
