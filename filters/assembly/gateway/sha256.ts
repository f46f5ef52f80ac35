// SHA-256 (FIPS 180-4): the x509 credential id kube-apiserver states for a
// certificate, and the token cache's key (a digest, so a cache entry never
// holds a token and a hash collision cannot hand one caller another's entry).

const k: StaticArray<u32> = [
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

const w = new StaticArray<u32>(64);
const h = new StaticArray<u32>(8);

function compress(block: Uint8Array, at: i32): void {
  for (let i = 0; i < 16; i++) {
    const p = at + i * 4;
    unchecked((w[i] = (<u32>block[p] << 24) | (<u32>block[p + 1] << 16) | (<u32>block[p + 2] << 8) | <u32>block[p + 3]));
  }
  for (let i = 16; i < 64; i++) {
    const w15 = unchecked(w[i - 15]);
    const w2 = unchecked(w[i - 2]);
    const s0 = rotr<u32>(w15, 7) ^ rotr<u32>(w15, 18) ^ (w15 >> 3);
    const s1 = rotr<u32>(w2, 17) ^ rotr<u32>(w2, 19) ^ (w2 >> 10);
    unchecked((w[i] = unchecked(w[i - 16]) + s0 + unchecked(w[i - 7]) + s1));
  }
  let a = unchecked(h[0]);
  let b = unchecked(h[1]);
  let c = unchecked(h[2]);
  let d = unchecked(h[3]);
  let e = unchecked(h[4]);
  let f = unchecked(h[5]);
  let g = unchecked(h[6]);
  let hh = unchecked(h[7]);
  for (let i = 0; i < 64; i++) {
    const t1 = hh + (rotr<u32>(e, 6) ^ rotr<u32>(e, 11) ^ rotr<u32>(e, 25)) + ((e & f) ^ (~e & g)) + unchecked(k[i]) + unchecked(w[i]);
    const t2 = (rotr<u32>(a, 2) ^ rotr<u32>(a, 13) ^ rotr<u32>(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    hh = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  unchecked((h[0] += a));
  unchecked((h[1] += b));
  unchecked((h[2] += c));
  unchecked((h[3] += d));
  unchecked((h[4] += e));
  unchecked((h[5] += f));
  unchecked((h[6] += g));
  unchecked((h[7] += hh));
}

/** The 32-byte SHA-256 digest of `data`. */
export function sha256(data: Uint8Array): Uint8Array {
  h[0] = 0x6a09e667;
  h[1] = 0xbb67ae85;
  h[2] = 0x3c6ef372;
  h[3] = 0xa54ff53a;
  h[4] = 0x510e527f;
  h[5] = 0x9b05688c;
  h[6] = 0x1f83d9ab;
  h[7] = 0x5be0cd19;
  const full = data.length & ~63;
  for (let at = 0; at < full; at += 64) compress(data, at);
  // The tail, 0x80, zeros and the bit length, in one or two blocks.
  const rest = data.length - full;
  const tail = new Uint8Array(rest < 56 ? 64 : 128);
  for (let i = 0; i < rest; i++) tail[i] = data[full + i];
  tail[rest] = 0x80;
  const bits = <u64>data.length * 8;
  for (let i = 0; i < 8; i++) tail[tail.length - 1 - i] = <u8>(bits >> (<u64>i * 8));
  for (let at = 0; at < tail.length; at += 64) compress(tail, at);
  const out = new Uint8Array(32);
  for (let i = 0; i < 8; i++) {
    const v = h[i];
    out[i * 4] = <u8>(v >> 24);
    out[i * 4 + 1] = <u8>(v >> 16);
    out[i * 4 + 2] = <u8>(v >> 8);
    out[i * 4 + 3] = <u8>v;
  }
  return out;
}

const hexDigits = "0123456789abcdef";

export function hex(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i++) out += hexDigits.charAt(bytes[i] >> 4) + hexDigits.charAt(bytes[i] & 15);
  return out;
}
