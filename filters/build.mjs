// Compiles every filter under assembly/ (each folder with an index.ts except
// the SDK) to build/<name>.wasm, the exact binary Envoy and the test host load.
import { existsSync, mkdirSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import asc from "assemblyscript/asc";

const here = dirname(fileURLToPath(import.meta.url));
process.chdir(here);
const filters = readdirSync(join(here, "assembly"), { withFileTypes: true })
  .filter((entry) => entry.isDirectory() && entry.name !== "sdk")
  .map((entry) => entry.name)
  .filter((name) => existsSync(join(here, "assembly", name, "index.ts")));

mkdirSync(join(here, "build"), { recursive: true });
for (const name of filters) {
  const { error, stderr } = await asc.main([
    join("assembly", name, "index.ts"),
    "--outFile", join("build", `${name}.wasm`),
    "--textFile", join("build", `${name}.wat`),
    "--optimizeLevel", "3",
    "--shrinkLevel", "0",
    "--runtime", "incremental",
    // Envoy calls _initialize before any callback, so static initialisers run
    // with the host imports in place rather than during instantiation.
    "--exportStart", "_initialize",
    "--use", "abort=assembly/sdk/abort/abortWithLog",
  ], { stdout: process.stdout, stderr: process.stderr });
  if (error) {
    console.error(`filters: ${name} failed to compile: ${error.message}\n${stderr.toString()}`);
    process.exit(1);
  }
  console.log(`filters: built build/${name}.wasm`);
}
