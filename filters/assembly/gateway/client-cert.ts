// The identity of a verified client certificate, derived the way
// kube-apiserver derives it (Go's crypto/x509 parser, then the last CN is
// the user and every O, in order, a group), from the certificate itself:
// Envoy puts the verified leaf into x-forwarded-client-cert (HCM
// forward_client_cert_details SANITIZE_SET with cert: true), so no lossy
// text rendering of the subject stands between the bytes and the user.
// Wherever Go would refuse the certificate, or this code cannot be sure it
// agrees, the request is refused.
import { base64Decode, isValidUtf8, percentDecode, utf8Text } from "./encoding";
import { checkedIdentity, Identity, refusedIdentity } from "./identity";
import { hex, sha256 } from "./sha256";

class Der {
  tag: i32 = 0;
  start: i32 = 0;
  end: i32 = 0;

  constructor(public bytes: Uint8Array) {}

  /** Reads the element at `at` (before `limit`) into tag/start/end; false when malformed. */
  read(at: i32, limit: i32): bool {
    const bytes = this.bytes;
    if (at + 2 > limit) return false;
    const tag = <i32>bytes[at];
    // Multi-byte tags appear nowhere in a certificate the parser reads.
    if ((tag & 0x1f) == 0x1f) return false;
    let length = <i32>bytes[at + 1];
    let at2 = at + 2;
    if (length >= 0x80) {
      const count = length & 0x7f;
      if (count == 0 || count > 3 || at2 + count > limit) return false;
      length = 0;
      for (let i = 0; i < count; i++) length = (length << 8) | <i32>bytes[at2 + i];
      at2 += count;
    }
    if (length > limit - at2) return false;
    this.tag = tag;
    this.start = at2;
    this.end = at2 + length;
    return true;
  }
}

// Go's crypto/x509 isPrintable, which also lets '*' and '&' through.
function isPrintable(c: i32): bool {
  return (
    (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) ||
    (c >= 0x27 && c <= 0x29) || (c >= 0x2b && c <= 0x2f) ||
    c == 0x20 || c == 0x3a || c == 0x3d || c == 0x3f || c == 0x2a || c == 0x26
  );
}

/**
 * An attribute value as Go's parseASN1String reads it, or null where Go
 * refuses it (the apiserver would fail the handshake).
 */
function attributeText(bytes: Uint8Array, tag: i32, start: i32, end: i32): string | null {
  if (tag == 0x0c) return isValidUtf8(bytes, start, end) ? utf8Text(bytes, start, end) : null; // UTF8String
  if (tag == 0x13 || tag == 0x16 || tag == 0x12) {
    for (let i = start; i < end; i++) {
      const c = <i32>bytes[i];
      if (tag == 0x13 && !isPrintable(c)) return null; // PrintableString
      if (tag == 0x16 && c >= 0x80) return null; // IA5String
      if (tag == 0x12 && !((c >= 0x30 && c <= 0x39) || c == 0x20)) return null; // NumericString
    }
    return utf8Text(bytes, start, end);
  }
  if (tag == 0x14) {
    // T61String, read as Latin-1 like Go (since 1.21) and BoringSSL.
    let out = "";
    for (let i = start; i < end; i++) out += String.fromCharCode(<i32>bytes[i]);
    return out;
  }
  if (tag == 0x1e) {
    // BMPString: UCS-2, an optional 0x0000 terminator; surrogates and
    // non-characters refused as Go does.
    if ((end - start) % 2 != 0) return null;
    if (end - start >= 2 && bytes[end - 1] == 0 && bytes[end - 2] == 0) end -= 2;
    let out = "";
    for (let i = start; i < end; i += 2) {
      const unit = (<i32>bytes[i] << 8) | <i32>bytes[i + 1];
      if (unit == 0xfffe || unit == 0xffff || (unit >= 0xfdd0 && unit <= 0xfdef) || (unit >= 0xd800 && unit <= 0xdfff)) return null;
      out += String.fromCharCode(unit);
    }
    return out;
  }
  return null;
}

function isOid(bytes: Uint8Array, start: i32, end: i32, oid: StaticArray<u8>): bool {
  if (end - start != oid.length) return false;
  for (let i = 0; i < oid.length; i++) if (bytes[start + i] != oid[i]) return false;
  return true;
}

