// Bearer-token identity: a TokenReview to the apiservers through an Envoy
// cluster, answers cached in shared data (so every worker benefits) for the
// configured success and failure TTLs.
import { getSharedData, HeaderPair, HttpContext, setSharedData } from "../sdk";
import { TokenReviewConfig } from "./config";
import { Identity } from "./identity";
import { jsonString, JsonKind, parseJson } from "./json";

// Shared data is process memory, never logged or exported; the token is the
// key so no two tokens can ever share an entry.
function cacheKey(token: string): string {
  return "wharf/token/" + token;
}

/** A cached answer, or null when there is none (or it expired). */
export function cachedIdentity(token: string, nowNs: u64): Identity | null {
  const entry = getSharedData(cacheKey(token));
  const value = entry.value;
  if (value === null || value.byteLength < 9) return null;
  const base = changetype<usize>(value);
  if (<f64>nowNs >= load<f64>(base)) return null;
  const identity = new Identity();
  if (load<u8>(base + 8) == 0) return identity; // a cached refusal: anonymous, not authenticated
  const lines = String.UTF8.decodeUnsafe(base + 9, value.byteLength - 9).split("\n");
  identity.user = lines[0];
  for (let i = 1; i < lines.length; i++) identity.groups.push(lines[i]);
  identity.authenticated = true;
  return identity;
}

export function cacheIdentity(token: string, identity: Identity, review: TokenReviewConfig, nowNs: u64): void {
  const ttl = identity.authenticated ? review.successTtlSeconds : review.failureTtlSeconds;
  let text = identity.user;
  for (let i = 0; i < identity.groups.length; i++) text += "\n" + identity.groups[i];
  const encoded = String.UTF8.encode(identity.authenticated ? text : "");
  const out = new ArrayBuffer(9 + encoded.byteLength);
  const base = changetype<usize>(out);
  store<f64>(base, <f64>nowNs + <f64>ttl * 1e9);
  store<u8>(base + 8, identity.authenticated ? 1 : 0);
  memory.copy(base + 9, changetype<usize>(encoded), encoded.byteLength);
  setSharedData(cacheKey(token), out, 0);
}

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
  const groups = user.get("groups");
  if (groups !== null && groups.kind == JsonKind.Array) {
    for (let i = 0; i < groups.items.length; i++) {
      if (groups.items[i].kind == JsonKind.String) identity.groups.push(groups.items[i].text);
    }
  }
  return identity;
}
