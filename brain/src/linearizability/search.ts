// The linearization search: Wing & Gong's algorithm with Lowe's memoization,
// as Porcupine implements it. Calls and returns sit in one list in time
// order; the search walks it, linearizing any operation whose call it meets
// if the model accepts its response, and backtracks when it meets the return
// of an operation it has not linearized. A (set of linearized operations,
// state) pair already explored is never explored again.
//
// etcd's revisions prune the search hard: a successful write's response names
// its revision, so it can only be linearized when the store is one revision
// below it, and a read only when the store is at its header revision. An
// operation whose outcome is unknown (failed, timed out) may take effect at
// any point after its call, or never: it has no return entry, so "never" is
// linearizing it after everything else, which needs no search. It may only
// take a revision that no acknowledged write claims and that some response
// shows the store reached, only when it changes the
// store (a no-op is indistinguishable from not happening), and, when a watch
// saw that revision, only if it makes exactly the changes the watch saw.
//
// No P-compositionality: a per-key split would be sound only if responses
// were per key, but every header carries the store-wide revision, which
// orders operations on different keys. The revision pruning above is what
// keeps the search near linear instead.
import type { Operation } from "./history.js";
import { apply, changesStore, sameState, type Change, type KeySpace, type State } from "./model.js";
import { diffResponse } from "./describe.js";

export interface SearchInput {
  space: KeySpace;
  /** Operations to linearize; `ids[i]` is the id of `operations[i]` in the whole history (for messages). */
  operations: Operation[];
  ids: number[];
  /** For known writes: the revision each claims (a revision no unknown operation may take). */
  claimed: ReadonlySet<number>;
  /**
   * The highest revision any response reported. An unknown operation never needs a revision above it: only
   * unknown operations could follow it, and they may as well not have happened.
   */
  lastRevision: number;
  /** Per revision, the changes a watch reported: unknown operations must match them. */
  watched?: ReadonlyMap<number, Change[]>;
  deadline: number;
}

export type SearchResult =
  | { status: "ok"; order: number[] }
  | ({ status: "illegal" } & Deepest)
  | ({ status: "timeout"; steps: number } & Deepest);

/** The furthest point the search reached: how many operations it linearized, the states on the way, who blocked it. */
export interface Deepest {
  depth: number;
  state: State;
  /** The states of that partial linearization, oldest first (for explaining a blocked read at an earlier revision). */
  path: State[];
  blocked: number[];
}

/** Whether a known response says the request changed the store, and so claims its header revision. */
export function wrote(operation: Operation): boolean {
  const response = operation.response;
  if (!response) return false;
  switch (response.type) {
    case "range":
      return false;
    case "put":
      return true;
    case "delete":
      return response.deleted > 0;
    case "txn":
      return response.responses.some((result) => result.type === "put" || (result.type === "delete" && result.deleted > 0));
  }
}

function sameChanges(expected: Change[], seen: Change[]): boolean {
  if (expected.length !== seen.length) return false;
  return expected.every((change, i) => {
    const other = seen[i]!;
    return change.type === other.type && change.kv.key === other.kv.key && change.kv.value === other.kv.value;
  });
}

interface Frame {
  call: number;
  /** The state before `call` was linearized. */
  state: State;
  /** Linearized with no alternative worth trying (see below): backtracking goes straight past it. */
  forced: boolean;
  below: Frame | undefined;
}

interface Memo {
  /** The second hash of the linearized set (the first is in the map key). */
  bits: number;
  state: State;
}

