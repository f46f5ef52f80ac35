// Faults planted in a real recorded history, each one a violation of a
// different kind: the checker must reject every mutated copy of a history it
// accepted, which shows it is not vacuous at full size.
import type { History, Operation, Response } from "./history.js";
import { wrote } from "./search.js";

export interface Mutation {
  name: string;
  /** What the checker's message must match. */
  expect: RegExp;
  /** Plants the fault in `history` (a copy); returns what it changed, for the test's message. */
  apply(history: History): string;
}

const isPlainRead = (op: Operation) =>
  op.response?.type === "range" && op.request.type === "range" && !op.request.serializable && !op.request.revision;

/** The known write that made `revision`. */
function writerOf(history: History, revision: number): Operation | undefined {
  return history.operations.find((op) => wrote(op) && op.response!.revision === revision);
}

function pick<T>(items: T[], what: string): T {
  // The middle one: far from the start and the end of the history.
  const item = items[Math.floor(items.length / 2)];
  if (item === undefined) throw new Error(`the recorded history has no ${what} to mutate`);
  return item;
}

export const mutations: Mutation[] = [
  {
    name: "stale read",
    expect: /^stale read: /,
    apply(history) {
      // A read called after the write of its revision returned now claims the revision before.
      const read = pick(
        history.operations.filter((op) => isPlainRead(op) && (writerOf(history, op.response!.revision)?.return ?? Infinity) < op.call),
        "read after its revision's write",
      );
      read.response!.revision--;
      return `read revision lowered to ${read.response!.revision}`;
    },
  },
  {
    name: "lost write",
    expect: /^not linearizable: [\s\S]*missing \S+=\S+ \(mod \d+/,
    apply(history) {
      // A read that returned a key written by a put drops it, as if the put had been lost.
      const read = pick(
        history.operations.filter(
          (op) => isPlainRead(op) && op.response!.type === "range" && op.response!.kvs.some((kv) => writerOf(history, kv.modRevision)?.request.type === "put"),
        ),
        "read of a put's key",
      );
      const response = read.response as Extract<Response, { type: "range" }>;
      const lost = response.kvs.findIndex((kv) => writerOf(history, kv.modRevision)?.request.type === "put");
      const [kv] = response.kvs.splice(lost, 1);
      response.count--;
      return `dropped ${kv!.key} (mod ${kv!.modRevision}) from a read at revision ${response.revision}`;
    },
  },
  {
    name: "revision reuse",
    expect: /^revision reuse: two writes were both acknowledged at revision \d+/,
    apply(history) {
      const puts = history.operations.filter((op) => op.response?.type === "put");
      const first = pick(puts, "put");
      const second = puts[puts.indexOf(first) + 1];
      if (!second) throw new Error("the recorded history has too few puts to mutate");
      second.response!.revision = first.response!.revision;
      return `a put acknowledged at revision ${first.response!.revision} twice`;
    },
  },
  {
    name: "txn compare evaluated on a stale state",
    expect: /^not linearizable: [\s\S]*took the success branch, but its compares are false on this state/,
    apply(history) {
      // A txn that succeeded on "mod_revision(k) == m" now asked "== m + 1": its success says the server
      // evaluated the compare on a state other than the one it wrote on.
      const txn = pick(
        history.operations.filter(
          (op) =>
            op.response?.type === "txn" &&
            op.response.succeeded &&
            wrote(op) &&
            op.request.type === "txn" &&
            op.request.compare.length === 1 &&
            op.request.compare[0]!.target === "mod" &&
            op.request.compare[0]!.result === "equal",
        ),
        "successful txn comparing a mod revision",
      );
      const compare = (txn.request as Extract<Operation["request"], { type: "txn" }>).compare[0]!;
      compare.operand = (compare.operand as number) + 1;
      return `txn at revision ${txn.response!.revision} now compares mod_revision(${compare.key}) == ${compare.operand}`;
    },
  },
  {
    name: "watch gap",
    expect: /^watch w0: gap: revision \d+ .* was never delivered/,
    apply(history) {
      const segment = history.watches[0]!.segments[0]!;
      const [dropped] = segment.responses.splice(Math.floor(segment.responses.length / 2), 1);
      return `watch response at revision ${dropped!.revision} dropped`;
    },
  },
  {
    name: "watch reorder",
    expect: /^watch w0: (gap|revision \d+ (arrived|delivered))/,
    apply(history) {
      const responses = history.watches[0]!.segments[0]!.responses;
      const middle = Math.floor(responses.length / 2);
      [responses[middle], responses[middle + 1]] = [responses[middle + 1]!, responses[middle]!];
      return `watch responses ${middle} and ${middle + 1} swapped`;
    },
  },
];
