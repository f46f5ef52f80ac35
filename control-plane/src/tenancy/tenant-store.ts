// What the control plane keeps about each tenant besides its line in the
// config (which says that it exists and what it shares): in
// <stateDir>/tenants/<T>/ its CA (ca.crt, ca.key 0600), the key that seals
// its continue tokens (continue.key, 32 bytes, 0600) and its issuance record
// (record.json: when it was created, each unexpired certificate's serial,
// user and expiry, and the revoked ones), so a user can be revoked without
// having kept their certificates. Entries are dropped once expired: the
// record stays as small as the number of live certificates.
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { tenantNameError } from "./naming.js";
import { TenantCa, TenantCaError, checkTenantName, writeAtomically, type TenantLeaf, type TenantLeafRequest } from "./tenant-ca.js";

interface IssuedEntry {
  serial: string;
  user: string;
  /** RFC 3339. */
  notAfter: string;
}

interface TenantRecord {
  createdAt: string;
  /** Set once the tenant's objects upstream were made (RBAC, system namespaces). */
  upstreamReady?: boolean;
  issued: IssuedEntry[];
  revoked: IssuedEntry[];
}

/** One tenant's state as the resource builder needs it. */
export interface TenantState {
  name: string;
  createdAt: Date;
  caCert: string;
  issuerSha256: string;
  /** Unexpired revoked certificates' serials. */
  revokedSerials: string[];
  continueKey: Uint8Array;
  /** Unexpired certificates issued and not revoked, by user. */
  activeCertificates: Record<string, number>;
  upstreamReady: boolean;
}

interface Loaded {
  ca: TenantCa;
  continueKey: Uint8Array;
  record: TenantRecord;
}

const serialHex = /^[0-9a-f]{2,40}$/;

function parseRecord(file: string, text: string): TenantRecord {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new TenantCaError(`${file}: not JSON (${(error as Error).message}); it lists revoked certificates, so it is not replaced`);
  }
  const record = value as Partial<TenantRecord>;
  const entries = (list: unknown): list is IssuedEntry[] =>
    Array.isArray(list) &&
    list.every((entry: Partial<IssuedEntry>) => typeof entry.user === "string" && typeof entry.serial === "string" && serialHex.test(entry.serial) && !Number.isNaN(Date.parse(entry.notAfter ?? "")));
  if (typeof record.createdAt !== "string" || !entries(record.issued) || !entries(record.revoked)) throw new TenantCaError(`${file}: not a tenant record`);
  return record as TenantRecord;
}

export class TenantStore {
  private readonly loaded = new Map<string, Loaded>();
  /** Per tenant, the tail of its mutations: one at a time, so no write is lost. */
  private readonly queues = new Map<string, Promise<unknown>>();

  constructor(readonly stateDir: string) {}

  dirOf(tenant: string): string {
    return join(this.stateDir, "tenants", checkTenantName(tenant));
  }

  has(tenant: string): boolean {
    return existsSync(join(this.dirOf(tenant), "record.json"));
  }

  /** The tenant's state, created (CA, continue key, record) if missing. */
  async ensure(tenant: string, now = new Date()): Promise<TenantState> {
    return this.serialized(tenant, async () => this.stateOf(tenant, await this.load(tenant, true), now));
  }

  /** The tenant's state; fails if it was never created. */
  async get(tenant: string, now = new Date()): Promise<TenantState> {
    return this.stateOf(tenant, await this.load(tenant, false), now);
  }

  async issue(tenant: string, request: TenantLeafRequest, now = new Date()): Promise<TenantLeaf> {
    return this.serialized(tenant, async () => {
      const loaded = await this.load(tenant, false);
      const leaf = await loaded.ca.issue(request, now);
      loaded.record.issued.push({ serial: leaf.serial, user: request.user, notAfter: leaf.notAfter.toISOString() });
      await this.save(tenant, loaded.record, now);
      return leaf;
    });
  }

  /** Notes that the tenant's objects upstream are made. */
  async markUpstreamReady(tenant: string, now = new Date()): Promise<void> {
    await this.serialized(tenant, async () => {
      const { record } = await this.load(tenant, false);
      record.upstreamReady = true;
      await this.save(tenant, record, now);
    });
  }

