// What `wharf status` prints: the stack's components (when there is a stack
// file) and what each Envoy accepted, as aligned tables or as JSON.
import { toJson } from "@bufbuild/protobuf";
import { GetStatusResponseSchema, type GetStatusResponse } from "@wharf/proto/wharf/admin/v1/admin_pb.js";
import type { ComponentHealth } from "./stack-health.js";

/** Rows of cells as aligned columns. */
function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]?.length ?? 0)));
  return rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column]!)).join("  ").trimEnd()).join("\n");
}

/** The tables; an unreachable admin API leaves its table out (the caller reports why). */
export function statusText(health: ComponentHealth[] | undefined, status: GetStatusResponse | undefined): string {
  const sections: string[] = [];
  if (health !== undefined) {
    const rows = health.map(({ component, healthy, detail }) => [component.name, component.address, healthy ? "healthy" : `DOWN (${detail})`]);
    sections.push(table([["COMPONENT", "ADDRESS", "HEALTH"], ...rows]));
  }
  if (status !== undefined) {
    const rows = status.nodes.map((node) => {
      const acked = Object.entries(node.ackedVersions).map(([kind, version]) => `${kind}=${version}`).join(",");
      const nack = node.lastNack ? `${node.lastNack.kind}@${node.lastNack.version}: ${node.lastNack.message}` : "-";
      return [node.id, node.role || "-", node.connected ? "yes" : "no", acked || "-", nack];
    });
    sections.push(`config version ${status.configVersion}\n` + table([["NODE", "ROLE", "CONNECTED", "ACKED", "LAST NACK"], ...rows]));
  }
  return sections.length === 0 ? "" : sections.join("\n\n") + "\n";
}

/** The admin API's GetStatusResponse in its JSON form, plus the components when there is a stack file. */
export function statusJson(health: ComponentHealth[] | undefined, status: GetStatusResponse | Error): string {
  const out = {
    ...(status instanceof Error ? { error: status.message } : (toJson(GetStatusResponseSchema, status) as object)),
    ...(health === undefined
      ? {}
      : { components: health.map(({ component, healthy, detail }) => ({ name: component.name, address: component.address, healthy, detail })) }),
  };
  return JSON.stringify(out, null, 2) + "\n";
}
