// The live configuration: a YAML file, validated by the one validator and
// turned into a snapshot for every sidecar. Changes come from the file
// (watched) or from the admin API (which writes the file), so the file on
// disk always says what is being served.
import { readFile, rename, watch, writeFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { loadConfigText, type TenancyConfig } from "./config/load-config.js";
import { clientSidecarResources } from "./resources/client-sidecar-resources.js";
import { gatewayResources, type TenancyDeployment } from "./resources/gateway-resources.js";
import { builtinGroups } from "./tenancy/naming.js";
import type { TenantStore } from "./tenancy/tenant-store.js";
import type { SnapshotCache } from "./xds/cache.js";
import { Snapshot } from "./xds/snapshot.js";

export type Log = (level: "info" | "warn" | "error", msg: string, fields?: Record<string, unknown>) => void;

export class ConfigSource {
  private version = 0;
  private appliedText: string | undefined;
  private appliedTenancy: TenancyConfig | undefined;
  private readonly file: string;
  /** Called after each config is served (the tenants' upstream side follows it). */
  onApplied: (() => void) | undefined;
  /** The tail of the applies: one at a time, in call order, so an older config never lands last. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    file: string,
    private readonly wasmFile: string,
    private readonly cache: SnapshotCache,
    private readonly log: Log,
    /** Set when the config lives elsewhere (a custom resource): applies must go there. */
    private readonly readOnlyReason?: string,
    /** Each tenant's CA, revocations and continue key (tenancy/tenant-store.ts). */
    private readonly tenantStore?: TenantStore,
  ) {
    this.file = resolve(file);
  }

  get currentVersion(): string {
    return String(this.version);
  }

  get currentText(): string {
    return this.appliedText ?? "";
  }

  /** The served config's tenancy; undefined when it has none. */
  get currentTenancy(): TenancyConfig | undefined {
    return this.appliedTenancy;
  }

  /** Why this source cannot be changed here (its config lives in a custom resource); undefined when it can. */
  get readOnly(): string | undefined {
    return this.readOnlyReason;
  }

  /** Validates and serves `text`; throws (ConfigError, SnapshotError) and changes nothing if it is refused. */
  async apply(text: string): Promise<string> {
    return this.serialized(() => this.applyNow(text));
  }

  /** Serves the current config again, with the tenants' state as it is now (a revocation). */
  async refresh(): Promise<string> {
    return this.serialized(() => this.applyNow(this.currentText));
  }

  /** Applies `text` and then writes it to the file, atomically. */
  async applyAndSave(text: string): Promise<string> {
    return this.edit(() => text);
  }

  /**
   * Applies `change(current text)` and writes it to the file, with no other
   * apply in between: a read-modify-write (adding or removing a tenant).
   */
  async edit(change: (text: string) => string): Promise<string> {
    if (this.readOnlyReason) throw new Error(this.readOnlyReason);
    return this.serialized(async () => {
      const text = change(this.currentText);
      const version = await this.applyNow(text);
      const temporary = `${this.file}.wharf-tmp`;
      await writeFile(temporary, text);
      await rename(temporary, this.file);
      return version;
    });
  }

  private async applyNow(text: string): Promise<string> {
    const { deployment, clientSidecar, tenancy } = await loadConfigText(text, { baseDir: dirname(this.file), wasmFile: this.wasmFile });
    const served = tenancy ? { ...deployment, tenancy: await this.tenancyDeployment(tenancy) } : deployment;
    // Each role from its own resource set: the client sidecar's never holds a key.
    const version = String(this.version + 1);
    const snapshot = Snapshot.build(version, gatewayResources(served));
    const sidecarSnapshot = Snapshot.build(version, clientSidecar ? clientSidecarResources(clientSidecar) : {});
    this.version++;
    this.appliedText = text;
    this.appliedTenancy = tenancy;
    this.cache.setRoleSnapshot("gateway", snapshot);
    this.cache.setRoleSnapshot("client-sidecar", sidecarSnapshot);
    this.log("info", "config applied", { source: this.readOnlyReason ? "kubernetes" : this.file, version: snapshot.version, ...(tenancy ? { tenants: tenancy.tenants.length } : {}) });
    this.onApplied?.();
    return snapshot.version;
  }

  /** The tenants' trust, revocations and continue keys from the state directory (a tenant new to it gets its CA now). */
  private async tenancyDeployment(tenancy: TenancyConfig): Promise<TenancyDeployment> {
    const store = this.tenantStore;
    if (!store) throw new Error("tenancy needs the control plane's state directory (tenant CAs live there)");
    const tenants = await Promise.all(
      tenancy.tenants.map(async ({ name, sharedViews }) => {
        const state = await store.ensure(name);
        return { name, sharedViews, caCert: state.caCert, issuerSha256: state.issuerSha256, revokedSerials: state.revokedSerials, continueKey: state.continueKey };
      }),
    );
    return { tenants, hostGroups: [...builtinGroups], ...(tenancy.filterModule ? { filterModule: tenancy.filterModule } : {}) };
  }

  private serialized<T>(work: () => Promise<T>): Promise<T> {
    const next = this.queue.catch(() => undefined).then(work);
    this.queue = next.catch(() => undefined);
    return next;
  }

  async loadFile(): Promise<void> {
    await this.apply(await readFile(this.file, "utf8"));
  }

  /** Re-applies the file whenever it changes; refusals are logged, the last good config stays. */
  async watchFile(signal: AbortSignal): Promise<void> {
    let pending: NodeJS.Timeout | undefined;
    const reload = async () => {
      const text = await readFile(this.file, "utf8").catch(() => undefined);
      if (text === undefined || text === this.appliedText) return;
      await this.apply(text).catch((error: unknown) =>
        this.log("error", "config refused; the last good one stays live", { file: this.file, error: (error as Error).message }),
      );
    };
    try {
      // Editors replace files as often as they write them: watch the directory.
      for await (const event of watch(dirname(this.file), { signal })) {
        if (event.filename !== null && resolve(dirname(this.file), event.filename) !== this.file) continue;
        clearTimeout(pending);
        pending = setTimeout(() => void reload(), 50);
      }
    } catch (error) {
      if ((error as Error).name !== "AbortError") throw error;
    }
  }
}
