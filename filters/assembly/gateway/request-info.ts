// Classifies a request the way kube-apiserver's RequestInfoFactory does:
// resource vs non-resource, API group/version, namespace, resource, name,
// subresource and the Kubernetes verb (list/watch/deletecollection derived
// from the method and query). Written from the documented rules of
// k8s.io/apiserver/pkg/endpoints/request; the gateway tests check it against
// a table of expected values.

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
}

function percentDecode(text: string, plusIsSpace: bool): string {
  if (text.indexOf("%") < 0 && !(plusIsSpace && text.indexOf("+") >= 0)) return text;
  const source = String.UTF8.encode(text);
  const input = Uint8Array.wrap(source);
  const out = new Uint8Array(input.length);
  let n = 0;
  for (let i = 0; i < input.length; i++) {
    const c = input[i];
    if (c == 0x25 && i + 2 < input.length && isHex(input[i + 1]) && isHex(input[i + 2])) {
      out[n++] = <u8>((hexValue(input[i + 1]) << 4) | hexValue(input[i + 2]));
      i += 2;
    } else if (plusIsSpace && c == 0x2b) {
      out[n++] = 0x20;
    } else {
      out[n++] = c;
    }
  }
  return String.UTF8.decodeUnsafe(out.dataStart, n);
}

function isHex(c: u8): bool {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

function hexValue(c: u8): u8 {
  if (c <= 0x39) return c - 0x30;
  if (c <= 0x46) return c - 0x41 + 10;
  return c - 0x61 + 10;
}

function splitPath(path: string): string[] {
  let start = 0;
  let end = path.length;
  while (start < end && path.charCodeAt(start) == 0x2f) start++;
  while (end > start && path.charCodeAt(end - 1) == 0x2f) end--;
  if (start == end) return new Array<string>();
  return path.substring(start, end).split("/");
}

class Query {
  keys: string[] = [];
  values: string[] = [];

  first(key: string): string | null {
    for (let i = 0; i < this.keys.length; i++) if (this.keys[i] == key) return this.values[i];
    return null;
  }
}

function parseQuery(query: string): Query {
  const parsed = new Query();
  if (query.length == 0) return parsed;
  const pairs = query.split("&");
  for (let i = 0; i < pairs.length; i++) {
    const pair = pairs[i];
    if (pair.length == 0) continue;
    const eq = pair.indexOf("=");
    parsed.keys.push(percentDecode(eq < 0 ? pair : pair.substring(0, eq), true));
    parsed.values.push(eq < 0 ? "" : percentDecode(pair.substring(eq + 1), true));
  }
  return parsed;
}

/** apimachinery's bool conversion: anything but "0" and "false" is true. */
function queryBool(value: string): bool {
  return !(value == "0" || value.toLowerCase() == "false");
}

function isInteger(value: string): bool {
  if (value.length == 0) return false;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (!(c >= 0x30 && c <= 0x39) && !(i == 0 && c == 0x2d)) return false;
  }
  return true;
}

/** Splits a field selector on commas not escaped by a backslash. */
function splitSelector(selector: string): string[] {
  const terms = new Array<string>();
  let current = "";
  for (let i = 0; i < selector.length; i++) {
    const c = selector.charAt(i);
    if (c == "\\" && i + 1 < selector.length) {
      current += c + selector.charAt(i + 1);
      i++;
    } else if (c == ",") {
      terms.push(current);
      current = "";
    } else {
      current += c;
    }
  }
  terms.push(current);
  return terms;
}

function unescapeSelectorValue(value: string): string {
  let out = "";
  for (let i = 0; i < value.length; i++) {
    const c = value.charAt(i);
    if (c == "\\" && i + 1 < value.length) {
      out += value.charAt(i + 1);
      i++;
    } else {
      out += c;
    }
  }
  return out;
}

/** metadata.name from a field selector that requires an exact match; null on none, "\0" on a parse error. */
function exactName(selector: string): string | null {
  const terms = splitSelector(selector);
  let found: string | null = null;
  for (let i = 0; i < terms.length; i++) {
    const term = terms[i].trim();
    if (term.length == 0) continue;
    let field: string;
    let value: string;
    let exact = true;
    const ne = term.indexOf("!=");
    const eqeq = term.indexOf("==");
    const eq = term.indexOf("=");
    if (ne >= 0 && (eq < 0 || ne < eq)) {
      field = term.substring(0, ne);
      value = term.substring(ne + 2);
      exact = false;
    } else if (eqeq >= 0 && eqeq == eq) {
      field = term.substring(0, eqeq);
      value = term.substring(eqeq + 2);
    } else if (eq >= 0) {
      field = term.substring(0, eq);
      value = term.substring(eq + 1);
    } else {
      return "\0";
    }
    if (exact && field.trim() == "metadata.name") found = unescapeSelectorValue(value.trim());
  }
  return found;
}

function isValidPathSegmentName(name: string): bool {
  if (name == "." || name == "..") return false;
  return name.indexOf("/") < 0 && name.indexOf("%") < 0;
}

function methodVerb(method: string): string {
  if (method == "POST") return "create";
  if (method == "GET" || method == "HEAD") return "get";
  if (method == "PUT") return "update";
  if (method == "PATCH") return "patch";
  if (method == "DELETE") return "delete";
  return "";
}

export function classify(method: string, rawPath: string): RequestInfo {
  const info = new RequestInfo();
  const queryAt = rawPath.indexOf("?");
  const path = percentDecode(queryAt < 0 ? rawPath : rawPath.substring(0, queryAt), false);
  const query = parseQuery(queryAt < 0 ? "" : rawPath.substring(queryAt + 1));
  info.path = path;
  info.verb = method.toLowerCase();

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
      return info;
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

  if (info.name.length == 0 && info.verb == "get") {
    const watch = query.first("watch");
    // Parse the list options as the apiserver does; on any error it keeps
    // only `watch` and ignores the field selector.
    let parseError = false;
    const limit = query.first("limit");
    if (limit !== null && limit.length > 0 && !isInteger(limit)) parseError = true;
    const timeout = query.first("timeoutSeconds");
    if (timeout !== null && timeout.length > 0 && !isInteger(timeout)) parseError = true;
    let name: string | null = null;
    const selector = query.first("fieldSelector");
    if (selector !== null) {
      name = exactName(selector);
      if (name == "\0") {
        parseError = true;
        name = null;
      }
    }
    info.verb = watch !== null && queryBool(watch) ? "watch" : "list";
    if (!parseError && name !== null && isValidPathSegmentName(name)) info.name = name;
  }

  if (info.name.length == 0 && info.verb == "delete") info.verb = "deletecollection";
  return info;
}
