// brain's public surface.
export { startBrain, type RunningBrain } from "./server/server.js";
export { parseConfig, helpText, ConfigError, type BrainConfig } from "./config.js";
export type { StorageEngine, ReadView, WriteOp } from "./storage/engine.js";
export { openRocksEngine } from "./storage/rocks-engine.js";
