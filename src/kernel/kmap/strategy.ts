/**
 * A kernel-mapping strategy answers one question: how does the kernel reach physical memory - its page
 * tables, its PMM's metadata, the free frames themselves - through its own mappings? The boot sequence
 * (src/kernel/boot/) calls the strategy at three points:
 *
 *   1. `prepare`: on the boot page tables, make page-table editing possible for the rest of boot
 *      (build the direct map, install the recursive slot, or nothing beyond the fixmap windows);
 *   2. `mapMetadata` + `pmmPort`: map the PMM's metadata (placed by the early allocator) and give the
 *      port through which the PMM will touch metadata and free frames;
 *   3. `finalize`: build the final root from the PMM, switch CR3, and give the final table access and
 *      PMM port (re-bound by the caller).
 *
 * Subclasses: direct.ts, recursive.ts, quickmap.ts, hybrid.ts. This base holds what they share: the
 * boot context, the fixmap windows, and the copy of the kernel half into a new root.
 */
import { fail, hex } from "../../errors.ts";
import type { PhysPort } from "../../machine/phys-mem.ts";
import { type FrameSource, Mapper, type TableAccess } from "../../machine/x86/mapper.ts";
import type { Memblock } from "../early/memblock.ts";
import type { Current } from "../percpu.ts";
import type { FrameRange } from "../pmm/interface.ts";
import type { KernelLayout } from "./layout.ts";
import { type LinearPort, WindowPort } from "./ports.ts";

export type KmapName = "direct" | "recursive" | "quickmap" | "hybrid" | "pool";

export interface KmapOptions {
  /** Use 1 GiB leaves where aligned (CPUID Page1GB). Default true. */
  gbPages?: boolean;
  /** Direct map: map every address from 0 to the top of RAM, holes and MMIO included (the hazard). */
  mapHoles?: boolean;
  /** Hybrid: physical limit of the direct map (default 4 GiB). */
  hybridLimit?: number;
  /** Direct map without NX (a classic mistake: every page of RAM becomes W+X). For the audit. */
  execDirectMap?: boolean;
}

/** What the boot sequence hands a strategy. */
export interface KmapContext {
  /** The CPU the kernel runs on (the boot CPU during boot). */
  cur: Current;
  layout: KernelLayout;
  memblock: Memblock;
  /** The kernel image, mapped by the boot tables (reaches .bss: boot tables, memblock arrays). */
  imagePort: LinearPort;
  /** Physical address of the fixmap page table (in .bss). */
  fixmapPtPa: number;
  bootRoot: number;
  /** memblock.memory as frame ranges. */
  ram: FrameRange[];
  /** Non-RAM ranges of the firmware map (for the map-holes hazard report). */
  holes: { start: number; end: number; type: string }[];
  opts: KmapOptions;
  /** A line for the boot log (called as `ctx.log(line)`). */
  log: (line: string) => void;
  /** Where `log` writes at boot (the narrator); a context built elsewhere may leave it out. */
  narrator?: { log(line: string): void };
}

export interface Finalized {
  root: number;
  access: TableAccess;
  port: PhysPort;
}

export abstract class KmapStrategy {
  abstract readonly name: KmapName;
  abstract readonly summary: string;
  /**
   * Traits the rest of the kernel asks for instead of comparing names (a new strategy sets them):
   * - `hasDirectMap`: builds a direct map, so `--map-holes`, `--exec-direct-map`, `--no-gbpages` and
   *   `--direct-base` shape something (and the audit has a physmap base to estimate);
   * - `ownOptions`: the boot options only this strategy reads (refused with any other);
   * - `kernelPool`: the running kernel's heap grows a mapped pool instead of using the PMM per page.
   */
  readonly hasDirectMap: boolean = false;
  readonly ownOptions: readonly ("hybridLimit" | "recursiveSlot")[] = [];
  readonly kernelPool: boolean = false;
  protected ctx!: KmapContext;
  /** The mapper on the boot root used for everything built during boot. */
  bootMapper!: Mapper;
  private windows: WindowPort[] = [];

