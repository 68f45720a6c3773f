/**
 * Kernel memory as kernel code sees it: pointers (`KPtr`, see api.ts), the virtual arenas of the
 * vmalloc area, and whole kernel pages.
 *
 *  - `KernelMem` turns a pointer into a CPU load or store on the current CPU (translated, counted,
 *    checked by the stale detector): below 2^52 through the direct map, above through the vmalloc
 *    area. `peek32` is the checkers' uncounted variant (a side-effect-free walk).
 *  - `VaArena`: a range of kernel virtual pages handed out first-fit from a next-fit hint, with its
 *    allocation bitmap in the arena's own first pages (mapped at creation from order-0 frames, so it
 *    works with any PMM and any kernel-mapping strategy). Cost: one bitmap word read per 32 pages
 *    scanned, two word writes per allocation on average.
 *  - `KernelPages`: n pages for the kernel. With a direct map that covers the frames and a PMM that
 *    gives contiguous blocks, a power-of-two block straight from the PMM (pointer = its physical
 *    address: no page-table work at all); otherwise order-0 frames mapped one by one (global,
 *    no-execute) in the kernel heap region. Freeing a region mapping unmaps it with one shootdown to
 *    every CPU (tables are kept, as Linux keeps vmalloc's), then frees the frames and the range.
 *
 * Layout inside the vmalloc area (offsets from 0xffffc90000000000 with 4-level paging):
 *   [0, vmallocBytes)               vmalloc arena (bitmap in its first pages)
 *   [512 GiB, 512 GiB + kheapBytes) kernel heap region arena
 * Each arena's root-level entry is created when the kernel starts (a page table is pre-wired at its
 * base), so the root entries of the kernel half never change afterwards and every process root, which
 * copies them, sees the same kernel tables (Linux's preallocate_vmalloc_pages).
 */
import { bare, blank, cloneable } from "../../machine/clone.ts";
import { fail, hex } from "../../errors.ts";
import type { Flush, Mapper } from "../../machine/x86/mapper.ts";
import { Access, peekWalk } from "../../machine/x86/mmu.ts";
import { PAGE_4K } from "../../machine/x86/pte.ts";
import { type KPtr, KPTR_AREA } from "../api.ts";
import type { KernelLayout } from "../kmap/layout.ts";
import type { Current } from "../percpu.ts";
import type { FrameAllocator } from "../pmm/interface.ts";

/** Byte offset of the kernel heap region inside the vmalloc area (one PML4 slot up). */
export const KHEAP_OFFSET = 2 ** 39;

export class KernelMem {
  readonly dmVpn: number;
  readonly areaVpn: number;

  constructor(
    readonly cur: Current,
    layout: KernelLayout,
    /** Frames [start, end) the direct map covers, or null when the strategy has none. */
    readonly direct: { start: number; end: number } | null,
  ) {
    if (blank()) bare(this); // a bare instance for a copy of the machine (machine/clone.ts)
    this.dmVpn = layout.directMap;
    this.areaVpn = layout.vmalloc;
  }

  /** Virtual page of a pointer. */
  vpnOf(ptr: KPtr): number {
    if (ptr < KPTR_AREA) return this.dmVpn + Math.floor(ptr / 4096);
    return this.areaVpn + Math.floor((ptr - KPTR_AREA) / 4096);
  }

  /** Pointer of a virtual page in the vmalloc area. */
  areaPtr(vpn: number): KPtr {
    return KPTR_AREA + (vpn - this.areaVpn) * 4096;
  }

  /** Does the direct map reach frames [pfn, pfn + n)? */
  directCovers(pfn: number, n: number): boolean {
    const d = this.direct;
    return d !== null && pfn >= d.start && pfn + n <= d.end;
  }

  read32(ptr: KPtr): number {
    const cpu = this.cur.cpu;
    if (ptr < KPTR_AREA) {
      const pfn = Math.floor(ptr / 4096);
      return cpu.load32(this.dmVpn + pfn, ptr - pfn * 4096);
    }
    const o = ptr - KPTR_AREA;
    const pg = Math.floor(o / 4096);
    return cpu.load32(this.areaVpn + pg, o - pg * 4096);
  }

