// Checks a recorded history against etcd's KV semantics:
//  1. quick necessary conditions on revisions (each is a violation with a
//     plain explanation: revision reuse, a skipped revision, a write or read
//     ordered against real time);
//  2. the linearization search (search.ts) over linearizable requests, with
//     a time budget: running out of time is a failure, never a pass;
//  3. on the linearization found, the replay by revision: serializable and
//     past-revision reads must return the state at their revision, every
//     client's revisions never go back, and each watch delivers exactly the
//     committed writes.
import { describeOperation, describeRequest, diffResponse } from "./describe.js";
import { mayWrite, type History, type Operation } from "./history.js";
import { apply, KeySpace, keysOf, type Change, type State } from "./model.js";
import { search, wrote, type Deepest } from "./search.js";
import { checkWatches } from "./watch-check.js";

export interface CheckOptions {
  /** Time the linearization search may take; past it the result is "timeout", a failure. Default 30 s. */
  budgetMs?: number;
}

export interface CheckStats {
  operations: number;
  clients: number;
  /** Operations whose outcome is unknown and that may have written. */
  unknown: number;
  /** Of those, how many the linearization found took effect. */
  unknownApplied: number;
  /** Operations not checked: failed reads, and failed writes wholly inside a downtime. */
  dropped: number;
  serializable: number;
  watchEvents: number;
  finalRevision: number;
  checkMs: number;
}

export interface CheckReport {
  status: "linearizable" | "violation" | "timeout";
  /** Every violation found, most fundamental first; empty when linearizable. */
  violations: string[];
  stats: CheckStats;
}

export function checkHistory(history: History, options: CheckOptions = {}): CheckReport {
  const started = performance.now();
  const operations = history.operations;
  const stats: CheckStats = {
    operations: operations.length,
    clients: new Set(operations.map((op) => op.client)).size,
    unknown: 0,
    unknownApplied: 0,
    dropped: 0,
    serializable: 0,
    watchEvents: history.watches.reduce(
      (sum, watch) => sum + watch.segments.reduce((n, s) => n + s.responses.reduce((m, r) => m + r.events.length, 0), 0),
      0,
    ),
    finalRevision: 1,
    checkMs: 0,
  };
  const finish = (status: CheckReport["status"], violations: string[]): CheckReport => {
    stats.checkMs = Math.round(performance.now() - started);
    return { status, violations, stats };
  };

  const downtimes = history.downtimes ?? [];
  const linearizable: number[] = [];
  const separate: number[] = []; // serializable reads: checked on the replay
  operations.forEach((op, id) => {
    if (!(op.call <= op.return)) throw new Error(`operation #${id} returns before it is called`);
    if (!op.response) {
      const harmless = !mayWrite(op.request) || downtimes.some(({ from, to }) => from <= op.call && (op.failedAt ?? op.return) <= to);
      if (harmless) stats.dropped++;
      else {
        stats.unknown++;
        linearizable.push(id);
      }
      return;
    }
    if (op.request.type === "range" && op.request.serializable) separate.push(id);
    else linearizable.push(id);
  });
  stats.serializable = separate.length;
  const space = new KeySpace(keysOf(operations.map((op) => op.request)));

  const precheck = checkRevisions(operations, linearizable);
  if (precheck.length) return finish("violation", precheck);

  const claimed = new Set(linearizable.filter((id) => wrote(operations[id]!)).map((id) => operations[id]!.response!.revision));
  const watched = watchedChanges(history);
  const budgetMs = options.budgetMs ?? 30_000;
  const input = {
    space,
    operations: linearizable.map((id) => operations[id]!),
    ids: linearizable,
    claimed,
    lastRevision: Math.max(1, ...linearizable.map((id) => operations[id]!.response?.revision ?? 1)),
    deadline: started + budgetMs,
  };
  const useWatch = stats.unknown > 0 && watched.size > 0;
  let result = search(useWatch ? { ...input, watched } : input);
  if (result.status === "illegal" && useWatch) {
    const free = search(input);
    if (free.status === "ok") {
      return finish("violation", [
        "the key-value responses are linearizable only if the writes whose outcome is unknown took effect differently " +
          "from what the watches reported at the revisions they took (see the watch check below)",
        ...checkAfter(history, space, linearizable, free.order, separate, stats).violations,
      ]);
    }
    result = free;
  }
  if (result.status === "timeout") {
    return finish("timeout", [
      `the linearization search ran out of its ${budgetMs} ms budget after ${result.steps} steps (deepest: ${result.depth} operations): ` +
        "the history is neither proven linearizable nor shown not to be",
      explainIllegal(operations, space, linearizable, result).replace(/^not linearizable: /, "where the search was stuck: "),
    ]);
  }
  if (result.status === "illegal") {
    return finish("violation", [explainIllegal(operations, space, linearizable, result)]);
  }
  const after = checkAfter(history, space, linearizable, result.order, separate, stats);
  return finish(after.violations.length ? "violation" : "linearizable", after.violations);
}

