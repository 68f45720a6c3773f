/**
 * The WebAssembly ABI of a bring-your-own allocator (include/pagelab/pmm.h writes it for C; a Rust
 * crate writes the same exports by hand), and the checks a module gets before it is instantiated:
 * every export present with its exact signature, no import outside the ABI, linear memory within the
 * cap. The checks read the module's binary sections (type, import, function, memory, export): the
 * JavaScript API lists exports and imports but not their signatures.
 */
import { fail } from "../../../errors.ts";

/** Linear memory a module may have: its globals and stack, not its metadata (that lives in simulated RAM). */
export const LINEAR_MEMORY_CAP = 65536;
export const ABI_VERSION = 1;

type Val = "i32" | "i64" | "f32" | "f64";
export interface Sig {
  params: Val[];
  results: Val[];
}

const s = (params: string, results = ""): Sig => ({
  params: params === "" ? [] : (params.split(" ") as Val[]),
  results: results === "" ? [] : (results.split(" ") as Val[]),
});

/** Exports pagelab calls, with the C function each wraps (for messages). */
export const REQUIRED_EXPORTS: Record<string, { sig: Sig; c: string }> = {
  pagelab_abi: { sig: s("", "i32"), c: "PAGELAB_PMM_ABI" },
  pagelab_layout_reset: { sig: s("i32 i32"), c: "the layout" },
  pagelab_layout_add: { sig: s("f64 f64 i32", "i32"), c: "the layout" },
  pagelab_metadata_bytes: { sig: s("", "f64"), c: "pmm_metadata_bytes" },
  pagelab_create: { sig: s("f64", "i32"), c: "pmm_create" },
  pagelab_add_free: { sig: s("f64 f64", "i32"), c: "pmm_add_free" },
  pagelab_alloc: { sig: s("i32 i32 f64 i32 i32 i32 i32", "f64"), c: "pmm_alloc" },
  pagelab_free: { sig: s("f64 i32", "i32"), c: "pmm_free" },
  pagelab_check: { sig: s("", "i32"), c: "pmm_check" },
  pagelab_max_order: { sig: s("", "i32"), c: "pmm_max_order" },
  pagelab_stats: { sig: s(""), c: "pmm_stats" },
  pagelab_stat: { sig: s("i32", "f64"), c: "pmm_stats" },
  pagelab_for_each_free: { sig: s(""), c: "pmm_for_each_free" },
  pagelab_for_each_meta_frame: { sig: s(""), c: "pmm_for_each_meta_frame" },
};

/** Optional exports. */
export const OPTIONAL_EXPORTS: Record<string, Sig> = {
  pagelab_name: s("", "i32"),
  pagelab_summary: s("", "i32"),
};

/** The imports a module may use (module "pagelab"), with their signatures. */
export const ALLOWED_IMPORTS: Record<string, Sig> = {
  read32: s("f64", "i32"),
  write32: s("f64 i32"),
  read64: s("f64 i32"),
  write64: s("f64 i32 i32"),
  zero_frame: s("f64"),
  fill: s("f64 f64 i32"),
  is_filled: s("f64 f64 i32", "i32"),
  report: s("i32 f64"),
  block: s("f64 f64"),
};

export function sigText(x: Sig): string {
  return `(${x.params.join(", ")}) -> ${x.results.length === 0 ? "void" : x.results.join(", ")}`;
}

const sameSig = (a: Sig, b: Sig) =>
  a.params.join() === b.params.join() && a.results.join() === b.results.join();

export interface ModuleInfo {
  imports: { module: string; name: string; kind: number; sig?: Sig }[];
  exports: { name: string; kind: number; sig?: Sig }[];
  /** Memory defined by the module (pages of 64 KiB), or imported. */
  memory: { initial: number; max: number | null; imported: boolean } | null;
}

/** A cursor over a wasm binary; `where` names it in errors. */
interface Reader {
  bytes: Uint8Array;
  p: number;
  where: string;
}

function bad(r: Reader, why: string): never {
  return fail("BAD_DESIGN", `${r.where}: not a WebAssembly module (${why})`);
}

/** An unsigned LEB128 number. */
function uleb(r: Reader): number {
  let v = 0;
  let shift = 0;
  for (;;) {
    if (r.p >= r.bytes.length) bad(r, "truncated");
    const b = r.bytes[r.p++];
    v += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if ((b & 0x80) === 0) return v;
  }
}

/** A length-prefixed UTF-8 name. */
function readName(r: Reader): string {
  const n = uleb(r);
  const t = new TextDecoder().decode(r.bytes.subarray(r.p, r.p + n));
  r.p += n;
  return t;
}

const VT: Record<number, Val> = { 127: "i32", 126: "i64", 125: "f32", 124: "f64" };

/** A value type (anything else reads as i32). */
function valType(r: Reader): Val {
  const b = r.bytes[r.p++];
  return VT[b] ?? ("i32" as Val);
}

/** Table or memory limits: the initial size, and the maximum when the flag says there is one. */
function readLimits(r: Reader): { initial: number; max: number | null } {
  const flag = uleb(r);
  const initial = uleb(r);
  const max = flag & 1 ? uleb(r) : null;
  return { initial, max };
}

/** The type section (id 1): function signatures. */
function readTypes(r: Reader, types: Sig[]): void {
  const n = uleb(r);
  for (let i = 0; i < n; i++) {
    if (r.bytes[r.p++] !== 0x60) bad(r, "bad type");
    const params: Val[] = [];
    const results: Val[] = [];
    for (let k = uleb(r); k > 0; k--) params.push(valType(r));
    for (let k = uleb(r); k > 0; k--) results.push(valType(r));
    types.push({ params, results });
  }
}

