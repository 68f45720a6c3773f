/**
 * The adapter that turns a WebAssembly allocator (include/pagelab/pmm.h's ABI) into a `PmmDesign`.
 *
 * Each allocator is its own module instance. Its imports are bound to the `PhysPort` of the kernel that
 * created it, so every metadata access the C code makes is a 32-bit load or store through the kernel's
 * mappings, translated and counted like a TypeScript design's (a u64 is two 32-bit references, low word
 * first, as `read64`/`write64` do). Linear memory holds only the allocator's globals and stack (64 KiB cap).
 *
 * Safety nets, each naming the exported function and the call:
 *   - a trap (unreachable, out-of-bounds linear memory access, division by zero, stack overflow) becomes
 *     PMM_TRAP; the instance is then dead (later calls say so);
 *   - a runaway loop that touches memory is stopped by the per-call access budget (PMM_RUNAWAY); a loop
 *     that never touches memory is stopped by the wall clock of the isolated validation (isolate.ts);
 *   - error codes become the typed errors of the TypeScript designs (DOUBLE_FREE, BAD_FREE, ...) with
 *     the reason the C code gave to pmm_error().
 */
import { fail, hex, PagelabError } from "../../../errors.ts";
import type { PhysPort } from "../../../machine/phys-mem.ts";
import { bulkFill, bulkIsFilled } from "../../../machine/phys-mem.ts";
import { allocFramesVia, badFree, effectiveOrder, invariant, statsFromFree } from "../common.ts";
import type {
  AllocConstraints,
  FrameAllocator,
  PmmDesign,
  PmmEnv,
  PmmLayout,
  PmmStats,
} from "../interface.ts";
import { type WasmImports, type WasmInstance, type WasmMemory, type WasmModule, WA } from "./wasm-types.ts";
import { ABI_VERSION, checkAbi, inspectModule, LINEAR_MEMORY_CAP } from "./abi.ts";

/** Metadata accesses one exported call may make: 64 per managed frame, at least 2^22. */
export const ACCESS_BUDGET_PER_FRAME = 64;
export const MIN_ACCESS_BUDGET = 2 ** 22;

const FREE_CODES: Record<number, string> = {
  1: "DOUBLE_FREE",
  2: "BAD_FREE",
  3: "MISALIGNED_FREE",
  4: "WRONG_ORDER",
};

interface Exports {
  memory: WasmMemory;
  pagelab_abi(): number;
  pagelab_name?(): number;
  pagelab_summary?(): number;
  pagelab_layout_reset(cpus: number, colours: number): void;
  pagelab_layout_add(start: number, end: number, node: number): number;
  pagelab_metadata_bytes(): number;
  pagelab_create(meta: number): number;
  pagelab_add_free(start: number, count: number): number;
  pagelab_alloc(
    order: number,
    has: number,
    maxAddr: number,
    colour: number,
    node: number,
    cpu: number,
    mobility: number,
  ): number;
  pagelab_free(pfn: number, order: number): number;
  pagelab_check(): number;
  pagelab_max_order(): number;
  pagelab_stats(): void;
  pagelab_stat(i: number): number;
  pagelab_for_each_free(): void;
  pagelab_for_each_meta_frame(): void;
}

/** What the imports of one instance act on (mutable: the port is re-bound, the budget reset per call). */
class Binding {
  port: PhysPort | null = null;
  used = 0;
  budget = MIN_ACCESS_BUDGET;
  /** The exported function running now (for messages). */
  fn = "";
  call = "";
  reason = "";
  value = -1;
  block: ((pfn: number, count: number) => void) | null = null;
  u32: Uint32Array = new Uint32Array(0);
  memory: WasmMemory | null = null;
  readOnly = false;

  over(): never {
    throw new PagelabError(
      "PMM_RUNAWAY",
      `made more than ${this.budget} metadata accesses in one call: a runaway loop? ` +
        "(the per-call access budget is 64 per managed frame, at least 2^22)",
      { fn: this.fn },
    );
  }

  noPort(what: string): never {
    return fail(
      "PMM_NO_MEMORY",
      `${this.fn} (${this.call}) called ${what}: there is no metadata to touch yet (pmm_metadata_bytes must compute from the layout alone)`,
    );
  }

  view(): Uint32Array {
    if (this.u32.byteLength === 0) this.u32 = new Uint32Array(this.memory!.buffer);
    return this.u32;
  }

