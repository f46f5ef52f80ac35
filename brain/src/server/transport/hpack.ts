// HPACK (RFC 7541): the decoder for request header blocks (static and
// dynamic table, Huffman strings) and the few literal encodings the server
// needs for its constant response headers and trailers.

/** Appendix A, index 1..61. */
const staticTable: ReadonlyArray<readonly [string, string]> = [
  [":authority", ""], [":method", "GET"], [":method", "POST"], [":path", "/"], [":path", "/index.html"],
  [":scheme", "http"], [":scheme", "https"], [":status", "200"], [":status", "204"], [":status", "206"],
  [":status", "304"], [":status", "400"], [":status", "404"], [":status", "500"], ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"], ["accept-language", ""], ["accept-ranges", ""], ["accept", ""],
  ["access-control-allow-origin", ""], ["age", ""], ["allow", ""], ["authorization", ""], ["cache-control", ""],
  ["content-disposition", ""], ["content-encoding", ""], ["content-language", ""], ["content-length", ""],
  ["content-location", ""], ["content-range", ""], ["content-type", ""], ["cookie", ""], ["date", ""], ["etag", ""],
  ["expect", ""], ["expires", ""], ["from", ""], ["host", ""], ["if-match", ""], ["if-modified-since", ""],
  ["if-none-match", ""], ["if-range", ""], ["if-unmodified-since", ""], ["last-modified", ""], ["link", ""],
  ["location", ""], ["max-forwards", ""], ["proxy-authenticate", ""], ["proxy-authorization", ""], ["range", ""],
  ["referer", ""], ["refresh", ""], ["retry-after", ""], ["server", ""], ["set-cookie", ""],
  ["strict-transport-security", ""], ["transfer-encoding", ""], ["user-agent", ""], ["vary", ""], ["via", ""],
  ["www-authenticate", ""],
];

/**
 * Appendix B as code lengths per symbol (0..255, then EOS = 256). The code is
 * canonical: codes of one length are consecutive in symbol order, so the
 * lengths alone rebuild the table (hpack.test.ts checks it against the RFC's
 * examples and a few of its printed codes).
 */
const huffmanLengths = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
  30,
];

const eos = 256;

/** Canonical codes, MSB-first, from the lengths. */
export const huffmanCodes: ReadonlyArray<{ code: number; length: number }> = (() => {
  const order = huffmanLengths.map((length, symbol) => ({ symbol, length })).sort((a, b) => a.length - b.length || a.symbol - b.symbol);
  const codes = new Array<{ code: number; length: number }>(huffmanLengths.length);
  let code = 0;
  let length = order[0]!.length;
  for (const entry of order) {
    code *= 2 ** (entry.length - length);
    length = entry.length;
    codes[entry.symbol] = { code, length };
    code++;
  }
  return codes;
})();

// The decoding tree in one array: node n's children are at 2n and 2n+1 (0 =
// absent); a leaf holds -(symbol + 1).
const tree = (() => {
  const nodes: number[] = [0, 0];
  let nextNode = 1;
  huffmanCodes.forEach(({ code, length }, symbol) => {
    let node = 0;
    for (let bit = length - 1; bit >= 0; bit--) {
      const slot = 2 * node + (Math.floor(code / 2 ** bit) % 2);
      if (bit === 0) {
        nodes[slot] = -(symbol + 1);
      } else {
        if (nodes[slot] === 0 || nodes[slot] === undefined) {
          nodes[slot] = nextNode++;
          nodes.push(0, 0);
        }
        node = nodes[slot]!;
      }
    }
  });
  return Int32Array.from(nodes);
})();

export class HpackError extends Error {}

function huffmanDecode(data: Buffer, start: number, end: number): string {
  let out = "";
  let node = 0;
  // Bits read since the last whole symbol, and whether all were ones: only
  // up to 7 one-bits (a prefix of EOS) may pad the end (RFC 7541 §5.2).
  let pendingBits = 0;
  let pendingOnes = true;
  for (let i = start; i < end; i++) {
    const byte = data[i]!;
    for (let bit = 7; bit >= 0; bit--) {
      const one = (byte >> bit) & 1;
      const next = tree[2 * node + one]!;
      pendingBits++;
      if (one === 0) pendingOnes = false;
      if (next < 0) {
        const symbol = -next - 1;
        if (symbol === eos) throw new HpackError("EOS symbol in a Huffman string");
        out += String.fromCharCode(symbol);
        node = 0;
        pendingBits = 0;
        pendingOnes = true;
      } else if (next === 0) {
        throw new HpackError("invalid Huffman code");
      } else {
        node = next;
      }
    }
  }
  if (pendingBits > 7 || !pendingOnes) throw new HpackError("invalid Huffman padding");
  return out;
}

const entryOverhead = 32;

export class HpackDecoder {
  // Newest entry last; dynamic index 1 is the last element.
  private readonly entries: Array<readonly [string, string]> = [];
  private size = 0;
  private maxSize: number;
  private position = 0;

  /** `limit`: the SETTINGS_HEADER_TABLE_SIZE this side advertised. */
  constructor(private readonly limit = 4096) {
    this.maxSize = limit;
  }

