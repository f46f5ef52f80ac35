// The in-memory key index (etcd's treeIndex and keyIndex): for every key, the
// revisions at which it was written, grouped in generations (a generation runs
// from a create to the delete that ends it). Reads find "the newest revision
// of each key at or below R" here and fetch exactly those stored versions;
// compares, counts and limits are answered without touching storage.
import { SortedKeySet } from "./key-set.js";
import { keyId } from "./kv.js";

export interface Generation {
  /** Main revision of the put that created the key in this generation. */
  created: number;
  /** Version of the newest put in this generation. */
  version: number;
  mains: number[];
  subs: number[];
  /** True when the last revision is the delete that ended the generation. */
  ended: boolean;
}

export class KeyIndex {
  readonly generations: Generation[] = [];
  /** Lease of the newest put; 0 once deleted. */
  lease = 0n;

  constructor(
    readonly id: string,
    readonly key: Uint8Array,
  ) {}

  /** The live generation, if the key exists at the newest revision. */
  get live(): Generation | undefined {
    const last = this.generations[this.generations.length - 1];
    return last !== undefined && !last.ended ? last : undefined;
  }
}

/** Where a key's newest version at or below a revision is stored. */
export interface Located {
  main: number;
  sub: number;
  tombstone: boolean;
}

/** A revision the index dropped in a compaction: its stored row goes too. */
export interface Dropped {
  main: number;
  sub: number;
  tombstone: boolean;
}

const maxChunk = 256;

/** Undo record for one change, so a failed group leaves the index as it was. */
interface Undo {
  index: KeyIndex;
  lease: bigint;
  newGeneration: boolean;
}

export class TreeIndex {
  private readonly byId = new Map<string, KeyIndex>();
  /** Sorted, non-empty chunks of ids; every id of chunk i sorts before chunk i+1's. */
  private chunks: KeyIndex[][] = [];
  private undo: Undo[] = [];
  /** Keys live at the newest revision the index holds. */
  readonly live = new SortedKeySet();

  get size(): number {
    return this.byId.size;
  }

  get(key: Uint8Array): KeyIndex | undefined {
    return this.byId.get(keyId(key));
  }

  getById(id: string): KeyIndex | undefined {
    return this.byId.get(id);
  }

  /**
   * Records a put at (main, sub). `createdAt`/`version` come from the stored
   * version when rebuilding from storage (history before it may be compacted).
   */
  put(key: Uint8Array, main: number, sub: number, lease: bigint, rebuilt?: { createRevision: number; version: number }): void {
    const id = keyId(key);
    let index = this.byId.get(id);
    if (index === undefined) {
      // Its own copy: the caller's bytes may be a view into a whole request or row.
      index = new KeyIndex(id, Uint8Array.prototype.slice.call(key));
      this.insert(index);
    }
    const undo: Undo = { index, lease: index.lease, newGeneration: false };
    let generation = index.live;
    if (generation === undefined) {
      generation = {
        created: rebuilt?.createRevision ?? main,
        version: rebuilt ? rebuilt.version - 1 : 0,
        mains: [],
        subs: [],
        ended: false,
      };
      index.generations.push(generation);
      undo.newGeneration = true;
      this.live.add(id);
    }
    generation.mains.push(main);
    generation.subs.push(sub);
    generation.version++;
    index.lease = lease;
    this.undo.push(undo);
  }

  /** Records a delete at (main, sub); the key must be live. */
  tombstone(key: Uint8Array, main: number, sub: number): void {
    const index = this.byId.get(keyId(key));
    const generation = index?.live;
    if (index === undefined || generation === undefined) {
      // Rebuilding from storage after compaction can meet a delete whose put
      // was compacted away; it ends nothing the index knows.
      return;
    }
    this.undo.push({ index, lease: index.lease, newGeneration: false });
    generation.mains.push(main);
    generation.subs.push(sub);
    generation.ended = true;
    index.lease = 0n;
    this.live.delete(index.id);
  }

  /** Forgets the undo records: everything recorded so far stays. */
  commit(): void {
    this.undo = [];
  }

  /** A position to roll back to. */
  mark(): number {
    return this.undo.length;
  }

  /** Reverts every change recorded after `mark`, newest first. */
  rollback(mark = 0): void {
    while (this.undo.length > mark) {
      const { index, lease, newGeneration } = this.undo.pop()!;
      const generation = index.generations[index.generations.length - 1]!;
      if (generation.ended) {
        generation.ended = false;
        generation.mains.pop();
        generation.subs.pop();
        this.live.add(index.id);
      } else {
        generation.mains.pop();
        generation.subs.pop();
        generation.version--;
        if (newGeneration) {
          index.generations.pop();
          this.live.delete(index.id);
        }
      }
      index.lease = lease;
      if (index.generations.length === 0) this.remove(index);
    }
  }

  /** The newest revision of `index` at or below `revision`, or false when none. */
  static locate(index: KeyIndex, revision: number, out: Located): boolean {
    const generations = index.generations;
    for (let g = generations.length - 1; g >= 0; g--) {
      const generation = generations[g]!;
      const mains = generation.mains;
      if (mains[0]! > revision) continue;
      let i = mains.length - 1;
      while (mains[i]! > revision) i--;
      out.main = mains[i]!;
      out.sub = generation.subs[i]!;
      out.tombstone = generation.ended && i === mains.length - 1;
      return true;
    }
    return false;
  }

