// A growable byte buffer for the response transducer's output and the
// subtree it is capturing. Capacity left behind by one big capture is
// given back when the buffer empties, so a long stream's footprint stays
// that of its largest live object, not of its history.

const initialCapacity = 1024;
const keptCapacity = 64 * 1024;

export class ByteBuffer {
  private data: ArrayBuffer = new ArrayBuffer(initialCapacity);
  length: i32 = 0;

  get base(): usize {
    return changetype<usize>(this.data);
  }

  private reserve(extra: i32): void {
    const needed = this.length + extra;
    if (needed <= this.data.byteLength) return;
    let size = this.data.byteLength << 1;
    while (size < needed) size <<= 1;
    const grown = new ArrayBuffer(size);
    memory.copy(changetype<usize>(grown), changetype<usize>(this.data), <usize>this.length);
    this.data = grown;
  }

  push(byte: u8): void {
    if (this.length == this.data.byteLength) this.reserve(1);
    store<u8>(changetype<usize>(this.data) + <usize>this.length, byte);
    this.length++;
  }

  pushRange(at: usize, size: i32): void {
    if (size <= 0) return;
    this.reserve(size);
    memory.copy(changetype<usize>(this.data) + <usize>this.length, at, <usize>size);
    this.length += size;
  }

  /** Appends `text` as UTF-8, encoded in place (no intermediate buffer per serialized subtree). */
  pushString(text: string): void {
    const size = String.UTF8.byteLength(text);
    if (size <= 0) return;
    this.reserve(size);
    String.UTF8.encodeUnsafe(changetype<usize>(text), text.length, changetype<usize>(this.data) + <usize>this.length);
    this.length += size;
  }

  truncate(length: i32): void {
    if (length < this.length) this.length = length;
  }

  /** Removes and returns the first `count` bytes; the rest moves to the front. */
  takeFront(count: i32): ArrayBuffer {
    const out = new ArrayBuffer(count);
    memory.copy(changetype<usize>(out), changetype<usize>(this.data), <usize>count);
    const rest = this.length - count;
    if (rest > 0) memory.copy(changetype<usize>(this.data), changetype<usize>(this.data) + <usize>count, <usize>rest);
    this.length = rest;
    this.shrinkIfIdle();
    return out;
  }

  clear(): void {
    this.length = 0;
    this.shrinkIfIdle();
  }

  private shrinkIfIdle(): void {
    if (this.data.byteLength > keptCapacity && this.length <= initialCapacity) {
      const small = new ArrayBuffer(initialCapacity);
      memory.copy(changetype<usize>(small), changetype<usize>(this.data), <usize>this.length);
      this.data = small;
    }
  }
}
