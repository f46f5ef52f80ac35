// A watch from revision 1 on the whole key space must deliver exactly the
// committed writes, in revision order, each revision's events together
// (etcd's ordered, unique, atomic, reliable and resumable guarantees), with
// the kv and prev_kv the linearization says each write produced.
import type { KeyRange, KeyValue, WatchEvent, WatchHistory } from "./history.js";
import { describeKv } from "./describe.js";
import { inRange, type Change } from "./model.js";

function sameKv(a: KeyValue | undefined, b: KeyValue | undefined): boolean {
  if (!a || !b) return a === b;
  return a.key === b.key && a.value === b.value && a.modRevision === b.modRevision && a.createRevision === b.createRevision && a.version === b.version;
}

function describeEvent(event: WatchEvent | Change): string {
  return `${event.type.toUpperCase()} ${describeKv(event.kv)}${event.prevKv ? ` prev ${describeKv(event.prevKv)}` : ""}`;
}

/**
 * Checks each watch against the committed changes (`changes.get(r)`: what
 * revision r changed, for r in 2..finalRevision). Returns one message per
 * violation, empty when every watch is right.
 */
export function checkWatches(watches: WatchHistory[], changes: ReadonlyMap<number, Change[]>, finalRevision: number): string[] {
  const violations: string[] = [];
  for (const watch of watches) {
    const problem = checkWatch(watch, changes, finalRevision);
    if (problem) violations.push(`watch ${watch.name}: ${problem}`);
  }
  return violations;
}

/** The changes a watch on `range` sees: revisions that touched none of its keys are left out. */
function filtered(changes: ReadonlyMap<number, Change[]>, range: KeyRange): Map<number, Change[]> {
  const seen = new Map<number, Change[]>();
  for (const [revision, list] of changes) {
    const inside = list.filter((change) => inRange(change.kv.key, range));
    if (inside.length) seen.set(revision, inside);
  }
  return seen;
}

function checkWatch(watch: WatchHistory, allChanges: ReadonlyMap<number, Change[]>, finalRevision: number): string | undefined {
  const changes = watch.range ? filtered(allChanges, watch.range) : allChanges;
  let lastRevision = 0; // the newest revision delivered (or promised by a progress notification) so far, over all segments
  for (const [segmentIndex, segment] of watch.segments.entries()) {
    if (segment.startRevision > lastRevision + 1) {
      return `segment ${segmentIndex} started at revision ${segment.startRevision}, after only revision ${lastRevision} was delivered (a recorder bug)`;
    }
    // A resumed stream starts at the first revision at or after its start that changed something.
    let revision = segment.startRevision;
    let position = 0;
    let previousResponseRevision = 0;
    for (const response of segment.responses) {
      if (response.events.length === 0) {
        // A progress notification at R: every event at or below R must have been sent already.
        if (response.revision > finalRevision) {
          return `a progress notification claimed revision ${response.revision}, past the history's last revision ${finalRevision}`;
        }
        let due = revision;
        while (!changes.has(due) && due <= response.revision) due++;
        if (due <= response.revision) {
          return `a progress notification claimed revision ${response.revision} before revision ${due} (${changes
            .get(due)!
            .map(describeEvent)
            .join("; ")}) was delivered`;
        }
        lastRevision = Math.max(lastRevision, response.revision);
        continue;
      }
      const firstRevision = response.events[0]!.kv.modRevision;
      if (firstRevision <= previousResponseRevision) {
        return `revision ${firstRevision} arrived in a response after one holding revision ${previousResponseRevision} (split or reordered revision)`;
      }
      for (const event of response.events) {
        const eventRevision = event.kv.modRevision;
        if (eventRevision > response.revision) {
          return `an event at revision ${eventRevision} came in a response whose header says revision ${response.revision}`;
        }
        if (eventRevision > finalRevision) {
          return `delivered revision ${eventRevision}, but the history's last revision is ${finalRevision}: ${describeEvent(event)}`;
        }
        // Skip revisions with nothing expected at or after `revision` (only revision 1, the empty store).
        let expected = changes.get(revision);
        while (!expected && revision < finalRevision) expected = changes.get(++revision);
        if (!expected) return `delivered ${describeEvent(event)}, after every committed write had been delivered`;
        if (eventRevision > revision) {
          return `gap: revision ${revision} (${expected.map(describeEvent).join("; ")}) was never delivered; the next event was at revision ${eventRevision}`;
        }
        if (eventRevision < revision) {
          return `revision ${eventRevision} delivered again or out of order (revision ${revision} was due next): ${describeEvent(event)}`;
        }
        const want = expected[position]!;
        const mismatch =
          want.type !== event.type || !sameKv(want.kv, event.kv) || (watch.prevKv ? !sameKv(want.prevKv, event.prevKv) : event.prevKv !== undefined);
        if (mismatch) return `at revision ${revision} delivered ${describeEvent(event)}, but the write committed there made ${describeEvent(want)}`;
        position++;
        if (position === expected.length) {
          lastRevision = Math.max(lastRevision, revision);
          revision++;
          position = 0;
        }
      }
      if (position !== 0) return `revision ${revision} was split over several responses`;
      previousResponseRevision = lastRevision;
    }
  }
  // Revisions the watch should still have delivered.
  let missing = lastRevision + 1;
  while (missing <= finalRevision && !changes.has(missing)) missing++;
  if (missing <= finalRevision) {
    return `stopped after revision ${lastRevision}; revision ${missing} (${changes.get(missing)!.map(describeEvent).join("; ")}) and up to ${finalRevision} never arrived`;
  }
  return undefined;
}
