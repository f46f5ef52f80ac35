// The live configuration: a YAML file, validated by the one validator and
// turned into a snapshot for every sidecar. Changes come from the file
// (watched) or from the admin API (which writes the file), so the file on
// disk always says what is being served.
import { readFile, rename, watch, writeFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { loadConfigText } from "./config/load-config.js";
import { clientSidecarResources } from "./resources/client-sidecar-resources.js";
import { gatewayResources } from "./resources/gateway-resources.js";
import type { SnapshotCache } from "./xds/cache.js";
import { Snapshot } from "./xds/snapshot.js";

export type Log = (level: "info" | "warn" | "error", msg: string, fields?: Record<string, unknown>) => void;

export class ConfigSource {
  private version = 0;
  private appliedText: string | undefined;
  private readonly file: string;

  constructor(
    file: string,
    private readonly wasmFile: string,
    private readonly cache: SnapshotCache,
    private readonly log: Log,
    /** Set when the config lives elsewhere (a custom resource): applies must go there. */
    private readonly readOnlyReason?: string,
  ) {
    this.file = resolve(file);
  }

  get currentVersion(): string {
    return String(this.version);
  }

  get currentText(): string {
    return this.appliedText ?? "";
  }

  /** Validates and serves `text`; throws (ConfigError, SnapshotError) and changes nothing if it is refused. */
  async apply(text: string): Promise<string> {
    const { deployment, clientSidecar } = await loadConfigText(text, { baseDir: dirname(this.file), wasmFile: this.wasmFile });
    // Each role from its own resource set: the client sidecar's never holds a key.
    const version = String(this.version + 1);
    const snapshot = Snapshot.build(version, gatewayResources(deployment));
    const sidecarSnapshot = Snapshot.build(version, clientSidecar ? clientSidecarResources(clientSidecar) : {});
    this.version++;
    this.appliedText = text;
    this.cache.setRoleSnapshot("gateway", snapshot);
    this.cache.setRoleSnapshot("client-sidecar", sidecarSnapshot);
    this.log("info", "config applied", { source: this.readOnlyReason ? "kubernetes" : this.file, version: snapshot.version });
    return snapshot.version;
  }

  /** Applies `text` and then writes it to the file, atomically. */
  async applyAndSave(text: string): Promise<string> {
    if (this.readOnlyReason) throw new Error(this.readOnlyReason);
    const version = await this.apply(text);
    const temporary = `${this.file}.wharf-tmp`;
    await writeFile(temporary, text);
    await rename(temporary, this.file);
    return version;
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
