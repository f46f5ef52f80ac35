// Request headers of a tenant's request: responses must come back as JSON
// the response side can map as it streams (no protobuf, no compression, no
// aggregated discovery document naming every group), and bodies must be
// JSON the request side can map.
import { Refusal } from "./request-path";

const protobuf = "application/vnd.kubernetes.protobuf";

/** Lower-cased media type of one Accept or Content-Type entry (parameters cut off). */
function mediaType(entry: string): string {
  const semicolon = entry.indexOf(";");
  return (semicolon < 0 ? entry : entry.substring(0, semicolon)).trim().toLowerCase();
}

function hasParameter(entry: string, name: string, value: string): bool {
  const parts = entry.split(";");
  for (let i = 1; i < parts.length; i++) {
    const eq = parts[i].indexOf("=");
    if (eq < 0) continue;
    if (parts[i].substring(0, eq).trim().toLowerCase() == name && parts[i].substring(eq + 1).trim() == value) return true;
  }
  return false;
}

export class AcceptResult {
  /** The Accept header to send, or null to leave it as it is. */
  accept: string | null = null;
  asTable: bool = false;
  aggregatedDiscovery: bool = false;
}

/**
 * Protobuf entries become JSON with the same parameters (a protobuf Table
 * stays a Table); aggregated discovery entries go, so the apiserver answers
 * with plain discovery documents the response side filters.
 */
export function mapAccept(accept: string | null): AcceptResult {
  const result = new AcceptResult();
  if (accept === null) return result;
  const entries = accept!.split(",");
  const kept = new Array<string>();
  let changed = false;
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i];
    if (hasParameter(entry, "as", "APIGroupDiscoveryList")) {
      result.aggregatedDiscovery = true;
      changed = true;
      continue;
    }
    if (hasParameter(entry, "as", "Table")) result.asTable = true;
    const type = mediaType(entry);
    if (type == protobuf || type == "application/cbor" || type == "application/yaml") {
      const semicolon = entry.indexOf(";");
      kept.push("application/json" + (semicolon < 0 ? "" : entry.substring(semicolon)));
      changed = true;
      continue;
    }
    kept.push(entry);
  }
  if (!changed) return result;
  result.accept = kept.length == 0 ? "application/json" : kept.join(",");
  return result;
}

export const enum BodyFormat {
  /** No body the filter reads (none, or a type the apiserver refuses anyway). */
  None,
  Object,
  MergePatch,
  StrategicMergePatch,
  JsonPatch,
  ApplyPatch,
  /** "k8s\0" + runtime.Unknown, as typed clients send (request-protobuf.ts). */
  Protobuf,
}

export class ContentTypeResult {
  format: BodyFormat = BodyFormat.None;
  refusal: Refusal | null = null;
}

/** What the body is, from Content-Type; CBOR and anything else unknown is refused (the filter cannot map it). */
export function bodyFormat(contentType: string | null): ContentTypeResult {
  const result = new ContentTypeResult();
  if (contentType === null) {
    result.format = BodyFormat.Object;
    return result;
  }
  const type = mediaType(contentType!);
  if (type == "application/json" || type == "application/yaml" || type == "" || type == "*/*") result.format = BodyFormat.Object;
  else if (type == "application/merge-patch+json") result.format = BodyFormat.MergePatch;
  else if (type == "application/strategic-merge-patch+json") result.format = BodyFormat.StrategicMergePatch;
  else if (type == "application/json-patch+json") result.format = BodyFormat.JsonPatch;
  else if (type == "application/apply-patch+yaml") result.format = BodyFormat.ApplyPatch;
  else if (type == protobuf) result.format = BodyFormat.Protobuf;
  else {
    result.refusal = new Refusal(415, "UnsupportedMediaType", "the gateway maps tenant request bodies as JSON; " + type + " is not supported (send application/json)");
  }
  return result;
}
