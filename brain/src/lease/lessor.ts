import { randomBytes } from "node:crypto";
import { errors } from "../errors.js";
import { keyId, type KeyValue } from "../mvcc/kv.js";
import type { Commit, LeaseLedger, MvccBackend } from "../mvcc/backend.js";

// etcd's bounds: leases shorter than its minimum TTL are raised to it, and
// TTLs above MaxLeaseTTL are refused.
export const minLeaseTtl = 2;
export const maxLeaseTtl = 9_000_000_000;

// Grants and revokes read the lessor's state (which leases exist, which keys
// are attached), so the writer evaluates them only once every earlier write
// is durable and applied here.
const leaseChange = { exclusive: true };

interface Lease {
  id: bigint;
  ttl: number;
  expiresAt: number;
  keys: Map<string, Uint8Array>;
  revoking: boolean;
}

export interface LeaseInfo {
  id: bigint;
  ttl: number;
  remaining: number;
  keys: Uint8Array[];
}

/**
 * Leases: granted and revoked through the store's writer (so they are
 * durable and ordered with key writes); kept alive in memory. Like etcd, a
 * restart gives every lease its full TTL again, and an expired lease is
 * revoked by a write that deletes its keys with real DELETE events.
 */
export class Lessor implements LeaseLedger {
  private readonly leases = new Map<bigint, Lease>();
  private timer: NodeJS.Timeout | undefined;
  private writer: MvccBackend | undefined;

  constructor(private readonly now: () => number = Date.now) {}

  /**
   * The store grants and revokes go through (etcd's SetRangeDeleter): the
   * store is opened with this lessor first, then bound to it.
   */
  bind(store: MvccBackend): void {
    this.writer = store;
  }

  private get store(): MvccBackend {
    if (!this.writer) throw new Error("the lessor is not bound to a store");
    return this.writer;
  }

  restore(id: bigint, ttl: number): void {
    this.leases.set(id, { id, ttl, expiresAt: this.now() + ttl * 1000, keys: new Map(), revoking: false });
  }

  attach(lease: bigint, key: Uint8Array): void {
    this.leases.get(lease)?.keys.set(keyId(key), key);
  }

  has(id: bigint): boolean {
    return this.leases.has(id);
  }

  /**
   * This replica became the leader: every lease gets its full TTL from now,
   * as etcd's new leader gives them (keepalives went to the old one, and a
   * follower's clock never counted them down).
   */
  promote(): void {
    const now = this.now();
    for (const lease of this.leases.values()) {
      lease.expiresAt = now + lease.ttl * 1000;
      lease.revoking = false;
    }
  }

  /** Starts revoking expired leases every `intervalMs` (the leader only: followers never expire leases). */
  startExpiry(intervalMs = 250): void {
    this.timer = setInterval(() => this.revokeExpired(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  apply(commit: Commit): void {
    for (const change of commit.leases) {
      if (change.ttl === undefined) {
        this.leases.delete(change.id);
      } else {
        this.leases.set(change.id, { id: change.id, ttl: change.ttl, expiresAt: this.now() + change.ttl * 1000, keys: new Map(), revoking: false });
      }
    }
    for (const { events } of commit.revisions) {
      for (const event of events) {
        const id = keyId(event.kv.key);
        if (event.prevKv && event.prevKv.lease !== 0n) this.leases.get(event.prevKv.lease)?.keys.delete(id);
        if (event.type === "put" && event.kv.lease !== 0n) this.leases.get(event.kv.lease)?.keys.set(id, event.kv.key);
      }
    }
  }

  async grant(requestedId: bigint, requestedTtl: number): Promise<{ id: bigint; ttl: number; revision: number }> {
    if (requestedTtl > maxLeaseTtl) throw errors.leaseTtlTooLarge();
    const ttl = Math.max(requestedTtl, minLeaseTtl);
    return this.store.write(async (context) => {
      let id = requestedId;
      if (id === 0n) {
        do id = randomBytes(8).readBigInt64BE() & 0x7fffffffffffffffn;
        while (id === 0n || context.hasLease(id));
      } else if (context.hasLease(id)) {
        throw errors.leaseExists();
      }
      context.grantLease(id, ttl);
      return { id, ttl, revision: context.revision };
    }, leaseChange);
  }

  /** Deletes the lease and its keys in one revision. */
  async revoke(id: bigint): Promise<number> {
    return this.store.write(async (context) => {
      if (!context.hasLease(id)) throw errors.leaseNotFound();
      const attached = this.leases.get(id)?.keys ?? new Map<string, Uint8Array>();
      const keys = [...attached.values()].sort((a, b) => Buffer.compare(a, b));
      for (const key of keys) {
        const current: KeyValue | undefined = context.get(key);
        if (current && current.lease === id) context.delete(current);
      }
      context.revokeLease(id);
      return context.revision;
    }, leaseChange);
  }

  /** Renews a lease; returns its TTL, or 0 when it does not exist (as etcd). */
  keepAlive(id: bigint): number {
    const lease = this.leases.get(id);
    if (!lease || lease.revoking) return 0;
    lease.expiresAt = this.now() + lease.ttl * 1000;
    return lease.ttl;
  }

  lookup(id: bigint): LeaseInfo | undefined {
    const lease = this.leases.get(id);
    if (!lease) return undefined;
    // Whole seconds left, truncated as etcd reports them.
    const remaining = Math.max(0, Math.floor((lease.expiresAt - this.now()) / 1000));
    return { id, ttl: lease.ttl, remaining, keys: [...lease.keys.values()] };
  }

  list(): bigint[] {
    return [...this.leases.keys()];
  }

  get size(): number {
    return this.leases.size;
  }

  private revokeExpired(): void {
    const now = this.now();
    for (const lease of this.leases.values()) {
      if (lease.revoking || lease.expiresAt > now) continue;
      lease.revoking = true;
      this.revoke(lease.id).catch(() => {
        lease.revoking = false; // retried on the next tick
      });
    }
  }
}
