// The smallest useful filter: proves that Envoy's V8 runtime loads our
// modules, recognises the ABI, creates contexts and honours header writes.
import { addHeader, FilterHeadersStatus, HttpContext, log, LogLevel, MapType, RootContext, setRootContextFactory } from "../sdk";

export * from "../sdk/abi";

class HelloRoot extends RootContext {
  onVmStart(configurationSize: u32): bool {
    log(LogLevel.Info, "wharf hello filter: vm started");
    return true;
  }
  createHttpContext(id: u32): HttpContext {
    return new HelloStream(id, this);
  }
}

class HelloStream extends HttpContext {
  onResponseHeaders(headerCount: u32, endOfStream: bool): FilterHeadersStatus {
    addHeader(MapType.HttpResponseHeaders, "x-wharf-filter", "hello");
    return FilterHeadersStatus.Continue;
  }
}

setRootContextFactory((id: u32): RootContext => new HelloRoot(id));
