// Prometheus metrics of the control plane, served on the admin port (behind
// its token): pushes and NACKs by resource kind, connected Envoys, the
// config version being served.
import { Counter, Gauge, Registry } from "prom-client";
import type { ConfigSource } from "./config-source.js";
import type { SnapshotCache } from "./xds/cache.js";

export class ControlPlaneMetrics {
  readonly registry = new Registry();
  private readonly pushes = new Counter({ name: "wharf_xds_pushes_total", help: "Discovery responses sent, by resource kind.", labelNames: ["kind"], registers: [this.registry] });
  private readonly nacks = new Counter({ name: "wharf_xds_nacks_total", help: "Configurations Envoy rejected, by resource kind.", labelNames: ["kind"], registers: [this.registry] });

  /** Gauges read the live state when scraped. */
  attach(cache: SnapshotCache, config: ConfigSource | undefined): void {
    new Gauge({
      name: "wharf_xds_connected_envoys",
      help: "Envoys with an open ADS stream.",
      registers: [this.registry],
      collect() {
        this.set(cache.status().filter((node) => node.connected).length);
      },
    });
    new Gauge({
      name: "wharf_config_version",
      help: "Version of the configuration being served.",
      registers: [this.registry],
      collect() {
        this.set(Number(config?.currentVersion ?? 0));
      },
    });
  }

  pushed(kind: string): void {
    this.pushes.inc({ kind });
  }

  nacked(kind: string): void {
    this.nacks.inc({ kind });
  }
}
