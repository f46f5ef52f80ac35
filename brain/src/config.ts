// brain's command-line flags: etcd's names and meanings where etcd has one.
import { parseArgs } from "node:util";

export interface BrainConfig {
  name: string;
  dataDir: string;
  listenClientUrls: URL[];
  advertiseClientUrls: string[];
  listenMetricsUrls: URL[];
  certFile: string | undefined;
  keyFile: string | undefined;
  trustedCaFile: string | undefined;
  clientCertAuth: boolean;
  maxRequestBytes: number;
  maxTxnOps: number;
  autoCompactionMode: "periodic" | "revision";
  /** Revisions to keep (revision mode) or milliseconds of history (periodic); 0 = off. */
  autoCompactionRetention: number;
  watchProgressNotifyIntervalMs: number;
  unsafeNoFsync: boolean;
  /** rocksdb: one brain on its own data dir; postgres: a replica of the set sharing --postgres-url. */
  storage: "rocksdb" | "postgres";
  /** Set exactly when storage is postgres; holds a password possibly: never log it (redactUrl). */
  postgresUrl: string | undefined;
  /** How long a leader holds leadership without renewing it (postgres storage). */
  leaderLeaseTtlMs: number;
  logLevel: "debug" | "info" | "warn" | "error";
}

interface FlagSpec {
  type: "string" | "boolean";
  default: string | boolean;
  help: string;
}

export const flags: Record<string, FlagSpec> = {
  name: { type: "string", default: "default", help: "Human-readable name for this member." },
  "data-dir": { type: "string", default: "default.brain", help: "Path to the data directory (RocksDB)." },
  "listen-client-urls": {
    type: "string",
    default: "http://127.0.0.1:2379",
    help: "Comma-separated URLs to serve the etcd v3 gRPC API on; https:// needs --cert-file and --key-file.",
  },
  "advertise-client-urls": {
    type: "string",
    default: "",
    help: "Comma-separated client URLs reported in MemberList (default: the listen URLs).",
  },
  "listen-metrics-urls": {
    type: "string",
    default: "",
    help: "Comma-separated http:// URLs serving /metrics (Prometheus) and /healthz; none by default.",
  },
  "cert-file": { type: "string", default: "", help: "TLS certificate for the client URLs." },
  "key-file": { type: "string", default: "", help: "TLS private key for the client URLs." },
  "trusted-ca-file": { type: "string", default: "", help: "CA bundle to verify client certificates with." },
  "client-cert-auth": {
    type: "boolean",
    default: false,
    help: "Require clients on https:// URLs to present a certificate signed by --trusted-ca-file.",
  },
  "max-request-bytes": {
    type: "string",
    default: String(1.5 * 1024 * 1024),
    help: "Largest request the server accepts, in bytes (etcd's default 1.5 MiB).",
  },
  "max-txn-ops": { type: "string", default: "128", help: "Most operations allowed in one txn (compare, success or failure list)." },
  "auto-compaction-mode": {
    type: "string",
    default: "periodic",
    help: "periodic: keep --auto-compaction-retention of time; revision: keep that many revisions.",
  },
  "auto-compaction-retention": {
    type: "string",
    default: "0",
    help: "0 disables auto compaction. periodic: a duration like 1h, 30m or a number of hours; revision: a count.",
  },
  "watch-progress-notify-interval": {
    type: "string",
    default: "10m",
    help: "How often watchers that asked for progress notifications get one (a duration).",
  },
  "unsafe-no-fsync": {
    type: "boolean",
    default: false,
    help: "Acknowledge writes before they reach disk. Loses data on a crash; for throwaway setups only.",
  },
  storage: {
    type: "string",
    default: "rocksdb",
    help: "rocksdb: a single brain on its --data-dir; postgres: one replica of a set sharing --postgres-url (--data-dir is then a local copy, rebuilt at every start).",
  },
  "postgres-url": {
    type: "string",
    default: "",
    help: "PostgreSQL connection URL for --storage postgres (postgres://user:password@host:port/db); env BRAIN_POSTGRES_URL keeps the password off the command line.",
  },
  "leader-lease-ttl": {
    type: "string",
    default: "3s",
    help: "--storage postgres: how long a leader stays leader without renewing (at least 1s); a failed leader is replaced within about this long.",
  },
  "log-level": { type: "string", default: "info", help: "debug, info, warn or error." },
  help: { type: "boolean", default: false, help: "Print this help." },
};

export function helpText(): string {
  const lines = [
    "Usage: brain [flags]",
    "       brain migrate --data-dir DIR (--from-snapshot FILE | --from-etcd URL)   (brain migrate --help)",
    "",
    "An etcd v3 server on RocksDB, or a replica set of them sharing one PostgreSQL.",
    "",
    "Flags:",
  ];
  for (const [name, spec] of Object.entries(flags)) {
    const value = spec.type === "string" ? " string" : "";
    const fallback = spec.type === "string" && spec.default !== "" ? ` (default "${String(spec.default)}")` : "";
    lines.push(`  --${name}${value}`, `        ${spec.help}${fallback}`);
  }
  return lines.join("\n") + "\n";
}

export class ConfigError extends Error {}

