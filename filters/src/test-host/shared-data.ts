/**
 * Envoy's shared data: one key/value store for every VM of a plugin (one VM
 * per worker thread), with compare-and-swap. Give the same instance to
 * several hosts to model workers.
 */
export class SharedData {
  private readonly entries = new Map<string, { value: Uint8Array; cas: number }>();
  private nextCas = 1;

  /** Every key stored, for tests that bound what a filter keeps. */
  keys(): string[] {
    return [...this.entries.keys()];
  }

  get(key: string): { value: Uint8Array; cas: number } | undefined {
    return this.entries.get(key);
  }

  /** Stores when `cas` is 0 or matches the entry's; false on a mismatch. */
  set(key: string, value: Uint8Array, cas: number): boolean {
    const current = this.entries.get(key);
    if (cas !== 0 && current !== undefined && current.cas !== cas) return false;
    this.entries.set(key, { value: value.slice(), cas: this.nextCas++ });
    return true;
  }
}
