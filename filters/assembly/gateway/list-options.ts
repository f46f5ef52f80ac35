// The list options of a collection request (list, watch, deletecollection)
// as kube-apiserver decodes them (apimachinery's ListOptions from url.Values):
//   - watch: the first value; "0" or strings.EqualFold(v, "false") is false,
//     anything else (even empty) true. EqualFold is Unicode simple folding,
//     so "falſe" (U+017F, long s) is false too;
//   - limit, timeoutSeconds: strconv.ParseInt(v, 10, 64), an error fails the
//     decoding;
//   - fieldSelector: fields.ParseSelector; the name a selector pins is the
//     metadata.name term that sorts first (Go sorts the raw terms);
//   - labelSelector: labels.Parse.
// When the decoding fails the apiserver answers every list, watch and
// deletecollection 400 (its handlers decode the same query again), so the
// gateway answers 400 too instead of classifying a request that cannot run.
import { ListQuery } from "./go-url";
import { TextBuffer } from "./text-buffer";

/** strconv.ParseInt(text, 10, 64) succeeds. */
export function isGoInt64(text: string): bool {
  let i = 0;
  let negative = false;
  if (text.length > 0 && (text.charCodeAt(0) == 0x2b || text.charCodeAt(0) == 0x2d)) {
    negative = text.charCodeAt(0) == 0x2d;
    i = 1;
  }
  if (i == text.length) return false;
  // Skipping leading zeros keeps the range check on at most 19 digits.
  while (i < text.length - 1 && text.charCodeAt(i) == 0x30) i++;
  const digits = text.length - i;
  for (let j = i; j < text.length; j++) {
    const c = text.charCodeAt(j);
    if (c < 0x30 || c > 0x39) return false;
  }
  if (digits < 19) return true;
  if (digits > 19) return false;
  const limit = negative ? "9223372036854775808" : "9223372036854775807";
  return text.substring(i) <= limit;
}

/** strings.EqualFold(text, "false") for a UTF-16 string of valid UTF-8 origin. */
export function equalFoldFalse(text: string): bool {
  if (text.length != 5) return false;
  const word = "false";
  for (let i = 0; i < 5; i++) {
    const c = text.charCodeAt(i);
    const want = word.charCodeAt(i);
    if (c == want || c == want - 0x20) continue;
    // The one non-ASCII rune that folds to a letter of "false": U+017F to s.
    if (want == 0x73 && c == 0x17f) continue;
    return false;
  }
  return true;
}

/** Convert_Slice_string_To_bool on the first value. */
export function goQueryBool(value: string): bool {
  return !(value == "0" || equalFoldFalse(value));
}

/** What fields.ParseSelector makes of a selector. */
export class FieldSelector {
  failed: bool = false;
  /** RequiresExactMatch("metadata.name"). */
  name: string | null = null;
  /** RequiresExactMatch("metadata.namespace"). */
  namespace: string | null = null;
}

/** a[aStart, aEnd) < b[bStart, bEnd) in byte (here: UTF-16 code unit of ASCII-or-valid text) order. */
function rangeLess(text: string, aStart: i32, aEnd: i32, bStart: i32, bEnd: i32): bool {
  const aLength = aEnd - aStart;
  const bLength = bEnd - bStart;
  const n = aLength < bLength ? aLength : bLength;
  for (let i = 0; i < n; i++) {
    const a = text.charCodeAt(aStart + i);
    const b = text.charCodeAt(bStart + i);
    if (a != b) return utf8Order(a) < utf8Order(b);
  }
  return aLength < bLength;
}

/** UTF-16 code units sort like UTF-8 bytes except surrogates, which stand for code points above U+FFFF. */
function utf8Order(unit: i32): i32 {
  return unit >= 0xd800 && unit <= 0xdfff ? unit + 0x10000 : unit;
}

/**
 * Go's UnescapeValue on text[start, end): `\\`, `\,`, `\=` are the only
 * escapes; a bare "," or "=" or any other escape is an error (null).
 */
