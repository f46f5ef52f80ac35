// A JSON document reader/writer for request bodies that must stay byte for
// byte what the client sent except where a name is mapped:
//   - the whole text is validated once (strict RFC 8259, iteratively: no
//     recursion, so nesting depth cannot overflow the stack);
//   - containers are opened lazily, one level at a time, only where the
//     rewriter looks; everything else is a span of the source;
//   - numbers, whitespace, key order and string escapes of untouched values
//     are copied from the source; a replaced value or an added member is the
//     only new text.
// Keys are matched decoded and case-sensitively, and every duplicate of a
// key is visited, as kube-apiserver's decoder (sigs.k8s.io/json, last
// duplicate wins) could read any of them.
import { TextBuffer } from "../gateway/text-buffer";
import { jsonString } from "../gateway/json";

export const enum JsonKind {
  Null,
  Bool,
  Number,
  String,
  Array,
  Object,
}

export class JsonNode {
  /** Keys of an opened object (decoded); empty for arrays. */
  keys: string[] = [];
  /** Members (objects) or items (arrays), once opened. */
  children: JsonNode[] = [];
  opened: bool = false;
  /** New text for this value; null keeps the source span. */
  replacement: string | null = null;
  /** Members added to an object: raw key text and raw value text. */
  addedKeys: string[] = [];
  addedValues: string[] = [];

  constructor(
    public doc: JsonDocument,
    public kind: JsonKind,
    public start: i32,
    public end: i32,
  ) {}

  get isObject(): bool {
    return this.kind == JsonKind.Object;
  }

  get isArray(): bool {
    return this.kind == JsonKind.Array;
  }

  get isString(): bool {
    return this.kind == JsonKind.String;
  }

  get isNull(): bool {
    return this.kind == JsonKind.Null;
  }

  /** The decoded value of a string node ("" for other kinds). */
  text(): string {
    if (this.kind != JsonKind.String) return "";
    return decodeString(this.doc.source, this.start, this.end);
  }

  private open(): void {
    if (this.opened) return;
    this.opened = true;
    if (this.kind == JsonKind.Object) openObject(this);
    else if (this.kind == JsonKind.Array) openArray(this);
  }

  /** Every value of `key` in this object (duplicates included), in source order. */
  all(key: string): JsonNode[] {
    const found = new Array<JsonNode>();
    if (this.kind != JsonKind.Object || this.replacement !== null) return found;
    this.open();
    for (let i = 0; i < this.keys.length; i++) if (this.keys[i] == key) found.push(this.children[i]);
    return found;
  }

  /** The value of `key` the apiserver reads (the last duplicate), or null. */
  get(key: string): JsonNode | null {
    const found = this.all(key);
    return found.length == 0 ? null : found[found.length - 1];
  }

  has(key: string): bool {
    return this.all(key).length > 0;
  }

  /** Items of an array (empty for other kinds). */
  items(): JsonNode[] {
    if (this.kind != JsonKind.Array || this.replacement !== null) return new Array<JsonNode>();
    this.open();
    return this.children;
  }

  /** Keys of an object, decoded, in source order. */
  memberKeys(): string[] {
    if (this.kind != JsonKind.Object || this.replacement !== null) return new Array<string>();
    this.open();
    return this.keys;
  }

  /** Members of an object, in the order of memberKeys(). */
  memberValues(): JsonNode[] {
    if (this.kind != JsonKind.Object || this.replacement !== null) return new Array<JsonNode>();
    this.open();
    return this.children;
  }

  /** Replaces this value with a string. */
  setString(value: string): void {
    if (this.kind == JsonKind.String && this.text() == value) return;
    this.replacement = jsonString(value);
    this.kind = JsonKind.String;
    this.doc.changed = true;
  }

  /** Adds `key` with raw JSON `rawValue` (the caller checked it is absent). */
  add(key: string, rawValue: string): void {
    this.open();
    this.addedKeys.push(jsonString(key));
    this.addedValues.push(rawValue);
    this.doc.changed = true;
  }

  /** Replaces this value with raw JSON text. */
  setRaw(raw: string, kind: JsonKind): void {
    this.replacement = raw;
    this.kind = kind;
    this.doc.changed = true;
  }

  /** This value's text as it will be written. */
  toJson(): string {
    if (this.replacement !== null) return this.replacement!;
    if (!this.opened) return this.doc.source.substring(this.start, this.end);
    const out = new TextBuffer(this.end - this.start + 16);
    this.write(out);
    return out.toString();
  }

  write(out: TextBuffer): void {
    const source = this.doc.source;
    if (this.replacement !== null) {
      out.pushString(this.replacement!);
      return;
    }
    if (!this.opened) {
      out.pushRange(source, this.start, this.end);
      return;
    }
    let at = this.start;
    for (let i = 0; i < this.children.length; i++) {
      const child = this.children[i];
      out.pushRange(source, at, child.start);
      child.write(out);
      at = child.end;
    }
    if (this.addedKeys.length == 0) {
      out.pushRange(source, at, this.end);
      return;
    }
    // Added members go before the closing brace, after any whitespace the source had there.
    out.pushRange(source, at, this.end - 1);
    for (let i = 0; i < this.addedKeys.length; i++) {
      if (i > 0 || this.children.length > 0) out.pushCode(0x2c);
      out.pushString(this.addedKeys[i]);
      out.pushCode(0x3a);
      out.pushString(this.addedValues[i]);
    }
    out.pushCode(0x7d);
  }
}

