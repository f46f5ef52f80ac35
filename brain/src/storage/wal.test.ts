// The write-ahead log on real files: framing and replay, torn tails at every
// byte, corruption, rotation and release, group commit, a real failing disk
// (a full tmpfs), and a writer process killed with SIGKILL at random moments.
import { spawn, execFileSync } from "node:child_process";
import { appendFile, mkdir, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createInterface } from "node:readline";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { makeWorkDir, removeWorkDir } from "@wharf/testkit";
import { openWriteAheadLog } from "./wal.js";
import { walRecord, walRecordIndex } from "./wal-writer.fixture.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  // Every cleanup runs (a failed one must not leave a tmpfs mounted), the first failure is reported.
  const failures: unknown[] = [];
  while (cleanups.length > 0) await cleanups.pop()!().catch((error: unknown) => failures.push(error));
  if (failures.length > 0) throw failures[0];
});

async function workDir(): Promise<string> {
  const dir = await makeWorkDir("wal");
  cleanups.push(() => removeWorkDir(dir));
  return dir;
}

const bytes = (text: string) => new TextEncoder().encode(text);
const texts = (records: Uint8Array[]) => records.map((record) => new TextDecoder().decode(record));

async function segmentFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((name) => name.endsWith(".wal")).sort();
}

/** A log in `dir` holding `records`, closed; returns its one segment's path and the offset where each record's frame starts. */
async function logWith(dir: string, records: string[]): Promise<{ segment: string; offsets: number[]; size: number }> {
  const { log } = await openWriteAheadLog(dir);
  const offsets: number[] = [];
  let offset = 32; // the segment header
  for (const record of records) {
    offsets.push(offset);
    offset += 8 + bytes(record).byteLength;
    await log.append(bytes(record));
  }
  await log.close();
  const [name] = await segmentFiles(dir);
  const segment = join(dir, name!);
  expect((await stat(segment)).size).toBe(offset);
  return { segment, offsets, size: offset };
}

describe("write-ahead log: framing and replay", () => {
  it("replays every record in append order, then continues after them", async () => {
    const dir = await workDir();
    const first = await openWriteAheadLog(dir);
    expect(first.records).toEqual([]);
    const records = [bytes("a"), new Uint8Array(0), bytes("ccc"), new Uint8Array(70_000).fill(7)];
    for (const record of records) await first.log.append(record);
    await first.log.close();
    const second = await openWriteAheadLog(dir);
    expect(second.records.map((r) => Buffer.from(r))).toEqual(records.map((r) => Buffer.from(r)));
    await second.log.append(bytes("after"));
    await second.log.close();
    const third = await openWriteAheadLog(dir);
    expect(third.records.length).toBe(5);
    expect(texts(third.records.slice(4))).toEqual(["after"]);
    await third.log.close();
  });

  it("refuses appends after close, and records over the size limit", async () => {
    const dir = await workDir();
    const { log } = await openWriteAheadLog(dir);
    await expect(log.append(new Uint8Array(256 * 1024 * 1024 + 1))).rejects.toThrow(/exceeds the limit/);
    await log.close();
    await expect(log.append(bytes("late"))).rejects.toThrow(/is closed/);
  });
});