function unescapeSelectorValue(text: string, start: i32, end: i32): string | null {
  let plain = true;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c == 0x5c || c == 0x2c || c == 0x3d) {
      plain = false;
      break;
    }
  }
  if (plain) return text.substring(start, end);
  // One buffer, not a string per escape: thousands of small strings made the collector's work grow with their square.
  const out = new TextBuffer(end - start);
  let runStart = start;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c == 0x2c || c == 0x3d) return null;
    if (c != 0x5c) continue;
    if (i + 1 >= end) return null;
    const next = text.charCodeAt(i + 1);
    if (next != 0x5c && next != 0x2c && next != 0x3d) return null;
    out.pushRange(text, runStart, i);
    runStart = i + 1;
    i++;
  }
  out.pushRange(text, runStart, end);
  return out.toString();
}

/** Checks one term text[start, end); updates the pinned name/namespace with the term that sorts first. */
class TermScan {
  nameStart: i32 = -1;
  nameEnd: i32 = -1;
  namespaceStart: i32 = -1;
  namespaceEnd: i32 = -1;
}

/** fields.ParseSelector(text). Linear: one pass to split, one per term to find the operator. */
export function parseFieldSelector(text: string): FieldSelector {
  const result = new FieldSelector();
  const scan = new TermScan();
  let names = new Array<string>(0);
  let namespaces = new Array<string>(0);
  let termStart = 0;
  let escaped = false;
  for (let i = 0; i <= text.length; i++) {
    if (i < text.length) {
      const c = text.charCodeAt(i);
      if (escaped) {
        escaped = false;
        continue;
      }
      if (c == 0x5c) {
        escaped = true;
        continue;
      }
      if (c != 0x2c) continue;
    }
    const termEnd = i;
    const start = termStart;
    termStart = i + 1;
    if (termEnd == start) continue;
    // The first position where "!=", "==" or "=" starts, tried in that order.
    let op = -1;
    let opLength = 0;
    let negated = false;
    for (let j = start; j < termEnd; j++) {
      const c = text.charCodeAt(j);
      const next = j + 1 < termEnd ? text.charCodeAt(j + 1) : 0;
      if (c == 0x21 && next == 0x3d) {
        op = j;
        opLength = 2;
        negated = true;
        break;
      }
      if (c == 0x3d) {
        op = j;
        opLength = next == 0x3d ? 2 : 1;
        break;
      }
    }
    if (op < 0) {
      result.failed = true;
      return result;
    }
    const value = unescapeSelectorValue(text, op + opLength, termEnd);
    if (value === null) {
      result.failed = true;
      return result;
    }
    if (negated) continue;
    const field = text.substring(start, op);
    if (field == "metadata.name") {
      if (scan.nameStart < 0 || rangeLess(text, start, termEnd, scan.nameStart, scan.nameEnd)) {
        scan.nameStart = start;
        scan.nameEnd = termEnd;
        names = [value!];
      }
    } else if (field == "metadata.namespace") {
      if (scan.namespaceStart < 0 || rangeLess(text, start, termEnd, scan.namespaceStart, scan.namespaceEnd)) {
        scan.namespaceStart = start;
        scan.namespaceEnd = termEnd;
        namespaces = [value!];
      }
    }
  }
  if (names.length > 0) result.name = names[0];
  if (namespaces.length > 0) result.namespace = namespaces[0];
  return result;
}

