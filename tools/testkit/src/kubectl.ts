import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { toolPath } from "./tools.js";

const run = promisify(execFile);

/**
 * kubectl against one kubeconfig: resolves with its stdout; a failure's
 * message is what kubectl printed, so tests can match the server's words.
 */
export function kubectlOn(kubeconfig: string): (...args: string[]) => Promise<string> {
  return async (...args) => {
    try {
      return (await run(toolPath("kubectl"), ["--kubeconfig", kubeconfig, ...args], { maxBuffer: 64 * 1024 * 1024 })).stdout;
    } catch (error) {
      const { stderr, stdout } = error as { stderr?: string; stdout?: string };
      throw new Error(`kubectl ${args.join(" ")}: ${stderr || stdout || (error as Error).message}`, { cause: error });
    }
  };
}
