// brain's write-ahead log. The store writes each commit group to RocksDB
// without sync and makes it durable here instead: a group's appends are
// written into the page cache on the calling thread and fdatasync'd on
// libuv's thread pool, so the event loop keeps evaluating the next group
// while the disk syncs this one (RocksDB's binding would sync on the calling
// thread). Records are opaque bytes; the store puts
// its revision inside them and replays what open() returns.
//
// On disk: a directory of segment files named by a sequence number in hex
// (etcd's WAL does the same), each a 32-byte header followed by frames:
//
//   segment header: "wharfwal" | version u32 | 0 u32 | sequence u64 | salt u32 | crc32c(previous 28 bytes) u32
//   frame:          length u32 | crc32c(salt u32, offset u64, length u32, record) u32 | record
//
// all little-endian. The CRC covers the frame's own offset and the segment's
// random salt, so bytes that merely look like a frame (a user's value holding
// an old frame, a frame left from before a truncation) never pass for one.
//
// Durability rules that open() relies on:
// - A segment's header is synced, and its directory entry fsync'd, before any
//   record goes into it; a later segment is only created once every record of
//   the one before is synced. So only the last segment can end in bytes that
//   were never synced (a torn tail), and a bad frame anywhere else is damage.
// - Segments are deleted oldest first, fsyncing the directory after each, so
//   the segments on disk always form one contiguous run of sequence numbers.
import { randomBytes } from "node:crypto";
import { fdatasync, writevSync } from "node:fs";
import { mkdir, open, readdir, readFile, unlink, type FileHandle } from "node:fs/promises";
import { dirname, join } from "node:path";
import { Crc32c } from "./crc32c.js";

export interface WriteAheadLog {
  /**
   * Resolves once the record is fdatasync'd. Resolutions come strictly in
   * append order; appends made while a sync runs share the next sync. After a
   * failed write or sync the log is poisoned: that append, every pending one
   * and every later one reject with the cause (an fsync error cannot be
   * retried: the kernel may already have dropped the unwritten pages).
   * A rejected record's outcome is unknown, not "not written": its bytes may
   * have reached the disk whole, and then open() replays it after a restart.
   * The log holds `record` itself (no copy) until the append settles: do not
   * modify it before then.
   */
  append(record: Uint8Array): Promise<void>;
  /** A position covering every record appended so far (synced or not). */
  mark(): WalMark;
  /**
   * Deletes the segments that hold only records before `mark`. Call it once
   * the engine has durably written what they hold; the active segment stays.
   */
  release(mark: WalMark): Promise<void>;
  /** Waits for pending appends, then closes; later appends reject. */
  close(): Promise<void>;
  /** Counters since open, for metrics (and for tests of group commit). */
  stats(): WalStats;
}

export interface WalStats {
  /** Records made durable. */
  records: number;
  /** fdatasync calls on segments (each makes a group of records durable). */
  syncs: number;
  /** Segments deleted by release(). */
  segmentsReleased: number;
}

/** Opaque to callers: the number of records appended before it. */
export interface WalMark {
  readonly records: number;
}

export interface WalOptions {
  /** A segment is closed once it reaches this size (it may exceed it by one group). */
  segmentBytes?: number;
  /** At most this many bytes go into one write + sync (one record may exceed it alone). */
  maxGroupBytes?: number;
}

/** Records larger than this are refused (the frame's length field is 32 bits; a sane store never gets close). */
export const maxRecordBytes = 256 * 1024 * 1024;

const defaultSegmentBytes = 64 * 1024 * 1024;
const defaultMaxGroupBytes = 4 * 1024 * 1024;
const magic = Buffer.from("wharfwal", "latin1");
const formatVersion = 1;
const segmentHeaderBytes = 32;
const frameHeaderBytes = 8;
const segmentName = /^([0-9a-f]{16})\.wal$/;
/** Buffers per writev call (Linux's IOV_MAX is 1024). */
const maxBuffersPerWrite = 512;

/**
 * Opens (creating if missing) the log in `dir` and returns it with every
 * intact record still in it, in append order. A torn tail (a partial or
 * unreadable last record with nothing intact after it) is cut off; a bad
 * record followed by an intact one, a bad segment header or a missing
 * segment is corruption and throws an error naming the file and offset.
 */