  write32(ptr: KPtr, value: number): void {
    const cpu = this.cur.cpu;
    if (ptr < KPTR_AREA) {
      const pfn = Math.floor(ptr / 4096);
      cpu.store32(this.dmVpn + pfn, ptr - pfn * 4096, value);
      return;
    }
    const o = ptr - KPTR_AREA;
    const pg = Math.floor(o / 4096);
    cpu.store32(this.areaVpn + pg, o - pg * 4096, value);
  }

  /** A u64 below 2^53 (pointers, generations). */
  read64(ptr: KPtr): number {
    return this.read32(ptr + 4) * 4294967296 + this.read32(ptr);
  }

  write64(ptr: KPtr, value: number): void {
    this.write32(ptr, value >>> 0);
    this.write32(ptr + 4, Math.floor(value / 4294967296));
  }

  /** The frame behind a kernel virtual page, for a bulk operation (KERNEL_OOPS when unmapped). */
  private target(vpn: number, access: number): number {
    const t = this.cur.cpu.translate(vpn, access);
    if (t < 0)
      fail("KERNEL_OOPS", `kernel access to unmapped page ${hex(vpn)} (#PF ${hex(this.cur.cpu.faultCode)})`);
    return t;
  }

  /** memset through the mapping, page by page (4-byte aligned; counted as bulk bytes). */
  fill(ptr: KPtr, bytes: number, byte: number): void {
    const mem = this.cur.cpu.mem;
    let p = ptr;
    const end = ptr + bytes;
    while (p < end) {
      const inPage = p % 4096;
      const len = Math.min(end - p, 4096 - inPage);
      mem.fill(this.target(this.vpnOf(p), Access.WRITE) * 4096 + inPage, len, byte);
      p += len;
    }
  }

  /** !memchr_inv through the mapping. */
  isFilled(ptr: KPtr, bytes: number, byte: number): boolean {
    const mem = this.cur.cpu.mem;
    let p = ptr;
    const end = ptr + bytes;
    while (p < end) {
      const inPage = p % 4096;
      const len = Math.min(end - p, 4096 - inPage);
      if (!mem.isFilled(this.target(this.vpnOf(p), Access.READ) * 4096 + inPage, len, byte)) return false;
      p += len;
    }
    return true;
  }

  /** Page translations memoised during one checker pass (`beginPeek`/`endPeek`). */
  private peekCache: Map<number, number> | null = null;

  beginPeek(): void {
    this.peekCache = new Map();
  }

  endPeek(): void {
    this.peekCache = null;
  }

  /** Uncounted translation for checkers: a side-effect-free walk (-1 when unmapped). */
  peekFrame(ptr: KPtr): number {
    const vpn = this.vpnOf(ptr);
    const c = this.peekCache;
    const hit = c?.get(vpn);
    if (hit !== undefined) return hit;
    const w = peekWalk(this.cur.cpu, vpn);
    const f = w === null ? -1 : w.pfn;
    c?.set(vpn, f);
    return f;
  }

  peek32(ptr: KPtr): number {
    const f = this.peekFrame(ptr);
    if (f < 0) fail("HEAP_INVARIANT", `checker: kernel pointer ${hex(ptr)} is not mapped`);
    return this.cur.cpu.mem.peek32(f * 4096 + (ptr % 4096));
  }

  peek64(ptr: KPtr): number {
    return this.peek32(ptr + 4) * 4294967296 + this.peek32(ptr);
  }
}

/**
 * Frees pages of kernel mappings: the shootdown installs itself here once it exists (before that, the
 * boot CPU is the only CPU that has run, and a local flush is enough).
 */
export interface KernelFlusher {
  flushKernel(f: Flush): void;
  gatherKernel(): { add(f: Flush): void; finish(): void };
  /** One round for kernel pages [vpn, vpn + pages) at a stride of 2^stride pages. */
  kernelRange(vpn: number, pages: number, stride: number, freedTables: boolean, atomic: boolean): void;
}