  /** The per-CPU fixmap windows of one kind (0: data, 1: page tables); CPU c uses slot 2c + kind. */
  protected window(kind: number): WindowPort {
    if (this.windows[kind] === undefined) {
      const c = this.ctx;
      this.windows[kind] = new WindowPort(c.cur, c.layout.fixmap, kind, c.imagePort, c.fixmapPtPa);
    }
    return this.windows[kind];
  }

  /** Step 1. Subclasses call `super.prepare` first. */
  prepare(ctx: KmapContext): void {
    this.ctx = ctx;
    this.bootMapper = new Mapper(this.bootAccess(), ctx.memblock, {
      levels: ctx.layout.levels,
      maxPhysAddrBits: ctx.cur.cpu.mem.maxPhysAddrBits,
      counters: ctx.cur.cpu.counters,
      root: ctx.bootRoot,
    });
  }

  /** How page tables are reached during boot. */
  protected abstract bootAccess(): TableAccess;

  /**
   * Highest physical address (exclusive) of RAM this strategy can use. A direct map must hold all of
   * RAM in its virtual region: 64 TiB with 4-level paging (Linux's MAX_PHYSMEM_BITS = 46), 4 PiB with
   * 5-level (52 bits). Strategies without a direct map are limited only by MAXPHYADDR.
   */
  physLimit(levels: 4 | 5): number {
    void levels;
    return 2 ** 52;
  }

  /**
   * Alignment of the PMM metadata block placed by memblock: 2 MiB for a block of 2 MiB or more, so
   * that the metadata region maps it with 2 MiB pages (a strategy that reaches it through its direct
   * map needs no more than 4 KiB).
   */
  metadataAlign(bytes: number): number {
    return bytes >= 0x200000 ? 0x200000 : 4096;
  }

  /** Root slots that point back at the root (the page-table walkers skip them). */
  recursiveSlots(): number[] {
    return [];
  }

  /** Upper physical limit for the metadata (hybrid: it must sit in the direct-mapped part). */
  metadataLimit(): number {
    return 2 ** 52;
  }

  /** Step 2: map `bytes` of metadata at `pa` (default: at the metadata region VA, 4 KiB/2 MiB pages). */
  mapMetadata(pa: number, bytes: number): void {
    if (bytes === 0) return;
    const before = this.bootMapper.tables;
    const pages = Math.ceil(bytes / 4096);
    const r = this.bootMapper.mapRange(
      this.ctx.layout.metadata,
      pa / 4096,
      pages,
      { write: true, nx: true, global: true },
      9,
    );
    this.ctx.log(
      `mapped ${pages} metadata pages at the metadata region (${r.leaves2m} x 2M + ${r.leaves4k} x 4K) with ${this.bootMapper.tables - before} new page tables from memblock`,
    );
  }

  /** Step 2: the port the PMM uses (metadata and free frames). */
  abstract pmmPort(metaPa: number, bytes: number): PhysPort;

  /** Step 3: final root from `frames` (the PMM), CR3 switch. */
  abstract finalize(frames: FrameSource, metaPa: number, metaBytes: number): Finalized;

  /**
   * Allocate a root from `frames`, zero it and copy the kernel half (entries 256..511) of the boot root
   * into it through `port`, so that the kernel image, fixmap and every kernel region are shared.
   */
  protected newRootWithKernelHalf(frames: FrameSource, port: PhysPort): number {
    const root = frames.allocFrame();
    if (root < 0) fail("OUT_OF_MEMORY", "no frame for the final root page table");
    port.zeroFrame(root);
    const boot = this.ctx.bootRoot;
    for (let i = 256; i < 512; i++) {
      const lo = this.ctx.imagePort.read32(boot * 4096 + i * 8);
      if (lo === 0) continue;
      const hi = this.ctx.imagePort.read32(boot * 4096 + i * 8 + 4);
      port.write32(root * 4096 + i * 8 + 4, hi);
      port.write32(root * 4096 + i * 8, lo);
    }
    this.ctx.log(
      `final root ${hex(root * 4096)} allocated from the PMM; kernel half (PML${this.ctx.layout.levels === 5 ? 5 : 4} entries 256-511) copied from the boot root`,
    );
    return root;
  }

  /** The physical frames of the direct map, for strategies that have one: [start, end) pfn. */
  directMapCoverage(): { start: number; end: number } | null {
    return null;
  }
}