  imports(): WasmImports {
    const port = (what: string): PhysPort => {
      if (++this.used > this.budget) this.over();
      return this.port ?? this.noPort(what);
    };
    return {
      pagelab: {
        read32: (pa: number) => port("pmm_read32").read32(pa) | 0,
        write32: (pa: number, v: number) => port("pmm_write32").write32(pa, v >>> 0),
        read64: (pa: number, out: number) => {
          const p = port("pmm_read64");
          const lo = p.read32(pa);
          const hi = p.read32(pa + 4);
          const m = this.view();
          m[out >>> 2] = lo;
          m[(out >>> 2) + 1] = hi;
        },
        write64: (pa: number, lo: number, hi: number) => {
          const p = port("pmm_write64");
          p.write32(pa, lo >>> 0);
          p.write32(pa + 4, hi >>> 0);
        },
        zero_frame: (pfn: number) => port("pmm_zero_frame").zeroFrame(pfn),
        fill: (pa: number, bytes: number, byte: number) => bulkFill(port("pmm_fill"), pa, bytes, byte),
        is_filled: (pa: number, bytes: number, byte: number) =>
          bulkIsFilled(port("pmm_is_filled"), pa, bytes, byte) ? 1 : 0,
        report: (msg: number, value: number) => {
          this.reason = cString(this.memory!, msg);
          this.value = value;
        },
        block: (pfn: number, count: number) => {
          if (++this.used > this.budget) this.over();
          this.block?.(pfn, count);
        },
      },
    };
  }
}

function cString(mem: WasmMemory, ptr: number): string {
  const bytes = new Uint8Array(mem.buffer);
  let end = ptr;
  while (end < bytes.length && bytes[end] !== 0 && end - ptr < 4096) end++;
  return new TextDecoder().decode(bytes.subarray(ptr, end));
}

const MOBILITY: Record<string, number> = { unmovable: 0, movable: 1, reclaimable: 2 };

/** A trap or a thrown error inside an exported call, as a PagelabError naming the call. */
function trapped(name: string, b: Binding, e: unknown): PagelabError {
  if (e instanceof PagelabError) {
    if (e.code === "PMM_RUNAWAY")
      return new PagelabError(e.code, `${name}: ${b.call} ${e.message}`, e.details);
    return new PagelabError(e.code, `${name}: ${b.call}: ${e.message}`, e.details);
  }
  const what = e instanceof Error ? e.message : String(e);
  const kind =
    e instanceof WA.RuntimeError || (e instanceof RangeError && /call stack/i.test(what))
      ? "trapped"
      : "failed";
  return new PagelabError("PMM_TRAP", `${name}: ${b.call} ${kind}: ${what}`, {
    fn: b.fn,
    call: b.call,
  });
}

export interface WasmModuleInfo {
  name: string;
  summary: string;
}

/** Compile (validate the ABI of) a module and make a design from it. `where` names the file. */
export function wasmDesign(bytes: Uint8Array, where: string, fallbackName: string): PmmDesign {
  const info = inspectModule(bytes, where);
  checkAbi(info, where);
  let module: WasmModule;
  try {
    module = new WA.Module(bytes);
  } catch (e) {
    return fail(
      "BAD_DESIGN",
      `${where}: not a valid WebAssembly module: ${e instanceof Error ? e.message : e}`,
    );
  }
  const instantiate = (b: Binding): Exports => {
    let inst: WasmInstance;
    try {
      inst = new WA.Instance(module, b.imports());
    } catch (e) {
      return fail("BAD_DESIGN", `${where}: could not instantiate: ${e instanceof Error ? e.message : e}`);
    }
    const ex = inst.exports as unknown as Exports;
    if (!(ex.memory instanceof WA.Memory))
      fail("BAD_DESIGN", `${where}: the module must export its linear memory as 'memory'`);
    b.memory = ex.memory;
    if (ex.pagelab_abi() !== ABI_VERSION)
      fail(
        "BAD_DESIGN",
        `${where}: pagelab_abi() says ABI ${ex.pagelab_abi()}, this pagelab speaks ABI ${ABI_VERSION}`,
      );
    return ex;
  };
  const probe = new Binding();
  const ex0 = instantiate(probe);
  const name = (ex0.pagelab_name ? cString(ex0.memory, ex0.pagelab_name()) : "") || fallbackName;
  const summary =
    (ex0.pagelab_summary ? cString(ex0.memory, ex0.pagelab_summary()) : "") ||
    `a WebAssembly allocator (${where})`;

  const setLayout = (ex: Exports, b: Binding, layout: PmmLayout) => {
    ex.pagelab_layout_reset(layout.cpus ?? 1, layout.colours ?? 1);
    for (const r of layout.usable) {
      if (ex.pagelab_layout_add(r.start, r.end, r.node ?? 0) < 0)
        fail(
          "BAD_LAYOUT",
          `${name}: the layout has ${layout.usable.length} usable ranges, more than the module's PMM_MAX_RANGES`,
        );
    }
    b.reason = "";
  };

  return {
    name,
    summary,
    metadataBytes: (layout) => {
      const b = new Binding();
      const ex = instantiate(b);
      setLayout(ex, b, layout);
      b.fn = "pmm_metadata_bytes";
      b.call = "pmm_metadata_bytes(layout)";
      let n: number;
      try {
        n = ex.pagelab_metadata_bytes();
      } catch (e) {
        throw trapped(name, b, e);
      }
      if (!Number.isInteger(n) || n < 0) fail("BAD_DESIGN", `${name}: pmm_metadata_bytes returned ${n}`);
      return n;
    },
    create: (env, layout, metadataPa) => {
      const b = new Binding();
      const ex = instantiate(b);
      return new WasmAllocator(name, ex, b, env, layout, metadataPa);
    },
  };
}

