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

/** Read the sections of a wasm binary that the ABI check needs. */
export function inspectModule(bytes: Uint8Array, where: string): ModuleInfo {
  let p = 8;
  const bad = (why: string): never => fail("BAD_DESIGN", `${where}: not a WebAssembly module (${why})`);
  if (bytes.length < 8 || bytes[0] !== 0 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d)
    bad("no \\0asm header");
  const u = (): number => {
    let r = 0;
    let shift = 0;
    for (;;) {
      if (p >= bytes.length) bad("truncated");
      const b = bytes[p++];
      r += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if ((b & 0x80) === 0) return r;
    }
  };
  const name = (): string => {
    const n = u();
    const t = new TextDecoder().decode(bytes.subarray(p, p + n));
    p += n;
    return t;
  };
  const VT: Record<number, Val> = { 127: "i32", 126: "i64", 125: "f32", 124: "f64" };
  const vt = (): Val => {
    const b = bytes[p++];
    return VT[b] ?? ("i32" as Val);
  };
  const limits = () => {
    const flag = u();
    const initial = u();
    const max = flag & 1 ? u() : null;
    return { initial, max };
  };
  const types: Sig[] = [];
  const funcTypes: number[] = [];
  const info: ModuleInfo = { imports: [], exports: [], memory: null };
  while (p < bytes.length) {
    const id = bytes[p++];
    const size = u();
    const end = p + size;
    if (id === 1) {
      const n = u();
      for (let i = 0; i < n; i++) {
        if (bytes[p++] !== 0x60) bad("bad type");
        const params: Val[] = [];
        const results: Val[] = [];
        for (let k = u(); k > 0; k--) params.push(vt());
        for (let k = u(); k > 0; k--) results.push(vt());
        types.push({ params, results });
      }
    } else if (id === 2) {
      const n = u();
      for (let i = 0; i < n; i++) {
        const module = name();
        const nm = name();
        const kind = bytes[p++];
        if (kind === 0) {
          const t = u();
          info.imports.push({ module, name: nm, kind, sig: types[t] });
          funcTypes.push(t);
        } else if (kind === 1) {
          p++; // reftype
          limits();
          info.imports.push({ module, name: nm, kind });
        } else if (kind === 2) {
          const l = limits();
          info.memory = { initial: l.initial, max: l.max, imported: true };
          info.imports.push({ module, name: nm, kind });
        } else if (kind === 3) {
          p += 2;
          info.imports.push({ module, name: nm, kind });
        } else bad("bad import kind");
      }
    } else if (id === 3) {
      const n = u();
      for (let i = 0; i < n; i++) funcTypes.push(u());
    } else if (id === 5) {
      const n = u();
      if (n > 0) {
        const l = limits();
        info.memory = { initial: l.initial, max: l.max, imported: false };
      }
    } else if (id === 7) {
      const n = u();
      for (let i = 0; i < n; i++) {
        const nm = name();
        const kind = bytes[p++];
        const idx = u();
        info.exports.push({ name: nm, kind, sig: kind === 0 ? types[funcTypes[idx]] : undefined });
      }
    }
    p = end;
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