export class JsonDocument {
  changed: bool = false;
  private rootNode: JsonNode | null = null;

  constructor(
    public source: string,
    private rootStart: i32,
    private rootEnd: i32,
    private rootKind: JsonKind,
  ) {}

  get root(): JsonNode {
    if (this.rootNode === null) this.rootNode = new JsonNode(this, this.rootKind, this.rootStart, this.rootEnd);
    return this.rootNode!;
  }

  /** The document's text: the source itself when nothing changed. */
  toString(): string {
    if (!this.changed) return this.source;
    const out = new TextBuffer(this.source.length + 64);
    out.pushRange(this.source, 0, this.root.start);
    this.root.write(out);
    out.pushRange(this.source, this.root.end, this.source.length);
    return out.toString();
  }
}

/** Parses `text`, or returns null with `parseError` set. */
export let parseError = "";

function isSpace(c: i32): bool {
  return c == 0x20 || c == 0x0a || c == 0x0d || c == 0x09;
}

function skipSpace(text: string, at: i32): i32 {
  while (at < text.length && isSpace(text.charCodeAt(at))) at++;
  return at;
}

function isHex(c: i32): bool {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

/** End (after the closing quote) of the string starting at `at`, or -1. */
function scanString(text: string, at: i32): i32 {
  let i = at + 1;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c == 0x22) return i + 1;
    if (c < 0x20) return -1;
    if (c == 0x5c) {
      if (i + 1 >= text.length) return -1;
      const e = text.charCodeAt(i + 1);
      if (e == 0x75) {
        if (i + 5 >= text.length) return -1;
        for (let k = 2; k < 6; k++) if (!isHex(text.charCodeAt(i + k))) return -1;
        i += 6;
        continue;
      }
      if (e != 0x22 && e != 0x5c && e != 0x2f && e != 0x62 && e != 0x66 && e != 0x6e && e != 0x72 && e != 0x74) return -1;
      i += 2;
      continue;
    }
    i++;
  }
  return -1;
}

function isDigit(c: i32): bool {
  return c >= 0x30 && c <= 0x39;
}

/** End of the number starting at `at` (RFC 8259 grammar), or -1. */
function scanNumber(text: string, at: i32): i32 {
  let i = at;
  if (i < text.length && text.charCodeAt(i) == 0x2d) i++;
  if (i >= text.length) return -1;
  if (text.charCodeAt(i) == 0x30) i++;
  else if (isDigit(text.charCodeAt(i))) while (i < text.length && isDigit(text.charCodeAt(i))) i++;
  else return -1;
  if (i < text.length && text.charCodeAt(i) == 0x2e) {
    i++;
    if (i >= text.length || !isDigit(text.charCodeAt(i))) return -1;
    while (i < text.length && isDigit(text.charCodeAt(i))) i++;
  }
  if (i < text.length && (text.charCodeAt(i) | 0x20) == 0x65) {
    i++;
    if (i < text.length && (text.charCodeAt(i) == 0x2b || text.charCodeAt(i) == 0x2d)) i++;
    if (i >= text.length || !isDigit(text.charCodeAt(i))) return -1;
    while (i < text.length && isDigit(text.charCodeAt(i))) i++;
  }
  return i;
}

function kindAt(text: string, at: i32): JsonKind {
  const c = text.charCodeAt(at);
  if (c == 0x7b) return JsonKind.Object;
  if (c == 0x5b) return JsonKind.Array;
  if (c == 0x22) return JsonKind.String;
  if (c == 0x74 || c == 0x66) return JsonKind.Bool;
  if (c == 0x6e) return JsonKind.Null;
  return JsonKind.Number;
}

/**
 * End of the (already validated) value starting at `at`. Containers are
 * skipped by counting brackets outside strings: linear, no recursion.
 */