const commonName: StaticArray<u8> = [0x55, 0x04, 0x03];
const organization: StaticArray<u8> = [0x55, 0x04, 0x0a];
const extKeyUsage: StaticArray<u8> = [0x55, 0x1d, 0x25];
const anyExtKeyUsage: StaticArray<u8> = [0x55, 0x1d, 0x25, 0x00];
const clientAuth: StaticArray<u8> = [0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];

/** The attributes of a Name that matter here: the last CN and every O, in order. */
class NameAttributes {
  commonName: string | null = null;
  organizations: string[] = [];
}

/** Reads every attribute of the Name in bytes[start, end) as Go's parseName does; "" or why it is refused. */
function readName(der: Der, start: i32, end: i32, out: NameAttributes): string {
  const bytes = der.bytes;
  let at = start;
  while (at < end) {
    if (!der.read(at, end) || der.tag != 0x31) return "malformed name";
    const setEnd = der.end;
    at = setEnd;
    let inner = der.start;
    while (inner < setEnd) {
      if (!der.read(inner, setEnd) || der.tag != 0x30) return "malformed name attribute";
      const attributeEnd = der.end;
      inner = attributeEnd;
      if (!der.read(der.start, attributeEnd) || der.tag != 0x06 || der.end == der.start) return "malformed attribute type";
      const typeStart = der.start;
      const typeEnd = der.end;
      if (!der.read(typeEnd, attributeEnd) || der.end != attributeEnd) return "malformed attribute value";
      const text = attributeText(bytes, der.tag, der.start, der.end);
      if (text === null) return "an attribute's string type or content is refused by kube-apiserver's parser";
      if (isOid(bytes, typeStart, typeEnd, commonName)) out.commonName = text;
      else if (isOid(bytes, typeStart, typeEnd, organization)) out.organizations.push(text!);
    }
  }
  return "";
}

/** The subject Name: the last CN is the user, every O a group. */
function readSubject(der: Der, start: i32, end: i32, identity: Identity): string {
  const subject = new NameAttributes();
  const problem = readName(der, start, end, subject);
  if (problem.length > 0) return "subject: " + problem;
  const user = subject.commonName;
  if (user === null || user.length == 0) return "the certificate has no common name";
  identity.user = user;
  for (let i = 0; i < subject.organizations.length; i++) identity.groups.push(subject.organizations[i]);
  return "";
}

/**
 * Whether an issuer Name has the shape of a wharf tenant CA's subject
 * (O=wharf.dev, CN "wharf tenant <T> CA <id>"). A certificate from such a CA
 * that no configured tenant claims is refused rather than read as a host
 * identity: Envoy may still trust a deleted tenant's CA for a moment (the
 * listener and the filter configuration are separate xDS resources), and
 * that tenant's "system:masters" must never become the host's.
 */
function isTenantShaped(issuer: NameAttributes): bool {
  const name = issuer.commonName;
  return name !== null && name.startsWith("wharf tenant ") && issuer.organizations.includes("wharf.dev");
}

const hexDigits = "0123456789abcdef";

/**
 * The serial as Go's parser takes it (cryptobyte ReadASN1Integer: non-empty,
 * minimally encoded; negative refused since Go 1.23), as lowercase hex of
 * its content bytes with leading zero bytes dropped (at least one byte
 * stays); null when Go would refuse it.
 */
function serialHex(bytes: Uint8Array, start: i32, end: i32): string | null {
  const length = end - start;
  if (length == 0) return null;
  const first = <i32>bytes[start];
  if (length > 1) {
    const second = <i32>bytes[start + 1];
    if ((first == 0 && (second & 0x80) == 0) || (first == 0xff && (second & 0x80) != 0)) return null;
  }
  if ((first & 0x80) != 0) return null;
  let at = start;
  while (at < end - 1 && bytes[at] == 0) at++;
  let out = "";
  for (; at < end; at++) {
    const c = <i32>bytes[at];
    out += hexDigits.charAt(c >> 4) + hexDigits.charAt(c & 15);
  }
  return out;
}

