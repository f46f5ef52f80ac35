// A commit group as a write-ahead log record: its sequence number and every
// engine op of its batch, so replay writes exactly the batch the group wrote.
//
//   sequence u64 | count u32 | { key length u32 | key | value length u32 (0xFFFFFFFF = delete) | value }*
//
// big-endian. The log frames and checksums records (storage/wal.ts).

export interface RecordedOp {
  key: Uint8Array;
  value: Uint8Array | undefined;
}

const deleteMark = 0xffffffff;

export function encodeGroupRecord(sequence: number, ops: readonly RecordedOp[]): Buffer {
  let size = 12;
  for (const op of ops) size += 8 + op.key.length + (op.value?.length ?? 0);
  const out = Buffer.allocUnsafe(size);
  out.writeUInt32BE(Math.floor(sequence / 0x1_0000_0000), 0);
  out.writeUInt32BE(sequence >>> 0, 4);
  out.writeUInt32BE(ops.length, 8);
  let at = 12;
  for (const op of ops) {
    out.writeUInt32BE(op.key.length, at);
    out.set(op.key, at + 4);
    at += 4 + op.key.length;
    if (op.value === undefined) {
      out.writeUInt32BE(deleteMark, at);
      at += 4;
    } else {
      out.writeUInt32BE(op.value.length, at);
      out.set(op.value, at + 4);
      at += 4 + op.value.length;
    }
  }
  return out;
}

export function decodeGroupRecord(record: Uint8Array): { sequence: number; ops: RecordedOp[] } {
  const bytes = Buffer.from(record.buffer, record.byteOffset, record.byteLength);
  const fail = () => new Error(`corrupt write-ahead log record of ${bytes.length} bytes`);
  if (bytes.length < 12) throw fail();
  const sequence = bytes.readUInt32BE(0) * 0x1_0000_0000 + bytes.readUInt32BE(4);
  const count = bytes.readUInt32BE(8);
  const ops: RecordedOp[] = [];
  let at = 12;
  for (let i = 0; i < count; i++) {
    if (at + 4 > bytes.length) throw fail();
    const keyLength = bytes.readUInt32BE(at);
    if (at + 8 + keyLength > bytes.length) throw fail();
    const key = bytes.subarray(at + 4, at + 4 + keyLength);
    at += 4 + keyLength;
    const valueLength = bytes.readUInt32BE(at);
    at += 4;
    if (valueLength === deleteMark) {
      ops.push({ key, value: undefined });
    } else {
      if (at + valueLength > bytes.length) throw fail();
      ops.push({ key, value: bytes.subarray(at, at + valueLength) });
      at += valueLength;
    }
  }
  if (at !== bytes.length) throw fail();
  return { sequence, ops };
}
