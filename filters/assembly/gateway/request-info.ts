// Classifies a request the way kube-apiserver's RequestInfoFactory does:
// resource vs non-resource, API group/version, namespace, resource, name,
// subresource and the Kubernetes verb (list/watch/deletecollection derived
// from the method and query). The path and query are read with Go's net/url
// rules (go-url.ts) and the list options with apimachinery's (list-options.ts).
// Where the gateway cannot be sure it reads a request as the apiserver does,
// it sets `refusal` and the request is answered 400 instead of guessed at.
// Tests compare it with a real apiserver's audit log (request-info.audit.test.ts).
import { parseQuery, unescape } from "./go-url";
import { decodeListOptions, listOptionKeys } from "./list-options";

export class RequestInfo {
  isResourceRequest: bool = false;
  path: string = "";
  verb: string = "";
  apiPrefix: string = "";
  apiGroup: string = "";
  apiVersion: string = "";
  namespace: string = "";
  resource: string = "";
  subresource: string = "";
  name: string = "";
  /** Set when the URL cannot be classified (kube-apiserver answers it with an error). */
  malformed: bool = false;
  /** Non-empty: the gateway cannot be sure how the apiserver reads this request; why. */
  refusal: string = "";
  /** The name came from the path (not from a field selector). */
  nameInPath: bool = false;
  /**
   * For list, watch and deletecollection: a field selector limits the
   * request to objects with this metadata.name (apiserver's Name only
   * carries it for list and watch).
   */
  pinnedName: string | null = null;
  /** Likewise for metadata.namespace, which narrows an all-namespace request. */
  pinnedNamespace: string | null = null;

  /** list, watch or deletecollection without a name in the path: it may reach many objects. */
  get isCollection(): bool {
    return this.isResourceRequest && !this.nameInPath && (this.verb == "list" || this.verb == "watch" || this.verb == "deletecollection");
  }
}

/** kubectl and client-go never send more pairs; Go itself drops all values past 10,000. */
const maxQueryPairs = 1000;

function refuse(info: RequestInfo, why: string): RequestInfo {
  info.refusal = why;
  return info;
}

function methodVerb(method: string): string {
  if (method == "POST") return "create";
  if (method == "GET" || method == "HEAD") return "get";
  if (method == "PUT") return "update";
  if (method == "PATCH") return "patch";
  if (method == "DELETE") return "delete";
  return "";
}

/** IsValidPathSegmentName: not "." or "..", no "/" and no "%". */
function isValidPathSegmentName(name: string): bool {
  return name != "." && name != ".." && name.indexOf("/") < 0 && name.indexOf("%") < 0;
}

/**
 * Checks the raw path the apiserver will receive (Envoy forwards it as is)
 * and decodes it. Refused: raw bytes outside printable ASCII (clients
 * percent-encode; Go would keep them as bytes), fragments, escaped "/" or
 * "\\" (Go decodes %2F before splitting, so one segment becomes two),
 * invalid escapes (Go's server answers 400), empty and dot segments (the
 * apiserver does not clean paths; a router or a later proxy might).
 */
function decodePath(info: RequestInfo, raw: string, end: i32): string | null {
  for (let i = 0; i < end; i++) {
    const c = raw.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f || c == 0x23) {
      refuse(info, "the request path has a character that must be percent-encoded");
      return null;
    }
    if (c == 0x25 && i + 2 < end) {
      const a = raw.charCodeAt(i + 1);
      const b = raw.charCodeAt(i + 2) | 0x20;
      if ((a == 0x32 && b == 0x66) || (a == 0x35 && b == 0x63)) {
        refuse(info, "the request path has an encoded slash or backslash");
        return null;
      }
    }
  }
  const decoded = unescape(raw, 0, end, false);
  if (decoded.badEscape) {
    refuse(info, "the request path has an invalid percent-encoding");
    return null;
  }
  if (decoded.notUtf8) {
    refuse(info, "the request path is not UTF-8 once decoded");
    return null;
  }
  const path = decoded.text;
  for (let i = 0; i < path.length; i++) {
    if (path.charCodeAt(i) < 0x20 || path.charCodeAt(i) == 0x7f) {
      refuse(info, "the request path has a control character");
      return null;
    }
  }
  // Trailing slashes are trimmed by the apiserver too; anything else odd is refused.
  let last = path.length;
  while (last > 1 && path.charCodeAt(last - 1) == 0x2f) last--;
  let segmentStart = 1;
  for (let i = 1; i <= last; i++) {
    if (i < last && path.charCodeAt(i) != 0x2f) continue;
    const length = i - segmentStart;
    if (length == 0 && last > 1) {
      refuse(info, "the request path has an empty segment");
      return null;
    }
    if ((length == 1 && path.charCodeAt(segmentStart) == 0x2e) || (length == 2 && path.charCodeAt(segmentStart) == 0x2e && path.charCodeAt(segmentStart + 1) == 0x2e)) {
      refuse(info, "the request path has a dot segment");
      return null;
    }
    segmentStart = i + 1;
  }
  return path;
}