/** "" when the extensions allow client authentication (no EKU, clientAuth or any), else why not. */
function checkExtendedKeyUsage(der: Der, start: i32, end: i32): string {
  const bytes = der.bytes;
  if (!der.read(start, end) || der.tag != 0x30) return "malformed extensions";
  const listEnd = der.end;
  let at = der.start;
  while (at < listEnd) {
    if (!der.read(at, listEnd) || der.tag != 0x30) return "malformed extension";
    const extensionEnd = der.end;
    at = extensionEnd;
    if (!der.read(der.start, extensionEnd) || der.tag != 0x06) return "malformed extension";
    if (!isOid(bytes, der.start, der.end, extKeyUsage)) continue;
    let next = der.end;
    if (!der.read(next, extensionEnd)) return "malformed extension";
    if (der.tag == 0x01) {
      next = der.end;
      if (!der.read(next, extensionEnd)) return "malformed extension";
    }
    if (der.tag != 0x04 || !der.read(der.start, der.end) || der.tag != 0x30) return "malformed extended key usage";
    const usagesEnd = der.end;
    let usage = der.start;
    while (usage < usagesEnd) {
      if (!der.read(usage, usagesEnd) || der.tag != 0x06) return "malformed extended key usage";
      if (isOid(bytes, der.start, der.end, clientAuth) || isOid(bytes, der.start, der.end, anyExtKeyUsage)) return "";
      usage = der.end;
    }
    return "the certificate is not for client authentication (extended key usage)";
  }
  return "";
}

/**
 * A verified client certificate: the host identity it states, and what
 * tenancy needs of it (tenancy.ts maps it under the current configuration
 * and remembers the result here, for that configuration only).
 */
export class ClientCertificate {
  /** The identity as kube-apiserver would read it, or a refusal. */
  identity: Identity = new Identity();
  /** Lowercase hex SHA-256 of the issuer Name's DER (the whole element, as Go's RawIssuer). */
  issuerSha256: string = "";
  /** Lowercase hex of the serial's content bytes, leading zero bytes dropped. */
  serial: string = "";
  /** The issuer looks like a wharf tenant CA (isTenantShaped). */
  tenantShapedIssuer: bool = false;
  /** The identity to forward, and the generation of the configuration it was derived under (tenancy.ts). */
  forwarded: Identity | null = null;
  forwardedUnder: u32 = 0;
}

function refusedCertificate(reason: string): ClientCertificate {
  const certificate = new ClientCertificate();
  certificate.identity = refusedIdentity("client certificate: " + reason);
  return certificate;
}

/** The identity and issuer facts of a DER certificate (authenticated, or with a refusal). */
export function readCertificate(bytes: Uint8Array): ClientCertificate {
  const der = new Der(bytes);
  if (!der.read(0, bytes.length) || der.tag != 0x30) return refusedCertificate("malformed");
  if (!der.read(der.start, der.end) || der.tag != 0x30) return refusedCertificate("malformed");
  const tbsEnd = der.end;
  let at = der.start;
  // [0] version, serial, signature algorithm, issuer, validity, subject.
  if (!der.read(at, tbsEnd)) return refusedCertificate("malformed");
  if (der.tag == 0xa0) {
    at = der.end;
    if (!der.read(at, tbsEnd)) return refusedCertificate("malformed");
  }
  if (der.tag != 0x02) return refusedCertificate("malformed");
  const serial = serialHex(bytes, der.start, der.end);
  if (serial === null) return refusedCertificate("the serial number is empty, not minimally encoded or negative, which kube-apiserver's parser refuses");
  at = der.end;
  if (!der.read(at, tbsEnd) || der.tag != 0x30) return refusedCertificate("malformed");
  at = der.end;
  const issuerStart = at;
  if (!der.read(at, tbsEnd) || der.tag != 0x30) return refusedCertificate("malformed");
  const issuerEnd = der.end;
  const issuer = new NameAttributes();
  const issuerProblem = readName(der, der.start, der.end, issuer);
  if (issuerProblem.length > 0) return refusedCertificate("issuer: " + issuerProblem);
  at = issuerEnd;
  if (!der.read(at, tbsEnd) || der.tag != 0x30) return refusedCertificate("malformed");
  at = der.end;
  if (!der.read(at, tbsEnd) || der.tag != 0x30) return refusedCertificate("malformed");
  at = der.end;
  const identity = new Identity();
  const problem = readSubject(der, der.start, der.end, identity);
  if (problem.length > 0) return refusedCertificate(problem);
  // subjectPublicKeyInfo, then optional unique ids and [3] extensions.
  if (!der.read(at, tbsEnd) || der.tag != 0x30) return refusedCertificate("malformed");
  at = der.end;
  while (at < tbsEnd) {
    if (!der.read(at, tbsEnd)) return refusedCertificate("malformed");
    at = der.end;
    if (der.tag == 0xa3) {
      const usage = checkExtendedKeyUsage(der, der.start, der.end);
      if (usage.length > 0) return refusedCertificate(usage);
    }
  }
  identity.authenticated = true;
  identity.groups.push("system:authenticated");
  // kube-apiserver's x509 authenticator names the credential too.
  identity.extraKeys.push("authentication.kubernetes.io/credential-id");
  identity.extraValues.push(["X509SHA256=" + hex(sha256(bytes))]);
  const certificate = new ClientCertificate();
  certificate.identity = checkedIdentity(identity, "client certificate");
  certificate.serial = serial!;
  certificate.issuerSha256 = hex(sha256(bytes.subarray(issuerStart, issuerEnd)));
  certificate.tenantShapedIssuer = isTenantShaped(issuer);
  return certificate;
}

