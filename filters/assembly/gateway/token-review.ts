// Bearer-token identity: a TokenReview to the apiservers through an Envoy
// cluster. Answers are cached in shared data (so every worker benefits), in a
// fixed number of slots keyed by the token's SHA-256: the cache never holds
// a token, never grows past cache_size entries (a new token takes its slot
// over), and an entry is a length-prefixed record no user, group or extra
// content can reshape. A verified token is trusted until the configured TTL
// or its own expiry (a JWT's exp), whichever comes first. Reviews are
// rate-limited per source address, so a flood of made-up tokens costs the
// apiserver a bounded number of reviews.
import { getProperty, getSharedData, HeaderPair, HttpContext, setSharedData, WasmResult } from "../sdk";
import { TokenReviewConfig } from "./config";
import { base64Decode } from "./encoding";
import { checkedIdentity, Identity } from "./identity";
import { jsonString, JsonKind, parseJson } from "./json";
import { sha256 } from "./sha256";

// --- cache entries: digest[32] | expires f64 | authenticated u8 | user, uid, groups, extra ---

class EntryWriter {
  private parts: Uint8Array[] = [];
  private size: i32 = 0;

  count(n: i32): void {
    const part = new Uint8Array(4);
    store<u32>(part.dataStart, <u32>n);
    this.parts.push(part);
    this.size += 4;
  }

  text(value: string): void {
    const bytes = Uint8Array.wrap(String.UTF8.encode(value));
    this.count(bytes.length);
    this.parts.push(bytes);
    this.size += bytes.length;
  }

  bytes(header: Uint8Array): ArrayBuffer {
    const out = new ArrayBuffer(header.length + this.size);
    const base = changetype<usize>(out);
    memory.copy(base, header.dataStart, header.length);
    let at = base + <usize>header.length;
    for (let i = 0; i < this.parts.length; i++) {
      memory.copy(at, this.parts[i].dataStart, this.parts[i].length);
      at += <usize>this.parts[i].length;
    }
    return out;
  }
}

class EntryReader {
  at: usize;
  ok: bool = true;

  constructor(
    start: usize,
    private end: usize,
  ) {
    this.at = start;
  }

  count(): i32 {
    if (this.at + 4 > this.end) {
      this.ok = false;
      return 0;
    }
    const n = load<u32>(this.at);
    this.at += 4;
    if (<usize>n > this.end - this.at) {
      this.ok = false;
      return 0;
    }
    return <i32>n;
  }

  text(): string {
    const n = this.count();
    if (!this.ok) return "";
    const value = String.UTF8.decodeUnsafe(this.at, <usize>n);
    this.at += <usize>n;
    return value;
  }
}

const headerBytes = 32 + 8 + 1;

function slotKey(digest: Uint8Array, review: TokenReviewConfig): string {
  const slot = load<u32>(digest.dataStart) % review.cacheSize;
  return "wharf/token/" + slot.toString();
}

function sameDigest(entry: ArrayBuffer, digest: Uint8Array): bool {
  const base = changetype<usize>(entry);
  for (let i = 0; i < 32; i++) if (load<u8>(base + <usize>i) != digest[i]) return false;
  return true;
}

/** A cached answer for the token, or null when there is none (or it expired). */
export function cachedIdentity(token: string, review: TokenReviewConfig, nowNs: u64): Identity | null {
  const digest = sha256(Uint8Array.wrap(String.UTF8.encode(token)));
  const value = getSharedData(slotKey(digest, review)).value;
  if (value === null || value.byteLength < headerBytes || !sameDigest(value, digest)) return null;
  const base = changetype<usize>(value);
  if (<f64>nowNs >= load<f64>(base + 32)) return null;
  const identity = new Identity();
  if (load<u8>(base + 40) == 0) return identity; // a cached refusal: anonymous, not authenticated
  const reader = new EntryReader(base + <usize>headerBytes, base + <usize>value.byteLength);
  identity.user = reader.text();
  identity.uid = reader.text();
  const groups = reader.count();
  for (let i = 0; i < groups && reader.ok; i++) identity.groups.push(reader.text());
  const keys = reader.count();
  for (let i = 0; i < keys && reader.ok; i++) {
    identity.extraKeys.push(reader.text());
    const values = new Array<string>();
    const n = reader.count();
    for (let k = 0; k < n && reader.ok; k++) values.push(reader.text());
    identity.extraValues.push(values);
  }
  if (!reader.ok) return null;
  identity.authenticated = true;
  return identity;
}