export async function openWriteAheadLog(
  dir: string,
  options: WalOptions = {},
): Promise<{ log: WriteAheadLog; records: Uint8Array[] }> {
  const segmentBytes = options.segmentBytes ?? defaultSegmentBytes;
  const maxGroupBytes = options.maxGroupBytes ?? defaultMaxGroupBytes;
  const created = (await mkdir(dir, { recursive: true })) !== undefined;
  if (created) await syncDirectory(dirname(dir));

  const sequences = (await readdir(dir))
    .map((name) => segmentName.exec(name)?.[1])
    .filter((hex): hex is string => hex !== undefined)
    .map((hex) => Number.parseInt(hex, 16))
    .sort((a, b) => a - b);
  for (let i = 1; i < sequences.length; i++) {
    if (sequences[i] !== sequences[i - 1]! + 1) {
      throw new Error(
        `write-ahead log ${dir} is corrupt: segment ${segmentFileName(sequences[i - 1]! + 1)} is missing (${segmentFileName(sequences[i - 1]!)} is followed by ${segmentFileName(sequences[i]!)})`,
      );
    }
  }

  const records: Uint8Array[] = [];
  const segments: SegmentInfo[] = [];
  let tail: { sequence: number; salt: number; size: number } | undefined;
  for (const [i, sequence] of sequences.entries()) {
    const path = join(dir, segmentFileName(sequence));
    const last = i === sequences.length - 1;
    const read = readSegment(path, await readFile(path), sequence, last);
    if (read.kind === "torn-header") {
      // Its creation was cut short: it never held a record.
      await unlink(path);
      await syncDirectory(dir);
      break;
    }
    segments.push({ sequence, path, firstRecord: records.length });
    for (const record of read.records) records.push(record);
    if (last) {
      if (read.end < read.size) {
        const handle = await open(path, "r+");
        try {
          await handle.truncate(read.end);
          await handle.datasync();
        } finally {
          await handle.close();
        }
      }
      tail = { sequence, salt: read.salt, size: read.end };
    }
  }

  let active: ActiveSegment;
  if (tail) {
    active = { sequence: tail.sequence, salt: tail.salt, size: tail.size, handle: await open(join(dir, segmentFileName(tail.sequence)), "r+") };
  } else {
    const sequence = segments.length > 0 ? segments.at(-1)!.sequence + 1 : (sequences[0] ?? 0);
    active = await createSegment(dir, sequence);
    segments.push({ sequence, path: join(dir, segmentFileName(sequence)), firstRecord: records.length });
  }
  const log = new SegmentedLog(dir, active, segments, records.length, segmentBytes, maxGroupBytes);
  return { log, records };
}

interface SegmentInfo {
  sequence: number;
  path: string;
  /** Index (since open, counting replayed records) of its first record. */
  firstRecord: number;
}

interface ActiveSegment {
  sequence: number;
  salt: number;
  /** Bytes written and synced (or being synced): where the next frame goes. */
  size: number;
  handle: FileHandle;
}

interface PendingAppend {
  /** Its place in the log since open (replayed records count). */
  index: number;
  record: Uint8Array;
  resolve: () => void;
  reject: (error: Error) => void;
}

class SegmentedLog implements WriteAheadLog {
  /** FIFO of appends not yet written; `head` is the next to take. */
  private queue: PendingAppend[] = [];
  private head = 0;
  private writing: Promise<void> | undefined;
  private failure: Error | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;
  private appended: number;
  private releasing: Promise<void> = Promise.resolve();
  private readonly counters: WalStats = { records: 0, syncs: 0, segmentsReleased: 0 };

  constructor(
    private readonly dir: string,
    private active: ActiveSegment,
    /** Every segment on disk, oldest first; the last is the active one. */
    private readonly segments: SegmentInfo[],
    recordsOnDisk: number,
    private readonly segmentBytes: number,
    private readonly maxGroupBytes: number,
  ) {
    this.appended = recordsOnDisk;
  }

