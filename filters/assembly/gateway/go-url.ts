// The parts of Go's net/url that kube-apiserver's classification depends
// on, reproduced rule for rule: a difference is a policy bypass.
//   - unescape: "%" must be followed by two hex digits, else the whole path
//     is an error (Go's server answers 400) or the query pair is dropped;
//   - query: pairs split on "&"; a pair containing ";" is dropped (Go
//     >= 1.17); "+" is a space; URL.Query() keeps every pair that parsed and
//     Get() takes the first value of a key;
//   - more than 10,000 pairs: Go (>= 1.24.12/1.25.6, GODEBUG
//     urlmaxqueryparams) returns no values at all.
// All scans are linear in the input: no string is built by concatenation.
import { isValidUtf8 } from "../sdk/utf8";

function hexValue(c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  return -1;
}

/** Decoded text, or why it could not be decoded. */
export class Unescaped {
  text: string = "";
  /** An escape that is not "%" and two hex digits (Go's url.EscapeError). */
  badEscape: bool = false;
  /** The decoded bytes are not UTF-8: Go keeps them as bytes, AssemblyScript strings cannot. */
  notUtf8: bool = false;
}

/** Unescapes text[start, end) of an ASCII string. */
export function unescape(text: string, start: i32, end: i32, plusIsSpace: bool): Unescaped {
  const result = new Unescaped();
  let plain = true;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c == 0x25 || (plusIsSpace && c == 0x2b)) {
      plain = false;
      break;
    }
  }
  if (plain) {
    result.text = text.substring(start, end);
    return result;
  }
  const out = new Uint8Array(end - start);
  let n = 0;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c == 0x25) {
      const high = i + 2 < end ? hexValue(text.charCodeAt(i + 1)) : -1;
      const low = i + 2 < end ? hexValue(text.charCodeAt(i + 2)) : -1;
      if (high < 0 || low < 0) {
        result.badEscape = true;
        return result;
      }
      out[n++] = <u8>((high << 4) | low);
      i += 2;
    } else if (plusIsSpace && c == 0x2b) {
      out[n++] = 0x20;
    } else {
      out[n++] = <u8>c;
    }
  }
  if (!isValidUtf8(out.dataStart, <usize>n)) {
    result.notUtf8 = true;
    return result;
  }
  result.text = String.UTF8.decodeUnsafe(out.dataStart, <usize>n);
  return result;
}

/** Go's default urlmaxqueryparams. */
export const goMaxQueryParams = 10000;

/** The first value of each key the classification reads, as URL.Query().Get() returns it. */
export class ListQuery {
  /** More pairs than the gateway classifies (Go drops every value past its limit). */
  tooManyPairs: bool = false;
  keys: string[] = [];
  values: string[] = [];
  /** Whether the value was UTF-8 (else `values` holds U+FFFD). */
  utf8: bool[] = [];

  has(key: string): bool {
    return this.index(key) >= 0;
  }

  get(key: string): string | null {
    const at = this.index(key);
    return at < 0 ? null : this.values[at];
  }

  isUtf8(key: string): bool {
    const at = this.index(key);
    return at < 0 || this.utf8[at];
  }

  private index(key: string): i32 {
    for (let i = 0; i < this.keys.length; i++) if (this.keys[i] == key) return i;
    return -1;
  }
}

/**
 * Parses query[start, end) of an ASCII string, keeping the first value of
 * each key in `wanted`. Refuses (tooManyPairs) more than `maxPairs` pairs:
 * past Go's own limit the apiserver would see an empty query.
 */
export function parseQuery(query: string, start: i32, end: i32, wanted: string[], maxPairs: i32): ListQuery {
  const parsed = new ListQuery();
  let pairs = start < end ? 1 : 0;
  for (let i = start; i < end; i++) if (query.charCodeAt(i) == 0x26) pairs++;
  if (pairs > maxPairs) {
    parsed.tooManyPairs = true;
    return parsed;
  }
  let at = start;
  while (at < end) {
    let pairEnd = query.indexOf("&", at);
    if (pairEnd < 0 || pairEnd > end) pairEnd = end;
    const pairStart = at;
    at = pairEnd + 1;
    if (pairEnd == pairStart) continue;
    let semicolon = false;
    let eq = -1;
    for (let i = pairStart; i < pairEnd; i++) {
      const c = query.charCodeAt(i);
      if (c == 0x3b) semicolon = true;
      else if (c == 0x3d && eq < 0) eq = i;
    }
    if (semicolon) continue;
    const keyEnd = eq < 0 ? pairEnd : eq;
    const key = unescape(query, pairStart, keyEnd, true);
    if (key.badEscape) continue;
    const value = eq < 0 ? new Unescaped() : unescape(query, eq + 1, pairEnd, true);
    if (value.badEscape) continue;
    if (key.notUtf8 || !wanted.includes(key.text) || parsed.has(key.text)) continue;
    parsed.keys.push(key.text);
    parsed.values.push(value.notUtf8 ? "\uFFFD" : value.text);
    parsed.utf8.push(!value.notUtf8);
  }
  return parsed;
}
