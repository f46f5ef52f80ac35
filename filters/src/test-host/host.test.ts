import { describe, expect, it } from "vitest";
import { wasmPath } from "../index.js";
import { deserializeHeaders, LogLevel, ProxyWasmHost, serializeHeaders } from "./host.js";

describe("the test host", () => {
  it("runs the hello filter's callbacks in Envoy's order", async () => {
    const host = await ProxyWasmHost.load(wasmPath("hello"));
    expect(host.start()).toBe(true);
    expect(host.logs).toContainEqual({ level: LogLevel.Info, message: "wharf hello filter: vm started" });
    const stream = host.stream();
    expect(stream.sendRequestHeaders([[":method", "GET"], [":path", "/"], ["Host", "x"]])).toBe(0);
    expect(stream.sendResponseHeaders([[":status", "200"]])).toBe(0);
    expect(stream.header("x-wharf-filter", "response")).toBe("hello");
    stream.finish();
  });

  it("writes and reads the ABI's header-map format", () => {
    const headers: Array<[string, string]> = [[":path", "/api"], ["x-empty", ""], ["ünïcode", "välue"]];
    const bytes = serializeHeaders(headers);
    // count, then (name length, value length) per pair, then name\0value\0 pairs.
    expect(new DataView(bytes.buffer).getUint32(0, true)).toBe(3);
    expect(deserializeHeaders(bytes)).toEqual(headers);
  });
});
