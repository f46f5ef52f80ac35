// The per-tenant state in the control plane's state directory: who holds
// which certificate, what is revoked, and that nothing grows past the
// certificates still alive.
import { X509Certificate } from "node:crypto";
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeWorkDir, removeWorkDir } from "@wharf/testkit";
import { TenantStore } from "./tenant-store.js";

let dir: string;

beforeAll(async () => {
  dir = await makeWorkDir("tenant-store");
});
afterAll(async () => {
  await removeWorkDir(dir);
});

const hour = 3600 * 1000;

describe("the tenant store", () => {
  it("creates a tenant's CA, continue key and record, owner-readable only", async () => {
    const store = new TenantStore(join(dir, "a"));
    const state = await store.ensure("acme");
    expect(state.continueKey.length).toBe(32);
    expect(new X509Certificate(state.caCert).subject).toMatch(/CN=wharf tenant acme CA/);
    for (const file of ["ca.key", "continue.key", "record.json"]) expect((await stat(join(dir, "a", "tenants", "acme", file))).mode & 0o777).toBe(0o600);
    // The same state from a fresh store (a restarted control plane).
    const reloaded = await new TenantStore(join(dir, "a")).get("acme");
    expect(reloaded.issuerSha256).toBe(state.issuerSha256);
    expect(Buffer.from(reloaded.continueKey).equals(Buffer.from(state.continueKey))).toBe(true);
    expect(reloaded.createdAt.getTime()).toBe(state.createdAt.getTime());
  });

  it("records issued certificates by user and revokes exactly one user's", async () => {
    const store = new TenantStore(join(dir, "b"));
    await store.ensure("acme");
    const alice = [await store.issue("acme", { user: "alice", groups: [] }), await store.issue("acme", { user: "alice", groups: ["dev"] })];
    const bob = await store.issue("acme", { user: "bob", groups: [] });
    expect((await store.get("acme")).activeCertificates).toEqual({ alice: 2, bob: 1 });
    expect(await store.revokeUser("acme", "alice")).toBe(2);
    const state = await new TenantStore(join(dir, "b")).get("acme");
    expect(state.revokedSerials.sort()).toEqual(alice.map((leaf) => leaf.serial).sort());
    expect(state.revokedSerials).not.toContain(bob.serial);
    expect(state.activeCertificates).toEqual({ bob: 1 });
    expect(await store.revokeUser("acme", "nobody")).toBe(0);
  });

  it("drops expired entries, revoked or not, so the record stays bounded", async () => {
    const store = new TenantStore(join(dir, "c"));
    await store.ensure("acme");
    const t0 = new Date();
    await store.issue("acme", { user: "short", groups: [], ttlSeconds: 60 }, t0);
    await store.issue("acme", { user: "long", groups: [], ttlSeconds: 3600 }, t0);
    expect(await store.revokeUser("acme", "short", t0)).toBe(1);
    expect((await store.get("acme", t0)).revokedSerials).toHaveLength(1);
    const later = new Date(t0.getTime() + 2 * 60 * 1000);
    // An expired certificate needs no revocation entry: the listener refuses it anyway.
    expect((await store.get("acme", later)).revokedSerials).toEqual([]);
    await store.issue("acme", { user: "next", groups: [] }, later);
    const record = JSON.parse(await readFile(join(dir, "c", "tenants", "acme", "record.json"), "utf8")) as { issued: Array<{ user: string }>; revoked: unknown[] };
    expect(record.revoked).toEqual([]);
    expect(record.issued.map((entry) => entry.user).sort()).toEqual(["long", "next"]);
    expect(await store.revokeUser("acme", "long", new Date(t0.getTime() + 2 * hour))).toBe(0);
  });

  it("loses no record entry when issuing concurrently", async () => {
    const store = new TenantStore(join(dir, "d"));
    await store.ensure("acme");
    await Promise.all(Array.from({ length: 12 }, (_, i) => store.issue("acme", { user: `u${i % 3}`, groups: [] })));
    expect((await new TenantStore(join(dir, "d")).get("acme")).activeCertificates).toEqual({ u0: 4, u1: 4, u2: 4 });
  });

  it("refuses a torn or edited record instead of forgetting revocations", async () => {
    const store = new TenantStore(join(dir, "e"));
    await store.ensure("acme");
    await writeFile(join(dir, "e", "tenants", "acme", "record.json"), '{"createdAt":"2030-01-01T00:00:00Z","issued":[],"rev');
    await expect(new TenantStore(join(dir, "e")).get("acme")).rejects.toThrow(/record\.json: not JSON .*not replaced/);
    await writeFile(join(dir, "e", "tenants", "acme", "record.json"), '{"createdAt":"2030-01-01T00:00:00Z","issued":[{"serial":"zz","user":"a","notAfter":"x"}],"revoked":[]}');
    await expect(new TenantStore(join(dir, "e")).get("acme")).rejects.toThrow(/not a tenant record/);
  });

  it("forgets a removed tenant: a tenant created again under its name has a new CA", async () => {
    const store = new TenantStore(join(dir, "f"));
    const first = await store.ensure("acme");
    await store.remove("acme");
    expect(store.has("acme")).toBe(false);
    await expect(store.get("acme")).rejects.toThrow(/has no state/);
    const second = await store.ensure("acme");
    expect(second.issuerSha256).not.toBe(first.issuerSha256);
  });

  it("refuses names that are not tenant names", async () => {
    const store = new TenantStore(join(dir, "g"));
    await expect(store.ensure("../etc")).rejects.toThrow(/tenant name/);
    await expect(store.ensure("Acme")).rejects.toThrow(/tenant name/);
  });
});