  /** Tenants with state in the directory (listed or not in the config). */
  async names(): Promise<string[]> {
    const entries = await readdir(join(this.stateDir, "tenants"), { withFileTypes: true }).catch(() => []);
    return entries.filter((entry) => entry.isDirectory() && tenantNameError(entry.name) === undefined && existsSync(join(this.stateDir, "tenants", entry.name, "record.json"))).map((entry) => entry.name);
  }

  /** Revokes every unexpired certificate issued to `user`; returns how many. */
  async revokeUser(tenant: string, user: string, now = new Date()): Promise<number> {
    return this.serialized(tenant, async () => {
      const { record } = await this.load(tenant, false);
      const revoked = record.issued.filter((entry) => entry.user === user && Date.parse(entry.notAfter) > now.getTime());
      record.issued = record.issued.filter((entry) => entry.user !== user);
      record.revoked.push(...revoked);
      await this.save(tenant, record, now);
      return revoked.length;
    });
  }

  /** Forgets the tenant: its CA key, continue key and record are gone. */
  async remove(tenant: string): Promise<void> {
    await this.serialized(tenant, async () => {
      this.loaded.delete(tenant);
      await rm(this.dirOf(tenant), { recursive: true, force: true });
    });
  }

  private stateOf(tenant: string, { ca, continueKey, record }: Loaded, now: Date): TenantState {
    const live = (entry: IssuedEntry) => Date.parse(entry.notAfter) > now.getTime();
    const activeCertificates: Record<string, number> = {};
    for (const entry of record.issued.filter(live)) activeCertificates[entry.user] = (activeCertificates[entry.user] ?? 0) + 1;
    return {
      name: tenant,
      createdAt: new Date(record.createdAt),
      caCert: ca.certPem,
      issuerSha256: ca.issuerSha256,
      revokedSerials: record.revoked.filter(live).map((entry) => entry.serial),
      continueKey,
      activeCertificates,
      upstreamReady: record.upstreamReady === true,
    };
  }

  private async load(tenant: string, create: boolean): Promise<Loaded> {
    const cached = this.loaded.get(tenant);
    if (cached) return cached;
    const dir = this.dirOf(tenant);
    const recordFile = join(dir, "record.json");
    const keyFile = join(dir, "continue.key");
    if (!existsSync(recordFile)) {
      if (!create) throw new TenantCaError(`tenant ${tenant} has no state in ${dir}`);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await TenantCa.loadOrCreate(dir, tenant);
      if (!existsSync(keyFile)) await writeAtomically(keyFile, randomBytes(32), 0o600);
      // The record last: its presence says the rest is complete.
      await writeAtomically(recordFile, JSON.stringify({ createdAt: new Date().toISOString(), issued: [], revoked: [] } satisfies TenantRecord), 0o600);
    }
    const [ca, continueKey, text] = await Promise.all([TenantCa.load(dir, tenant), readFile(keyFile), readFile(recordFile, "utf8")]);
    if (continueKey.length !== 32) throw new TenantCaError(`${keyFile}: want 32 bytes, found ${continueKey.length}`);
    const loaded = { ca, continueKey: new Uint8Array(continueKey), record: parseRecord(recordFile, text) };
    this.loaded.set(tenant, loaded);
    return loaded;
  }

  private async save(tenant: string, record: TenantRecord, now: Date): Promise<void> {
    const live = (entry: IssuedEntry) => Date.parse(entry.notAfter) > now.getTime();
    record.issued = record.issued.filter(live);
    record.revoked = record.revoked.filter(live);
    await writeAtomically(join(this.dirOf(tenant), "record.json"), JSON.stringify(record), 0o600);
  }

  private serialized<T>(tenant: string, work: () => Promise<T>): Promise<T> {
    const previous = this.queues.get(tenant) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(work);
    const tail = next.catch(() => undefined);
    this.queues.set(tenant, tail);
    void tail.then(() => {
      if (this.queues.get(tenant) === tail) this.queues.delete(tenant);
    });
    return next;
  }
}