/**
 * The token's own expiry in ns, when it is a JWT with a numeric exp; 0
 * otherwise. Read without verifying anything: it can only shorten how long
 * the apiserver's verdict is trusted, never lengthen it.
 */
export function jwtExpiryNs(token: string): f64 {
  const first = token.indexOf(".");
  const second = first < 0 ? -1 : token.indexOf(".", first + 1);
  if (second < 0 || second - first - 1 > 8192) return 0;
  const encoded = Uint8Array.wrap(String.UTF8.encode(token.substring(first + 1, second)));
  const payload = base64Decode(encoded, 0, encoded.length, true);
  if (payload === null) return 0;
  const json = parseJson(String.UTF8.decodeUnsafe(payload!.dataStart, <usize>payload!.length));
  if (json === null) return 0;
  const exp = json!.get("exp");
  if (exp === null || exp.kind != JsonKind.Number || !isFinite(exp.number) || exp.number <= 0) return 0;
  return exp.number * 1e9;
}

export function cacheIdentity(token: string, identity: Identity, review: TokenReviewConfig, nowNs: u64): void {
  const now = <f64>nowNs;
  let expires = now + <f64>(identity.authenticated ? review.successTtlSeconds : review.failureTtlSeconds) * 1e9;
  if (identity.authenticated) {
    const exp = jwtExpiryNs(token);
    if (exp > 0 && exp < expires) expires = exp;
    if (expires <= now) return;
  }
  const digest = sha256(Uint8Array.wrap(String.UTF8.encode(token)));
  const header = new Uint8Array(headerBytes);
  header.set(digest, 0);
  store<f64>(header.dataStart + 32, expires);
  header[40] = identity.authenticated ? 1 : 0;
  const writer = new EntryWriter();
  if (identity.authenticated) {
    writer.text(identity.user);
    writer.text(identity.uid);
    writer.count(identity.groups.length);
    for (let i = 0; i < identity.groups.length; i++) writer.text(identity.groups[i]);
    writer.count(identity.extraKeys.length);
    for (let i = 0; i < identity.extraKeys.length; i++) {
      writer.text(identity.extraKeys[i]);
      const values = identity.extraValues[i];
      writer.count(values.length);
      for (let k = 0; k < values.length; k++) writer.text(values[k]);
    }
  }
  setSharedData(slotKey(digest, review), writer.bytes(header), 0);
}

// --- reviews per source ---

const rateSlots: u32 = 1024;
const maxAttempts = 16;

/** The client's IP without the port ("10.0.0.1:5000", "[::1]:5000"). */
function sourceHost(): string {
  const address = getProperty(["source", "address"]);
  if (address === null) return "";
  const text = String.UTF8.decode(address!);
  const colon = text.lastIndexOf(":");
  if (colon < 0 || text.indexOf("]") > colon) return text;
  return text.substring(0, colon);
}

/**
 * Takes one review from the caller's source bucket: 0 when admitted, else
 * the seconds to wait. Sources share a bucket when they hash to one slot, so
 * the state stays bounded however many addresses a flood comes from.
 */
