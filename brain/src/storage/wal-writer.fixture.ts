// A process that appends to a write-ahead log until it is killed, for the
// crash test in wal.test.ts. Usage: wal-writer.fixture.ts <dir> <journal>
// Record i holds walRecord(i). It prints "open <first> <count>" after
// opening, and appends to the journal file "ack <i>" once append(i)
// resolved and "release <i>" before it releases the segments wholly before
// record i. The journal is written with writeSync to a regular file, so a
// line is in the page cache (and survives SIGKILL) before the next step;
// stdout to a pipe is asynchronous in Node and loses lines at a kill.
import { openSync, writeSync } from "node:fs";
import { openWriteAheadLog } from "./wal.js";

/** Record i: its index, then a length and content that vary with i (empty ones included). */
export function walRecord(index: number): Uint8Array {
  const length = 8 + ((index * 7919) % 2500);
  const record = Buffer.alloc(length);
  record.writeDoubleLE(index, 0);
  for (let i = 8; i < length; i++) record[i] = (index + i) & 0xff;
  return record;
}

export function walRecordIndex(record: Uint8Array): number {
  return Buffer.from(record.buffer, record.byteOffset, record.byteLength).readDoubleLE(0);
}

const inFlight = 16;

async function main(dir: string, journalPath: string): Promise<void> {
  const journal = openSync(journalPath, "a");
  const { log, records } = await openWriteAheadLog(dir, { segmentBytes: 64 * 1024 });
  const first = records.length > 0 ? walRecordIndex(records[0]!) : 0;
  let next = first + records.length;
  process.stdout.write(`open ${first} ${records.length}\n`);
  const marks: Array<{ index: number; mark: ReturnType<typeof log.mark> }> = [];
  const appendOne = async (): Promise<void> => {
    const index = next++;
    await log.append(walRecord(index));
    writeSync(journal, `ack ${index}\n`);
    if (index % 200 === 0) {
      const mark = log.mark();
      // Covers every record appended so far, the ones still in flight too.
      marks.push({ index: first + mark.records, mark });
    }
    if (marks.length > 3) {
      // Keep the last few hundred records; the parent may expect only those.
      const { index: before, mark } = marks.shift()!;
      writeSync(journal, `release ${before}\n`);
      await log.release(mark);
    }
  };
  const worker = async (): Promise<void> => {
    for (;;) await appendOne();
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
}

if (process.argv[1]?.endsWith("wal-writer.fixture.ts")) {
  main(process.argv[2]!, process.argv[3]!).catch((error: unknown) => {
    process.stderr.write(`${(error as Error).stack}\n`);
    process.exit(1);
  });
}