/** A range of kernel virtual pages with its allocation bitmap in its own first pages. */
export class VaArena {
  /** Pages of the bitmap at the arena's base (always allocated). */
  readonly bitmapPages: number;
  private readonly bitmapPtr: KPtr;
  /** Next-fit hint (a register). */
  private hint = 0;
  usedPages = 0;

  constructor(
    readonly name: string,
    private readonly kmem: KernelMem,
    mapper: Mapper,
    pmm: FrameAllocator,
    readonly baseVpn: number,
    readonly pages: number,
  ) {
    if (blank()) bare(this); // a bare instance for a copy of the machine (machine/clone.ts)
    this.bitmapPages = Math.ceil(pages / 8 / 4096);
    this.bitmapPtr = kmem.areaPtr(baseVpn);
    for (let i = 0; i < this.bitmapPages; i++) {
      const pfn = pmm.alloc(0);
      if (pfn < 0) fail("OUT_OF_MEMORY", `no frame for the ${name} arena's bitmap`);
      mapper.map(baseVpn + i, pfn, PAGE_4K, { write: true, nx: true, global: true }).ignore();
      kmem.fill(this.bitmapPtr + i * 4096, 4096, 0);
    }
    // Pre-wire the rest of the first page table so the arena's root entry exists from now on.
    mapper.prewire(baseVpn, 1);
    this.mark(0, this.bitmapPages, true);
    this.usedPages = this.bitmapPages;
    this.hint = this.bitmapPages;
  }

  /** Pointer of arena page `i`. */
  ptrOf(i: number): KPtr {
    return this.kmem.areaPtr(this.baseVpn + i);
  }

  /** Arena page of a pointer (may be out of range). */
  indexOf(ptr: KPtr): number {
    return this.kmem.vpnOf(ptr) - this.baseVpn;
  }

  contains(ptr: KPtr): boolean {
    if (ptr < KPTR_AREA) return false;
    const i = this.indexOf(ptr);
    return i >= this.bitmapPages && i < this.pages;
  }

  /** First page of `n` free consecutive pages (marked used), or -1. Next-fit, one wrap. */
  alloc(n: number): number {
    const total = this.pages;
    let start = this.hint;
    let run = 0;
    let i = start;
    let scanned = 0;
    while (scanned < total + n) {
      if (i >= total) {
        i = this.bitmapPages;
        start = i;
        run = 0;
      }
      const w = this.kmem.read32(this.bitmapPtr + (i >>> 5) * 4);
      if (w === 0xffffffff && (i & 31) === 0) {
        i += 32;
        scanned += 32;
        run = 0;
        start = i;
        continue;
      }
      if (((w >>> (i & 31)) & 1) === 0) {
        if (run === 0) start = i;
        run++;
        if (run === n) {
          this.mark(start, n, true);
          this.usedPages += n;
          this.hint = start + n;
          return start;
        }
      } else run = 0;
      i++;
      scanned++;
    }
    return -1;
  }

  free(first: number, n: number): void {
    this.mark(first, n, false);
    this.usedPages -= n;
  }

  private mark(first: number, n: number, used: boolean): void {
    let i = first;
    const end = first + n;
    while (i < end) {
      const wp = this.bitmapPtr + (i >>> 5) * 4;
      const lo = i & 31;
      const hi = Math.min(32, lo + end - i);
      const mask = hi - lo === 32 ? 0xffffffff : (((1 << (hi - lo)) - 1) << lo) >>> 0;
      const w = this.kmem.read32(wp);
      this.kmem.write32(wp, (used ? w | mask : w & ~mask) >>> 0);
      i += hi - lo;
    }
  }

  /** Checker: pages marked used in the bitmap (uncounted; one word per 32 pages). */
  peekCountUsed(): number {
    let n = 0;
    for (let w = 0; w < Math.ceil(this.pages / 32); w++) {
      let x = this.kmem.peek32(this.bitmapPtr + w * 4);
      while (x !== 0) {
        x &= x - 1;
        n++;
      }
    }
    return n;
  }

  /** Checker: is arena page i marked used? (uncounted) */
  peekUsed(i: number): boolean {
    return ((this.kmem.peek32(this.bitmapPtr + (i >>> 5) * 4) >>> (i & 31)) & 1) === 1;
  }
}