const pemBegin = "-----BEGIN CERTIFICATE-----";
const pemEnd = "-----END CERTIFICATE-----";

function indexOfBytes(bytes: Uint8Array, text: string, from: i32): i32 {
  const last = bytes.length - text.length;
  for (let i = from; i <= last; i++) {
    let k = 0;
    while (k < text.length && <i32>bytes[i + k] == text.charCodeAt(k)) k++;
    if (k == text.length) return i;
  }
  return -1;
}

/** The certificate in an x-forwarded-client-cert value Envoy set (one element, with Cert="<url-encoded PEM>"). */
export function readForwardedCert(xfcc: string): ClientCertificate {
  let cert: string | null = null;
  let quoted = false;
  let fieldStart = 0;
  for (let i = 0; i <= xfcc.length; i++) {
    const c = i < xfcc.length ? xfcc.charCodeAt(i) : 0x3b;
    if (c == 0x22) quoted = !quoted;
    else if (!quoted && c == 0x2c) return refusedCertificate("more than one forwarded certificate");
    else if (!quoted && c == 0x3b) {
      const field = xfcc.substring(fieldStart, i);
      fieldStart = i + 1;
      if (field.startsWith("Cert=")) {
        if (cert !== null) return refusedCertificate("more than one forwarded certificate");
        let value = field.substring(5);
        if (value.startsWith("\"") && value.endsWith("\"") && value.length >= 2) value = value.substring(1, value.length - 1);
        cert = value;
      }
    }
  }
  if (cert === null) return refusedCertificate("not forwarded by Envoy (set_current_client_cert_details.cert)");
  const pem = percentDecode(cert!);
  if (pem === null) return refusedCertificate("malformed forwarding");
  const begin = indexOfBytes(pem!, pemBegin, 0);
  const end = begin < 0 ? -1 : indexOfBytes(pem!, pemEnd, begin);
  if (begin < 0 || end < 0) return refusedCertificate("malformed forwarding");
  const der = base64Decode(pem!, begin + pemBegin.length, end, false);
  if (der === null) return refusedCertificate("malformed forwarding");
  return readCertificate(der!);
}

// Parsed certificates by XFCC value, per VM: a client's requests on one
// connection repeat the same certificate, and parsing costs more than a
// lookup. Cleared when full so hostile certificates cannot grow it.
const parsed = new Map<string, ClientCertificate>();
const parsedLimit = 256;

export function cachedForwardedCert(xfcc: string): ClientCertificate {
  if (parsed.has(xfcc)) return parsed.get(xfcc);
  const certificate = readForwardedCert(xfcc);
  if (parsed.size >= parsedLimit) parsed.clear();
  parsed.set(xfcc, certificate);
  return certificate;
}
