// A linearizability checker for etcd's KV API (a Porcupine-style search over
// recorded client histories, checked against etcd's semantics) and the
// recorder that produces such histories from a live server.
export { checkHistory, type CheckOptions, type CheckReport, type CheckStats } from "./check.js";
export type { History, Operation, Request, Response, WatchHistory, WatchEvent, KeyValue } from "./history.js";
export { recordHistory, type RecordOptions, type WatchSpec } from "./recorder.js";
export { recordAndCheck, coverage, type Coverage } from "./run.js";
