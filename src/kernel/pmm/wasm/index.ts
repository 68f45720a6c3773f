/**
 * Bring your own allocator in C, Rust or any language that compiles to WebAssembly: `--pmm my_pmm.c`
 * (compiled with the system clang), `--pmm my_pmm.rs` (rustc with the wasm32 standard library) or
 * `--pmm my_pmm.wasm` (a module the user built), all honouring include/pagelab/pmm.h's ABI.
 */
import { existsSync } from "node:fs";
import { basename, extname } from "node:path";
import { fail } from "../../../errors.ts";
import type { PmmDesign } from "../interface.ts";
import { compileDesign, readWasm } from "./compile.ts";
import { wasmDesign } from "./design.ts";
import { isolatedValidation } from "./isolate.ts";

export const WASM_EXTENSIONS = [".c", ".rs", ".wasm"];

export function isWasmDesignPath(spec: string): boolean {
  return WASM_EXTENSIONS.includes(extname(spec));
}

/** The module's bytes: compiled from source, or read. */
export function wasmBytes(spec: string): Uint8Array {
  if (!existsSync(spec)) fail("BAD_DESIGN", `${spec}: no such file`);
  return extname(spec) === ".wasm" ? readWasm(spec) : compileDesign(spec);
}

/**
 * Load a design file compiled to WebAssembly. `isolate` (default true) makes `validateDesign` run the
 * module in a worker thread under a wall-clock limit (a loop that never returns is stopped there).
 */
export function loadWasmDesign(spec: string, opts: { isolate?: boolean } = {}): PmmDesign {
  const bytes = wasmBytes(spec);
  const d = wasmDesign(bytes, spec, basename(spec));
  if (opts.isolate === false) return d;
  return isolatedValidation(d, spec, bytes);
}