/** The import section (id 2): imported functions take the first function indices. */
function readImports(r: Reader, types: Sig[], funcTypes: number[], info: ModuleInfo): void {
  const n = uleb(r);
  for (let i = 0; i < n; i++) {
    const module = readName(r);
    const nm = readName(r);
    const kind = r.bytes[r.p++];
    if (kind === 0) {
      const t = uleb(r);
      info.imports.push({ module, name: nm, kind, sig: types[t] });
      funcTypes.push(t);
    } else if (kind === 1) {
      r.p++; // reftype
      readLimits(r);
      info.imports.push({ module, name: nm, kind });
    } else if (kind === 2) {
      const l = readLimits(r);
      info.memory = { initial: l.initial, max: l.max, imported: true };
      info.imports.push({ module, name: nm, kind });
    } else if (kind === 3) {
      r.p += 2;
      info.imports.push({ module, name: nm, kind });
    } else bad(r, "bad import kind");
  }
}

/** The export section (id 7), each function export with its signature. */
function readExports(r: Reader, types: Sig[], funcTypes: number[], info: ModuleInfo): void {
  const n = uleb(r);
  for (let i = 0; i < n; i++) {
    const nm = readName(r);
    const kind = r.bytes[r.p++];
    const idx = uleb(r);
    info.exports.push({ name: nm, kind, sig: kind === 0 ? types[funcTypes[idx]] : undefined });
  }
}

/** Read the sections of a wasm binary that the ABI check needs. */
export function inspectModule(bytes: Uint8Array, where: string): ModuleInfo {
  const r: Reader = { bytes, p: 8, where };
  if (bytes.length < 8 || bytes[0] !== 0 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d)
    bad(r, "no \\0asm header");
  const types: Sig[] = [];
  const funcTypes: number[] = [];
  const info: ModuleInfo = { imports: [], exports: [], memory: null };
  while (r.p < bytes.length) {
    const id = bytes[r.p++];
    const size = uleb(r);
    const end = r.p + size;
    if (id === 1) readTypes(r, types);
    else if (id === 2) readImports(r, types, funcTypes, info);
    else if (id === 3) {
      // The function section: the type of each function the module defines.
      const n = uleb(r);
      for (let i = 0; i < n; i++) funcTypes.push(uleb(r));
    } else if (id === 5) {
      // The memory section.
      const n = uleb(r);
      if (n > 0) {
        const l = readLimits(r);
        info.memory = { initial: l.initial, max: l.max, imported: false };
      }
    } else if (id === 7) readExports(r, types, funcTypes, info);
    r.p = end;
  }
  return info;
}

/**
 * Refuse a module that does not honour the ABI, naming every problem: missing exports, wrong
 * signatures, imports outside the ABI, linear memory above the cap.
 */
export function checkAbi(info: ModuleInfo, where: string): void {
  const problems: string[] = [];
  const exp = new Map(info.exports.map((e) => [e.name, e]));
  for (const [n, want] of Object.entries(REQUIRED_EXPORTS)) {
    const e = exp.get(n);
    if (e === undefined || e.kind !== 0) problems.push(`missing export ${n} (wraps ${want.c})`);
    else if (e.sig && !sameSig(e.sig, want.sig))
      problems.push(`export ${n} has signature ${sigText(e.sig)}, expected ${sigText(want.sig)}`);
  }
  for (const [n, want] of Object.entries(OPTIONAL_EXPORTS)) {
    const e = exp.get(n);
    if (e?.sig && !sameSig(e.sig, want))
      problems.push(`export ${n} has signature ${sigText(e.sig)}, expected ${sigText(want)}`);
  }
  for (const im of info.imports) {
    if (im.kind !== 0 || im.module !== "pagelab" || ALLOWED_IMPORTS[im.name] === undefined) {
      const what = ["function", "table", "memory", "global"][im.kind] ?? "item";
      problems.push(
        `imports ${what} ${im.module}.${im.name}, outside the ABI (allowed: pagelab.${Object.keys(ALLOWED_IMPORTS).join(", pagelab.")})`,
      );
    } else if (im.sig && !sameSig(im.sig, ALLOWED_IMPORTS[im.name])) {
      problems.push(
        `import pagelab.${im.name} has signature ${sigText(im.sig)}, expected ${sigText(ALLOWED_IMPORTS[im.name])}`,
      );
    }
  }
  if (info.memory === null || info.memory.imported) {
    problems.push("the module must define and export its own linear memory ('memory')");
  } else if (info.memory.initial * 65536 > LINEAR_MEMORY_CAP) {
    problems.push(
      `linear memory of ${info.memory.initial * 64} KiB exceeds the ${LINEAR_MEMORY_CAP / 1024} KiB cap: ` +
        "linear memory holds only the allocator's globals and stack; a frame table or bitmap in a C array " +
        "(static uint64_t table[...]) must live in simulated RAM instead, at the metadata address pmm_create " +
        "is given, reached through pmm_read32/pmm_write32 (size it in pmm_metadata_bytes). A module you link " +
        "yourself: -Wl,-z,stack-size=16384 -Wl,--initial-memory=65536 -Wl,--max-memory=65536",
    );
  }
  if (problems.length > 0)
    fail(
      "BAD_DESIGN",
      `${where} does not honour pagelab's allocator ABI (include/pagelab/pmm.h):\n  - ${problems.join("\n  - ")}`,
    );
}