describe("write-ahead log: torn tails and corruption", () => {
  it("drops a torn last record cut at every byte offset, keeps the rest, and appends after it", async () => {
    const dir = await workDir();
    const last = "the last record, cut short by a crash at each of its bytes";
    const { segment, offsets, size } = await logWith(dir, ["one", "two", "three", last]);
    const whole = await readFile(segment);
    for (let cut = offsets[3]!; cut < size; cut++) {
      await writeFile(segment, whole.subarray(0, cut));
      const { log, records } = await openWriteAheadLog(dir);
      expect(texts(records), `cut at ${cut}`).toEqual(["one", "two", "three"]);
      // The torn bytes are gone from disk, and the next record goes where they were.
      expect((await stat(segment)).size).toBe(offsets[3]);
      await log.append(bytes(`again ${cut}`));
      await log.close();
      const reopened = await openWriteAheadLog(dir);
      expect(texts(reopened.records)).toEqual(["one", "two", "three", `again ${cut}`]);
      await reopened.log.close();
    }
  });

  it("drops a tail of zeros or garbage after the last record (a file system that extended the file but lost the data)", async () => {
    const dir = await workDir();
    const { segment, size } = await logWith(dir, ["one", "two"]);
    for (const tail of [Buffer.alloc(4096), Buffer.from("garbage that is no frame at all")]) {
      await appendFile(segment, tail);
      const { log, records } = await openWriteAheadLog(dir);
      expect(texts(records)).toEqual(["one", "two"]);
      expect((await stat(segment)).size).toBe(size);
      await log.close();
    }
  });

  it("drops a last record with a flipped bit (indistinguishable from a torn write: nothing intact follows)", async () => {
    const dir = await workDir();
    const { segment, offsets } = await logWith(dir, ["one", "two", "three"]);
    const whole = await readFile(segment);
    whole[offsets[2]! + 9]! ^= 0x10;
    await writeFile(segment, whole);
    const { log, records } = await openWriteAheadLog(dir);
    expect(texts(records)).toEqual(["one", "two"]);
    await log.close();
  });

  it("refuses a bad record followed by an intact one, naming the file and offset, and leaves the file as it was", async () => {
    const dir = await workDir();
    const { segment, offsets } = await logWith(dir, ["one", "two", "three", "four"]);
    const original = await readFile(segment);
    // A flipped bit in a record's body, in its length, in its checksum.
    for (const at of [offsets[1]! + 8, offsets[1]!, offsets[1]! + 5]) {
      const damaged = Buffer.from(original);
      damaged[at]! ^= 0x01;
      await writeFile(segment, damaged);
      await expect(openWriteAheadLog(dir)).rejects.toThrow(
        `write-ahead log segment ${segment} is corrupt: bad record at offset ${offsets[1]} (an intact record follows at offset ${offsets[2]})`,
      );
      expect(await readFile(segment)).toEqual(damaged);
    }
  });

  it("does not take bytes that look like frames inside a torn record for intact records", async () => {
    // A record carrying a copy of the log's own bytes (a user's value can be
    // anything): cut inside it, the copied frames must not count as intact,
    // or a torn tail would be reported as corruption and brain would not start.
    const dir = await workDir();
    const { segment } = await logWith(dir, ["one", "two", "three"]);
    const copy = await readFile(segment);
    const { log } = await openWriteAheadLog(dir);
    await log.append(copy);
    await log.close();
    const full = await readFile(segment);
    await writeFile(segment, full.subarray(0, full.length - 1));
    const { log: reopened, records } = await openWriteAheadLog(dir);
    expect(texts(records)).toEqual(["one", "two", "three"]);
    await reopened.close();
  });

  it("refuses any bad record in a segment that is not the last, and a missing segment", async () => {
    const dir = await workDir();
    const { log } = await openWriteAheadLog(dir, { segmentBytes: 100 });
    for (let i = 0; i < 6; i++) await log.append(bytes(`record ${i} ${"x".repeat(60)}`));
    await log.close();
    const names = await segmentFiles(dir);
    expect(names.length).toBeGreaterThanOrEqual(3);
    const second = join(dir, names[1]!);
    const original = await readFile(second);
    // Its last record cut short: a torn tail is only possible in the last segment.
    await writeFile(second, original.subarray(0, original.length - 3));
    await expect(openWriteAheadLog(dir)).rejects.toThrow(`write-ahead log segment ${second} is corrupt: bad record at offset 32 (it is not the last segment)`);
    // A damaged header.
    const badHeader = Buffer.from(original);
    badHeader[3]! ^= 0xff;
    await writeFile(second, badHeader);
    await expect(openWriteAheadLog(dir)).rejects.toThrow(`write-ahead log segment ${second} is corrupt: bad segment header at offset 0`);
    await rm(second);
    await expect(openWriteAheadLog(dir)).rejects.toThrow(`write-ahead log ${dir} is corrupt: segment ${names[1]} is missing (${names[0]} is followed by ${names[2]})`);
  });

  it("removes a last segment whose creation was cut short, and reuses its number", async () => {
    const dir = await workDir();
    const { log } = await openWriteAheadLog(dir, { segmentBytes: 100 });
    for (let i = 0; i < 3; i++) await log.append(bytes(`record ${i} ${"x".repeat(60)}`));
    await log.close();
    const names = await segmentFiles(dir);
    const lastName = names.at(-1)!;
    const next = `${(Number.parseInt(lastName, 16) + 1).toString(16).padStart(16, "0")}.wal`;
    for (const partial of [Buffer.alloc(0), Buffer.from("wharfwal\x01\x00")]) {
      await writeFile(join(dir, next), partial);
      const reopened = await openWriteAheadLog(dir, { segmentBytes: 100 });
      await reopened.log.close();
      expect(reopened.records.length).toBe(3);
      // Made again from scratch: just a fresh header.
      expect(await segmentFiles(dir)).toEqual([...names, next]);
      expect((await stat(join(dir, next))).size).toBe(32);
      await rm(join(dir, next));
    }
    // The same bytes with records after them would be damage, not a torn creation.
    await writeFile(join(dir, next), Buffer.alloc(64, 1));
    await expect(openWriteAheadLog(dir)).rejects.toThrow(`write-ahead log segment ${join(dir, next)} is corrupt: bad segment header at offset 0`);
  });
});

