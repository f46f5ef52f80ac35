// `brain migrate`: fills a new brain data dir from etcd (a snapshot file or
// a running member). The data dir is written under a temporary name and
// renamed into place only once complete, so a failed or interrupted
// migration never leaves a data dir brain would start from.
import { existsSync, readdirSync } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { openEtcdSource, type EtcdSourceOptions } from "./etcd-source.js";
import { ImportWriter, MigrationError, type ImportSummary } from "./import-writer.js";
import { openSnapshotSource } from "./snapshot-source.js";
import type { MigrationSource } from "./source.js";

export type MigrationFrom = { snapshot: string } | { etcd: EtcdSourceOptions };

export async function migrate(from: MigrationFrom, dataDir: string, progress: (text: string) => void = () => undefined): Promise<ImportSummary> {
  if (existsSync(dataDir) && readdirSync(dataDir).length > 0) {
    throw new MigrationError(`${dataDir} exists and is not empty; migrate into a new data dir`);
  }
  const partial = `${dataDir}.migrating`;
  await rm(partial, { recursive: true, force: true });
  const source: MigrationSource = "snapshot" in from ? openSnapshotSource(from.snapshot) : openEtcdSource(from.etcd);
  let writer: ImportWriter | undefined;
  try {
    writer = await ImportWriter.open(partial);
    let count = 0;
    for await (const event of source.events()) {
      await writer.add(event);
      if (++count % 100_000 === 0) progress(`${count} events read from ${source.description}`);
    }
    const summary = await writer.finish(await source.finish());
    await writer.close();
    writer = undefined;
    if (existsSync(dataDir)) await rm(dataDir, { recursive: true });
    await rename(partial, dataDir);
    return summary;
  } catch (error) {
    await writer?.close().catch(() => undefined);
    await rm(partial, { recursive: true, force: true });
    throw error;
  } finally {
    await source.close();
  }
}
