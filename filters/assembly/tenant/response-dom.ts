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
  /** Scalars: the JSON text as received (strings with quotes and escapes). */
  raw: string = "null";
  /** Strings: the decoded value. */
  text: string = "";
  /** Objects: member names, in order. */
  keys: string[] = [];
  /** Objects: member values (parallel to keys); arrays: elements. */
  values: DomNode[] = [];

  static ofString(text: string): DomNode {
    const node = new DomNode();
    node.kind = DomKind.String;
    node.text = text;
    node.raw = encodeString(text);
    return node;
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

  indexOf(key: string): i32 {
    for (let i = 0; i < this.keys.length; i++) if (this.keys[i] == key) return i;
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
    const at = this.indexOf(key);
    if (at < 0) {
      this.keys.push(key);
      this.values.push(DomNode.ofString(text));
    } else this.values[at] = DomNode.ofString(text);
  }

  remove(key: string): void {
    const at = this.indexOf(key);
    if (at < 0) return;
    this.keys.splice(at, 1);
    this.values.splice(at, 1);
  }

  /** Replaces this string's value (keeps the raw text when unchanged). */
  replaceText(text: string): void {
    if (text == this.text) return;
    this.text = text;
    this.raw = encodeString(text);
  }
}

class DomParser {
  pos: i32 = 0;
  failed: bool = false;
  depth: i32 = 0;

  constructor(private source: string) {}

  private peek(): i32 {
    return this.pos < this.source.length ? this.source.charCodeAt(this.pos) : -1;
  }

  private space(): void {
    while (this.pos < this.source.length) {
      const c = this.source.charCodeAt(this.pos);
      if (c != 0x20 && c != 0x0a && c != 0x0d && c != 0x09) return;
      this.pos++;
    }
  }

  private fail(): DomNode {
    this.failed = true;
    return new DomNode();
  }

  value(): DomNode {
    if (++this.depth > maxDomDepth) return this.fail();
    this.space();
    const c = this.peek();
    let node: DomNode;
    if (c == 0x7b) node = this.object();
    else if (c == 0x5b) node = this.array();
    else if (c == 0x22) node = this.string();
    else node = this.scalar();
    this.depth--;
    return node;
  }

  private scalar(): DomNode {
    const start = this.pos;
    while (this.pos < this.source.length) {
      const c = this.source.charCodeAt(this.pos);
      const ok = (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x7a) || c == 0x2d || c == 0x2b || c == 0x2e || c == 0x45;
      if (!ok) break;
      this.pos++;
    }
    const raw = this.source.substring(start, this.pos);
    const node = new DomNode();
    node.raw = raw;
    if (raw == "null") node.kind = DomKind.Null;
    else if (raw == "true" || raw == "false") node.kind = DomKind.Bool;
    else if (raw.length > 0 && isNumber(raw)) node.kind = DomKind.Number;
    else return this.fail();
    return node;
  }

  private string(): DomNode {
    const start = this.pos;
    this.pos++;
    const out = new TextBuffer();
    let run = this.pos;
    while (this.pos < this.source.length) {
      const c = this.source.charCodeAt(this.pos);
      if (c == 0x22) {
        out.pushRange(this.source, run, this.pos);
        this.pos++;
        const node = new DomNode();
        node.kind = DomKind.String;
        node.raw = this.source.substring(start, this.pos);
        node.text = out.toString();
        return node;
      }
      if (c < 0x20) return this.fail();
      if (c != 0x5c) {
        this.pos++;
        continue;
      }
      out.pushRange(this.source, run, this.pos);
      this.pos++;
      const e = this.peek();
      this.pos++;
      if (e == 0x6e) out.pushCode(0x0a);
      else if (e == 0x74) out.pushCode(0x09);
      else if (e == 0x72) out.pushCode(0x0d);
      else if (e == 0x62) out.pushCode(0x08);
      else if (e == 0x66) out.pushCode(0x0c);
      else if (e == 0x22 || e == 0x5c || e == 0x2f) out.pushCode(e);
      else if (e == 0x75) {
        const code = hex4(this.source, this.pos);
        if (code < 0) return this.fail();
        out.pushCode(code);
        this.pos += 4;
      } else return this.fail();
      run = this.pos;
    }
    return this.fail();
  }

  private array(): DomNode {
    const node = new DomNode();
    node.kind = DomKind.Array;
    this.pos++;
    this.space();
    if (this.peek() == 0x5d) {
      this.pos++;
      return node;
    }
    while (!this.failed) {
      node.values.push(this.value());
      this.space();
      const c = this.peek();
      this.pos++;
      if (c == 0x5d) return node;
      if (c != 0x2c) return this.fail();
    }
    return node;
  }

  private object(): DomNode {
    const node = new DomNode();
    node.kind = DomKind.Object;
    this.pos++;
    this.space();
    if (this.peek() == 0x7d) {
      this.pos++;
      return node;
    }
    while (!this.failed) {
      this.space();
      if (this.peek() != 0x22) return this.fail();
      const key = this.string();
      if (this.failed) return node;
      this.space();
      if (this.peek() != 0x3a) return this.fail();
      this.pos++;
      node.keys.push(key.text);
      node.values.push(this.value());
      this.space();
      const c = this.peek();
      this.pos++;
      if (c == 0x7d) return node;
      if (c != 0x2c) return this.fail();
    }
    return node;
  }
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

function isNumber(raw: string): bool {
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (!((c >= 0x30 && c <= 0x39) || c == 0x2d || c == 0x2b || c == 0x2e || c == 0x65 || c == 0x45)) return false;
  }
  return true;
}

/** Parses one JSON value (surrounding whitespace allowed); null when malformed or deeper than maxDomDepth. */
export function parseDom(source: string): DomNode | null {
  const parser = new DomParser(source);
  const node = parser.value();
  if (parser.failed) return null;
  // Trailing whitespace only.
  for (let i = parser.pos; i < source.length; i++) {
    const c = source.charCodeAt(i);
    if (c != 0x20 && c != 0x0a && c != 0x0d && c != 0x09) return null;
  }
  return node;
}

const hexDigits = "0123456789abcdef";

/** A JSON string literal, escaped as Go's encoding/json does (HTML-safe). */
export function encodeString(text: string): string {
  const out = new TextBuffer(text.length + 2);
  out.pushCode(0x22);
  let run = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const plain = c >= 0x20 && c != 0x22 && c != 0x5c && c != 0x3c && c != 0x3e && c != 0x26 && c != 0x2028 && c != 0x2029;
    if (plain) continue;
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
  if (node.kind == DomKind.Object) {
    out.pushCode(0x7b);
    for (let i = 0; i < node.keys.length; i++) {
      if (i > 0) out.pushCode(0x2c);
      out.pushString(encodeString(node.keys[i]));
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
  const out = new TextBuffer(256);
  write(node, out);
  return out.toString();
}
