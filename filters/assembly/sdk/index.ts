// The project's proxy-wasm SDK for AssemblyScript (ABI v0.2.1).
export * from "./enums";
export * from "./hostcalls";
export { decodeUtf8, isValidUtf8 } from "./utf8";
export { HttpContext, RootContext } from "./context";
export { setRootContextFactory, rootContext, requestCollection } from "./dispatcher";