function skipValue(text: string, at: i32): i32 {
  const c = text.charCodeAt(at);
  if (c == 0x22) return scanString(text, at);
  if (c == 0x74 || c == 0x6e) return at + 4;
  if (c == 0x66) return at + 5;
  if (c != 0x7b && c != 0x5b) return scanNumber(text, at);
  let depth = 0;
  let i = at;
  while (i < text.length) {
    const d = text.charCodeAt(i);
    if (d == 0x22) {
      i = scanString(text, i);
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

// Validation states: what the scanner expects next.
const expectValue = 0;
const expectKeyOrEnd = 1; // just after "{"
const expectKey = 2; // after ","
const expectColon = 3;
const expectCommaOrEnd = 4;
const expectValueOrEnd = 5; // just after "["

/** Validates the whole text as one JSON value; returns the root's [start, end) or sets parseError. */
function validate(text: string, span: StaticArray<i32>): bool {
  // A stack of open containers as bits in a byte array: 1 object, 0 array.
  const stack = new Array<u8>();
  let state = expectValue;
  let i = skipSpace(text, 0);
  span[0] = i;
  while (true) {
    i = skipSpace(text, i);
    if (i >= text.length) {
      parseError = "unexpected end of JSON input";
      return false;
    }
    const c = text.charCodeAt(i);
    if (state == expectColon) {
      if (c != 0x3a) break;
      i++;
      state = expectValue;
      continue;
    }
    if (state == expectCommaOrEnd) {
      const inObject = stack[stack.length - 1] == 1;
      if (c == 0x2c) {
        i++;
        state = inObject ? expectKey : expectValue;
        continue;
      }
      if ((inObject && c == 0x7d) || (!inObject && c == 0x5d)) {
        i++;
        stack.pop();
      } else break;
    } else if (state == expectKeyOrEnd || state == expectKey) {
      if (c == 0x7d && state == expectKeyOrEnd) {
        i++;
        stack.pop();
      } else if (c == 0x22) {
        i = scanString(text, i);
        if (i < 0) break;
        state = expectColon;
        continue;
      } else break;
    } else {
      // expectValue or expectValueOrEnd
      if (c == 0x5d && state == expectValueOrEnd) {
        i++;
        stack.pop();
      } else if (c == 0x7b) {
        stack.push(1);
        i++;
        state = expectKeyOrEnd;
        continue;
      } else if (c == 0x5b) {
        stack.push(0);
        i++;
        state = expectValueOrEnd;
        continue;
      } else if (c == 0x22) {
        i = scanString(text, i);
        if (i < 0) break;
      } else if (c == 0x74 && text.startsWith("true", i)) i += 4;
      else if (c == 0x66 && text.startsWith("false", i)) i += 5;
      else if (c == 0x6e && text.startsWith("null", i)) i += 4;
      else if (c == 0x2d || isDigit(c)) {
        i = scanNumber(text, i);
        if (i < 0) break;
      } else break;
    }
    // A value just ended.
    if (stack.length == 0) {
      span[1] = i;
      if (skipSpace(text, i) != text.length) {
        parseError = "invalid character after the top-level value";
        return false;
      }
      return true;
    }
    state = expectCommaOrEnd;
  }
  parseError = "invalid JSON";
  return false;
}

export function parseDocument(text: string): JsonDocument | null {
  const span = new StaticArray<i32>(2);
  if (!validate(text, span)) return null;
  return new JsonDocument(text, span[0], span[1], kindAt(text, span[0]));
}

function openObject(node: JsonNode): void {
  const text = node.doc.source;
  let i = skipSpace(text, node.start + 1);
  if (text.charCodeAt(i) == 0x7d) return;
  while (i < node.end) {
    i = skipSpace(text, i);
    const keyEnd = scanString(text, i);
    node.keys.push(decodeString(text, i, keyEnd));
    i = skipSpace(text, keyEnd) + 1; // ':'
    i = skipSpace(text, i);
    const end = skipValue(text, i);
    node.children.push(new JsonNode(node.doc, kindAt(text, i), i, end));
    i = skipSpace(text, end);
    if (text.charCodeAt(i) == 0x7d) return;
    i++; // ','
  }
}

function openArray(node: JsonNode): void {
  const text = node.doc.source;
  let i = skipSpace(text, node.start + 1);
  if (text.charCodeAt(i) == 0x5d) return;
  while (i < node.end) {
    i = skipSpace(text, i);
    const end = skipValue(text, i);
    node.children.push(new JsonNode(node.doc, kindAt(text, i), i, end));
    i = skipSpace(text, end);
    if (text.charCodeAt(i) == 0x5d) return;
    i++; // ','
  }
}

function hexValue(c: i32): i32 {
  if (c <= 0x39) return c - 0x30;
  return (c | 0x20) - 0x61 + 10;
}

/** The value of the (validated) string literal text[start, end). */
export function decodeString(text: string, start: i32, end: i32): string {
  let plain = true;
  for (let i = start + 1; i < end - 1; i++) {
    if (text.charCodeAt(i) == 0x5c) {
      plain = false;
      break;
    }
  }
  if (plain) return text.substring(start + 1, end - 1);
  const out = new TextBuffer(end - start);
  let i = start + 1;
  while (i < end - 1) {
    const c = text.charCodeAt(i);
    if (c != 0x5c) {
      out.pushCode(c);
      i++;
      continue;
    }
    const e = text.charCodeAt(i + 1);
    if (e == 0x75) {
      let v = 0;
      for (let k = 2; k < 6; k++) v = (v << 4) | hexValue(text.charCodeAt(i + k));
      out.pushCode(v);
      i += 6;
      continue;
    }
    if (e == 0x6e) out.pushCode(0x0a);
    else if (e == 0x74) out.pushCode(0x09);
    else if (e == 0x72) out.pushCode(0x0d);
    else if (e == 0x62) out.pushCode(0x08);
    else if (e == 0x66) out.pushCode(0x0c);
    else out.pushCode(e);
    i += 2;
  }
  return out.toString();
}
