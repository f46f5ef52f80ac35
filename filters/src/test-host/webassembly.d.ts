// Node 20 has the WebAssembly global, but @types/node 20 does not declare it
// (only lib.dom does). These are the parts the test host uses.
declare namespace WebAssembly {
  interface Memory {
    readonly buffer: ArrayBuffer;
  }
  interface Instance {
    readonly exports: Record<string, unknown>;
  }
  interface Module {
    readonly __brand: "WebAssembly.Module";
  }
  interface ModuleImportDescriptor {
    module: string;
    name: string;
    kind: string;
  }
  const Module: { imports(module: Module): ModuleImportDescriptor[] };
  function compile(bytes: Uint8Array): Promise<Module>;
  function instantiate(module: Module, imports: Record<string, Record<string, unknown>>): Promise<Instance>;
}
