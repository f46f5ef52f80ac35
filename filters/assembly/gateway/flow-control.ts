// Token buckets, in-flight and watch counters per flow-control schema (and
// per user when the schema says so), kept in Envoy's shared data and updated
// with compare-and-swap so the limits hold across all worker threads.
import { getSharedData, setSharedData, WasmResult } from "../sdk";
import { FlowControlSchema } from "./config";

// tokens f64 | last refill ns f64 | in-flight u32 | watches u32
const stateBytes = 24;
const maxAttempts = 32;

class BucketState {
  tokens: f64 = 0;
  refilledAt: f64 = 0;
  inflight: u32 = 0;
  watches: u32 = 0;
}

function decode(value: ArrayBuffer | null, schema: FlowControlSchema, now: f64): BucketState {
  const state = new BucketState();
  if (value === null || value.byteLength < stateBytes) {
    state.tokens = <f64>schema.burst;
    state.refilledAt = now;
    return state;
  }
  const base = changetype<usize>(value);
  state.tokens = load<f64>(base);
  state.refilledAt = load<f64>(base + 8);
  state.inflight = load<u32>(base + 16);
  state.watches = load<u32>(base + 20);
  return state;
}

function encode(state: BucketState): ArrayBuffer {
  const out = new ArrayBuffer(stateBytes);
  const base = changetype<usize>(out);
  store<f64>(base, state.tokens);
  store<f64>(base + 8, state.refilledAt);
  store<u32>(base + 16, state.inflight);
  store<u32>(base + 20, state.watches);
  return out;
}

export class Admission {
  constructor(
    public admitted: bool,
    /** "rate", "inflight", "watches" or "contention" when refused. */
    public reason: string,
    public retryAfterSeconds: i32,
  ) {}
}

export function bucketKey(schema: FlowControlSchema, user: string): string {
  return schema.perUser ? "wharf/fc/" + schema.name + "/user/" + user : "wharf/fc/" + schema.name;
}

/** Takes a token and an in-flight (or watch) slot, or says why not. */
export function acquire(schema: FlowControlSchema, key: string, isWatch: bool, nowNs: u64): Admission {
  const now = <f64>nowNs;
  for (let attempt = 0; attempt < maxAttempts; attempt++) {
    const current = getSharedData(key);
    const state = decode(current.value, schema, now);
    if (schema.qps > 0) {
      const elapsed = Math.max(0, now - state.refilledAt) / 1e9;
      state.tokens = Math.min(<f64>schema.burst, state.tokens + elapsed * schema.qps);
      state.refilledAt = now;
      if (state.tokens < 1) return new Admission(false, "rate", <i32>Math.max(1, Math.ceil((1 - state.tokens) / schema.qps)));
      state.tokens -= 1;
    }
    if (isWatch) {
      if (schema.maxWatches > 0 && state.watches >= schema.maxWatches) return new Admission(false, "watches", 1);
      state.watches++;
    } else {
      if (schema.maxInflight > 0 && state.inflight >= schema.maxInflight) return new Admission(false, "inflight", 1);
      state.inflight++;
    }
    if (setSharedData(key, encode(state), current.cas) == WasmResult.Ok) return new Admission(true, "", 0);
  }
  return new Admission(false, "contention", 1);
}

/** Gives back the in-flight (or watch) slot of an admitted request. */
export function release(schema: FlowControlSchema, key: string, isWatch: bool): void {
  for (let attempt = 0; attempt < maxAttempts; attempt++) {
    const current = getSharedData(key);
    if (current.value === null) return;
    const state = decode(current.value, schema, 0);
    if (isWatch) {
      if (state.watches > 0) state.watches--;
    } else if (state.inflight > 0) {
      state.inflight--;
    }
    if (setSharedData(key, encode(state), current.cas) == WasmResult.Ok) return;
  }
}

/** Current counters, for gauges. */
export function counters(schema: FlowControlSchema, key: string): u64 {
  const state = decode(getSharedData(key).value, schema, 0);
  return (<u64>state.inflight << 32) | state.watches;
}
