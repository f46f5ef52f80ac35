// Reads a bbolt database file: the format of etcd's backend and of the
// snapshots `etcdctl snapshot save` writes. Read-only, page by page (a
// snapshot can be larger than memory), and only what a migration needs:
// the root bucket's buckets and their key/value pairs in key order.
//
// Layout (little-endian), from bbolt's documented on-disk format:
//   page      id u64 | flags u16 | count u16 | overflow u32 | data…
//   meta      magic u32 | version u32 | page size u32 | flags u32 |
//             root bucket (root page u64, sequence u64) | freelist u64 |
//             high-water page u64 | txid u64 | checksum u64
//   branch    count × (pos u32, key size u32, child page u64); key at element + pos
//   leaf      count × (flags u32, pos u32, key size u32, value size u32); key at element + pos, value after it
//   bucket    a leaf value flagged 0x01: (root page u64, sequence u64), and
//             for an inline bucket (root 0) a page right after that header
import { closeSync, fstatSync, openSync, readSync } from "node:fs";

const magic = 0xed0cdaed;
const pageHeaderBytes = 16;
const elementBytes = 16;
const enum PageFlag {
  Branch = 0x01,
  Leaf = 0x02,
  Meta = 0x04,
}
const bucketLeafFlag = 0x01;

export class BboltError extends Error {}

interface Page {
  bytes: Buffer;
  /** Where the page starts in `bytes` (non-zero for an inline bucket's page). */
  offset: number;
}

export class BboltFile {
  private readonly fd: number;
  readonly pageSize: number;
  private readonly rootPage: bigint;
  private readonly pageCount: bigint;

  constructor(readonly path: string) {
    this.fd = openSync(path, "r");
    try {
      const size = fstatSync(this.fd).size;
      const first = this.readAt(0, Math.min(size, 4096));
      const metas = [parseMeta(first, 0)];
      const pageSize = metas[0]?.pageSize ?? 4096;
      if (size >= pageSize * 2) metas.push(parseMeta(this.readAt(pageSize, pageHeaderBytes + 64), 0));
      // Two meta pages alternate between commits; the newer valid one is current.
      const meta = metas.filter((candidate) => candidate !== undefined).sort((a, b) => Number(b.txid - a.txid))[0];
      if (meta === undefined) throw new BboltError(`${path} is not a bbolt database (no valid meta page)`);
      this.pageSize = meta.pageSize;
      this.rootPage = meta.rootPage;
      this.pageCount = meta.pageCount;
    } catch (error) {
      closeSync(this.fd);
      throw error;
    }
  }

  close(): void {
    closeSync(this.fd);
  }

  private readAt(position: number, length: number): Buffer {
    const buffer = Buffer.alloc(length);
    const read = readSync(this.fd, buffer, 0, length, position);
    if (read < length) throw new BboltError(`${this.path}: truncated at byte ${position + read}`);
    return buffer;
  }

  private page(id: bigint): Page {
    if (id < 2n || id >= this.pageCount) throw new BboltError(`${this.path}: page ${id} is out of range`);
    const position = Number(id) * this.pageSize;
    const header = this.readAt(position, pageHeaderBytes);
    const overflow = header.readUInt32LE(12);
    return { bytes: this.readAt(position, (overflow + 1) * this.pageSize), offset: 0 };
  }

  /** Names of the root bucket's buckets. */
  bucketNames(): string[] {
    const names: string[] = [];
    for (const entry of this.walk({ root: this.rootPage })) if (entry.isBucket) names.push(entry.key.toString("latin1"));
    return names;
  }

  /** Key/value pairs of a top-level bucket, in key order; nothing if there is no such bucket. */
  *entries(bucket: string): Generator<{ key: Buffer; value: Buffer }> {
    for (const entry of this.walk({ root: this.rootPage })) {
      if (!entry.isBucket || entry.key.toString("latin1") !== bucket) continue;
      const root = entry.value.readBigUInt64LE(0);
      const source = root === 0n ? { inline: { bytes: entry.value, offset: 16 } } : { root };
      for (const item of this.walk(source)) if (!item.isBucket) yield { key: item.key, value: item.value };
      return;
    }
  }

  private *walk(source: { root: bigint } | { inline: Page }): Generator<{ key: Buffer; value: Buffer; isBucket: boolean }> {
    const page = "inline" in source ? source.inline : this.page(source.root);
    const { bytes, offset } = page;
    const flags = bytes.readUInt16LE(offset + 8);
    const count = bytes.readUInt16LE(offset + 10);
    for (let i = 0; i < count; i++) {
      const element = offset + pageHeaderBytes + i * elementBytes;
      if (flags & PageFlag.Branch) {
        yield* this.walk({ root: bytes.readBigUInt64LE(element + 8) });
      } else if (flags & PageFlag.Leaf) {
        const elementFlags = bytes.readUInt32LE(element);
        const keyAt = element + bytes.readUInt32LE(element + 4);
        const keySize = bytes.readUInt32LE(element + 8);
        const valueSize = bytes.readUInt32LE(element + 12);
        if (keyAt + keySize + valueSize > bytes.length) throw new BboltError(`${this.path}: element ${i} runs past its page`);
        yield {
          key: bytes.subarray(keyAt, keyAt + keySize),
          value: bytes.subarray(keyAt + keySize, keyAt + keySize + valueSize),
          isBucket: (elementFlags & bucketLeafFlag) !== 0,
        };
      } else {
        throw new BboltError(`${this.path}: page with flags 0x${flags.toString(16)} where a branch or leaf was expected`);
      }
    }
  }
}

function parseMeta(bytes: Buffer, at: number): { pageSize: number; rootPage: bigint; pageCount: bigint; txid: bigint } | undefined {
  if (bytes.length < at + pageHeaderBytes + 64) return undefined;
  if ((bytes.readUInt16LE(at + 8) & PageFlag.Meta) === 0) return undefined;
  const meta = at + pageHeaderBytes;
  if (bytes.readUInt32LE(meta) !== magic) return undefined;
  return {
    pageSize: bytes.readUInt32LE(meta + 8),
    rootPage: bytes.readBigUInt64LE(meta + 16),
    pageCount: bytes.readBigUInt64LE(meta + 40),
    txid: bytes.readBigUInt64LE(meta + 48),
  };
}
