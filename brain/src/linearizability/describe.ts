// Readable text for operations and differences: a violation report must say
// which operation saw what, and what etcd's semantics required instead.
import type { KeyRange, KeyValue, Operation, Request, Response, TxnOp, TxnOpResult } from "./history.js";

export function printable(bytes: string): string {
   
  return /^[\x20-\x7e]*$/.test(bytes) ? bytes : JSON.stringify(bytes);
}

function describeRange(range: KeyRange): string {
  if (range.end === undefined) return printable(range.key);
  if (range.end === "\0") return `${printable(range.key)}..(end)`;
  return `[${printable(range.key)}, ${printable(range.end)})`;
}

export function describeKv(kv: KeyValue | undefined): string {
  if (!kv) return "(none)";
  return `${printable(kv.key)}=${printable(kv.value)} (mod ${kv.modRevision}, create ${kv.createRevision}, version ${kv.version})`;
}

function describeTxnOp(op: TxnOp): string {
  switch (op.type) {
    case "range":
      return `Range ${describeRange(op)}${op.limit ? ` limit ${op.limit}` : ""}`;
    case "put":
      return `Put ${printable(op.key)}=${printable(op.value)}`;
    case "delete":
      return `Delete ${describeRange(op)}`;
  }
}

export function describeRequest(request: Request): string {
  if (request.type === "txn") {
    const compares = request.compare
      .map((c) => `${c.target}(${printable(c.key)}) ${c.result} ${typeof c.operand === "string" ? printable(c.operand) : c.operand}`)
      .join(" && ");
    return `Txn if ${compares || "true"} then [${request.success.map(describeTxnOp).join("; ")}] else [${request.failure
      .map(describeTxnOp)
      .join("; ")}]`;
  }
  if (request.type === "range") {
    const flags = [request.serializable ? "serializable" : "", request.revision ? `at revision ${request.revision}` : ""].filter(Boolean);
    return `${describeTxnOp(request)}${flags.length ? ` (${flags.join(", ")})` : ""}`;
  }
  return describeTxnOp(request);
}

export function describeOperation(id: number, op: Operation): string {
  const when = `[${op.call.toFixed(3)}, ${op.return === Infinity ? "unknown" : op.return.toFixed(3)}] ms`;
  const outcome = op.response ? `→ revision ${op.response.revision}` : `→ failed (${op.error ?? "no response"}), may or may not have happened`;
  return `op #${id} (client ${op.client}${op.member === undefined ? "" : ` on member ${op.member}`}, ${when}) ${describeRequest(op.request)} ${outcome}`;
}

function sameKv(a: KeyValue | undefined, b: KeyValue | undefined): boolean {
  if (!a || !b) return a === b;
  return a.key === b.key && a.value === b.value && a.modRevision === b.modRevision && a.createRevision === b.createRevision && a.version === b.version;
}

function diffKvs(what: string, expected: KeyValue[], actual: KeyValue[]): string | undefined {
  if (expected.length === actual.length && expected.every((kv, i) => sameKv(kv, actual[i]))) return undefined;
  const expectedByKey = new Map(expected.map((kv) => [kv.key, kv]));
  const actualByKey = new Map(actual.map((kv) => [kv.key, kv]));
  const problems: string[] = [];
  for (const kv of expected) {
    const got = actualByKey.get(kv.key);
    if (!got) problems.push(`missing ${describeKv(kv)}`);
    else if (!sameKv(kv, got)) problems.push(`returned ${describeKv(got)} where etcd holds ${describeKv(kv)}`);
  }
  for (const kv of actual) if (!expectedByKey.has(kv.key)) problems.push(`returned ${describeKv(kv)}, which does not exist there`);
  if (problems.length === 0 && expected.some((kv, i) => kv.key !== actual[i]?.key)) problems.push("keys out of order");
  return problems.length ? `${what}: ${problems.join("; ")}` : undefined;
}

function diffResult(expected: TxnOpResult, actual: TxnOpResult, where: string): string | undefined {
  if (expected.type !== actual.type) return `${where}: a ${actual.type} response where a ${expected.type} response belongs`;
  if (expected.type === "range" && actual.type === "range") {
    const kvs = diffKvs(where, expected.kvs, actual.kvs);
    if (kvs) return kvs;
    if (expected.count !== actual.count) return `${where}: count ${actual.count}, expected ${expected.count}`;
    if (expected.more !== actual.more) return `${where}: more=${actual.more}, expected ${expected.more}`;
    return undefined;
  }
  if (expected.type === "put" && actual.type === "put") {
    return sameKv(expected.prevKv, actual.prevKv) ? undefined : `${where}: prev_kv ${describeKv(actual.prevKv)}, expected ${describeKv(expected.prevKv)}`;
  }
  if (expected.type === "delete" && actual.type === "delete") {
    if (expected.deleted !== actual.deleted) return `${where}: deleted ${actual.deleted}, expected ${expected.deleted}`;
    return diffKvs(`${where} prev_kvs`, expected.prevKvs, actual.prevKvs);
  }
  return undefined;
}

/** What differs between etcd's answer (`expected`, from the model) and the server's, or undefined. */
export function diffResponse(request: Request, expected: Response, actual: Response): string | undefined {
  const content = request.type === "range" && request.revision ? undefined : diffContent(expected, actual); // a past read: checked on the replay
  if (content) return content;
  if (expected.revision !== actual.revision) return `header revision ${actual.revision}, expected ${expected.revision}`;
  return undefined;
}

function diffContent(expected: Response, actual: Response): string | undefined {
  if (expected.type === "txn" && actual.type === "txn") {
    if (expected.succeeded !== actual.succeeded) {
      return `took the ${actual.succeeded ? "success" : "failure"} branch, but its compares are ${expected.succeeded} on this state`;
    }
    if (expected.responses.length !== actual.responses.length) return `${actual.responses.length} responses, expected ${expected.responses.length}`;
    for (let i = 0; i < expected.responses.length; i++) {
      const diff = diffResult(expected.responses[i]!, actual.responses[i]!, `response ${i}`);
      if (diff) return diff;
    }
    return undefined;
  }
  if (expected.type === "txn" || actual.type === "txn") return `a ${actual.type} response to a ${expected.type} request`;
  return diffResult(expected, actual, "response");
}
