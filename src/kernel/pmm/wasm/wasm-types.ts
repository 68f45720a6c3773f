/**
 * The slice of the WebAssembly JavaScript API the allocator adapter uses. The project compiles with
 * lib ES2022 only (no DOM lib, where these types live), so they are declared here.
 */
export interface WasmMemory {
  readonly buffer: ArrayBuffer;
}
// biome-ignore lint/suspicious/noConfusingVoidType: import functions return nothing or a number
export type WasmImports = Record<string, Record<string, (...args: number[]) => number | void>>;
export interface WasmModule {
  readonly __brand?: "WasmModule";
}
export interface WasmInstance {
  readonly exports: Record<string, unknown>;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (m: WasmModule, imports: WasmImports) => WasmInstance;
  Memory: new (d: { initial: number }) => WasmMemory;
  RuntimeError: new (m?: string) => Error;
}
export const WA = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
