// Token buckets, in-flight and watch counters per flow-control schema (and
// per user when the schema says so), held across all worker threads in
// Envoy's shared data, updated with compare-and-swap.
//
// Each worker (VM) leases from the shared state in chunks and admits from
// its lease without touching shared data: the fast path costs no host call.
// The shared counters count what workers hold, so the limits still hold
// across workers: the sum of every lease never exceeds a limit. A worker's
// idle slots go back when it holds more than two chunks and on every tick,
// so a lease keeps at most a chunk idle for at most a second. Small limits
// (under 32) lease one slot or token at a time: exact, as if unleased.
import { currentTimeNanoseconds, getSharedData, setSharedData, WasmResult } from "../sdk";
import { FlowControlSchema } from "./config";

// tokens f64 | last refill ns f64 | leased in-flight u32 | leased watches u32
const stateBytes = 24;
const maxAttempts = 32;
/** Limits from this size on are leased in chunks of a sixteenth. */
const chunkedFrom: u32 = 32;
/** Slots leased at a time when the schema sets no limit (only the gauges count them). */
const unlimitedChunk: u32 = 16;

class SharedState {
  tokens: f64 = 0;
  refilledAt: f64 = 0;
  inflight: u32 = 0;
  watches: u32 = 0;
  cas: u32 = 0;
  present: bool = false;
}

// One scratch state and one encode buffer per VM: a VM runs one callback at a time.
const scratch = new SharedState();
const encoded = new ArrayBuffer(stateBytes);

function read(key: string, schema: FlowControlSchema, now: f64): SharedState {
  const current = getSharedData(key);
  const value = current.value;
  scratch.cas = current.cas;
  scratch.present = value !== null && value.byteLength >= stateBytes;
  if (!scratch.present) {
    scratch.tokens = <f64>schema.burst;
    scratch.refilledAt = now;
    scratch.inflight = 0;
    scratch.watches = 0;
    return scratch;
  }
  const base = changetype<usize>(value);
  scratch.tokens = load<f64>(base);
  scratch.refilledAt = load<f64>(base + 8);
  scratch.inflight = load<u32>(base + 16);
  scratch.watches = load<u32>(base + 20);
  return scratch;
}

function write(key: string, state: SharedState): bool {
  const base = changetype<usize>(encoded);
  store<f64>(base, state.tokens);
  store<f64>(base + 8, state.refilledAt);
  store<u32>(base + 16, state.inflight);
  store<u32>(base + 20, state.watches);
  return setSharedData(key, encoded, state.cas) == WasmResult.Ok;
}

/** This worker's share of one bucket. */
class Lease {
  tokens: f64 = 0;
  freeInflight: u32 = 0;
  usedInflight: u32 = 0;
  freeWatches: u32 = 0;
  usedWatches: u32 = 0;
  constructor(public key: string) {}
}

/** schema name → user ("" for a schema shared by all) → lease. */
const leases = new Map<string, Map<string, Lease>>();

function leaseOf(schema: FlowControlSchema, user: string): Lease {
  let byUser: Map<string, Lease>;
  if (leases.has(schema.name)) byUser = leases.get(schema.name);
  else {
    byUser = new Map<string, Lease>();
    leases.set(schema.name, byUser);
  }
  const owner = schema.perUser ? user : "";
  if (byUser.has(owner)) return byUser.get(owner);
  const lease = new Lease(schema.perUser ? "wharf/fc/" + schema.name + "/user/" + user : "wharf/fc/" + schema.name);
  byUser.set(owner, lease);
  return lease;
}

function slotChunk(limit: u32): u32 {
  if (limit == 0) return unlimitedChunk;
  return limit >= chunkedFrom ? limit / 16 : 1;
}

function tokenChunk(schema: FlowControlSchema): f64 {
  return schema.burst >= chunkedFrom ? Math.floor(<f64>schema.burst / 16) : 1;
}

export class Admission {
  constructor(
    public admitted: bool,
    /** "rate", "inflight", "watches" or "contention" when refused. */
    public reason: string,
    public retryAfterSeconds: i32,
  ) {}
}

const admitted = new Admission(true, "", 0);

