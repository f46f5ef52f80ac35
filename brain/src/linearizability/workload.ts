// A seeded random mix of etcd requests over a small key space, so clients
// contend: puts, single-key and prefix ranges (linearizable, serializable,
// at a past revision, with limits), deletes of a key or a prefix, and txns
// comparing value / mod_revision / version that take either branch. Values
// are unique per request, so a value read names the write that made it.
import type { Compare, KeyValue, Request, Response, TxnOp } from "./history.js";
import { seededRandom } from "@wharf/testkit";

export interface WorkloadOptions {
  seed: number;
  /** All keys start with this (a server's other data stays out of the way). */
  prefix: string;
  /** Keys per group; there are two groups ("a/", "b/") for prefix ranges. Default 4. */
  keysPerGroup?: number;
}

/** Generates requests for one client; `observe` lets it aim compares at what it last saw. */
export class ClientWorkload {
  private readonly random: () => number;
  private readonly keys: string[];
  private readonly groups: string[];
  private readonly seen = new Map<string, KeyValue | undefined>();
  private sequence = 0;
  private lastRevision = 1;

  constructor(
    private readonly client: number,
    private readonly options: WorkloadOptions,
  ) {
    this.random = seededRandom(options.seed * 7919 + client);
    const perGroup = options.keysPerGroup ?? 4;
    this.groups = [`${options.prefix}a/`, `${options.prefix}b/`];
    this.keys = this.groups.flatMap((group) => Array.from({ length: perGroup }, (_, i) => `${group}${i}`));
  }

  private pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.random() * items.length)]!;
  }

  private chance(p: number): boolean {
    return this.random() < p;
  }

  private value(): string {
    return `c${this.client}-${++this.sequence}`;
  }

  private prefixRange(): { key: string; end: string } {
    const prefix = this.chance(0.7) ? this.pick(this.groups) : this.options.prefix;
    return { key: prefix, end: prefixEnd(prefix) };
  }

  private compare(key: string): Compare {
    const known = this.seen.get(key);
    const target = this.pick(["value", "mod", "version"] as const);
    // Mostly "equal to what I last saw" (succeeds unless someone wrote since); sometimes another relation.
    const result = this.chance(0.8) ? "equal" : this.pick(["greater", "less", "not_equal"] as const);
    if (target === "value") return { key, target, result, operand: known?.value ?? "none" };
    const operand = target === "mod" ? (known?.modRevision ?? 0) : (known?.version ?? 0);
    return { key, target, result, operand };
  }

  next(): Request {
    const roll = this.random();
    if (roll < 0.25) return { type: "put", key: this.pick(this.keys), value: this.value(), ...(this.chance(0.3) ? { prevKv: true } : {}) };
    if (roll < 0.55) {
      const range = this.chance(0.6) ? { key: this.pick(this.keys) } : { ...this.prefixRange(), ...(this.chance(0.3) ? { limit: 2 } : {}) };
      const past = this.lastRevision > 2 && this.chance(0.1);
      const revision = past ? Math.max(1, this.lastRevision - Math.floor(this.random() * 20)) : 0;
      return { type: "range", ...range, ...(revision ? { revision } : {}), ...(this.chance(0.25) ? { serializable: true } : {}) };
    }
    if (roll < 0.88) {
      const key = this.pick(this.keys);
      const other = this.pick(this.keys.filter((candidate) => candidate !== key));
      const success: TxnOp[] = [{ type: "put", key, value: this.value(), ...(this.chance(0.3) ? { prevKv: true } : {}) }];
      if (this.chance(0.3)) success.push({ type: "put", key: other, value: this.value() });
      else if (this.chance(0.2)) success.push({ type: "delete", key: other, prevKv: true });
      if (this.chance(0.3)) success.push({ type: "range", ...this.prefixRange() });
      const failure: TxnOp[] = this.chance(0.6) ? [{ type: "range", key }] : this.chance(0.5) ? [{ type: "put", key: other, value: this.value() }] : [];
      const compare = [this.compare(key)];
      if (this.chance(0.2)) compare.push(this.compare(other));
      return { type: "txn", compare, success, failure };
    }
    if (this.chance(0.15)) return { type: "delete", ...this.prefixRange(), prevKv: true };
    return { type: "delete", key: this.pick(this.keys), ...(this.chance(0.5) ? { prevKv: true } : {}) };
  }

  /** Learns from a response what the keys held, to aim later compares. */
  observe(request: Request, response: Response): void {
    this.lastRevision = Math.max(this.lastRevision, response.revision);
    const learn = (kvs: KeyValue[]) => kvs.forEach((kv) => this.seen.set(kv.key, kv));
    if (response.type === "range" && request.type === "range" && !request.revision) learn(response.kvs);
    if (response.type === "txn") for (const result of response.responses) if (result.type === "range") learn(result.kvs);
    if (request.type === "put") {
      this.seen.set(request.key, {
        key: request.key,
        value: request.value,
        modRevision: response.revision,
        createRevision: 0,
        version: (this.seen.get(request.key)?.version ?? 0) + 1,
      });
    }
  }
}

/** The end of the range of keys starting with `prefix` (etcd's prefix range end). */
export function prefixEnd(prefix: string): string {
  const codes = [...prefix].map((char) => char.charCodeAt(0));
  for (let i = codes.length - 1; i >= 0; i--) {
    if (codes[i]! < 0xff) {
      codes[i]!++;
      return String.fromCharCode(...codes.slice(0, i + 1));
    }
  }
  return "\0";
}