/**
 * Where the kernel pool (pool.ts, kmap `pool`) plugs in: when set, `KernelPages` takes every request of
 * up to `maxPages` pages from it and gives back every page it `owns`, instead of the paths above.
 */
export interface KernelPagePool {
  readonly maxPages: number;
  owns(ptr: KPtr): boolean;
  alloc(n: number, zero: boolean): KPtr;
  free(ptr: KPtr, n: number): void;
}

/** Pages for the kernel: a direct-mapped PMM block, or frames mapped in the kernel heap region. */
export class KernelPages {
  flusher: KernelFlusher | null = null;
  /** The kernel pool, when the kmap strategy has one (null: the paths below, unchanged). */
  pool: KernelPagePool | null = null;
  /** Pages currently mapped in the heap region (a gauge). */
  regionPages = 0;

  constructor(
    readonly kmem: KernelMem,
    readonly mapper: Mapper,
    readonly pmm: FrameAllocator,
    readonly arena: VaArena,
    private readonly counters: { kheapMaps: number; kheapUnmaps: number },
  ) {}

  /** Smallest k with 2^k >= n. */
  static order(n: number): number {
    let k = 0;
    while (1 << k < n) k++;
    return k;
  }

  /** `n` pages, zeroed only if `zero`. Returns 0 when memory (or virtual space) runs out. */
  alloc(n: number, zero = false): KPtr {
    const pool = this.pool;
    if (pool !== null && n <= pool.maxPages) return pool.alloc(n, zero);
    const k = KernelPages.order(n);
    if (1 << k === n && this.kmem.direct !== null && k <= (this.pmm.maxOrder ?? 10)) {
      const pfn = this.pmm.alloc(k);
      if (pfn >= 0) {
        if (this.kmem.directCovers(pfn, n)) {
          if (zero) this.kmem.fill(pfn * 4096, n * 4096, 0);
          return pfn * 4096;
        }
        this.pmm.free(pfn, k);
      }
    }
    return this.allocMapped(n, zero);
  }

  private allocMapped(n: number, zero: boolean): KPtr {
    const first = this.arena.alloc(n);
    if (first < 0) return 0;
    const vpn = this.arena.baseVpn + first;
    for (let i = 0; i < n; i++) {
      const pfn = this.pmm.alloc(0);
      if (pfn < 0) {
        // Never touched: nothing can be cached for these pages, so no flush is owed.
        for (let j = 0; j < i; j++) {
          const u = this.mapper.unmap(vpn + j, { keepTables: true });
          u.flush.ignore();
          this.pmm.free(u.base, 0);
        }
        this.arena.free(first, n);
        return 0;
      }
      this.mapper.map(vpn + i, pfn, PAGE_4K, { write: true, nx: true, global: true }).ignore();
    }
    this.counters.kheapMaps += n;
    this.regionPages += n;
    const ptr = this.arena.ptrOf(first);
    if (zero) this.kmem.fill(ptr, n * 4096, 0);
    return ptr;
  }

  /** Give back `n` pages from `alloc(n)`. */
  free(ptr: KPtr, n: number): void {
    if (this.pool?.owns(ptr)) {
      this.pool.free(ptr, n);
      return;
    }
    if (ptr < KPTR_AREA) {
      this.pmm.free(Math.floor(ptr / 4096), KernelPages.order(n));
      return;
    }
    const first = this.arena.indexOf(ptr);
    const vpn = this.arena.baseVpn + first;
    const frames: number[] = [];
    const g = this.flusher?.gatherKernel() ?? null;
    for (let i = 0; i < n; i++) {
      const u = this.mapper.unmap(vpn + i, { keepTables: true });
      frames.push(u.base);
      if (g !== null) g.add(u.flush);
      else u.flush.apply(this.kmem.cur.cpu);
    }
    g?.finish();
    for (const f of frames) this.pmm.free(f, 0);
    this.arena.free(first, n);
    this.counters.kheapUnmaps += n;
    this.regionPages -= n;
  }
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(KernelMem, KernelPages, VaArena);
