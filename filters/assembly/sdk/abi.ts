// Exports every filter module must have. Envoy picks the ABI version from
// the name of the marker function.
import "./abort"; // referenced by the compiler's --use abort=…
export function proxy_abi_version_0_2_1(): void {}
export { proxy_on_memory_allocate, malloc } from "./memory";