export class WasmAllocator implements FrameAllocator {
  readonly maxOrder: number;
  private dead: string | null = null;
  private readonly frames: number;

  constructor(
    readonly name: string,
    private readonly ex: Exports,
    private readonly b: Binding,
    env: PmmEnv,
    private readonly layout: PmmLayout,
    metadataPa: number,
  ) {
    let frames = 0;
    for (const r of layout.usable) frames += r.end - r.start;
    this.frames = frames;
    b.budget = Math.max(MIN_ACCESS_BUDGET, ACCESS_BUDGET_PER_FRAME * frames);
    ex.pagelab_layout_reset(layout.cpus ?? 1, layout.colours ?? 1);
    for (const r of layout.usable) {
      if (ex.pagelab_layout_add(r.start, r.end, r.node ?? 0) < 0)
        fail("BAD_LAYOUT", `${name}: more usable ranges (${layout.usable.length}) than PMM_MAX_RANGES`);
    }
    b.port = env.port;
    this.enter("pmm_create", `pmm_create(layout, ${hex(metadataPa)})`);
    let rc: number;
    try {
      rc = ex.pagelab_create(metadataPa);
    } catch (e) {
      throw this.die(e);
    }
    if (rc < 0) fail("BAD_LAYOUT", `${name}: pmm_create refused the layout: ${b.reason || `error ${-rc}`}`);
    this.maxOrder = ex.pagelab_max_order();
  }

  private enter(fn: string, call: string): void {
    if (this.dead !== null)
      fail("PMM_TRAP", `${this.name}: ${call}: the allocator stopped at an earlier error (${this.dead})`);
    const b = this.b;
    b.used = 0;
    b.fn = fn;
    b.call = call;
    b.reason = "";
    b.value = -1;
  }

  private die(e: unknown): PagelabError {
    const err = trapped(this.name, this.b, e);
    this.dead = err.message;
    return err;
  }

  private why(): string {
    const b = this.b;
    return b.value >= 0 ? `${b.reason} ${hex(b.value)}` : b.reason;
  }

  addFree(startPfn: number, count: number): void {
    if (!Number.isInteger(startPfn) || !Number.isInteger(count) || startPfn < 0 || count < 0)
      badFree("BAD_FREE", this.name, startPfn, 0, "addFree of something that is not a frame range");
    this.enter("pmm_add_free", `pmm_add_free(${hex(startPfn)}, ${count})`);
    let rc: number;
    try {
      rc = this.ex.pagelab_add_free(startPfn, count);
    } catch (e) {
      throw this.die(e);
    }
    if (rc < 0) badFree(FREE_CODES[-rc] ?? "BAD_FREE", this.name, startPfn, 0, this.why() || `error ${-rc}`);
  }