function splitPath(path: string): string[] {
  let start = 0;
  let end = path.length;
  while (start < end && path.charCodeAt(start) == 0x2f) start++;
  while (end > start && path.charCodeAt(end - 1) == 0x2f) end--;
  if (start == end) return new Array<string>();
  return path.substring(start, end).split("/");
}

export function classify(method: string, rawPath: string): RequestInfo {
  const info = new RequestInfo();
  info.verb = method.toLowerCase();
  const queryAt = rawPath.indexOf("?");
  const pathEnd = queryAt < 0 ? rawPath.length : queryAt;
  const decoded = decodePath(info, rawPath, pathEnd);
  if (decoded === null) return info;
  const path = decoded!;
  info.path = path;

  let parts = splitPath(path);
  if (parts.length < 3) return info;
  if (parts[0] != "api" && parts[0] != "apis") return info;
  info.apiPrefix = parts[0];
  parts = parts.slice(1);
  if (info.apiPrefix == "apis") {
    if (parts.length < 3) return info;
    info.apiGroup = parts[0];
    parts = parts.slice(1);
  }
  info.isResourceRequest = true;
  info.apiVersion = parts[0];
  parts = parts.slice(1);

  if (parts[0] == "proxy" || parts[0] == "watch") {
    if (parts.length < 2) {
      info.malformed = true;
      return refuse(info, "the request path names no resource after /" + parts[0]);
    }
    info.verb = parts[0];
    parts = parts.slice(1);
  } else {
    info.verb = methodVerb(method);
  }

  if (parts[0] == "namespaces") {
    if (parts.length > 1) {
      info.namespace = parts[1];
      if (parts.length > 2 && parts[2] != "status" && parts[2] != "finalize") parts = parts.slice(2);
    }
  }

  if (parts.length >= 3 && info.verb != "proxy") info.subresource = parts[2];
  if (parts.length >= 2) info.name = parts[1];
  if (parts.length >= 1) info.resource = parts[0];
  info.nameInPath = info.name.length > 0;

  const listing = info.name.length == 0 && info.verb == "get";
  const deletingMany = info.name.length == 0 && info.verb == "delete";
  if (!listing && !deletingMany) return info;

  const query = parseQuery(rawPath, queryAt < 0 ? rawPath.length : queryAt + 1, rawPath.length, listOptionKeys, maxQueryPairs);
  if (query.tooManyPairs) return refuse(info, "the query has more than " + maxQueryPairs.toString() + " parameters");
  const options = decodeListOptions(query);
  if (options.failure.length > 0) return refuse(info, "the list options cannot be decoded (" + options.failure + ")");
  const fields = options.fields;
  if (options.labelsUncertain && (fields.name !== null || fields.namespace !== null || options.watchFoldOnly)) {
    return refuse(info, "the label selector is not one the gateway can vouch for, and the classification depends on it");
  }
  info.pinnedName = fields.name;
  info.pinnedNamespace = fields.namespace;
  if (listing) {
    info.verb = options.watch ? "watch" : "list";
    if (fields.name !== null && isValidPathSegmentName(fields.name!)) info.name = fields.name!;
  } else {
    info.verb = "deletecollection";
  }
  return info;
}
