// A JSON tree for the small subtrees the response transducer buffers
// (an object's metadata, RBAC subjects, a Status's details, a discovery
// group). Scalars keep their raw text, so whatever the filter does not
// change goes back to the client byte for byte (numbers keep their exact
// digits, strings their escapes); only strings it rewrites are re-encoded.
import { TextBuffer } from "../gateway/text-buffer";

export const enum DomKind {
  Null,
  Bool,
  Number,
  String,
  Array,
  Object,
}

/** Deeper captured subtrees are refused (fail closed) rather than risk the wasm stack. */
export const maxDomDepth = 256;

export class DomNode {
  kind: DomKind = DomKind.Null;
  /** The captured text this node was parsed from, and its span there. */
  source: string = "";
  start: i32 = 0;
  end: i32 = 0;
  depth: i32 = 0;
  parent: DomNode | null = null;
  /** This node or something below it changed: it is written anew, not copied. */
  dirty: bool = false;
  private replacedRaw: string | null = null;
  private decoded: string | null = null;
  private memberKeys: string[] | null = null;
  private memberValues: DomNode[] | null = null;

  static ofString(text: string): DomNode {
    const node = new DomNode();
    node.kind = DomKind.String;
    node.decoded = text;
    node.replacedRaw = encodeString(text);
    node.dirty = true;
    return node;
  }

  /** Objects: member names, in order (the object is read on first use). */
  get keys(): string[] {
    this.open();
    return this.memberKeys!;
  }

  /** Objects: member values (parallel to keys); arrays: elements. */
  get values(): DomNode[] {
    this.open();
    return this.memberValues!;
  }

  /**
   * Reads one level of a container: its members become nodes whose own
   * contents stay unread spans until asked for, so a subtree nobody looks
   * at costs a scan, not a tree.
   */
  private open(): void {
    if (this.memberValues !== null) return;
    const keys = new Array<string>();
    const values = new Array<DomNode>();
    this.memberKeys = keys;
    this.memberValues = values;
    if (this.kind != DomKind.Object && this.kind != DomKind.Array) return;
    if (this.depth >= maxDomDepth) {
      domMalformed = true;
      return;
    }
    const source = this.source;
    const isObject = this.kind == DomKind.Object;
    const close = isObject ? 0x7d : 0x5d;
    let i = skipSpace(source, this.start + 1, this.end);
    if (i < this.end && codeAt(source, i) == close) return;
    while (i < this.end) {
      if (isObject) {
        if (codeAt(source, i) != 0x22) break;
        const keyEnd = skipString(source, i, this.end);
        if (keyEnd < 0) break;
        keys.push(decodeStringSpan(source, i, keyEnd));
        i = skipSpace(source, keyEnd, this.end);
        if (i >= this.end || codeAt(source, i) != 0x3a) break;
        i = skipSpace(source, i + 1, this.end);
      }
      const valueEnd = skipValue(source, i, this.end);
      if (valueEnd < 0) break;
      const child = new DomNode();
      child.kind = kindAt(source, i);
      child.source = source;
      child.start = i;
      child.end = valueEnd;
      child.depth = this.depth + 1;
      child.parent = this;
      values.push(child);
      i = skipSpace(source, valueEnd, this.end);
      if (i >= this.end) break;
      const c = codeAt(source, i);
      if (c == close && i == this.end - 1) return;
      if (c != 0x2c) break;
      i = skipSpace(source, i + 1, this.end);
    }
    domMalformed = true;
  }

  /** Scalars: the JSON text (strings with quotes and escapes). */
  get raw(): string {
    const replaced = this.replacedRaw;
    if (replaced !== null) return replaced;
    return this.source.substring(this.start, this.end);
  }

  /** Strings: the decoded value ("" for other kinds). */
  get text(): string {
    if (this.kind != DomKind.String) return "";
    const cached = this.decoded;
    if (cached !== null) return cached;
    const text = decodeStringSpan(this.source, this.start, this.end);
    this.decoded = text;
    return text;
  }

  get isObject(): bool {
    return this.kind == DomKind.Object;
  }

  get isArray(): bool {
    return this.kind == DomKind.Array;
  }

  get isString(): bool {
    return this.kind == DomKind.String;
  }

  /** Marks this node and its ancestors as changed. */
  touch(): void {
    let node: DomNode | null = this;
    while (node !== null && !node.dirty) {
      node.dirty = true;
      node = node.parent;
    }
  }

  indexOf(key: string): i32 {
    const keys = this.keys;
    for (let i = 0; i < keys.length; i++) if (keys[i] == key) return i;
    return -1;
  }

  get(key: string): DomNode | null {
    if (this.kind != DomKind.Object) return null;
    const at = this.indexOf(key);
    return at < 0 ? null : this.values[at];
  }

  /** The member's string value, or null when absent or not a string. */
  getString(key: string): string | null {
    const node = this.get(key);
    return node !== null && node.kind == DomKind.String ? node.text : null;
  }