describe("write-ahead log: segments", () => {
  it("rotates segments and releases those wholly before a mark, never the active one", async () => {
    const dir = await workDir();
    const { log } = await openWriteAheadLog(dir, { segmentBytes: 1024 });
    const record = (i: number) => bytes(`${String(i).padStart(4, "0")} ${"r".repeat(95)}`);
    for (let i = 0; i < 50; i++) await log.append(record(i));
    const before = await segmentFiles(dir);
    expect(before.length).toBeGreaterThan(4);
    const mark = log.mark();
    // Appended after the mark, some in a fresh segment.
    const later = Array.from({ length: 20 }, (_, i) => log.append(record(50 + i)));
    await log.release(mark);
    await Promise.all(later);
    const after = await segmentFiles(dir);
    const deleted = before.filter((name) => !after.includes(name));
    expect(deleted.length).toBeGreaterThan(0);
    expect(deleted).toEqual(before.slice(0, deleted.length)); // oldest first, no holes
    expect(log.stats().segmentsReleased).toBe(deleted.length);
    await log.close();

    // Every record from the mark on is still there, in order; the released ones are gone.
    const { log: reopened, records } = await openWriteAheadLog(dir, { segmentBytes: 1024 });
    const indexes = texts(records).map((text) => Number(text.slice(0, 4)));
    expect(indexes.at(-1)).toBe(69);
    expect(indexes).toEqual(Array.from({ length: indexes.length }, (_, i) => indexes[0]! + i));
    expect(indexes[0]).toBeGreaterThan(0);
    expect(indexes[0]).toBeLessThanOrEqual(50);
    // A mark covering everything releases all but the active segment.
    await reopened.release(reopened.mark());
    expect((await segmentFiles(dir)).length).toBe(1);
    await reopened.append(record(70));
    await reopened.close();
    const last = await openWriteAheadLog(dir, { segmentBytes: 1024 });
    expect(texts(last.records).at(-1)!.slice(0, 4)).toBe("0070");
    await last.log.close();
  });

  it("releases nothing for a mark inside the active segment", async () => {
    const dir = await workDir();
    const { log } = await openWriteAheadLog(dir);
    await log.append(bytes("a"));
    await log.release(log.mark());
    expect(await segmentFiles(dir)).toHaveLength(1);
    expect(log.stats().segmentsReleased).toBe(0);
    await log.close();
  });
});

