// The set of live keys, in memory and in order, so that counting a range is a
// pair of binary searches instead of a walk over the keys (etcd answers
// `count` from its in-memory index the same way). Keys are latin1 strings:
// one char per byte, so string order is byte order.

const maxChunk = 512;

export class SortedKeySet {
  /** Sorted, non-empty chunks; every key of chunk i sorts before chunk i+1's. */
  private chunks: string[][] = [];
  private total = 0;

  get size(): number {
    return this.total;
  }

  add(key: string): void {
    if (this.chunks.length === 0) {
      this.chunks.push([key]);
      this.total = 1;
      return;
    }
    const c = this.chunkFor(key);
    const chunk = this.chunks[c]!;
    const at = lowerBound(chunk, key);
    if (chunk[at] === key) return;
    chunk.splice(at, 0, key);
    this.total++;
    if (chunk.length > maxChunk) this.chunks.splice(c, 1, chunk.slice(0, maxChunk / 2), chunk.slice(maxChunk / 2));
  }

  delete(key: string): void {
    if (this.chunks.length === 0) return;
    const c = this.chunkFor(key);
    const chunk = this.chunks[c]!;
    const at = lowerBound(chunk, key);
    if (chunk[at] !== key) return;
    chunk.splice(at, 1);
    this.total--;
    if (chunk.length === 0) this.chunks.splice(c, 1);
  }

  /** Keys k with start <= k < end (end undefined: unbounded). */
  count(start: string, end: string | undefined): number {
    const below = (bound: string) => {
      let n = 0;
      for (const chunk of this.chunks) {
        if (chunk[chunk.length - 1]! < bound) {
          n += chunk.length;
        } else {
          return n + lowerBound(chunk, bound);
        }
      }
      return n;
    };
    const to = end === undefined ? this.total : below(end);
    return Math.max(0, to - below(start));
  }

  /** The chunk a key belongs in: the last whose first key is <= key. */
  private chunkFor(key: string): number {
    let low = 0;
    let high = this.chunks.length - 1;
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if (this.chunks[mid]![0]! <= key) low = mid;
      else high = mid - 1;
    }
    return low;
  }
}

function lowerBound(sorted: string[], key: string): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const mid = (low + high) >> 1;
    if (sorted[mid]! < key) low = mid + 1;
    else high = mid;
  }
  return low;
}