/** Parses and validates flags; returns undefined when --help was asked. */
export function parseConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): BrainConfig | undefined {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: Object.fromEntries(Object.entries(flags).map(([name, spec]) => [name, { type: spec.type }])),
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    throw new ConfigError(`${(error as Error).message}\nRun brain --help for the flags.`);
  }
  if (values.help) return undefined;
  const text = (name: string) => String(values[name] ?? flags[name]!.default);
  const bool = (name: string) => Boolean(values[name] ?? flags[name]!.default);
  const integer = (name: string, min: number) => {
    const value = Number(text(name));
    if (!Number.isInteger(value) || value < min) throw new ConfigError(`--${name}=${text(name)}: want an integer >= ${min}`);
    return value;
  };
  const urls = (name: string, schemes: string[]) =>
    text(name)
      .split(",")
      .filter((raw) => raw.trim() !== "")
      .map((raw) => {
        let url: URL;
        try {
          url = new URL(raw.trim());
        } catch {
          throw new ConfigError(`--${name}: ${raw} is not a URL`);
        }
        if (!schemes.includes(url.protocol)) {
          throw new ConfigError(`--${name}: ${raw} must use ${schemes.map((s) => s.replace(":", "://")).join(" or ")}`);
        }
        if (url.port === "") throw new ConfigError(`--${name}: ${raw} needs a port`);
        return url;
      });

  const listenClientUrls = urls("listen-client-urls", ["http:", "https:"]);
  if (listenClientUrls.length === 0) throw new ConfigError("--listen-client-urls: at least one URL is needed");
  const certFile = text("cert-file") || undefined;
  const keyFile = text("key-file") || undefined;
  const trustedCaFile = text("trusted-ca-file") || undefined;
  if (listenClientUrls.some((url) => url.protocol === "https:") && (!certFile || !keyFile)) {
    throw new ConfigError("--listen-client-urls: https:// URLs need --cert-file and --key-file");
  }
  if (bool("client-cert-auth") && !trustedCaFile) throw new ConfigError("--client-cert-auth needs --trusted-ca-file");

  const mode = text("auto-compaction-mode");
  if (mode !== "periodic" && mode !== "revision") {
    throw new ConfigError(`--auto-compaction-mode=${mode}: want periodic or revision`);
  }
  const retention = text("auto-compaction-retention");
  const autoCompactionRetention = mode === "revision" ? integer("auto-compaction-retention", 0) : parseDuration("auto-compaction-retention", retention, 3_600_000);

  const level = text("log-level");
  if (!["debug", "info", "warn", "error"].includes(level)) throw new ConfigError(`--log-level=${level}: want debug, info, warn or error`);

  const storage = text("storage");
  if (storage !== "rocksdb" && storage !== "postgres") throw new ConfigError(`--storage=${storage}: want rocksdb or postgres`);
  let postgresUrl: string | undefined;
  if (storage === "postgres") {
    postgresUrl = text("postgres-url") || env.BRAIN_POSTGRES_URL || undefined;
    if (postgresUrl === undefined) throw new ConfigError("--storage postgres needs --postgres-url (or the BRAIN_POSTGRES_URL environment variable)");
    let parsed: URL;
    try {
      parsed = new URL(postgresUrl);
    } catch {
      // The value may hold a password: never echo it.
      throw new ConfigError("--postgres-url: not a URL; want postgres://user[:password]@host[:port]/database");
    }
    if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") {
      throw new ConfigError(`--postgres-url: must use postgres:// or postgresql:// (got ${parsed.protocol}//)`);
    }
    if (bool("unsafe-no-fsync")) {
      throw new ConfigError("--unsafe-no-fsync cannot be used with --storage postgres: PostgreSQL's own settings (fsync, synchronous_commit) decide durability there");
    }
  } else if (text("postgres-url") !== "") {
    throw new ConfigError("--postgres-url needs --storage postgres");
  }
  const leaderLeaseTtlMs = parseDuration("leader-lease-ttl", text("leader-lease-ttl"), 1000);
  if (leaderLeaseTtlMs < 1000) throw new ConfigError(`--leader-lease-ttl=${text("leader-lease-ttl")}: want at least 1s`);

  const advertised = text("advertise-client-urls");
  const advertiseClientUrls = advertised ? advertised.split(",").map((u) => u.trim()) : listenClientUrls.map((u) => u.origin);
  if (storage === "postgres") {
    // The other members forward to the first advertised URL: it must name this host.
    const first = new URL(advertiseClientUrls[0]!);
    if (["0.0.0.0", "[::]"].includes(first.hostname)) {
      throw new ConfigError(`--storage postgres: other members reach this one at its first client URL, and ${first.origin} names no host; set --advertise-client-urls`);
    }
  }
  return {
    name: text("name"),
    dataDir: text("data-dir"),
    listenClientUrls,
    advertiseClientUrls,
    listenMetricsUrls: urls("listen-metrics-urls", ["http:"]),
    certFile,
    keyFile,
    trustedCaFile,
    clientCertAuth: bool("client-cert-auth"),
    maxRequestBytes: integer("max-request-bytes", 1),
    maxTxnOps: integer("max-txn-ops", 1),
    autoCompactionMode: mode,
    autoCompactionRetention,
    watchProgressNotifyIntervalMs: parseDuration("watch-progress-notify-interval", text("watch-progress-notify-interval"), 1000),
    unsafeNoFsync: bool("unsafe-no-fsync"),
    storage,
    postgresUrl,
    leaderLeaseTtlMs,
    logLevel: level as BrainConfig["logLevel"],
  };
}

/** "1h30m", "90s", "250ms"; a bare number is in `bareUnitMs`. */
function parseDuration(flag: string, raw: string, bareUnitMs: number): number {
  if (/^\d+(\.\d+)?$/.test(raw)) return Number(raw) * bareUnitMs;
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  let rest = raw;
  while (rest.length > 0) {
    const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)/.exec(rest);
    if (!match) throw new ConfigError(`--${flag}=${raw}: want a duration like 10m, 1h or 500ms`);
    total += Number(match[1]) * units[match[2]!]!;
    rest = rest.slice(match[0].length);
  }
  return total;
}