  setString(key: string, text: string): void {
    const value = DomNode.ofString(text);
    value.parent = this;
    const at = this.indexOf(key);
    if (at < 0) {
      this.keys.push(key);
      this.values.push(value);
    } else this.values[at] = value;
    this.dirty = false;
    this.touch();
  }

  remove(key: string): void {
    const at = this.indexOf(key);
    if (at >= 0) this.removeAt(at);
  }

  /** Removes member (objects) or element (arrays) `at`. */
  removeAt(at: i32): void {
    if (this.kind == DomKind.Object) this.keys.splice(at, 1);
    this.values.splice(at, 1);
    this.dirty = false;
    this.touch();
  }

  /** Replaces an array's elements (a filtered copy of them). */
  setValues(values: DomNode[]): void {
    if (values.length == this.values.length) return;
    this.memberValues = values;
    this.dirty = false;
    this.touch();
  }

  /** Replaces this string's value (keeps the source text when unchanged). */
  replaceText(text: string): void {
    if (text == this.text) return;
    this.decoded = text;
    this.replacedRaw = encodeString(text);
    this.dirty = false;
    this.touch();
  }
}

/** Set when a container read on demand turned out malformed (or too deep): the caller fails closed. */
export let domMalformed = false;

/**
 * The UTF-16 unit at `at`, unchecked: every caller has already bounded `at`
 * by a span end within the text, and String#charCodeAt's own bounds check
 * (an out-of-line call per character) was the largest cost of reading a
 * captured metadata subtree.
 */
@inline
function codeAt(text: string, at: i32): i32 {
  return <i32>load<u16>(changetype<usize>(text) + (<usize>at << 1));
}

function skipSpace(source: string, at: i32, end: i32): i32 {
  while (at < end) {
    const c = codeAt(source, at);
    if (c != 0x20 && c != 0x0a && c != 0x0d && c != 0x09) return at;
    at++;
  }
  return at;
}

function kindAt(source: string, at: i32): DomKind {
  const c = codeAt(source, at);
  if (c == 0x7b) return DomKind.Object;
  if (c == 0x5b) return DomKind.Array;
  if (c == 0x22) return DomKind.String;
  if (c == 0x6e) return DomKind.Null;
  if (c == 0x74 || c == 0x66) return DomKind.Bool;
  return DomKind.Number;
}

/** End of the string literal at `at` (after its closing quote), or -1. */
function skipString(source: string, at: i32, end: i32): i32 {
  let i = at + 1;
  while (i < end) {
    const c = codeAt(source, i);
    if (c == 0x22) return i + 1;
    if (c < 0x20) return -1;
    if (c == 0x5c) {
      const e = i + 1 < end ? codeAt(source, i + 1) : -1;
      if (e == 0x75) {
        if (hex4(source, i + 2) < 0) return -1;
        i += 6;
      } else if (e == 0x6e || e == 0x74 || e == 0x72 || e == 0x62 || e == 0x66 || e == 0x22 || e == 0x5c || e == 0x2f) i += 2;
      else return -1;
    } else i++;
  }
  return -1;
}

/** End of the JSON value at `at`, or -1: containers are skipped by counting brackets outside strings (no recursion). */
function skipValue(source: string, at: i32, end: i32): i32 {
  if (at >= end) return -1;
  const c = codeAt(source, at);
  if (c == 0x22) return skipString(source, at, end);
  if (c == 0x7b || c == 0x5b) {
    let depth = 0;
    let i = at;
    while (i < end) {
      const d = codeAt(source, i);
      if (d == 0x22) {
        i = skipString(source, i, end);
        if (i < 0) return -1;
        continue;
      }
      if (d == 0x7b || d == 0x5b) depth++;
      else if (d == 0x7d || d == 0x5d) {
        depth--;
        if (depth == 0) return i + 1;
      }
      i++;
    }
    return -1;
  }
  let i = at;
  while (i < end) {
    const d = codeAt(source, i);
    const ok = (d >= 0x30 && d <= 0x39) || (d >= 0x61 && d <= 0x7a) || d == 0x2d || d == 0x2b || d == 0x2e || d == 0x45;
    if (!ok) break;
    i++;
  }
  if (i == at) return -1;
  const length = i - at;
  if (c == 0x6e) return length == 4 && source.startsWith("null", at) ? i : -1;
  if (c == 0x74) return length == 4 && source.startsWith("true", at) ? i : -1;
  if (c == 0x66) return length == 5 && source.startsWith("false", at) ? i : -1;
  return isNumber(source, at, i) ? i : -1;
}

/** Decodes the JSON string literal at source[start, end) (quotes included). */
function decodeStringSpan(source: string, start: i32, end: i32): string {
  let plain = true;
  for (let i = start + 1; i < end - 1; i++) {
    if (codeAt(source, i) == 0x5c) {
      plain = false;
      break;
    }
  }
  if (plain) return source.substring(start + 1, end - 1);
  const out = new TextBuffer(end - start);
  let i = start + 1;
  while (i < end - 1) {
    const c = codeAt(source, i++);
    if (c != 0x5c) {
      out.pushCode(c);
      continue;
    }
    const e = codeAt(source, i++);
    if (e == 0x6e) out.pushCode(0x0a);
    else if (e == 0x74) out.pushCode(0x09);
    else if (e == 0x72) out.pushCode(0x0d);
    else if (e == 0x62) out.pushCode(0x08);
    else if (e == 0x66) out.pushCode(0x0c);
    else if (e == 0x75) {
      out.pushCode(hex4(source, i));
      i += 4;
    } else out.pushCode(e);
  }
  return out.toString();
}

