// The testkit's PostgreSQL part where a data dir is chosen by the caller (npm
// start keeps one in the checkout): as root the server runs as the postgres
// user, and a directory it cannot enter is named before initdb runs.
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { startPostgres } from "./postgres.js";

let dir: string | undefined;
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

it("names a directory above the data dir that the postgres user cannot enter, and starts once it can", { timeout: 60_000 }, async () => {
  dir = await mkdtemp(join(tmpdir(), "wharf-pg-reach-")); // mode 0700, like mktemp -d
  const dataDir = join(dir, "state", "postgres");
  if (process.getuid?.() === 0) {
    await expect(startPostgres({ dataDir })).rejects.toThrow(`cannot enter ${dir} (mode 700)`);
    await chmod(dir, 0o711);
  }
  const server = await startPostgres({ dataDir });
  try {
    expect(server.dataDir).toBe(dataDir);
  } finally {
    await server.stop();
  }
});
