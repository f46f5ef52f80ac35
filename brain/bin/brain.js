#!/usr/bin/env node
// The `brain` command as npm links it (`npx brain` from the repository root).
// npm links a workspace's bin only if its file exists when it installs, and
// dist/ is built after that: this committed file is what gets linked.
import { existsSync } from "node:fs";

const main = new URL("../dist/main.js", import.meta.url);
if (!existsSync(main)) {
  process.stderr.write("brain: brain/dist/main.js is not built yet; run npm run build\n");
  process.exit(1);
}
await import(main.href);