function hex4(text: string, at: i32): i32 {
  if (at + 4 > text.length) return -1;
  let code = 0;
  for (let i = 0; i < 4; i++) {
    const c = text.charCodeAt(at + i);
    let digit = -1;
    if (c >= 0x30 && c <= 0x39) digit = c - 0x30;
    else if (c >= 0x61 && c <= 0x66) digit = c - 0x61 + 10;
    else if (c >= 0x41 && c <= 0x46) digit = c - 0x41 + 10;
    if (digit < 0) return -1;
    code = (code << 4) | digit;
  }
  return code;
}

function isNumber(source: string, start: i32, end: i32): bool {
  for (let i = start; i < end; i++) {
    const c = codeAt(source, i);
    if (!((c >= 0x30 && c <= 0x39) || c == 0x2d || c == 0x2b || c == 0x2e || c == 0x65 || c == 0x45)) return false;
  }
  return true;
}

/**
 * One JSON value (surrounding whitespace allowed), read lazily; null when
 * its extent is malformed. Containers are checked when opened: callers
 * clear domMalformed before and fail closed when it is set after.
 */
export function parseDom(source: string): DomNode | null {
  domMalformed = false;
  const start = skipSpace(source, 0, source.length);
  const end = skipValue(source, start, source.length);
  if (end < 0 || skipSpace(source, end, source.length) != source.length) return null;
  const node = new DomNode();
  node.kind = kindAt(source, start);
  node.source = source;
  node.start = start;
  node.end = end;
  return node;
}

const hexDigits = "0123456789abcdef";

function isPlainCode(c: i32): bool {
  return c >= 0x20 && c != 0x22 && c != 0x5c && c != 0x3c && c != 0x3e && c != 0x26 && c != 0x2028 && c != 0x2029;
}

/** Whether encodeString(text) is text in quotes (most keys): it can be written without building the literal. */
function isPlainText(text: string): bool {
  for (let i = 0; i < text.length; i++) if (!isPlainCode(codeAt(text, i))) return false;
  return true;
}

/** A JSON string literal, escaped as Go's encoding/json does (HTML-safe). */
export function encodeString(text: string): string {
  const out = new TextBuffer(text.length + 2);
  out.pushCode(0x22);
  let run = 0;
  for (let i = 0; i < text.length; i++) {
    const c = codeAt(text, i);
    if (isPlainCode(c)) continue;
    out.pushRange(text, run, i);
    run = i + 1;
    if (c == 0x22) out.pushString("\\\"");
    else if (c == 0x5c) out.pushString("\\\\");
    else if (c == 0x0a) out.pushString("\\n");
    else if (c == 0x0d) out.pushString("\\r");
    else if (c == 0x09) out.pushString("\\t");
    else {
      out.pushString("\\u");
      out.pushCode(hexDigits.charCodeAt((c >> 12) & 15));
      out.pushCode(hexDigits.charCodeAt((c >> 8) & 15));
      out.pushCode(hexDigits.charCodeAt((c >> 4) & 15));
      out.pushCode(hexDigits.charCodeAt(c & 15));
    }
  }
  out.pushRange(text, run, text.length);
  out.pushCode(0x22);
  return out.toString();
}

function write(node: DomNode, out: TextBuffer): void {
  // What did not change is copied from the captured text as it came.
  if (!node.dirty) {
    out.pushRange(node.source, node.start, node.end);
    return;
  }
  if (node.kind == DomKind.Object) {
    out.pushCode(0x7b);
    for (let i = 0; i < node.keys.length; i++) {
      if (i > 0) out.pushCode(0x2c);
      const key = node.keys[i];
      if (isPlainText(key)) {
        out.pushCode(0x22);
        out.pushString(key);
        out.pushCode(0x22);
      } else out.pushString(encodeString(key));
      out.pushCode(0x3a);
      write(node.values[i], out);
    }
    out.pushCode(0x7d);
  } else if (node.kind == DomKind.Array) {
    out.pushCode(0x5b);
    for (let i = 0; i < node.values.length; i++) {
      if (i > 0) out.pushCode(0x2c);
      write(node.values[i], out);
    }
    out.pushCode(0x5d);
  } else out.pushString(node.raw);
}

/** Compact JSON text of `node` (the form kube-apiserver writes). */
export function serializeDom(node: DomNode): string {
  // Sized from the captured span: the rewritten text is about as long
  // (names lose their prefix, the tenant label goes), so it rarely regrows.
  const out = new TextBuffer(node.end - node.start + 64);
  write(node, out);
  return out.toString();
}