export function search(input: SearchInput): SearchResult {
  const { space, operations, claimed, watched } = input;
  const count = operations.length;
  // Entries 0..count-1 are calls, count..2*count-1 returns; 2*count is the head.
  const head = 2 * count;
  const next = new Int32Array(2 * count + 1).fill(-1);
  const prev = new Int32Array(2 * count + 1).fill(-1);
  const order: number[] = [];
  for (let i = 0; i < count; i++) {
    order.push(i);
    if (operations[i]!.response) order.push(count + i);
  }
  const time = (entry: number) => (entry < count ? operations[entry]!.call : operations[entry - count]!.return);
  order.sort((a, b) => time(a) - time(b) || (a < count ? 0 : 1) - (b < count ? 0 : 1));
  let last = head;
  for (const entry of order) {
    next[last] = entry;
    prev[entry] = last;
    last = entry;
  }

  const needed = operations.map((operation) => {
    const response = operation.response;
    if (!response) return -1;
    return wrote(operation) ? response.revision - 1 : response.revision;
  });
  // The set of linearized operations is known by two independent 32-bit Zobrist hashes rather than a copy of
  // the bit set (copying thousands of bits per step dominated the run). Two different sets sharing both hashes
  // (odds about 2^-64 per pair) could only prune a path wrongly, which can make the checker report a violation
  // that is not there, never pass one that is.
  const zobrist = Int32Array.from({ length: count }, (_, i) => zobristKey(i));
  const zobrist2 = Int32Array.from({ length: count }, (_, i) => zobristKey(i + count + 0x5bd1));
  let bitsHash = 0;
  let bitsHash2 = 0;
  const memo = new Map<number, Memo[]>();
  const remember = (state: State): boolean => {
    const key = (bitsHash ^ Math.imul(state.hash, 0x27d4eb2d)) | 0;
    let bucket = memo.get(key);
    if (bucket) {
      for (const seen of bucket) {
        if (seen.bits === bitsHash2 && sameState(seen.state, state)) return false;
      }
    } else {
      bucket = [];
      memo.set(key, bucket);
    }
    bucket.push({ bits: bitsHash2, state });
    return true;
  };

  const step = (state: State, index: number): State | undefined => {
    const operation = operations[index]!;
    const response = operation.response;
    if (response) {
      if (state.revision !== needed[index]) return undefined;
      const outcome = apply(space, state, operation.request, input.ids[index]!);
      return diffResponse(operation.request, outcome.response, response) === undefined ? outcome.state : undefined;
    }
    const revision = state.revision + 1;
    if (revision > input.lastRevision || claimed.has(revision) || !changesStore(space, state, operation.request)) return undefined;
    const outcome = apply(space, state, operation.request, input.ids[index]!);
    const seen = watched?.get(revision);
    if (seen && !sameChanges(outcome.changes, seen)) return undefined;
    return outcome.state;
  };

  const lift = (call: number) => {
    next[prev[call]!] = next[call]!;
    if (next[call]! >= 0) prev[next[call]!] = prev[call]!;
    const ret = count + call;
    if (operations[call]!.response) {
      next[prev[ret]!] = next[ret]!;
      if (next[ret]! >= 0) prev[next[ret]!] = prev[ret]!;
    }
  };
  const unlift = (call: number) => {
    const ret = count + call;
    if (operations[call]!.response) {
      next[prev[ret]!] = ret;
      if (next[ret]! >= 0) prev[next[ret]!] = ret;
    }
    next[prev[call]!] = call;
    if (next[call]! >= 0) prev[next[call]!] = call;
  };

  let remaining = operations.filter((operation) => operation.response).length;
  let state = space.initialState();
  // Frames link to the one below, so the furthest point is kept by reference, not copied at each new depth.
  const stack: Frame[] = [];
  let entry = next[head]!;
  let steps = 0;
  let deepest: { depth: number; state: State; top: Frame | undefined; blocked: number[] } = { depth: -1, state, top: undefined, blocked: [] };
  const report = () => {
    const path: State[] = [];
    for (let frame = deepest.top; frame; frame = frame.below) path.push(frame.state);
    return { depth: deepest.depth, state: deepest.state, path: path.reverse(), blocked: deepest.blocked };
  };
  while (remaining > 0) {
    if ((++steps & 0xfff) === 0 && performance.now() > input.deadline) {
      return { status: "timeout", steps, ...report() };
    }
    if (entry < 0) throw new Error("linearizability search ran off its list with operations left (a bug in the checker)");
    if (entry < count) {
      const after = step(state, entry);
      if (after) {
        bitsHash ^= zobrist[entry]!;
        bitsHash2 ^= zobrist2[entry]!;
        if (remember(after)) {
          // A read that fits now goes first with no alternative to try later: every operation that must precede it
          // is linearized already (else their return would have stopped the walk), and it leaves the state as is.
          stack.push({ call: entry, state, forced: after === state, below: stack[stack.length - 1] });
          state = after;
          lift(entry);
          if (operations[entry]!.response) remaining--;
          entry = next[head]!;
          continue;
        }
        bitsHash ^= zobrist[entry]!;
        bitsHash2 ^= zobrist2[entry]!;
      }
      entry = next[entry]!;
      continue;
    }
    // The return of an operation not yet linearized: this path is dead.
    if (stack.length > deepest.depth) deepest = { depth: stack.length, state, top: stack[stack.length - 1], blocked: [entry - count] };
    else if (stack.length === deepest.depth && deepest.state === state && !deepest.blocked.includes(entry - count)) {
      deepest.blocked.push(entry - count);
    }
    let top;
    do {
      top = stack.pop();
      if (!top) return { status: "illegal", ...report() };
      state = top.state;
      bitsHash ^= zobrist[top.call]!;
      bitsHash2 ^= zobrist2[top.call]!;
      unlift(top.call);
      if (operations[top.call]!.response) remaining++;
    } while (top.forced);
    entry = next[top.call]!;
  }
  const linearized = stack.map(({ call }) => call);
  return { status: "ok", order: linearized };
}

function zobristKey(index: number): number {
  let h = (index + 1) * 0x9e3779b1;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) | 0;
}
