// Continue tokens handed to a tenant are sealed with its continue_key: the
// apiserver's token (base64 JSON naming the next etcd key) is opaque to the
// tenant, and a token minted for another tenant (or made up) does not unseal,
// so it never reaches the apiserver.
//
// Construction (deterministic authenticated encryption, SIV style):
//   macKey = HMAC(key, "wharf continue mac"), encKey = HMAC(key, "wharf continue enc")
//   tag    = HMAC(macKey, token)[0..16)
//   stream = SHA-256(encKey ‖ tag ‖ counter32be) for counter = 0, 1, ...
//   sealed = "wt1" + base64url(tag ‖ (token XOR stream))
// The synthetic IV (the tag) depends on the token itself, so no random
// source is needed inside the VM; equal tokens seal equally, which tells a
// tenant only that it asked for the same page twice.
import { sha256 } from "../gateway/sha256";
import { Tenant } from "./config";

const tagBytes = 16;
const version = "wt1";
/** The apiserver's tokens are a few hundred bytes; a longer sealed one is refused unread. */
export const maxSealedLength = 8192;

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

function utf8(text: string): Uint8Array {
  return Uint8Array.wrap(String.UTF8.encode(text));
}

export function hmacSha256(key: Uint8Array, message: Uint8Array): Uint8Array {
  let k = key.length > 64 ? sha256(key) : key;
  const inner = new Uint8Array(64 + message.length);
  const outer = new Uint8Array(64 + 32);
  for (let i = 0; i < 64; i++) {
    const b: u8 = i < k.length ? k[i] : 0;
    inner[i] = b ^ 0x36;
    outer[i] = b ^ 0x5c;
  }
  inner.set(message, 64);
  outer.set(sha256(inner), 64);
  return sha256(outer);
}

/** Derived once per tenant, kept on its config object. */
function keysOf(tenant: Tenant): Tenant {
  if (tenant.continueMacKey.length == 0) {
    tenant.continueMacKey = hmacSha256(tenant.continueKey, utf8("wharf continue mac"));
    tenant.continueEncKey = hmacSha256(tenant.continueKey, utf8("wharf continue enc"));
  }
  return tenant;
}

function xorStream(encKey: Uint8Array, tag: Uint8Array, data: Uint8Array, at: i32): void {
  const seed = new Uint8Array(encKey.length + tag.length + 4);
  seed.set(encKey, 0);
  seed.set(tag, encKey.length);
  const counterAt = encKey.length + tag.length;
  let counter: u32 = 0;
  for (let start = at; start < data.length; start += 32) {
    seed[counterAt] = <u8>(counter >> 24);
    seed[counterAt + 1] = <u8>(counter >> 16);
    seed[counterAt + 2] = <u8>(counter >> 8);
    seed[counterAt + 3] = <u8>counter;
    const block = sha256(seed);
    const end = start + 32 < data.length ? start + 32 : data.length;
    for (let i = start; i < end; i++) data[i] ^= block[i - start];
    counter++;
  }
}

const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

function base64url(data: Uint8Array): string {
  const out = new Array<string>();
  let i = 0;
  for (; i + 2 < data.length; i += 3) {
    const v = (<u32>data[i] << 16) | (<u32>data[i + 1] << 8) | <u32>data[i + 2];
    out.push(alphabet.charAt((v >> 18) & 63) + alphabet.charAt((v >> 12) & 63) + alphabet.charAt((v >> 6) & 63) + alphabet.charAt(v & 63));
  }
  const rest = data.length - i;
  if (rest == 1) {
    const v = <u32>data[i] << 16;
    out.push(alphabet.charAt((v >> 18) & 63) + alphabet.charAt((v >> 12) & 63));
  } else if (rest == 2) {
    const v = (<u32>data[i] << 16) | (<u32>data[i + 1] << 8);
    out.push(alphabet.charAt((v >> 18) & 63) + alphabet.charAt((v >> 12) & 63) + alphabet.charAt((v >> 6) & 63));
  }
  return out.join("");
}

function sextet(c: i32): i32 {
  if (c >= 0x41 && c <= 0x5a) return c - 0x41;
  if (c >= 0x61 && c <= 0x7a) return c - 0x61 + 26;
  if (c >= 0x30 && c <= 0x39) return c - 0x30 + 52;
  if (c == 0x2d) return 62;
  if (c == 0x5f) return 63;
  return -1;
}

/** Unpadded base64url text[start..), or null if it is not exactly that. */
function fromBase64url(text: string, start: i32): Uint8Array | null {
  const length = text.length - start;
  if (length % 4 == 1) return null;
  const out = new Uint8Array((length * 3) >> 2);
  let bits: u32 = 0;
  let count = 0;
  let n = 0;
  for (let i = start; i < text.length; i++) {
    const v = sextet(text.charCodeAt(i));
    if (v < 0) return null;
    bits = (bits << 6) | <u32>v;
    count += 6;
    if (count >= 8) {
      count -= 8;
      out[n++] = <u8>(bits >> <u32>count);
    }
  }
  // Leftover bits must be zero, so each token has one spelling.
  if ((bits & ((1 << <u32>count) - 1)) != 0) return null;
  return out;
}

/** The tenant's form of an apiserver continue token ("" stays ""). */
export function sealContinue(tenant: Tenant, token: string): string {
  if (token.length == 0) return token;
  const keys = keysOf(tenant);
  const plain = utf8(token);
  const tag = hmacSha256(keys.continueMacKey, plain).subarray(0, tagBytes);
  const sealed = new Uint8Array(tagBytes + plain.length);
  sealed.set(tag, 0);
  sealed.set(plain, tagBytes);
  xorStream(keys.continueEncKey, tag, sealed, tagBytes);
  return version + base64url(sealed);
}

/** The apiserver's token inside a tenant's sealed one; null if it was not sealed for this tenant. */
export function unsealContinue(tenant: Tenant, sealed: string): string | null {
  if (sealed.length > maxSealedLength || !sealed.startsWith(version)) return null;
  const data = fromBase64url(sealed, version.length);
  if (data === null || data.length <= tagBytes) return null;
  const keys = keysOf(tenant);
  const tag = data.slice(0, tagBytes);
  xorStream(keys.continueEncKey, tag, data, tagBytes);
  const plain = data.subarray(tagBytes);
  const expected = hmacSha256(keys.continueMacKey, plain);
  let difference: u32 = 0;
  for (let i = 0; i < tagBytes; i++) difference |= <u32>(expected[i] ^ tag[i]);
  if (difference != 0) return null;
  return String.UTF8.decodeUnsafe(plain.dataStart, <usize>plain.length);
}
