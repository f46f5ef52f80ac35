// Filter metrics through proxy-wasm: Envoy shows them in /stats and
// /stats/prometheus. Labels are spelled into the name (Envoy's stat names),
// e.g. wharf_gateway.requests.policy.<p>.verb.<v>.resource.<r>.
import { defineMetric, incrementMetric, MetricType, recordMetric } from "../sdk";

const ids = new Map<string, u32>();

function metric(type: MetricType, name: string): u32 {
  if (ids.has(name)) return ids.get(name);
  const id = defineMetric(type, name);
  ids.set(name, id);
  return id;
}

/** Stat names may not hold dots inside a label value. */
function label(value: string): string {
  return value.length == 0 ? "_" : value.replaceAll(".", "_");
}

export function countRequest(policy: string, verb: string, resource: string): void {
  incrementMetric(metric(MetricType.Counter, "wharf_gateway.requests.policy." + label(policy) + ".verb." + label(verb) + ".resource." + label(resource)), 1);
}

export function countResponse(code: string): void {
  incrementMetric(metric(MetricType.Counter, "wharf_gateway.responses.code." + label(code)), 1);
}

export function countRejection(reason: string): void {
  incrementMetric(metric(MetricType.Counter, "wharf_gateway.rejections.reason." + label(reason)), 1);
}

export function setInflight(schema: string, inflight: u64, watches: u64): void {
  recordMetric(metric(MetricType.Gauge, "wharf_gateway.inflight.schema." + label(schema)), inflight);
  recordMetric(metric(MetricType.Gauge, "wharf_gateway.watches.schema." + label(schema)), watches);
}

let reportedPages: i32 = 0;

/**
 * Counts the growth of this VM's linear memory (which never shrinks) in 64 KiB
 * pages: summed over every worker's VM, the counter is the filter's memory,
 * and a counter that stops moving after warm-up shows that nothing accumulates.
 */
export function countMemoryPages(): void {
  const pages = memory.size();
  if (pages <= reportedPages) return;
  incrementMetric(metric(MetricType.Counter, "wharf_gateway.wasm_memory_pages"), pages - reportedPages);
  reportedPages = pages;
}