  append(record: Uint8Array): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new Error(`write-ahead log ${this.dir} is closed`));
    if (record.byteLength > maxRecordBytes) {
      return Promise.reject(new Error(`write-ahead log record of ${record.byteLength} bytes exceeds the limit of ${maxRecordBytes}`));
    }
    const index = this.appended++;
    // Started a microtask later, so appends made in one synchronous block share the first group too.
    this.writing ??= Promise.resolve().then(() => this.writeGroups());
    return new Promise<void>((resolve, reject) => this.queue.push({ index, record, resolve, reject }));
  }

  mark(): WalMark {
    return { records: this.appended };
  }

  release(mark: WalMark): Promise<void> {
    // A segment can go once the segment after it starts at or before the mark.
    let count = 0;
    while (count + 1 < this.segments.length && this.segments[count + 1]!.firstRecord <= mark.records) count++;
    const doomed = this.segments.splice(0, count);
    // Serialized, so deletions reach the disk oldest first even across calls.
    const done = this.releasing.then(async () => {
      for (const segment of doomed) {
        await unlink(segment.path);
        await syncDirectory(this.dir);
        this.counters.segmentsReleased++;
      }
    });
    this.releasing = done.catch(() => undefined);
    return done;
  }

  stats(): WalStats {
    return { ...this.counters };
  }

  close(): Promise<void> {
    this.closed = true;
    this.closing ??= (async () => {
      await this.writing;
      await this.releasing;
      await this.active.handle.close();
    })();
    return this.closing;
  }

  /** Writes and syncs queued appends, a group at a time, until none are left. */
  private async writeGroups(): Promise<void> {
    while (this.head < this.queue.length) {
      const group = this.takeGroup();
      try {
        await this.writeGroup(group);
      } catch (error) {
        this.poison(error as Error, group);
        break;
      }
      this.counters.records += group.length;
      for (const append of group) append.resolve();
    }
    this.writing = undefined;
  }

  private takeGroup(): PendingAppend[] {
    let bytes = 0;
    let end = this.head;
    while (end < this.queue.length && (end === this.head || bytes + this.queue[end]!.record.byteLength <= this.maxGroupBytes)) {
      bytes += this.queue[end]!.record.byteLength;
      end++;
    }
    const group = this.queue.slice(this.head, end);
    if (end === this.queue.length) {
      this.queue = [];
      this.head = 0;
    } else {
      this.head = end;
    }
    return group;
  }

  private async writeGroup(group: PendingAppend[]): Promise<void> {
    if (this.active.size >= this.segmentBytes && this.active.size > segmentHeaderBytes) await this.rotate(group[0]!.index);
    const { salt, handle } = this.active;
    const buffers: Uint8Array[] = [];
    let offset = this.active.size;
    for (const { record } of group) {
      buffers.push(frameHeader(salt, offset, record), record);
      offset += frameHeaderBytes + record.byteLength;
    }
    // The write lands in the page cache, so it is cheap on this thread; only
    // the fdatasync goes to the thread pool (one hop per group, not two).
    writeFullySync(handle.fd, buffers, this.active.size);
    this.active.size = offset;
    this.counters.syncs++;
    await new Promise<void>((resolve, reject) => fdatasync(handle.fd, (error) => (error ? reject(error) : resolve())));
  }

  /** Starts the next segment; every record of the current one is already synced. */
  private async rotate(firstRecord: number): Promise<void> {
    const sequence = this.active.sequence + 1;
    const next = await createSegment(this.dir, sequence);
    const previous = this.active;
    this.active = next;
    this.segments.push({ sequence, path: join(this.dir, segmentFileName(sequence)), firstRecord });
    await previous.handle.close();
  }

  private poison(cause: Error, group: PendingAppend[]): void {
    this.failure = new Error(`write-ahead log ${this.dir} failed, no later append can succeed: ${cause.message}`, { cause });
    const pending = [...group, ...this.queue.slice(this.head)];
    this.queue = [];
    this.head = 0;
    for (const append of pending) append.reject(this.failure);
  }
}

function segmentFileName(sequence: number): string {
  return `${sequence.toString(16).padStart(16, "0")}.wal`;
}

async function createSegment(dir: string, sequence: number): Promise<ActiveSegment> {
  const salt = randomBytes(4).readUInt32LE(0);
  const header = Buffer.alloc(segmentHeaderBytes);
  magic.copy(header, 0);
  header.writeUInt32LE(formatVersion, 8);
  header.writeBigUInt64LE(BigInt(sequence), 16);
  header.writeUInt32LE(salt, 24);
  header.writeUInt32LE(new Crc32c().update(header.subarray(0, 28)).digest(), 28);
  const handle = await open(join(dir, segmentFileName(sequence)), "wx");
  try {
    writeFullySync(handle.fd, [header], 0);
    await handle.datasync();
    await syncDirectory(dir);
  } catch (error) {
    await handle.close();
    throw error;
  }
  return { sequence, salt, size: segmentHeaderBytes, handle };
}

function frameHeader(salt: number, offset: number, record: Uint8Array): Buffer {
  const header = Buffer.allocUnsafe(frameHeaderBytes);
  header.writeUInt32LE(record.byteLength, 0);
  header.writeUInt32LE(frameCrc(salt, offset, record.byteLength, record), 4);
  return header;
}

