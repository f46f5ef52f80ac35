// The commands a user runs from the repository root: `npx wharf …` and
// `npx brain …` the way npm users expect, `.tools/bin/…` as the README says,
// and setup's hints when it cannot download something.
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { repoRoot } from "@wharf/testkit";

const run = promisify(execFile);

describe("wharf's own commands from the repository root", () => {
  // --no-install: a missing link must fail here, not fetch a stranger's package of that name.
  for (const [name, usage] of [
    ["wharf", /^Usage:\n\s+wharf control-plane/],
    ["brain", /^Usage: brain \[flags\]/],
  ] as const) {
    it(`npx ${name} runs the workspace's own command`, async () => {
      const { stdout } = await run("npx", ["--no-install", name, "--help"], { cwd: repoRoot });
      expect(stdout).toMatch(usage);
    });

    it(`.tools/bin/${name} runs the same command`, async () => {
      const { stdout } = await run(join(repoRoot, ".tools", "bin", name), ["--help"], { cwd: repoRoot });
      expect(stdout).toMatch(usage);
    });
  }

  it("npx wharf passes arguments and the exit code through, as running its main file does", async () => {
    const outcome = (command: string, args: string[]) =>
      run(command, args, { cwd: repoRoot }).then(
        ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
        (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
      );
    const direct = await outcome(process.execPath, [join(repoRoot, "control-plane", "dist", "cli.js"), "no-such-command"]);
    expect(direct.code).not.toBe(0);
    expect(await outcome("npx", ["--no-install", "wharf", "no-such-command"])).toEqual(direct);
  });
});

describe("setup's failure hints", () => {
  it("name the registries by kind, not by host", async () => {
    const script = await readFile(join(repoRoot, "scripts", "setup.sh"), "utf8");
    const hints = script.split("\n").filter((line) => /\bfail "/.test(line));
    expect(hints.length).toBeGreaterThan(3);
    for (const hint of hints) expect(hint).not.toMatch(/\b[a-z0-9-]+\.(org|com|io|dev|net)\b/i);
    const text = hints.join("\n");
    expect(text).toContain("the npm registry");
    expect(text).toContain("PyPI");
    expect(text).toContain("the Go module proxy");
  });
});
