// A growable UTF-16 buffer for building strings character by character:
// `out += c` copies the whole string on every append, which turns a 60 KB
// selector or token into gigabytes of copying; appending here is amortised
// O(1), so building is linear in the input.

export class TextBuffer {
  private data: ArrayBuffer;
  private units: i32 = 0;

  constructor(capacity: i32 = 16) {
    this.data = new ArrayBuffer((capacity < 8 ? 8 : capacity) << 1);
  }

  get length(): i32 {
    return this.units;
  }

  private reserve(extra: i32): void {
    const needed = (this.units + extra) << 1;
    if (needed <= this.data.byteLength) return;
    let size = this.data.byteLength << 1;
    while (size < needed) size <<= 1;
    const grown = new ArrayBuffer(size);
    memory.copy(changetype<usize>(grown), changetype<usize>(this.data), <usize>(this.units << 1));
    this.data = grown;
  }

  /** Appends one UTF-16 code unit. */
  pushCode(code: i32): void {
    this.reserve(1);
    store<u16>(changetype<usize>(this.data) + (<usize>this.units << 1), <u16>code);
    this.units++;
  }

  pushString(text: string): void {
    const length = text.length;
    this.reserve(length);
    memory.copy(changetype<usize>(this.data) + (<usize>this.units << 1), changetype<usize>(text), <usize>(length << 1));
    this.units += length;
  }

  /** Appends text[start, end). */
  pushRange(text: string, start: i32, end: i32): void {
    if (end <= start) return;
    this.reserve(end - start);
    memory.copy(changetype<usize>(this.data) + (<usize>this.units << 1), changetype<usize>(text) + (<usize>start << 1), <usize>((end - start) << 1));
    this.units += end - start;
  }

  toString(): string {
    return String.UTF16.decodeUnsafe(changetype<usize>(this.data), <usize>(this.units << 1));
  }
}
