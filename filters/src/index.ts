import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const buildDir = join(dirname(fileURLToPath(import.meta.url)), "..", "build");

/** Path of a compiled filter module, e.g. wasmPath("hello"). */
export function wasmPath(filter: string): string {
  const path = join(buildDir, `${filter}.wasm`);
  if (!existsSync(path)) {
    throw new Error(`${path} is missing: run \`npm run build\` (it compiles filters/assembly/${filter}).`);
  }
  return path;
}
