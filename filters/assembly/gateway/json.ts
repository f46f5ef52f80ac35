// A small JSON reader, enough for TokenReview responses. Malformed input
// yields null rather than a trap.
import { TextBuffer } from "./text-buffer";

export const enum JsonKind {
  Null,
  Bool,
  Number,
  String,
  Array,
  Object,
}

export class JsonValue {
  kind: JsonKind = JsonKind.Null;
  bool: bool = false;
  number: f64 = 0;
  text: string = "";
  items: JsonValue[] = [];
  keys: string[] = [];

  get(key: string): JsonValue | null {
    if (this.kind != JsonKind.Object) return null;
    for (let i = 0; i < this.keys.length; i++) if (this.keys[i] == key) return this.items[i];
    return null;
  }
}

class Parser {
  pos: i32 = 0;
  failed: bool = false;
  depth: i32 = 0;

  constructor(private text: string) {}

  private peek(): i32 {
    return this.pos < this.text.length ? this.text.charCodeAt(this.pos) : -1;
  }

  private skipSpace(): void {
    while (this.pos < this.text.length) {
      const c = this.text.charCodeAt(this.pos);
      if (c != 0x20 && c != 0x0a && c != 0x0d && c != 0x09) return;
      this.pos++;
    }
  }

  private fail(): JsonValue {
    this.failed = true;
    return new JsonValue();
  }

  value(): JsonValue {
    if (++this.depth > 64) return this.fail();
    this.skipSpace();
    const c = this.peek();
    let result: JsonValue;
    if (c == 0x7b) result = this.object();
    else if (c == 0x5b) result = this.array();
    else if (c == 0x22) {
      result = new JsonValue();
      result.kind = JsonKind.String;
      result.text = this.string();
    } else if (this.text.startsWith("true", this.pos)) {
      this.pos += 4;
      result = new JsonValue();
      result.kind = JsonKind.Bool;
      result.bool = true;
    } else if (this.text.startsWith("false", this.pos)) {
      this.pos += 5;
      result = new JsonValue();
      result.kind = JsonKind.Bool;
    } else if (this.text.startsWith("null", this.pos)) {
      this.pos += 4;
      result = new JsonValue();
    } else if (c == 0x2d || (c >= 0x30 && c <= 0x39)) {
      const start = this.pos;
      while (this.pos < this.text.length) {
        const d = this.text.charCodeAt(this.pos);
        if (!((d >= 0x30 && d <= 0x39) || d == 0x2d || d == 0x2b || d == 0x2e || d == 0x65 || d == 0x45)) break;
        this.pos++;
      }
      result = new JsonValue();
      result.kind = JsonKind.Number;
      result.number = parseFloat(this.text.substring(start, this.pos));
    } else {
      result = this.fail();
    }
    this.depth--;
    return result;
  }

  private string(): string {
    this.pos++; // opening quote
    const out = new TextBuffer();
    while (this.pos < this.text.length) {
      const c = this.text.charCodeAt(this.pos++);
      if (c == 0x22) return out.toString();
      if (c != 0x5c) {
        out.pushCode(c);
        continue;
      }
      if (this.pos >= this.text.length) break;
      const e = this.text.charCodeAt(this.pos++);
      if (e == 0x6e) out.pushCode(0x0a);
      else if (e == 0x74) out.pushCode(0x09);
      else if (e == 0x72) out.pushCode(0x0d);
      else if (e == 0x62) out.pushCode(0x08);
      else if (e == 0x66) out.pushCode(0x0c);
      else if (e == 0x75) {
        if (this.pos + 4 > this.text.length) break;
        out.pushCode(<i32>parseInt(this.text.substring(this.pos, this.pos + 4), 16));
        this.pos += 4;
      } else out.pushCode(e);
    }
    this.failed = true;
    return out.toString();
  }

  private array(): JsonValue {
    const result = new JsonValue();
    result.kind = JsonKind.Array;
    this.pos++;
    this.skipSpace();
    if (this.peek() == 0x5d) {
      this.pos++;
      return result;
    }
    while (!this.failed) {
      result.items.push(this.value());
      this.skipSpace();
      const c = this.peek();
      this.pos++;
      if (c == 0x5d) return result;
      if (c != 0x2c) return this.fail();
    }
    return result;
  }

  private object(): JsonValue {
    const result = new JsonValue();
    result.kind = JsonKind.Object;
    this.pos++;
    this.skipSpace();
    if (this.peek() == 0x7d) {
      this.pos++;
      return result;
    }
    while (!this.failed) {
      this.skipSpace();
      if (this.peek() != 0x22) return this.fail();
      const key = this.string();
      this.skipSpace();
      if (this.peek() != 0x3a) return this.fail();
      this.pos++;
      result.keys.push(key);
      result.items.push(this.value());
      this.skipSpace();
      const c = this.peek();
      this.pos++;
      if (c == 0x7d) return result;
      if (c != 0x2c) return this.fail();
    }
    return result;
  }
}

export function parseJson(text: string): JsonValue | null {
  const parser = new Parser(text);
  const value = parser.value();
  return parser.failed ? null : value;
}

/** A JSON string literal for `text`; linear in its length. */
export function jsonString(text: string): string {
  const out = new TextBuffer(text.length + 2);
  out.pushCode(0x22);
  let run = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c != 0x22 && c != 0x5c && c >= 0x20) continue;
    out.pushRange(text, run, i);
    run = i + 1;
    if (c == 0x22) out.pushString("\\\"");
    else if (c == 0x5c) out.pushString("\\\\");
    else out.pushString("\\u00" + (c < 16 ? "0" : "") + c.toString(16));
  }
  out.pushRange(text, run, text.length);
  out.pushCode(0x22);
  return out.toString();
}