export function admitReview(review: TokenReviewConfig, nowNs: u64): i32 {
  if (review.reviewsPerSecondPerSource <= 0) return 0;
  const host = sourceHost();
  let hash: u32 = 2166136261;
  for (let i = 0; i < host.length; i++) hash = (hash ^ <u32>host.charCodeAt(i)) * 16777619;
  const key = "wharf/review-rate/" + (hash % rateSlots).toString();
  const now = <f64>nowNs;
  const rate = review.reviewsPerSecondPerSource;
  const burst = <f64>review.reviewBurstPerSource;
  for (let attempt = 0; attempt < maxAttempts; attempt++) {
    const current = getSharedData(key);
    let tokens = burst;
    let refilledAt = now;
    if (current.value !== null && current.value!.byteLength == 16) {
      const base = changetype<usize>(current.value!);
      tokens = Math.min(burst, load<f64>(base) + (Math.max(0, now - load<f64>(base + 8)) / 1e9) * rate);
    }
    if (tokens < 1) return <i32>Math.max(1, Math.ceil((1 - tokens) / rate));
    const out = new ArrayBuffer(16);
    store<f64>(changetype<usize>(out), tokens - 1);
    store<f64>(changetype<usize>(out) + 8, refilledAt);
    if (setSharedData(key, out, current.cas) == WasmResult.Ok) return 0;
  }
  return 1;
}

// --- the review itself ---

/** Sends the review for `stream`; returns the callout id, 0 if Envoy refused the call. */
export function requestReview(stream: HttpContext, token: string, review: TokenReviewConfig): u32 {
  const headers = new Array<HeaderPair>();
  headers.push(new HeaderPair(":method", "POST"));
  headers.push(new HeaderPair(":path", "/apis/authentication.k8s.io/v1/tokenreviews"));
  headers.push(new HeaderPair(":authority", review.authority));
  headers.push(new HeaderPair(":scheme", "https"));
  headers.push(new HeaderPair("content-type", "application/json"));
  headers.push(new HeaderPair("accept", "application/json"));
  headers.push(new HeaderPair("x-remote-user", review.reviewer));
  const body =
    "{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"TokenReview\",\"spec\":{\"token\":" + jsonString(token) + "}}";
  return stream.dispatchHttpCall(review.cluster, headers, String.UTF8.encode(body), review.timeoutMs);
}

/** The identity a TokenReview response grants; unauthenticated when it grants none. */
export function identityFromReview(status: string | null, body: string): Identity {
  const identity = new Identity();
  if (status === null || status! != "201" && status! != "200") return identity;
  const json = parseJson(body);
  if (json === null) return identity;
  const reviewStatus = json.get("status");
  if (reviewStatus === null) return identity;
  const authenticated = reviewStatus.get("authenticated");
  if (authenticated === null || authenticated.kind != JsonKind.Bool || !authenticated.bool) return identity;
  const user = reviewStatus.get("user");
  if (user === null) return identity;
  const username = user.get("username");
  if (username === null || username.kind != JsonKind.String || username.text.length == 0) return identity;
  identity.user = username.text;
  identity.authenticated = true;
  const uid = user.get("uid");
  if (uid !== null && uid.kind == JsonKind.String) identity.uid = uid.text;
  const groups = user.get("groups");
  if (groups !== null && groups.kind == JsonKind.Array) {
    for (let i = 0; i < groups.items.length; i++) {
      if (groups.items[i].kind == JsonKind.String) identity.groups.push(groups.items[i].text);
    }
  }
  const extra = user.get("extra");
  if (extra !== null && extra.kind == JsonKind.Object) {
    for (let i = 0; i < extra.keys.length; i++) {
      const values = new Array<string>();
      const list = extra.items[i];
      if (list.kind == JsonKind.Array) {
        for (let k = 0; k < list.items.length; k++) if (list.items[k].kind == JsonKind.String) values.push(list.items[k].text);
      }
      identity.extraKeys.push(extra.keys[i]);
      identity.extraValues.push(values);
    }
  }
  return checkedIdentity(identity, "bearer token");
}