describe("write-ahead log: group commit", () => {
  it("syncs concurrent appends together and resolves them strictly in append order", async () => {
    const dir = await workDir();
    const { log } = await openWriteAheadLog(dir, { maxGroupBytes: 16 * 1024 });
    const resolved: number[] = [];
    const count = 500;
    const appends: Array<Promise<void>> = [];
    for (let i = 0; i < count; i++) {
      appends.push(log.append(bytes(`${i} ${"v".repeat(200)}`)).then(() => void resolved.push(i)));
      // Half arrive while earlier groups are being written and synced.
      if (i % 50 === 49) await new Promise((resolve) => setImmediate(resolve));
    }
    await Promise.all(appends);
    expect(resolved).toEqual(Array.from({ length: count }, (_, i) => i));
    const { syncs, records } = log.stats();
    expect(records).toBe(count);
    expect(syncs).toBeLessThan(count / 4);
    // 16 KiB groups of ~210-byte records: more than one group was needed.
    expect(syncs).toBeGreaterThanOrEqual(Math.ceil((count * 212) / (16 * 1024)));
    await log.close();
    const { log: reopened, records: replayed } = await openWriteAheadLog(dir);
    expect(texts(replayed).map((text) => Number(text.split(" ")[0]))).toEqual(Array.from({ length: count }, (_, i) => i));
    await reopened.close();
  });
});

describe("write-ahead log: a failing disk poisons the log", () => {
  it("rejects the failed append, every pending one and every later one with the cause (ENOSPC on a full tmpfs)", async () => {
    const root = await workDir();
    const mount = join(root, "small");
    await mkdir(mount);
    // A real file system that runs out of space: 256 KiB of tmpfs. Needs root (mount), and fails loudly without it.
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", mount]);
    cleanups.push(async () => void execFileSync("umount", [mount]));
    const dir = join(mount, "wal");
    await writeFile(join(mount, "filler"), Buffer.alloc(16 * 1024));
    const { log } = await openWriteAheadLog(dir);
    cleanups.push(() => log.close());
    const outcomes: Array<{ i: number; ok: boolean; error?: Error }> = [];
    const appends: Array<Promise<void>> = [];
    for (let i = 0; i < 200; i++) {
      const record = new Uint8Array(4096).fill(i & 0xff);
      new DataView(record.buffer).setUint32(0, i);
      appends.push(
        log.append(record).then(
          () => void outcomes.push({ i, ok: true }),
          (error: Error) => void outcomes.push({ i, ok: false, error }),
        ),
      );
      if (i % 8 === 7) await new Promise((resolve) => setImmediate(resolve));
    }
    await Promise.all(appends);
    // Outcomes in append order: a run of successes, then only failures, all with the same poisoning error.
    expect(outcomes.map(({ i }) => i)).toEqual(Array.from({ length: 200 }, (_, i) => i));
    const firstFailure = outcomes.findIndex(({ ok }) => !ok);
    // The first group fits. A later one may be written in part before the disk is full: all of it fails.
    expect(firstFailure).toBeGreaterThan(0);
    expect(firstFailure).toBeLessThan(60); // 240 KiB left cannot hold 60 records of 4 KiB
    const failures = outcomes.slice(firstFailure);
    expect(failures.every(({ ok }) => !ok)).toBe(true);
    const poison = failures[0]!.error!;
    expect(poison.message).toMatch(new RegExp(`^write-ahead log ${dir} failed, no later append can succeed: ENOSPC`));
    expect(failures.every(({ error }) => error === poison)).toBe(true);
    // Later appends fail too, even with space freed: after a failed write the log cannot know what reached the disk.
    await rm(join(mount, "filler"));
    await expect(log.append(bytes("later"))).rejects.toBe(poison);
    await log.close();

    // What was acknowledged is intact; the half-written group is a torn tail.
    const { log: reopened, records } = await openWriteAheadLog(dir);
    cleanups.push(() => reopened.close());
    expect(records.length).toBeGreaterThanOrEqual(firstFailure);
    expect(records.slice(0, firstFailure).map((record) => new DataView(record.buffer, record.byteOffset).getUint32(0))).toEqual(
      Array.from({ length: firstFailure }, (_, i) => i),
    );
    await reopened.close();
  });

  it("poisons the log when a new segment cannot be created (ENOSPC on the header)", async () => {
    const root = await workDir();
    const mount = join(root, "small");
    await mkdir(mount);
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", mount]);
    cleanups.push(async () => void execFileSync("umount", [mount]));
    const dir = join(mount, "wal");
    const { log } = await openWriteAheadLog(dir, { segmentBytes: 1 });
    cleanups.push(() => log.close());
    // Fill the file system beside the log, so only the next segment's creation fails.
    await log.append(bytes("fits"));
    await writeFile(join(mount, "filler"), Buffer.alloc(64 * 1024)).catch(() => undefined);
    const failed = log.append(bytes("needs a new segment"));
    await expect(failed).rejects.toThrow(/no later append can succeed: ENOSPC/);
    await expect(log.append(bytes("after"))).rejects.toThrow(/no later append can succeed: ENOSPC/);
    await log.close();
    await rm(join(mount, "filler"));
    const { log: reopened, records } = await openWriteAheadLog(dir, { segmentBytes: 1 });
    cleanups.push(() => reopened.close());
    expect(texts(records)).toEqual(["fits"]);
    await reopened.close();
  });
});