/** Takes tokens and slots from the shared state into `lease`; a refusal, or null once it holds what it needs. */
function leaseMore(schema: FlowControlSchema, lease: Lease, needToken: bool, needSlot: bool, isWatch: bool): Admission | null {
  const now = <f64>currentTimeNanoseconds();
  for (let attempt = 0; attempt < maxAttempts; attempt++) {
    const state = read(lease.key, schema, now);
    let tokens: f64 = 0;
    if (needToken) {
      const elapsed = Math.max(0, now - state.refilledAt) / 1e9;
      state.tokens = Math.min(<f64>schema.burst, state.tokens + elapsed * schema.qps);
      state.refilledAt = now;
      if (state.tokens < 1) return new Admission(false, "rate", <i32>Math.max(1, Math.ceil((1 - state.tokens) / schema.qps)));
      tokens = Math.min(Math.floor(state.tokens), tokenChunk(schema));
      state.tokens -= tokens;
    }
    let slots: u32 = 0;
    if (needSlot) {
      const limit = isWatch ? schema.maxWatches : schema.maxInflight;
      const held = isWatch ? state.watches : state.inflight;
      slots = slotChunk(limit);
      if (limit > 0) {
        if (held >= limit) return new Admission(false, isWatch ? "watches" : "inflight", 1);
        if (slots > limit - held) slots = limit - held;
      }
      if (isWatch) state.watches += slots;
      else state.inflight += slots;
    }
    if (write(lease.key, state)) {
      lease.tokens += tokens;
      if (isWatch) lease.freeWatches += slots;
      else lease.freeInflight += slots;
      return null;
    }
  }
  return new Admission(false, "contention", 1);
}

/** Takes a token and an in-flight (or watch) slot for `user`, or says why not. */
export function acquire(schema: FlowControlSchema, user: string, isWatch: bool): Admission {
  const lease = leaseOf(schema, user);
  const needToken = schema.qps > 0 && lease.tokens < 1;
  const needSlot = isWatch ? lease.freeWatches == 0 : lease.freeInflight == 0;
  if (needToken || needSlot) {
    const refusal = leaseMore(schema, lease, needToken, needSlot, isWatch);
    if (refusal !== null) return refusal;
  }
  if (schema.qps > 0) lease.tokens -= 1;
  if (isWatch) {
    lease.freeWatches--;
    lease.usedWatches++;
  } else {
    lease.freeInflight--;
    lease.usedInflight++;
  }
  return admitted;
}

/** Gives `count` idle slots of `lease` back to the shared state. */
function giveBack(schema: FlowControlSchema, lease: Lease, inflight: u32, watches: u32): void {
  if (inflight == 0 && watches == 0) return;
  for (let attempt = 0; attempt < maxAttempts; attempt++) {
    const state = read(lease.key, schema, 0);
    if (!state.present) break;
    state.inflight = state.inflight > inflight ? state.inflight - inflight : 0;
    state.watches = state.watches > watches ? state.watches - watches : 0;
    if (write(lease.key, state)) break;
  }
  lease.freeInflight -= inflight;
  lease.freeWatches -= watches;
}

/** Gives back the in-flight (or watch) slot of an admitted request. */
export function release(schema: FlowControlSchema, user: string, isWatch: bool): void {
  const lease = leaseOf(schema, user);
  if (isWatch) {
    if (lease.usedWatches == 0) return;
    lease.usedWatches--;
    lease.freeWatches++;
    const chunk = slotChunk(schema.maxWatches);
    if (chunk == 1) giveBack(schema, lease, 0, lease.freeWatches);
    else if (lease.freeWatches > 2 * chunk) giveBack(schema, lease, 0, lease.freeWatches - chunk);
  } else {
    if (lease.usedInflight == 0) return;
    lease.usedInflight--;
    lease.freeInflight++;
    const chunk = slotChunk(schema.maxInflight);
    if (chunk == 1) giveBack(schema, lease, lease.freeInflight, 0);
    else if (lease.freeInflight > 2 * chunk) giveBack(schema, lease, lease.freeInflight - chunk, 0);
  }
}

/**
 * On the tick: every idle slot goes back to the shared state, and leases
 * with nothing in use are forgotten (so per-user leases do not accumulate).
 */
export function returnIdleLeases(schemas: FlowControlSchema[]): void {
  for (let i = 0; i < schemas.length; i++) {
    const schema = schemas[i];
    if (!leases.has(schema.name)) continue;
    const byUser = leases.get(schema.name);
    const owners = byUser.keys();
    for (let j = 0; j < owners.length; j++) {
      const lease = byUser.get(owners[j]);
      giveBack(schema, lease, lease.freeInflight, lease.freeWatches);
      if (lease.usedInflight == 0 && lease.usedWatches == 0) byUser.delete(owners[j]);
    }
  }
}

/** Slots held across all workers (in use, once idle leases are back), for gauges: in-flight << 32 | watches. */
export function counters(schema: FlowControlSchema): u64 {
  const state = read(leaseOf(schema, "").key, schema, 0);
  return (<u64>state.inflight << 32) | state.watches;
}
