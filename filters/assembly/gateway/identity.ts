// Who is calling, as the apiserver must learn it through the front-proxy
// headers: user, uid, groups and extra. An identity that cannot travel in
// headers byte for byte carries a refusal instead; the request is then
// answered 401 rather than forwarded as someone slightly different.

export class Identity {
  user: string = "system:anonymous";
  uid: string = "";
  groups: string[] = [];
  /** Extra keys, each with its values at the same index in extraValues. */
  extraKeys: string[] = [];
  extraValues: string[][] = [];
  authenticated: bool = false;
  /** The tenant this identity acts in (tenancy.ts), stated upstream in tenant_header; "" for host identities. */
  tenant: string = "";
  /** Non-empty: why the credential was refused. */
  refusal: string = "";

  inAnyGroup(groups: string[]): bool {
    for (let i = 0; i < groups.length; i++) if (this.groups.includes(groups[i])) return true;
    return false;
  }
}

export function anonymousIdentity(): Identity {
  const identity = new Identity();
  identity.groups.push("system:unauthenticated");
  return identity;
}

export function refusedIdentity(reason: string): Identity {
  const identity = anonymousIdentity();
  identity.refusal = reason;
  return identity;
}

/**
 * Whether kube-apiserver reads `value` from a header exactly as given: Go's
 * HTTP/2 server refuses control characters but HTAB, Envoy refuses NUL, CR
 * and LF, and the requestheader authenticator skips empty values. Leading
 * and trailing spaces survive because the gateway speaks HTTP/2 upstream
 * (HTTP/1.1 would trim them; upgrades ride HTTP/1.1: see http1Refusal).
 */
export function isForwardable(value: string): bool {
  if (value.length == 0) return false;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if ((c < 0x20 && c != 0x09) || c == 0x7f) return false;
  }
  return true;
}

/** The identity itself, or a refusal when some part of it cannot be forwarded exactly. */
export function checkedIdentity(identity: Identity, source: string): Identity {
  if (!identity.authenticated) return identity;
  if (!isForwardable(identity.user)) return refusedIdentity(source + ": the user name cannot be forwarded exactly");
  if (identity.uid.length > 0 && !isForwardable(identity.uid)) return refusedIdentity(source + ": the uid cannot be forwarded exactly");
  for (let i = 0; i < identity.groups.length; i++) {
    if (!isForwardable(identity.groups[i])) return refusedIdentity(source + ": a group name cannot be forwarded exactly");
  }
  for (let i = 0; i < identity.extraValues.length; i++) {
    if (identity.extraKeys[i].length == 0) return refusedIdentity(source + ": an extra key is empty");
    const values = identity.extraValues[i];
    for (let k = 0; k < values.length; k++) {
      // Empty extra values do reach the apiserver (it keeps every value of an extra header).
      if (values[k].length > 0 && !isForwardable(values[k])) return refusedIdentity(source + ": an extra value cannot be forwarded exactly");
    }
  }
  return identity;
}

function hasEdgeWhitespace(value: string): bool {
  if (value.length == 0) return false;
  const first = value.charCodeAt(0);
  const last = value.charCodeAt(value.length - 1);
  return first == 0x20 || first == 0x09 || last == 0x20 || last == 0x09;
}

/**
 * Why the identity cannot travel over HTTP/1.1 unchanged (null when it can).
 * Upgrades (exec, attach, port-forward, WebSocket watches) reach the
 * apiserver over HTTP/1.1, which trims spaces and tabs at the ends of header
 * values: a group " system:masters" would arrive as "system:masters".
 */
export function http1Refusal(identity: Identity): string | null {
  if (hasEdgeWhitespace(identity.user)) return "the user name has spaces at its ends, which an upgraded connection cannot carry";
  if (hasEdgeWhitespace(identity.uid)) return "the uid has spaces at its ends, which an upgraded connection cannot carry";
  for (let i = 0; i < identity.groups.length; i++) {
    if (hasEdgeWhitespace(identity.groups[i])) return "a group name has spaces at its ends, which an upgraded connection cannot carry";
  }
  for (let i = 0; i < identity.extraValues.length; i++) {
    const values = identity.extraValues[i];
    for (let k = 0; k < values.length; k++) {
      if (hasEdgeWhitespace(values[k])) return "an extra value has spaces at its ends, which an upgraded connection cannot carry";
    }
  }
  return null;
}

function isHeaderNameByte(c: i32): bool {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c == 0x2d || c == 0x2e || c == 0x5f;
}

const hexDigits = "0123456789abcdef";

/**
 * The X-Remote-Extra- header name for an extra key. kube-apiserver
 * lower-cases the name, then percent-decodes it (url.PathUnescape), so every
 * byte but [a-z0-9._-] (upper case included, to keep its case) is escaped
 * (Envoy lower-cases header names, so the hex digits are lower case).
 */
export function extraHeaderName(key: string): string {
  const bytes = Uint8Array.wrap(String.UTF8.encode(key));
  let out = "x-remote-extra-";
  for (let i = 0; i < bytes.length; i++) {
    const c = <i32>bytes[i];
    if (isHeaderNameByte(c)) out += String.fromCharCode(c);
    else out += "%" + hexDigits.charAt(c >> 4) + hexDigits.charAt(c & 15);
  }
  return out;
}
