import { log } from "../log.js";
import type { MvccStore } from "./store.js";

export interface AutoCompaction {
  mode: "periodic" | "revision";
  /** periodic: milliseconds of history to keep; revision: revisions to keep. */
  retention: number;
}

/**
 * etcd's auto compaction. revision mode keeps the last `retention`
 * revisions; periodic mode samples the revision over time and compacts to
 * the one seen `retention` ago. Returns a stop function.
 */
export function startAutoCompaction(store: MvccStore, options: AutoCompaction, now: () => number = Date.now): () => void {
  if (options.retention <= 0) return () => undefined;
  const samples: Array<{ at: number; revision: number }> = [];
  const interval =
    options.mode === "revision" ? 5 * 60_000 : Math.max(100, Math.min(options.retention / 10, 5 * 60_000));
  const tick = () => {
    let target: number | undefined;
    if (options.mode === "revision") {
      target = store.revision - options.retention;
    } else {
      samples.push({ at: now(), revision: store.revision });
      const cutoff = now() - options.retention;
      let chosen: number | undefined;
      while (samples.length > 0 && samples[0]!.at <= cutoff) chosen = samples.shift()!.revision;
      target = chosen;
    }
    if (target === undefined || target <= store.compactRevision) return;
    store.compact(target, false).then(
      () => log("info", "auto compaction", { revision: target }),
      (error: unknown) => log("warn", "auto compaction skipped", { revision: target, error: String(error) }),
    );
  };
  const timer = setInterval(tick, interval);
  timer.unref();
  return () => clearInterval(timer);
}
