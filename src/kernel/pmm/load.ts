/**
 * Bring your own allocator: `--pmm ./my-allocator.ts` loads a TypeScript (or JavaScript) module whose
 * default export (or `design` export) is a `PmmDesign`, or a function returning one. Names of the
 * built-in designs resolve to them. The module runs in-process, with its metadata in simulated RAM
 * through the `PhysPort` it is given, exactly like the built-in designs.
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { tsImport } from "tsx/esm/api";
import { fail } from "../../errors.ts";
import { DESIGNS, getDesign } from "./designs.ts";
import type { PmmDesign } from "./interface.ts";
import { isWasmDesignPath, loadWasmDesign } from "./wasm/index.ts";

/** True when `spec` names a file rather than a built-in design. */
export function isDesignPath(spec: string): boolean {
  return /[\\/]/.test(spec) || /\.(m?[jt]s|c|rs|wasm)$/.test(spec);
}

function checkShape(x: unknown, where: string): PmmDesign {
  const d = x as Partial<PmmDesign> | null;
  const missing = ["name", "summary", "metadataBytes", "create"].filter(
    (k) => d === null || typeof d !== "object" || !(k in d),
  );
  if (missing.length > 0) {
    fail(
      "BAD_DESIGN",
      `${where}: the default export must be a PmmDesign (missing: ${missing.join(", ")}); see README "Bring your own allocator"`,
    );
  }
  if (typeof d!.metadataBytes !== "function" || typeof d!.create !== "function") {
    fail("BAD_DESIGN", `${where}: metadataBytes and create must be functions`);
  }
  return d as PmmDesign;
}

export async function loadDesign(spec: string): Promise<PmmDesign> {
  if (!isDesignPath(spec)) {
    if (DESIGNS[spec] === undefined) return getDesign(spec); // throws UNKNOWN_DESIGN with the list
    return getDesign(spec);
  }
  const file = resolve(spec);
  if (!existsSync(file)) fail("BAD_DESIGN", `${spec}: no such file`);
  // C, Rust or a module the user built: compiled to WebAssembly, run against include/pagelab/pmm.h's ABI.
  if (isWasmDesignPath(file)) return loadWasmDesign(spec);
  let mod: Record<string, unknown>;
  try {
    // TypeScript goes through tsx (the CLI itself may run built, without a loader); JavaScript as is.
    mod = /\.[mc]?ts$/.test(file)
      ? ((await tsImport(pathToFileURL(file).href, import.meta.url)) as Record<string, unknown>)
      : ((await import(pathToFileURL(file).href)) as Record<string, unknown>);
  } catch (e) {
    fail("BAD_DESIGN", `${spec}: could not load the module: ${e instanceof Error ? e.message : String(e)}`);
  }
  let d = mod.default ?? mod.design;
  if (typeof d === "function") d = (d as () => unknown)();
  return checkShape(d, spec);
}