/** Necessary conditions on revisions alone, each with a plain explanation. */
function checkRevisions(operations: Operation[], ids: number[]): string[] {
  const violations: string[] = [];
  const writes = ids.filter((id) => wrote(operations[id]!)).sort((a, b) => operations[a]!.response!.revision - operations[b]!.response!.revision);
  const revisionOf = (id: number) => operations[id]!.response!.revision;
  const byRevision = new Map<number, number>();
  for (const id of writes) {
    const revision = revisionOf(id);
    const other = byRevision.get(revision);
    if (other !== undefined) {
      violations.push(
        `revision reuse: two writes were both acknowledged at revision ${revision}:\n  ${describeOperation(other, operations[other]!)}\n  ${describeOperation(id, operations[id]!)}`,
      );
    } else byRevision.set(revision, id);
    if (revision <= 1) violations.push(`a write acknowledged at revision ${revision}, which is the empty store's: ${describeOperation(id, operations[id]!)}`);
  }
  // A write (or read) must not be ordered before a write with a lower revision that started only after it ended.
  // laterReturn[i]: the earliest return among writes[i..] (higher revisions).
  const laterReturn = new Array<number>(writes.length + 1).fill(Infinity);
  const laterWho = new Array<number>(writes.length + 1).fill(-1);
  for (let i = writes.length - 1; i >= 0; i--) {
    const ret = operations[writes[i]!]!.return;
    [laterReturn[i], laterWho[i]] = ret < laterReturn[i + 1]! ? [ret, writes[i]!] : [laterReturn[i + 1]!, laterWho[i + 1]!];
  }
  const firstAbove = (revision: number) => {
    let low = 0;
    let high = writes.length;
    while (low < high) {
      const mid = (low + high) >> 1;
      if (revisionOf(writes[mid]!) > revision) high = mid;
      else low = mid + 1;
    }
    return low;
  };
  for (const id of ids) {
    const op = operations[id]!;
    if (!op.response) continue;
    const revision = op.response.revision;
    const above = firstAbove(revision);
    if (laterReturn[above]! < op.call) {
      const other = laterWho[above]!;
      const what = wrote(op) ? "write order against real time" : "stale read";
      violations.push(
        `${what}: ${describeOperation(id, op)} was called after ${describeOperation(other, operations[other]!)} had returned, yet reports the lower revision ${revision}`,
      );
    }
    if (!wrote(op)) {
      const writer = byRevision.get(revision);
      if (writer !== undefined && operations[writer]!.call > op.return) {
        violations.push(
          `read from the future: ${describeOperation(id, op)} returned revision ${revision} before the write that made it was called: ${describeOperation(writer, operations[writer]!)}`,
        );
      }
    }
  }
  // Every revision between 1 and the highest one seen was made by some write; writes of unknown outcome may fill gaps.
  const highest = Math.max(1, ...ids.map((id) => operations[id]!.response?.revision ?? 1));
  const unknownWrites = ids.filter((id) => !operations[id]!.response).length;
  const gaps: number[] = [];
  for (let revision = 2; revision <= highest; revision++) if (!byRevision.has(revision)) gaps.push(revision);
  if (gaps.length > unknownWrites) {
    violations.push(
      `skipped revisions: ${gaps.length} revision(s) up to ${highest} (first: ${gaps.slice(0, 5).join(", ")}) were made by no acknowledged write, ` +
        `and only ${unknownWrites} write(s) of unknown outcome could have made them`,
    );
  }
  return violations;
}

/** Per revision, the changes the first whole-key-space watch to reach it reported. */
function watchedChanges(history: History): Map<number, Change[]> {
  const changes = new Map<number, Change[]>();
  for (const watch of history.watches) {
    if (watch.range) continue; // sees only part of each revision
    const seen = new Map<number, Change[]>();
    for (const segment of watch.segments) {
      for (const response of segment.responses) {
        for (const event of response.events) {
          const revision = event.kv.modRevision;
          if (changes.has(revision)) continue;
          let list = seen.get(revision);
          if (!list) seen.set(revision, (list = []));
          list.push(event);
        }
      }
    }
    for (const [revision, list] of seen) changes.set(revision, list);
  }
  return changes;
}