describe("write-ahead log: SIGKILL at random moments", () => {
  it("keeps every acknowledged record, in order, across 25 kills of a writer process", async () => {
    const root = await workDir();
    const dir = join(root, "wal");
    const journalPath = join(root, "journal");
    const fixture = fileURLToPath(new URL("./wal-writer.fixture.ts", import.meta.url));
    let highestAcked = -1;
    let releasedBefore = 0;
    let totalAcked = 0;
    for (let trial = 0; trial < 25; trial++) {
      const child = spawn(process.execPath, ["--import", "tsx", fixture, dir, journalPath], { stdio: ["ignore", "pipe", "pipe"] });
      let stderr = "";
      child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise<void>((resolve) => child.on("close", () => resolve()));
      let opened: (() => void) | undefined;
      const openedPromise = new Promise<void>((resolve) => (opened = resolve));
      let replayedUpTo = -1;
      createInterface({ input: child.stdout }).on("line", (line) => {
        const [what, a, b] = line.split(" ");
        if (what === "open") {
          replayedUpTo = Number(a) + Number(b) - 1;
          opened!();
        }
      });
      await Promise.race([openedPromise, exited]);
      expect(child.exitCode, stderr).toBeNull();
      // The writer's own replay holds everything acknowledged before.
      expect(replayedUpTo, `trial ${trial}: the writer's replay`).toBeGreaterThanOrEqual(highestAcked);
      await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 300));
      child.kill("SIGKILL");
      await exited;
      const journal = (await readFile(journalPath, "utf8")).split("\n").filter((line) => line !== "");
      await rm(journalPath);
      for (const line of journal) {
        const [what, index] = line.split(" ");
        if (what === "ack") {
          highestAcked = Math.max(highestAcked, Number(index));
          totalAcked++;
        } else if (what === "release") {
          releasedBefore = Math.max(releasedBefore, Number(index));
        }
      }

      const { log, records } = await openWriteAheadLog(dir, { segmentBytes: 64 * 1024 });
      const indexes = records.map(walRecordIndex);
      // Contiguous, in order, each record exactly what was appended at its index.
      expect(indexes.length, `trial ${trial}`).toBeGreaterThan(0);
      expect(indexes.at(-1)!, `trial ${trial}: the highest acknowledged record`).toBeGreaterThanOrEqual(highestAcked);
      expect(indexes[0]!, `trial ${trial}: the first record kept by release`).toBeLessThanOrEqual(releasedBefore);
      for (const [i, record] of records.entries()) {
        expect(indexes[i]).toBe(indexes[0]! + i);
        expect(Buffer.from(record).equals(Buffer.from(walRecord(indexes[i]!))), `record ${indexes[i]}`).toBe(true);
      }
      await log.close();
    }
    console.log(`wal crash: ${totalAcked} acknowledged appends over 25 kills, highest ${highestAcked}, released before ${releasedBefore}`);
    // The kills landed while records were being acknowledged, not before the first.
    expect(totalAcked).toBeGreaterThan(25 * 10);
    expect(releasedBefore).toBeGreaterThan(0);
  }, 120_000);
});