  alloc(order: number, c?: AllocConstraints): number {
    const k = order === 0 && c === undefined ? 0 : effectiveOrder(order, c);
    if (this.dead !== null || this.b.fn !== "pmm_alloc") this.enter("pmm_alloc", "pmm_alloc");
    const b = this.b;
    b.used = 0;
    b.call = "pmm_alloc";
    try {
      if (c === undefined) return this.ex.pagelab_alloc(k, 0, 0, 0, 0, 0, 0);
      const has =
        (c.maxAddr !== undefined ? 1 : 0) |
        (c.colour !== undefined ? 2 : 0) |
        (c.node !== undefined ? 4 : 0) |
        (c.cpu !== undefined ? 8 : 0) |
        (c.mobility !== undefined ? 16 : 0);
      return this.ex.pagelab_alloc(
        k,
        has,
        c.maxAddr ?? 0,
        c.colour ?? -1,
        c.node ?? -1,
        c.cpu ?? -1,
        MOBILITY[c.mobility ?? "unmovable"] ?? 0,
      );
    } catch (e) {
      b.call = `pmm_alloc(${k}${c === undefined ? "" : `, ${JSON.stringify(c)}`})`;
      throw this.die(e);
    }
  }

  allocFrames(n: number, out: number[], c?: AllocConstraints): number {
    return allocFramesVia(this, n, out, c);
  }

  free(pfn: number, order: number): void {
    if (!Number.isInteger(pfn) || pfn < 0) badFree("BAD_FREE", this.name, pfn, order, "not a frame number");
    if (!Number.isInteger(order) || order < 0 || order > 63)
      badFree("WRONG_ORDER", this.name, pfn, order, "not an order");
    if (this.dead !== null || this.b.fn !== "pmm_free") this.enter("pmm_free", "pmm_free");
    const b = this.b;
    b.used = 0;
    b.reason = "";
    b.value = -1;
    let rc: number;
    try {
      rc = this.ex.pagelab_free(pfn, order);
    } catch (e) {
      b.call = `pmm_free(${hex(pfn)}, ${order})`;
      throw this.die(e);
    }
    if (rc !== 0) badFree(FREE_CODES[-rc] ?? "BAD_FREE", this.name, pfn, order, this.why() || `error ${-rc}`);
  }

  private walk(
    fn: "pmm_for_each_free" | "pmm_for_each_meta_frame",
    cb: (pfn: number, n: number) => void,
  ): void {
    this.enter(fn, `${fn}()`);
    const b = this.b;
    b.block = cb;
    try {
      if (fn === "pmm_for_each_free") this.ex.pagelab_for_each_free();
      else this.ex.pagelab_for_each_meta_frame();
    } catch (e) {
      if (e instanceof PagelabError && e.code !== "PMM_RUNAWAY") {
        this.dead = e.message; // the callback's own error, unwound through the module: its stack is lost
        throw e;
      }
      throw this.die(e);
    } finally {
      b.block = null;
    }
  }

  forEachFree(fn: (pfn: number, count: number) => void): void {
    this.walk("pmm_for_each_free", fn);
  }

  forEachMetaFrame(fn: (pfn: number) => void): void {
    this.walk("pmm_for_each_meta_frame", (p, n) => {
      for (let i = 0; i < n; i++) fn(p + i);
    });
  }

  private registers(): { managed: number; metadata: number; transient: number } {
    this.enter("pmm_stats", "pmm_stats()");
    try {
      this.ex.pagelab_stats();
      return {
        managed: this.ex.pagelab_stat(0),
        metadata: this.ex.pagelab_stat(1),
        transient: this.ex.pagelab_stat(2),
      };
    } catch (e) {
      throw this.die(e);
    }
  }

  private memoryCap(): void {
    const bytes = this.ex.memory.buffer.byteLength;
    if (bytes > LINEAR_MEMORY_CAP) {
      const msg = `${this.name}: linear memory grew to ${bytes / 1024} KiB (memory.grow), above the ${LINEAR_MEMORY_CAP / 1024} KiB cap: metadata must live in simulated RAM, reached through the accessors`;
      this.dead = msg;
      fail("PMM_LINEAR_MEMORY", msg);
    }
  }

  stats(): PmmStats {
    this.memoryCap();
    const r = this.registers();
    return statsFromFree(this, this.layout, r.managed, r.metadata, r.transient);
  }

  check(): void {
    this.memoryCap();
    this.enter("pmm_check", "pmm_check()");
    let rc: number;
    try {
      rc = this.ex.pagelab_check();
    } catch (e) {
      throw this.die(e);
    }
    if (rc !== 0) invariant(this.name, this.why() || `pmm_check returned ${rc}`);
  }

  dump(): string {
    const r = this.registers();
    return `${this.name}: managed=${r.managed} metadata=${r.metadata} transient=${r.transient} frames=${this.frames}`;
  }
}
