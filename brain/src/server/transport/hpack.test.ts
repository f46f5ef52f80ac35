// HPACK against RFC 7541's own examples (Appendix C) and its printed codes,
// plus the malformed blocks a hostile client could send.
import { describe, expect, it } from "vitest";
import { encodeLiteral, HpackDecoder, HpackError, huffmanCodes } from "./hpack.js";

const hex = (text: string) => Buffer.from(text.replace(/\s+/g, ""), "hex");

function decodeAll(decoder: HpackDecoder, block: Buffer): Array<[string, string]> {
  const fields: Array<[string, string]> = [];
  decoder.decode(block, 1 << 20, (name, value) => fields.push([name, value]));
  return fields;
}

describe("HPACK decoder", () => {
  it("has the RFC's Huffman code: printed codes, and a complete prefix code of 257 symbols", () => {
    expect(huffmanCodes).toHaveLength(257);
    expect(huffmanCodes[0]).toEqual({ code: 0x1ff8, length: 13 });
    expect(huffmanCodes[47]).toEqual({ code: 0x18, length: 6 }); // '/'
    expect(huffmanCodes[97]).toEqual({ code: 0x3, length: 5 }); // 'a'
    expect(huffmanCodes[92]).toEqual({ code: 0x7fff0, length: 19 }); // '\'
    expect(huffmanCodes[128]).toEqual({ code: 0xfffe6, length: 20 });
    expect(huffmanCodes[255]).toEqual({ code: 0x3ffffee, length: 26 });
    expect(huffmanCodes[256]).toEqual({ code: 0x3fffffff, length: 30 });
    // Kraft's equality: every bit string is a prefix of some code.
    expect(huffmanCodes.reduce((sum, { length }) => sum + 2 ** -length, 0)).toBe(1);
  });

  it("decodes C.3 (no Huffman) and C.4 (Huffman) request sequences with one dynamic table each", () => {
    for (const blocks of [
      [hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d"), hex("8286 84be 5808 6e6f 2d63 6163 6865"), hex("8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65")],
      [hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"), hex("8286 84be 5886 a8eb 1064 9cbf"), hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf")],
    ]) {
      const decoder = new HpackDecoder();
      expect(decodeAll(decoder, blocks[0]!)).toEqual([[":method", "GET"], [":scheme", "http"], [":path", "/"], [":authority", "www.example.com"]]);
      expect(decodeAll(decoder, blocks[1]!)).toEqual([[":method", "GET"], [":scheme", "http"], [":path", "/"], [":authority", "www.example.com"], ["cache-control", "no-cache"]]);
      expect(decodeAll(decoder, blocks[2]!)).toEqual([[":method", "GET"], [":scheme", "https"], [":path", "/index.html"], [":authority", "www.example.com"], ["custom-key", "custom-value"]]);
    }
  });

  it("evicts the oldest entries when the table shrinks, and reads what the encoder wrote", () => {
    const decoder = new HpackDecoder();
    decodeAll(decoder, hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572")); // custom-key: custom-header (55 bytes)
    decodeAll(decoder, Buffer.concat([Buffer.from([0x40, 1, 0x61, 1, 0x62])])); // a: b (34 bytes)
    expect(decodeAll(decoder, hex("be bf"))).toEqual([["a", "b"], ["custom-key", "custom-header"]]);
    // A size update to 40 bytes leaves room for "a: b" only.
    expect(decodeAll(decoder, hex("3f09 be"))).toEqual([["a", "b"]]);
    expect(() => decodeAll(decoder, hex("bf"))).toThrow(HpackError);
    expect(decodeAll(new HpackDecoder(), Buffer.concat([encodeLiteral(31, "application/grpc"), encodeLiteral("grpc-status", "0")]))).toEqual([
      ["content-type", "application/grpc"],
      ["grpc-status", "0"],
    ]);
  });

  it("refuses malformed blocks with an HpackError (COMPRESSION_ERROR on the wire)", () => {
    const bad: Array<[string, Buffer]> = [
      ["index 0", hex("80")],
      ["index beyond both tables", hex("be")],
      ["literal naming an index beyond the tables", hex("7f 20 01 61")],
      ["table size above the advertised 4096", hex("3fe2 1f")],
      ["table size update after a field", hex("82 20")],
      ["truncated integer", hex("ff")],
      ["integer overflow", hex("ff ff ff ff ff ff 7f")],
      ["string beyond the block", hex("00 05 61")],
      ["Huffman padding of zeros", hex("00 81 00 01 61")],
      ["Huffman padding longer than 7 bits", hex("00 82 1f ff 01 61")],
      ["EOS inside a Huffman string", hex("00 84 ff ff ff ff 01 61")],
    ];
    for (const [what, block] of bad) {
      expect(() => decodeAll(new HpackDecoder(), block), what).toThrow(HpackError);
    }
  });

  it("reports a list's size past the limit without visiting the fields beyond it, and keeps the table in step", () => {
    const decoder = new HpackDecoder();
    const block = Buffer.concat([Buffer.from([0x40, 1, 0x61, 100]), Buffer.alloc(100, 0x62), Buffer.from([0x82])]);
    const seen: string[] = [];
    expect(decoder.decode(block, 64, (name) => seen.push(name))).toBe(1 + 100 + 32 + 7 + 3 + 32);
    expect(seen).toEqual([]);
    expect(decodeAll(decoder, hex("be"))).toEqual([["a", "b".repeat(100)]]);
  });
});