function isAlphanumeric(c: i32): bool {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

/** IsValidLabelValue / the name part of IsQualifiedName: ([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9], at most 63. */
function isLabelName(text: string, allowEmpty: bool): bool {
  if (text.length == 0) return allowEmpty;
  if (text.length > 63) return false;
  if (!isAlphanumeric(text.charCodeAt(0)) || !isAlphanumeric(text.charCodeAt(text.length - 1))) return false;
  for (let i = 1; i < text.length - 1; i++) {
    const c = text.charCodeAt(i);
    if (!isAlphanumeric(c) && c != 0x2d && c != 0x5f && c != 0x2e) return false;
  }
  return true;
}

/** IsDNS1123Subdomain. */
function isDnsSubdomain(text: string): bool {
  if (text.length == 0 || text.length > 253) return false;
  const labels = text.split(".");
  for (let i = 0; i < labels.length; i++) {
    const label = labels[i];
    if (label.length == 0 || label.length > 63) return false;
    for (let j = 0; j < label.length; j++) {
      const c = label.charCodeAt(j);
      const lowerAlnum = (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x7a);
      if (!lowerAlnum && !(c == 0x2d && j > 0 && j < label.length - 1)) return false;
    }
  }
  return true;
}

function isLabelKey(text: string): bool {
  const slash = text.indexOf("/");
  if (slash < 0) return isLabelName(text, false);
  if (text.indexOf("/", slash + 1) >= 0) return false;
  return isDnsSubdomain(text.substring(0, slash)) && isLabelName(text.substring(slash + 1), false);
}

/**
 * Whether labels.Parse certainly accepts the selector. Only the forms kubectl
 * writes for `-l` without spaces or sets are recognised (`k`, `!k`, `k=v`,
 * `k==v`, `k!=v`, comma-separated); anything else is "not sure", never
 * "valid": the caller treats it as valid, which is safe because an invalid
 * label selector makes the apiserver answer 400 before any object is read.
 */
export function isCertainlyValidLabelSelector(text: string): bool {
  if (text.length == 0) return true;
  const terms = text.split(",");
  for (let i = 0; i < terms.length; i++) {
    const term = terms[i];
    if (term.startsWith("!")) {
      if (!isLabelKey(term.substring(1))) return false;
      continue;
    }
    const ne = term.indexOf("!=");
    const eq = term.indexOf("=");
    if (ne < 0 && eq < 0) {
      if (!isLabelKey(term)) return false;
      continue;
    }
    const keyEnd = ne >= 0 && (eq < 0 || ne < eq) ? ne : eq;
    let valueStart = keyEnd + (ne == keyEnd ? 2 : 1);
    if (ne != keyEnd && valueStart < term.length && term.charCodeAt(valueStart) == 0x3d) valueStart++;
    if (!isLabelKey(term.substring(0, keyEnd)) || !isLabelName(term.substring(valueStart), true)) return false;
  }
  return true;
}

/** The list options that decide a collection request's classification. */
export class ListOptions {
  /** Decoding fails: the apiserver answers 400; the reason for the client. */
  failure: string = "";
  watch: bool = false;
  /**
   * The label selector is not one the gateway can vouch for. If labels.Parse
   * fails, the apiserver classifies without the field selector's name and
   * with strings.ToLower for watch (then answers 400), so a classification
   * that depends on either is not sure.
   */
  labelsUncertain: bool = false;
  /** The watch value is false to EqualFold but not to ToLower ("falſe"). */
  watchFoldOnly: bool = false;
  fields: FieldSelector = new FieldSelector();
}

export const listOptionKeys: string[] = ["watch", "limit", "timeoutSeconds", "fieldSelector", "labelSelector"];

export function decodeListOptions(query: ListQuery): ListOptions {
  const options = new ListOptions();
  const watch = query.get("watch");
  options.watch = watch !== null && goQueryBool(watch);
  options.watchFoldOnly = watch !== null && !options.watch && watch != "0" && watch.toLowerCase() != "false";
  const limit = query.get("limit");
  if (limit !== null && !isGoInt64(limit)) options.failure = "limit: not an integer";
  const timeout = query.get("timeoutSeconds");
  if (timeout !== null && !isGoInt64(timeout)) options.failure = "timeoutSeconds: not an integer";
  const labels = query.get("labelSelector");
  options.labelsUncertain = labels !== null && (!query.isUtf8("labelSelector") || !isCertainlyValidLabelSelector(labels));
  const fields = query.get("fieldSelector");
  if (fields !== null) {
    if (!query.isUtf8("fieldSelector")) {
      options.failure = "fieldSelector: not UTF-8";
    } else {
      options.fields = parseFieldSelector(fields);
      if (options.fields.failed) options.failure = "fieldSelector: invalid selector";
    }
  }
  return options;
}
