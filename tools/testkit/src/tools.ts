import { accessSync, constants } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

export type Tool = "envoy" | "kube-apiserver" | "kubectl" | "etcd" | "etcdctl";

/**
 * Path of a real part installed by `npm run setup`. Throws, never skips:
 * a test that needs a part must fail loudly on a machine without it.
 */
export function toolPath(tool: Tool): string {
  const path = join(repoRoot, ".tools", "bin", tool);
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new Error(
      `${tool} is not installed at ${path}. Run \`npm run setup\` (it builds or downloads ${tool}); ` +
        `its output says what failed if it cannot.`,
    );
  }
  return path;
}