function frameCrc(salt: number, offset: number, length: number, record: Uint8Array): number {
  const prefix = Buffer.allocUnsafe(16);
  prefix.writeUInt32LE(salt, 0);
  prefix.writeBigUInt64LE(BigInt(offset), 4);
  prefix.writeUInt32LE(length, 12);
  return new Crc32c().update(prefix).update(record).digest();
}

type SegmentRead =
  | { kind: "torn-header" }
  | { kind: "ok"; salt: number; records: Uint8Array[]; size: number; end: number };

/** Parses one segment; `end` is where its intact frames stop (< size: a torn tail to cut). */
function readSegment(path: string, bytes: Buffer, sequence: number, last: boolean): SegmentRead {
  const headerOk =
    bytes.length >= segmentHeaderBytes &&
    bytes.subarray(0, 8).equals(magic) &&
    bytes.readUInt32LE(28) === new Crc32c().update(bytes.subarray(0, 28)).digest();
  if (!headerOk) {
    // A header is synced before any record is written after it.
    if (last && bytes.length <= segmentHeaderBytes) return { kind: "torn-header" };
    throw new Error(`write-ahead log segment ${path} is corrupt: bad segment header at offset 0`);
  }
  const version = bytes.readUInt32LE(8);
  if (version !== formatVersion) throw new Error(`write-ahead log segment ${path} has format version ${version}; this brain reads version ${formatVersion}`);
  const recorded = Number(bytes.readBigUInt64LE(16));
  if (recorded !== sequence) throw new Error(`write-ahead log segment ${path} is corrupt: its header says sequence ${recorded} at offset 16`);
  const salt = bytes.readUInt32LE(24);

  const records: Uint8Array[] = [];
  let offset = segmentHeaderBytes;
  while (offset < bytes.length) {
    const length = frameAt(bytes, offset, salt);
    if (length === undefined) {
      const intact = findFrameAfter(bytes, offset + 1, salt);
      if (!last || intact !== undefined) {
        const why = intact !== undefined ? `an intact record follows at offset ${intact}` : "it is not the last segment";
        throw new Error(`write-ahead log segment ${path} is corrupt: bad record at offset ${offset} (${why})`);
      }
      return { kind: "ok", salt, records, size: bytes.length, end: offset };
    }
    records.push(bytes.subarray(offset + frameHeaderBytes, offset + frameHeaderBytes + length));
    offset += frameHeaderBytes + length;
  }
  return { kind: "ok", salt, records, size: bytes.length, end: offset };
}

/** The record length of an intact frame at `offset`, or undefined. */
function frameAt(bytes: Buffer, offset: number, salt: number): number | undefined {
  if (offset + frameHeaderBytes > bytes.length) return undefined;
  const length = bytes.readUInt32LE(offset);
  const end = offset + frameHeaderBytes + length;
  if (length > maxRecordBytes || end > bytes.length) return undefined;
  const record = bytes.subarray(offset + frameHeaderBytes, end);
  return frameCrc(salt, offset, length, record) === bytes.readUInt32LE(offset + 4) ? length : undefined;
}

/**
 * The offset of the first intact frame at or after `from`: proof that a bad
 * frame before it is damage, not a torn tail. Runs only when a log ends badly.
 */
function findFrameAfter(bytes: Buffer, from: number, salt: number): number | undefined {
  for (let offset = from; offset + frameHeaderBytes <= bytes.length; offset++) {
    if (frameAt(bytes, offset, salt) !== undefined) return offset;
  }
  return undefined;
}

/**
 * Writes every byte of `buffers` at `position`, across short writes, on the
 * calling thread: the page cache takes them at once (only syncs go to the pool).
 */
function writeFullySync(fd: number, buffers: Uint8Array[], position: number): void {
  let index = 0;
  let skip = 0; // bytes of buffers[index] already written
  while (index < buffers.length) {
    const chunk = buffers.slice(index, index + maxBuffersPerWrite);
    if (skip > 0) chunk[0] = chunk[0]!.subarray(skip);
    const bytesWritten = writevSync(fd, chunk, position);
    if (bytesWritten === 0) throw new Error("write made no progress");
    position += bytesWritten;
    let left = bytesWritten + skip;
    while (index < buffers.length && left >= buffers[index]!.byteLength) {
      left -= buffers[index]!.byteLength;
      index++;
    }
    skip = left;
  }
}

async function syncDirectory(path: string): Promise<void> {
  const handle = await open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