function explainIllegal(operations: Operation[], space: KeySpace, ids: number[], { state, depth, path, blocked }: Deepest): string {
  const lines = [
    `not linearizable: no order of the ${ids.length} operations respects both real time and etcd's semantics. ` +
      `The furthest partial order reached linearized ${depth} of them, leaving the store at revision ${state.revision}; there, none of these can come next:`,
  ];
  const explain = (id: number) => {
    const op = operations[id]!;
    const response = op.response!;
    const needed = wrote(op) ? response.revision - 1 : response.revision;
    const at = state.revision === needed ? state : [...path].reverse().find((past) => past.revision === needed);
    const diff = at && diffResponse(op.request, apply(space, at, op.request, id).response, response);
    if (at === state) return diff ?? "(its response matches; something else blocks it)";
    const where = `needs the store at revision ${needed}, but it is at revision ${state.revision}`;
    return diff ? `${where}; and at revision ${needed}, ${diff}` : where;
  };
  const mentioned = new Set<number>();
  for (const index of blocked) {
    const id = ids[index]!;
    lines.push(`  ${describeOperation(id, operations[id]!)}: ${explain(id)}`);
    mentioned.add(id);
  }
  // The write that had to make the next revision, when it is not among them: often the root cause.
  const nextWrite = ids.find((id) => wrote(operations[id]!) && operations[id]!.response!.revision === state.revision + 1);
  if (nextWrite !== undefined && !mentioned.has(nextWrite)) {
    const op = operations[nextWrite]!;
    const reason = explain(nextWrite);
    const lateCall = blocked.map((index) => ids[index]!).find((id) => operations[id]!.return < op.call);
    lines.push(
      `  the write acknowledged at revision ${state.revision + 1}, ${describeOperation(nextWrite, op)}: ` +
        (lateCall !== undefined && reason.startsWith("(") ? `was called only after op #${lateCall} returned` : reason),
    );
  }
  const writers = new Map(ids.filter((id) => wrote(operations[id]!)).map((id) => [operations[id]!.response!.revision, id]));
  const revisions = new Set<number>();
  for (const line of lines.slice(1)) for (const match of line.matchAll(/mod (\d+)/g)) revisions.add(Number(match[1]));
  for (const revision of [...revisions].sort((a, b) => a - b)) {
    const writer = writers.get(revision);
    if (writer !== undefined) lines.push(`  (revision ${revision} was written by op #${writer}: ${describeRequest(operations[writer]!.request)})`);
  }
  return lines.join("\n");
}

/** Replays the linearization and checks what depends on the state at each revision. */
function checkAfter(history: History, space: KeySpace, ids: number[], order: number[], separate: number[], stats: CheckStats): { violations: string[] } {
  const operations = history.operations;
  const states: State[] = [];
  const changes = new Map<number, Change[]>();
  let state = space.initialState();
  states[state.revision] = state;
  for (const index of order) {
    const id = ids[index]!;
    const op = operations[id]!;
    const outcome = apply(space, state, op.request, id);
    if (outcome.state !== state) {
      state = outcome.state;
      states[state.revision] = state;
      changes.set(state.revision, outcome.changes);
      if (!op.response) stats.unknownApplied++;
    }
  }
  stats.finalRevision = state.revision;
  const violations: string[] = [];
  // Reads at a past revision, and serializable reads, must return the state at the revision they name.
  const pastReads = ids.filter((id) => {
    const request = operations[id]!.request;
    return request.type === "range" && request.revision && operations[id]!.response;
  });
  for (const id of [...separate, ...pastReads]) {
    const op = operations[id]!;
    const request = op.request;
    if (request.type !== "range") continue;
    const response = op.response!;
    const at = request.revision || response.revision;
    const past = states[at];
    if (!past) {
      violations.push(`${describeOperation(id, op)}: read revision ${at}, which the history never reached (last: ${state.revision})`);
      continue;
    }
    const { revision: _ignored, ...plain } = request;
    const expected = apply(space, past, plain, id).response;
    const diff = diffResponse(plain, { ...expected, revision: response.revision }, response);
    if (diff) violations.push(`${describeOperation(id, op)}: at revision ${at}, ${diff}`);
  }
  // A client's revisions never go back (serializable reads included).
  const byClient = new Map<number, number[]>();
  operations.forEach((op, id) => {
    if (!op.response) return;
    let list = byClient.get(op.client);
    if (!list) byClient.set(op.client, (list = []));
    list.push(id);
  });
  for (const list of byClient.values()) {
    list.sort((a, b) => operations[a]!.call - operations[b]!.call);
    for (let i = 1; i < list.length; i++) {
      const [before, now] = [operations[list[i - 1]!]!, operations[list[i]!]!];
      if (before.return <= now.call && now.response!.revision < before.response!.revision) {
        violations.push(
          `client ${now.client} went back in time: ${describeOperation(list[i]!, now)} after ${describeOperation(list[i - 1]!, before)}`,
        );
      }
    }
  }
  violations.push(...checkWatches(history.watches, changes, state.revision));
  return { violations };
}
