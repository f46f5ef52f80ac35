// /openapi/v3 through the tenant filter. The index lists every group
// upstream, each tenant's as "wt-T-<group>": the tenant sees the host
// groups and its own groups under its own names, nothing of other tenants
// or host CRDs. A document of one of the tenant's groups names that group
// (paths, group-version-kinds, apiVersion enums, schema names that embed the
// group reversed, "com.example.wt-T-stable", operation ids and tags that
// spell it in camel case): it is unmapped as a whole.
import { domMalformed, parseDom, serializeDom } from "./response-dom";
import { ResponseScope } from "./response-scope";

/** Whole bodies are held here, not streamed: a bound on what is held. */
export const maxOpenApiBody: i32 = 16 << 20;

const indexUrlPrefix = "/openapi/v3/";

/**
 * The tenant's name for an index key ("api/v1", "apis/<group>/<version>"),
 * or null when the entry is not for the tenant (another tenant's or a host
 * CRD's group, a path the request side refuses to tenants).
 */
function tenantIndexKey(key: string, scope: ResponseScope): string | null {
  if (key == "api" || key.startsWith("api/")) return key;
  if (!key.startsWith("apis/")) return null;
  const parts = key.split("/");
  if (parts.length < 2 || parts.length > 3 || parts[1].length == 0) return null;
  const group = scope.group(parts[1]);
  if (group === null) return null;
  parts[1] = group!;
  return parts.join("/");
}

/** The index `{"paths":{key:{"serverRelativeURL":...}}}` in the tenant's names; null when malformed. */
export function rewriteOpenApiIndex(body: string, scope: ResponseScope): string | null {
  const root = parseDom(body);
  if (root === null || !root.isObject) return null;
  const paths = root.get("paths");
  if (paths === null || !paths.isObject || domMalformed) return null;
  for (let i = paths.keys.length - 1; i >= 0; i--) {
    const key = tenantIndexKey(paths.keys[i], scope);
    const entry = paths.values[i];
    if (key === null || !entry.isObject) {
      paths.removeAt(i);
      continue;
    }
    const url = entry.getString("serverRelativeURL");
    if (url === null || !url.startsWith(indexUrlPrefix)) {
      paths.removeAt(i);
      continue;
    }
    const queryAt = url.indexOf("?");
    const query = queryAt < 0 ? "" : url.substring(queryAt);
    if (key != paths.keys[i]) {
      paths.keys[i] = key!;
      paths.touch();
    }
    const tenantUrl = indexUrlPrefix + key! + query;
    if (tenantUrl != url) entry.setString("serverRelativeURL", tenantUrl);
  }
  if (domMalformed) return null;
  return serializeDom(root);
}

function reversed(group: string): string {
  return group.split(".").reverse().join(".");
}

/** "wt-t-shop.example.com" → "wtTShopExampleCom" (upper: "WtTShopExampleCom"), as operation ids and tags spell a group. */
function camel(group: string, upper: bool): string {
  const parts = group.replaceAll("-", ".").split(".");
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i];
    if ((i > 0 || upper) && part.length > 0) parts[i] = part.charAt(0).toUpperCase() + part.substring(1);
  }
  return parts.join("");
}

/**
 * A document of the tenant's group `group` (upstream `upstream`): the
 * group's upstream name and its reversed form in schema names become the
 * tenant's. Other tenants' names cannot be in it: it describes one group.
 */
export function rewriteOpenApiGroupDocument(body: string, upstream: string, group: string): string {
  return body
    .replaceAll(upstream, group)
    .replaceAll(reversed(upstream), reversed(group))
    .replaceAll(camel(upstream, true), camel(group, true))
    .replaceAll(camel(upstream, false), camel(group, false));
}

export function isOpenApiIndex(path: string): bool {
  return path == "/openapi/v3" || path == "/openapi/v3/";
}

