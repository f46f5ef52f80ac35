// Strict UTF-8. AssemblyScript's String.UTF8.decode does not validate: an
// overlong or broken sequence can come out as an ASCII character (C1 A5 as
// "e"), so bytes a peer sent could read as text it never sent. Here every
// byte of an invalid sequence becomes U+FFFD, as in Go and WHATWG decoders.

/** Length (1-4) of the valid UTF-8 sequence at `at`, or 0 if it is invalid or cut off at `end`. */
export function utf8SequenceLength(at: usize, end: usize): i32 {
  const b0 = <u32>load<u8>(at);
  if (b0 < 0x80) return 1;
  let length = 0;
  let low: u32 = 0x80;
  let high: u32 = 0xbf;
  if (b0 >= 0xc2 && b0 <= 0xdf) length = 2;
  else if (b0 >= 0xe0 && b0 <= 0xef) {
    length = 3;
    if (b0 == 0xe0) low = 0xa0; // overlong
    if (b0 == 0xed) high = 0x9f; // surrogates
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    length = 4;
    if (b0 == 0xf0) low = 0x90; // overlong
    if (b0 == 0xf4) high = 0x8f; // above U+10FFFF
  } else return 0;
  if (at + <usize>length > end) return 0;
  const b1 = <u32>load<u8>(at + 1);
  if (b1 < low || b1 > high) return 0;
  for (let i = 2; i < length; i++) {
    const b = <u32>load<u8>(at + <usize>i);
    if (b < 0x80 || b > 0xbf) return 0;
  }
  return length;
}

/** True when `size` bytes at `at` are valid UTF-8. */
export function isValidUtf8(at: usize, size: usize): bool {
  const end = at + size;
  let p = at;
  while (p < end) {
    if (load<u8>(p) < 0x80) {
      p++;
      continue;
    }
    const length = utf8SequenceLength(p, end);
    if (length == 0) return false;
    p += <usize>length;
  }
  return true;
}

/** Decodes `size` bytes at `at`; each byte of an invalid sequence becomes U+FFFD. */
export function decodeUtf8(at: usize, size: usize): string {
  if (isValidUtf8(at, size)) return String.UTF8.decodeUnsafe(at, size);
  const out = new Uint8Array(<i32>size * 3);
  const end = at + size;
  let n = 0;
  let p = at;
  while (p < end) {
    const length = utf8SequenceLength(p, end);
    if (length == 0) {
      out[n++] = 0xef;
      out[n++] = 0xbf;
      out[n++] = 0xbd;
      p++;
    } else {
      memory.copy(out.dataStart + <usize>n, p, <usize>length);
      n += length;
      p += <usize>length;
    }
  }
  return String.UTF8.decodeUnsafe(out.dataStart, <usize>n);
}
