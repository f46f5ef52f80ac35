/**
 * Polls `check` (a throw counts as "not yet") until it holds; returns how
 * long that took, or fails naming `what` after `timeoutMs` (a function is
 * called then, so the message can quote what was seen).
 */
export async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string | (() => string), intervalMs = 50): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await check().catch(() => false)) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === "string" ? what : what()}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