  /**
   * The newest revision of `index` strictly before (main, sub): the previous
   * version a watch event's prev_kv holds. False when none or deleted.
   */
  static locateBefore(index: KeyIndex, main: number, sub: number, out: Located): boolean {
    const generations = index.generations;
    for (let g = generations.length - 1; g >= 0; g--) {
      const generation = generations[g]!;
      const { mains, subs } = generation;
      for (let i = mains.length - 1; i >= 0; i--) {
        if (mains[i]! < main || (mains[i] === main && subs[i]! < sub)) {
          out.main = mains[i]!;
          out.sub = subs[i]!;
          out.tombstone = generation.ended && i === mains.length - 1;
          return !out.tombstone;
        }
      }
    }
    return false;
  }

  /** Visits keys in [start, end) in byte order (end undefined: unbounded) until `visit` returns false. */
  forRange(start: string, end: string | undefined, visit: (index: KeyIndex) => boolean): void {
    if (this.chunks.length === 0) return;
    let c = this.chunkFor(start);
    let i = lowerBound(this.chunks[c]!, start);
    for (; c < this.chunks.length; c++, i = 0) {
      const chunk = this.chunks[c]!;
      for (; i < chunk.length; i++) {
        const index = chunk[i]!;
        if (end !== undefined && index.id >= end) return;
        if (!visit(index)) return;
      }
    }
  }

  /**
   * etcd's compaction of the index: for each key keep the newest revision at
   * or below `revision` unless it is a delete, drop everything older. Returns
   * the revisions whose stored rows are no longer needed.
   */
  compact(revision: number): Dropped[] {
    const dropped: Dropped[] = [];
    const emptied: KeyIndex[] = [];
    for (const index of this.byId.values()) {
      const generations = index.generations;
      // The generation holding the newest revision <= revision.
      let g = generations.length - 1;
      while (g >= 0 && generations[g]!.mains[0]! > revision) g--;
      if (g < 0) continue;
      for (let older = 0; older < g; older++) dropAll(generations[older]!, dropped);
      const generation = generations[g]!;
      let i = generation.mains.length - 1;
      while (generation.mains[i]! > revision) i--;
      for (let k = 0; k < i; k++) dropped.push({ main: generation.mains[k]!, sub: generation.subs[k]!, tombstone: false });
      generation.mains.splice(0, i);
      generation.subs.splice(0, i);
      let keepFrom = g;
      if (generation.ended && generation.mains.length === 1) {
        // Only the delete is left: the generation is over entirely.
        dropped.push({ main: generation.mains[0]!, sub: generation.subs[0]!, tombstone: true });
        keepFrom = g + 1;
      }
      if (keepFrom > 0) generations.splice(0, keepFrom);
      if (generations.length === 0) emptied.push(index);
    }
    for (const index of emptied) this.remove(index);
    return dropped;
  }

  /** Every key with its generations, in key order (for tests and checks). */
  dump(): Array<{ key: string; lease: bigint; generations: Generation[] }> {
    const out: Array<{ key: string; lease: bigint; generations: Generation[] }> = [];
    for (const chunk of this.chunks) {
      for (const index of chunk) out.push({ key: index.id, lease: index.lease, generations: index.generations.map((g) => ({ ...g, mains: [...g.mains], subs: [...g.subs] })) });
    }
    return out;
  }

  private insert(index: KeyIndex): void {
    this.byId.set(index.id, index);
    if (this.chunks.length === 0) {
      this.chunks.push([index]);
      return;
    }
    const c = this.chunkFor(index.id);
    const chunk = this.chunks[c]!;
    chunk.splice(lowerBound(chunk, index.id), 0, index);
    if (chunk.length > maxChunk) this.chunks.splice(c, 1, chunk.slice(0, maxChunk / 2), chunk.slice(maxChunk / 2));
  }

  private remove(index: KeyIndex): void {
    if (!this.byId.delete(index.id)) return;
    const c = this.chunkFor(index.id);
    const chunk = this.chunks[c]!;
    const at = lowerBound(chunk, index.id);
    if (chunk[at] !== index) return;
    chunk.splice(at, 1);
    if (chunk.length === 0) this.chunks.splice(c, 1);
  }

  /** The chunk an id belongs in: the last whose first id is <= id. */
  private chunkFor(id: string): number {
    let low = 0;
    let high = this.chunks.length - 1;
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if (this.chunks[mid]![0]!.id <= id) low = mid;
      else high = mid - 1;
    }
    return low;
  }
}

function dropAll(generation: Generation, dropped: Dropped[]): void {
  const last = generation.mains.length - 1;
  for (let i = 0; i <= last; i++) {
    dropped.push({ main: generation.mains[i]!, sub: generation.subs[i]!, tombstone: generation.ended && i === last });
  }
}

function lowerBound(sorted: KeyIndex[], id: string): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const mid = (low + high) >> 1;
    if (sorted[mid]!.id < id) low = mid + 1;
    else high = mid;
  }
  return low;
}
