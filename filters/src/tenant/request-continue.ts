// The continue-token construction of filters/assembly/tenant/continue-token.ts,
// written again with node:crypto: the filter's tokens must open with it and
// its tokens with the filter, or one of the two is wrong.
import { createHash, createHmac } from "node:crypto";

function keys(continueKey: Uint8Array): { mac: Buffer; enc: Buffer } {
  return {
    mac: createHmac("sha256", continueKey).update("wharf continue mac").digest(),
    enc: createHmac("sha256", continueKey).update("wharf continue enc").digest(),
  };
}

function xor(enc: Buffer, tag: Buffer, data: Buffer): Buffer {
  const out = Buffer.from(data);
  for (let block = 0; block * 32 < out.length; block++) {
    const counter = Buffer.alloc(4);
    counter.writeUInt32BE(block);
    const stream = createHash("sha256").update(Buffer.concat([enc, tag, counter])).digest();
    for (let i = 0; i < 32 && block * 32 + i < out.length; i++) out[block * 32 + i]! ^= stream[i]!;
  }
  return out;
}

export function sealContinue(continueKey: Uint8Array, token: string): string {
  if (token === "") return "";
  const { mac, enc } = keys(continueKey);
  const plain = Buffer.from(token, "utf8");
  const tag = createHmac("sha256", mac).update(plain).digest().subarray(0, 16);
  return "wt1" + Buffer.concat([tag, xor(enc, tag, plain)]).toString("base64url");
}

export function unsealContinue(continueKey: Uint8Array, sealed: string): string | undefined {
  if (!sealed.startsWith("wt1")) return undefined;
  const data = Buffer.from(sealed.slice(3), "base64url");
  if (data.length <= 16) return undefined;
  const { mac, enc } = keys(continueKey);
  const tag = data.subarray(0, 16);
  const plain = xor(enc, tag, data.subarray(16));
  const expected = createHmac("sha256", mac).update(plain).digest().subarray(0, 16);
  return expected.equals(tag) ? plain.toString("utf8") : undefined;
}