  /**
   * Decodes one complete header block, calling `visit` for each field while
   * the list stays within `maxListSize`; returns the list's size (RFC 9113
   * §6.5.2) so the caller can refuse an oversized one. The whole block is
   * always decoded, keeping the dynamic table in step with the peer.
   */
  decode(block: Buffer, maxListSize: number, visit: (name: string, value: string) => void): number {
    this.position = 0;
    let listSize = 0;
    let fields = 0;
    const end = block.length;
    while (this.position < end) {
      const first = block[this.position]!;
      let name: string;
      let value: string;
      if (first & 0x80) {
        const entry = this.entry(this.integer(block, 7));
        name = entry[0];
        value = entry[1];
      } else if (first & 0x40) {
        [name, value] = this.literal(block, 6);
        this.insert(name, value);
      } else if (first & 0x20) {
        if (fields > 0) throw new HpackError("dynamic table size update after a header field");
        const size = this.integer(block, 5);
        if (size > this.limit) throw new HpackError(`dynamic table size ${size} above the advertised ${this.limit}`);
        this.maxSize = size;
        this.evict(0);
        continue;
      } else {
        // Literal without indexing (0000) or never indexed (0001).
        [name, value] = this.literal(block, 4);
      }
      fields++;
      listSize += name.length + value.length + entryOverhead;
      if (listSize <= maxListSize) visit(name, value);
    }
    return listSize;
  }

  private integer(block: Buffer, prefixBits: number): number {
    const mask = (1 << prefixBits) - 1;
    if (this.position >= block.length) throw new HpackError("truncated integer");
    let value = block[this.position++]! & mask;
    if (value < mask) return value;
    let shift = 0;
    for (;;) {
      if (this.position >= block.length) throw new HpackError("truncated integer");
      const byte = block[this.position++]!;
      value += (byte & 0x7f) * 2 ** shift;
      shift += 7;
      if (value > 0x7fffffff) throw new HpackError("integer overflow");
      if ((byte & 0x80) === 0) return value;
    }
  }

  private string(block: Buffer): string {
    if (this.position >= block.length) throw new HpackError("truncated string");
    const huffman = (block[this.position]! & 0x80) !== 0;
    const length = this.integer(block, 7);
    const start = this.position;
    if (start + length > block.length) throw new HpackError("string beyond the header block");
    this.position += length;
    return huffman ? huffmanDecode(block, start, start + length) : block.toString("latin1", start, start + length);
  }

  private literal(block: Buffer, prefixBits: number): [string, string] {
    const index = this.integer(block, prefixBits);
    const name = index === 0 ? this.string(block) : this.entry(index)[0];
    return [name, this.string(block)];
  }

  private entry(index: number): readonly [string, string] {
    if (index === 0) throw new HpackError("index 0");
    if (index <= staticTable.length) return staticTable[index - 1]!;
    const entry = this.entries[this.entries.length - (index - staticTable.length)];
    if (!entry) throw new HpackError(`index ${index} beyond the dynamic table`);
    return entry;
  }

  private insert(name: string, value: string): void {
    const size = name.length + value.length + entryOverhead;
    this.evict(size);
    // An entry larger than the table empties it and is not added (§4.4).
    if (size <= this.maxSize) {
      this.entries.push([name, value]);
      this.size += size;
    }
  }

  private evict(room: number): void {
    while (this.size + room > this.maxSize && this.entries.length > 0) {
      const [name, value] = this.entries.shift()!;
      this.size -= name.length + value.length + entryOverhead;
    }
  }
}

function encodeInteger(out: number[], firstByte: number, prefixBits: number, value: number): void {
  const mask = (1 << prefixBits) - 1;
  if (value < mask) {
    out.push(firstByte | value);
    return;
  }
  out.push(firstByte | mask);
  let rest = value - mask;
  while (rest >= 128) {
    out.push((rest % 128) | 0x80);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
}

/**
 * A literal field without indexing, with a new name (or a static-table name
 * index), no Huffman: the encoder never touches the peer's dynamic table, so
 * pre-encoded blocks stay valid whatever the peer's table size.
 */
export function encodeLiteral(name: string | number, value: string): Buffer {
  const out: number[] = [];
  if (typeof name === "number") {
    encodeInteger(out, 0x00, 4, name);
  } else {
    out.push(0x00);
    encodeInteger(out, 0x00, 7, name.length);
    for (const char of Buffer.from(name, "latin1")) out.push(char);
  }
  const bytes = Buffer.from(value, "latin1");
  encodeInteger(out, 0x00, 7, bytes.length);
  for (const char of bytes) out.push(char);
  return Buffer.from(out);
}

/** An indexed field from the static table (e.g. 8 = ":status: 200"). */
export function encodeIndexed(index: number): Buffer {
  const out: number[] = [];
  encodeInteger(out, 0x80, 7, index);
  return Buffer.from(out);
}

/** Static-table index of a name, for literal-with-name-reference encodings. */
export const staticNameIndex = (name: string): number => staticTable.findIndex(([n]) => n === name) + 1;
