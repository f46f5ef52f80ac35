// Byte-level decoders the identity code needs: percent-encoding (Envoy's
// XFCC), base64 (PEM, JWT payloads) and a strict UTF-8 check (Go's
// utf8.Valid, which kube-apiserver applies to certificate strings).

function hexValue(c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  return -1;
}

/** `%XX` decoded (nothing else: '+' stays '+'); null on a bad escape or a non-ASCII character. */
export function percentDecode(text: string): Uint8Array | null {
  const out = new Uint8Array(text.length);
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > 0x7f) return null;
    if (c != 0x25) {
      out[n++] = <u8>c;
      continue;
    }
    if (i + 2 >= text.length) return null;
    const high = hexValue(text.charCodeAt(i + 1));
    const low = hexValue(text.charCodeAt(i + 2));
    if (high < 0 || low < 0) return null;
    out[n++] = <u8>((high << 4) | low);
    i += 2;
  }
  return out.subarray(0, n);
}

function base64Value(c: i32, url: bool): i32 {
  if (c >= 0x41 && c <= 0x5a) return c - 0x41;
  if (c >= 0x61 && c <= 0x7a) return c - 0x61 + 26;
  if (c >= 0x30 && c <= 0x39) return c - 0x30 + 52;
  if (c == (url ? 0x2d : 0x2b)) return 62;
  if (c == (url ? 0x5f : 0x2f)) return 63;
  return -1;
}

/**
 * Base64 (or base64url) of bytes[start, end): whitespace skipped, padding
 * optional; null on any other character.
 */
export function base64Decode(bytes: Uint8Array, start: i32, end: i32, url: bool): Uint8Array | null {
  const out = new Uint8Array(((end - start) * 3) >> 2);
  let n = 0;
  let acc: u32 = 0;
  let bits = 0;
  let padding = false;
  for (let i = start; i < end; i++) {
    const c = <i32>bytes[i];
    if (c == 0x20 || c == 0x0a || c == 0x0d || c == 0x09) continue;
    if (c == 0x3d) {
      padding = true;
      continue;
    }
    if (padding) return null;
    const v = base64Value(c, url);
    if (v < 0) return null;
    acc = (acc << 6) | <u32>v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      if (n >= out.length) return null;
      out[n++] = <u8>(acc >> bits);
    }
  }
  return out.subarray(0, n);
}

/** Go's utf8.Valid over bytes[start, end): no overlongs, surrogates or code points above U+10FFFF. */
export function isValidUtf8(bytes: Uint8Array, start: i32, end: i32): bool {
  let i = start;
  while (i < end) {
    const b = <i32>bytes[i];
    if (b < 0x80) {
      i++;
      continue;
    }
    let size = 0;
    let low = 0x80;
    let high = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) size = 2;
    else if (b >= 0xe0 && b <= 0xef) {
      size = 3;
      if (b == 0xe0) low = 0xa0;
      else if (b == 0xed) high = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      size = 4;
      if (b == 0xf0) low = 0x90;
      else if (b == 0xf4) high = 0x8f;
    } else return false;
    if (i + size > end) return false;
    const second = <i32>bytes[i + 1];
    if (second < low || second > high) return false;
    for (let k = 2; k < size; k++) {
      const next = <i32>bytes[i + k];
      if (next < 0x80 || next > 0xbf) return false;
    }
    i += size;
  }
  return true;
}

/** bytes[start, end) as a string; the caller has checked they are UTF-8. */
export function utf8Text(bytes: Uint8Array, start: i32, end: i32): string {
  return String.UTF8.decodeUnsafe(bytes.dataStart + <usize>start, <usize>(end - start));
}
