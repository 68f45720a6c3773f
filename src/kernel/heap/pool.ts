/**
 * The kernel pool (kmap `pool`): the kernel heap's own virtual region, backed 2 MiB at a time and kept
 * mapped - Windows' non-paged pool, as opposed to Linux's slab pages taken from the direct map.
 *
 * Where: 1 TiB above the base of the vmalloc area (0xffffca0000000000 with 4-level paging,
 * 0xffa0010000000000 with 5-level), one PML4 slot above the kernel heap region (kmem.ts), still inside
 * Linux's vmalloc space, so kernel pointers into it are ordinary area pointers (api.ts). 32 GiB:
 *
 *   [0, 2 MiB)              chunk records (chunk 0 is never backed: its place holds the records)
 *   [2 MiB * c, + 2 MiB)    chunk c, 1 <= c < 16384
 *
 * Chunk record, 128 bytes, in simulated RAM (32 per page; the page holding records 0-31 is mapped when
 * the pool is created, which also creates the region's root entry before any process copies the kernel
 * half; later record pages are mapped when the pool first grows into them and are never unmapped):
 *
 *   +0 state u32 (0 unbacked, 1 one 2 MiB leaf, 2 512 x 4 KiB)   +4 pages in use u32
 *   +8 base frame u64 (state 1; 0 otherwise)                     +64 page bitmap, 512 bits (1 = in use)
 *
 * `alloc(n)`: n pages (a power of two, at most 512) naturally aligned inside one backed chunk, first
 * fit from the lowest chunk (so live pages pack low and high chunks empty out, ready to be given back);
 * when no backed chunk has room, grow: take the lowest unbacked chunk, ask the PMM for
 * an order-9 block (mapped with ONE 2 MiB leaf) or, when it has none, 512 order-0 frames mapped one by
 * one (all or nothing). Fresh mappings: no flush. `free(ptr, n)` only clears bits: the pages stay
 * mapped, so a kfree that empties a slab costs no shootdown.
 *
 * `rebalance()`: unmap every fully free chunk, send ONE kernel shootdown for the whole batch (the union
 * of the ranges; a full flush past the ceiling) through the per-CPU request slot (the atomic path: no
 * allocation while the heap is being shrunk), then free the frames to the PMM. The kernel calls it when
 * another subsystem's PMM request fails (`kernel.pmmAlloc`), as Windows trims its pool, and only then.
 *
 * Costs: alloc scans chunk records (2 reads each) from the lowest and one bitmap word per 32 pages;
 * free is 3 reads and 3 writes. A grow costs one PMM call and one PTE (2 MiB) or 512 of each (4 KiB).
 */
import { bare, blank, cloneable } from "../../machine/clone.ts";
import { fail, hex } from "../../errors.ts";
import type { Counters } from "../../machine/counters.ts";
import type { Mapper } from "../../machine/x86/mapper.ts";
import { peekWalk } from "../../machine/x86/mmu.ts";
import { PAGE_2M, PAGE_4K } from "../../machine/x86/pte.ts";
import { type KPtr, KPTR_AREA } from "../api.ts";
import type { FrameAllocator } from "../pmm/interface.ts";
import type { KernelFlusher, KernelMem, KernelPagePool } from "./kmem.ts";

/** Byte offset of the pool inside the vmalloc area (two PML4 slots up: vmalloc, kernel heap region, pool). */
export const POOL_OFFSET = 2 ** 40;
export const POOL_BYTES = 32 * 2 ** 30;
export const CHUNK_PAGES = 512;
export const POOL_CHUNKS = POOL_BYTES / (CHUNK_PAGES * 4096);
export const CHUNK_RECORD_BYTES = 128;
const RECORDS_PER_PAGE = 4096 / CHUNK_RECORD_BYTES;

const R_STATE = 0;
const R_USED = 4;
const R_BASE = 8;
const R_BITMAP = 64;
const BITMAP_WORDS = CHUNK_PAGES / 32;

export const CHUNK_UNBACKED = 0;
export const CHUNK_2M = 1;
export const CHUNK_4K = 2;

const PROT = { write: true, nx: true, global: true } as const;

export class KernelPool implements KernelPagePool {
  readonly maxPages = CHUNK_PAGES;
  /** Set by the kernel once its shootdown exists (before that only the boot CPU has run). */
  flusher: KernelFlusher | null = null;
  /** Registers: chunks ever touched (records 1..highWater-1 exist), record pages mapped. */
  highWater = 1;
  private recordPages = 1;
  /** Gauges: chunks backed, pages in use. */
  backedChunks = 0;
  usedPages = 0;
  readonly baseVpn: number;
  readonly basePtr: KPtr;

  constructor(
    private readonly kmem: KernelMem,
    private readonly mapper: Mapper,
    private readonly pmm: FrameAllocator,
    private readonly counters: Counters,
  ) {
    if (blank()) bare(this); // a bare instance for a copy of the machine (machine/clone.ts)
    this.baseVpn = kmem.areaVpn + POOL_OFFSET / 4096;
    this.basePtr = kmem.areaPtr(this.baseVpn);
    if (!this.mapRecordPage(0)) fail("OUT_OF_MEMORY", "no frame for the kernel pool's chunk records");
  }

  private mapRecordPage(i: number): boolean {
    const pfn = this.pmm.alloc(0);
    if (pfn < 0) return false;
    try {
      this.mapper.map(this.baseVpn + i, pfn, PAGE_4K, PROT).ignore();
    } catch (e) {
      this.pmm.free(pfn, 0);
      throw e;
    }
    this.kmem.fill(this.basePtr + i * 4096, 4096, 0);
    return true;
  }

  private rec(c: number): KPtr {
    return this.basePtr + c * CHUNK_RECORD_BYTES;
  }

  /** First page (virtual) of chunk c. */
  chunkVpn(c: number): number {
    return this.baseVpn + c * CHUNK_PAGES;
  }

  /** Is `ptr` inside the pool's chunks? */
  owns(ptr: KPtr): boolean {
    if (ptr < KPTR_AREA) return false;
    const rel = ptr - this.basePtr;
    return rel >= CHUNK_PAGES * 4096 && rel < POOL_BYTES;
  }

  /** `n` pages (power of two, 1..512), zeroed if asked; 0 when the PMM cannot back a new chunk. */
  alloc(n: number, zero: boolean): KPtr {
    if (n < 1 || n > CHUNK_PAGES || (n & (n - 1)) !== 0)
      fail("KERNEL_BUG", `kernel pool: ${n} pages is not a power of two up to ${CHUNK_PAGES}`);
    const k = this.kmem;
    const hw = this.highWater;
    for (let c = 1; c < hw; c++) {
      const r = this.rec(c);
      if (k.read32(r + R_STATE) === CHUNK_UNBACKED || CHUNK_PAGES - k.read32(r + R_USED) < n) continue;
      const p = this.take(c, n);
      if (p >= 0) return this.handOut(c, p, n, zero);
    }
    const c = this.grow();
    if (c < 0) return 0;
    return this.handOut(c, this.take(c, n), n, zero);
  }

  private handOut(c: number, page: number, n: number, zero: boolean): KPtr {
    this.usedPages += n;
    const ptr = this.kmem.areaPtr(this.chunkVpn(c) + page);
    if (zero) this.kmem.fill(ptr, n * 4096, 0);
    return ptr;
  }

  /** Mark n aligned free pages of chunk c used; their first page, or -1. */
  private take(c: number, n: number): number {
    const k = this.kmem;
    const r = this.rec(c);
    const bm = r + R_BITMAP;
    if (n >= 32) {
      const words = n / 32;
      for (let w = 0; w < BITMAP_WORDS; w += words) {
        let free = true;
        for (let j = 0; j < words && free; j++) if (k.read32(bm + (w + j) * 4) !== 0) free = false;
        if (!free) continue;
        for (let j = 0; j < words; j++) k.write32(bm + (w + j) * 4, 0xffffffff);
        k.write32(r + R_USED, k.read32(r + R_USED) + n);
        return w * 32;
      }
      return -1;
    }
    const mask = (1 << n) - 1;
    for (let w = 0; w < BITMAP_WORDS; w++) {
      const x = k.read32(bm + w * 4);
      if (x === 0xffffffff) continue;
      for (let off = 0; off < 32; off += n) {
        if (((x >>> off) & mask) !== 0) continue;
        k.write32(bm + w * 4, (x | (mask << off)) >>> 0);
        k.write32(r + R_USED, k.read32(r + R_USED) + n);
        return w * 32 + off;
      }
    }
    return -1;
  }

  /** Give `n` pages from `alloc(n)` back to their chunk. Nothing is unmapped, nothing is flushed. */
  free(ptr: KPtr, n: number): void {
    const k = this.kmem;
    const page = (ptr - this.basePtr) / 4096;
    const c = Math.floor(page / CHUNK_PAGES);
    const i = page - c * CHUNK_PAGES;
    const r = this.rec(c);
    if (!Number.isInteger(page) || c >= this.highWater || k.read32(r + R_STATE) === CHUNK_UNBACKED)
      fail("KERNEL_BUG", `kernel pool: free of ${hex(ptr)}, which is not in a backed chunk`);
    for (let p = i; p < i + n; ) {
      const wp = r + R_BITMAP + (p >>> 5) * 4;
      const lo = p & 31;
      const cnt = Math.min(32 - lo, i + n - p);
      const mask = cnt === 32 ? 0xffffffff : (((1 << cnt) - 1) << lo) >>> 0;
      const x = k.read32(wp);
      if ((x & mask) >>> 0 !== mask)
        fail("KERNEL_BUG", `kernel pool: free of ${hex(ptr)} (${n} pages): some are not in use`);
      k.write32(wp, (x & ~mask) >>> 0);
      p += cnt;
    }
    k.write32(r + R_USED, k.read32(r + R_USED) - n);
    this.usedPages -= n;
  }

  /** Back the lowest unbacked chunk; its index, or -1 when the PMM cannot (or the pool is full). */
  private grow(): number {
    const k = this.kmem;
    let c = 1;
    while (c < this.highWater && k.read32(this.rec(c) + R_STATE) !== CHUNK_UNBACKED) c++;
    if (c >= POOL_CHUNKS) return -1;
    if (c === this.highWater && Math.floor(c / RECORDS_PER_PAGE) >= this.recordPages) {
      if (!this.mapRecordPage(this.recordPages)) return -1;
      this.recordPages++;
    }
    const vpn = this.chunkVpn(c);
    const r = this.rec(c);
    const block = (this.pmm.maxOrder ?? 10) >= 9 ? this.pmm.alloc(9) : -1;
    if (block >= 0) {
      try {
        this.mapper.map(vpn, block, PAGE_2M, PROT).ignore(); // fresh: nothing can be cached
      } catch (e) {
        this.pmm.free(block, 9);
        throw e;
      }
      k.write32(r + R_STATE, CHUNK_2M);
      k.write64(r + R_BASE, block);
      this.counters.poolChunks2m++;
    } else {
      if (!this.mapFrames(vpn)) return -1;
      k.write32(r + R_STATE, CHUNK_4K);
      k.write64(r + R_BASE, 0);
      this.counters.poolChunks4k++;
    }
    k.write32(r + R_USED, 0);
    if (c === this.highWater) this.highWater++;
    this.backedChunks++;
    this.counters.poolGrows++;
    return c;
  }

  /** 512 order-0 frames mapped one by one at `vpn`; all or nothing. */
  private mapFrames(vpn: number): boolean {
    for (let i = 0; i < CHUNK_PAGES; i++) {
      const pfn = this.pmm.alloc(0);
      let ok = pfn >= 0;
      if (ok) {
        try {
          this.mapper.map(vpn + i, pfn, PAGE_4K, PROT).ignore();
        } catch {
          this.pmm.free(pfn, 0);
          ok = false;
        }
      }
      if (!ok) {
        // Never handed out: nothing can be cached, no flush is owed.
        for (let j = 0; j < i; j++) {
          const u = this.mapper.unmap(vpn + j, { keepTables: j + 1 < i });
          u.flush.ignore();
          this.pmm.free(u.base, 0);
        }
        return false;
      }
    }
    return true;
  }

  /** Fully free backed chunks (could be given back now). */
  freeChunks(): number {
    let n = 0;
    for (let c = 1; c < this.highWater; c++) {
      const r = this.rec(c);
      if (this.kmem.read32(r + R_STATE) !== CHUNK_UNBACKED && this.kmem.read32(r + R_USED) === 0) n++;
    }
    return n;
  }

  /**
   * Give every fully free chunk back to the PMM: unmap them all, ONE shootdown for the batch (per-CPU
   * request slot), then free the frames. Returns the frames returned (0: nothing to give, no flush).
   */
  rebalance(): number {
    const k = this.kmem;
    const blocks: number[] = [];
    const frames: number[] = [];
    let lo = Number.POSITIVE_INFINITY;
    let hi = 0;
    let stride = 9;
    let freed = false;
    for (let c = 1; c < this.highWater; c++) {
      const r = this.rec(c);
      const state = k.read32(r + R_STATE);
      if (state === CHUNK_UNBACKED || k.read32(r + R_USED) !== 0) continue;
      const vpn = this.chunkVpn(c);
      if (state === CHUNK_2M) {
        const u = this.mapper.unmap(vpn, { keepTables: true });
        if (u.flush.tablesFreed > 0) freed = true;
        u.flush.ignore(); // the obligation moves to the batch below
        blocks.push(u.base);
      } else {
        stride = 0;
        for (let i = 0; i < CHUNK_PAGES; i++) {
          // Keep the page table until the last page: then it is freed (a 2 MiB leaf may come next).
          const u = this.mapper.unmap(vpn + i, { keepTables: i + 1 < CHUNK_PAGES });
          if (u.flush.tablesFreed > 0) freed = true;
          u.flush.ignore();
          frames.push(u.base);
        }
      }
      k.write32(r + R_STATE, CHUNK_UNBACKED);
      k.write64(r + R_BASE, 0);
      if (vpn < lo) lo = vpn;
      if (vpn + CHUNK_PAGES > hi) hi = vpn + CHUNK_PAGES;
      this.backedChunks--;
    }
    if (hi === 0) return 0;
    const f = this.flusher;
    if (f !== null) f.kernelRange(lo, hi - lo, stride, freed, true);
    else this.kmem.cur.cpu.invpcid(2);
    for (const b of blocks) this.pmm.free(b, 9);
    for (const p of frames) this.pmm.free(p, 0);
    const returned = blocks.length * CHUNK_PAGES + frames.length;
    this.counters.poolRebalances++;
    this.counters.poolReturnedBytes += returned * 4096;
    return returned;
  }

  /** Statistics from the records (uncounted). */
  stats(): {
    backedChunks: number;
    chunks2m: number;
    chunks4k: number;
    usedPages: number;
    freeChunks: number;
  } {
    const k = this.kmem;
    let c2 = 0;
    let c4 = 0;
    let free = 0;
    for (let c = 1; c < this.highWater; c++) {
      const s = k.peek32(this.rec(c) + R_STATE);
      if (s === CHUNK_2M) c2++;
      if (s === CHUNK_4K) c4++;
      if (s !== CHUNK_UNBACKED && k.peek32(this.rec(c) + R_USED) === 0) free++;
    }
    return { backedChunks: c2 + c4, chunks2m: c2, chunks4k: c4, usedPages: this.usedPages, freeChunks: free };
  }

  /** Invariant checker (uncounted reads): throws POOL_INVARIANT naming the first violation. */
  check(): void {
    const err = this.checkAll();
    if (err !== null) fail("POOL_INVARIANT", `kernel pool: ${err}`);
  }

  private checkAll(): string | null {
    const k = this.kmem;
    const cpu = k.cur.cpu;
    const owned: [number, number][] = [];
    let backed = 0;
    let used = 0;
    for (let i = 0; i < this.recordPages; i++) {
      const w = peekWalk(cpu, this.baseVpn + i);
      if (w === null) return `record page ${i} is not mapped`;
      owned.push([w.pfn, 1]);
    }
    if (peekWalk(cpu, this.baseVpn + this.recordPages) !== null)
      return `page ${this.recordPages} of the record area is mapped beyond the ${this.recordPages} record pages`;
    if (Math.ceil(this.highWater / RECORDS_PER_PAGE) > this.recordPages)
      return `records up to chunk ${this.highWater - 1} do not fit in ${this.recordPages} record pages`;
    for (let c = 1; c < this.highWater; c++) {
      const e = this.checkChunk(c, owned);
      if (typeof e === "string") return e;
      if (e >= 0) {
        backed++;
        used += e;
      }
    }
    if (peekWalk(cpu, this.chunkVpn(this.highWater)) !== null)
      return `chunk ${this.highWater} (beyond the high-water mark) is mapped`;
    if (backed !== this.backedChunks) return `${backed} chunks backed, register says ${this.backedChunks}`;
    if (used !== this.usedPages)
      return `${used} pages in use in the bitmaps, register says ${this.usedPages}`;
    return this.checkNotFree(owned);
  }

  /** One chunk against its record: pages in use (-1 if unbacked) or the violation. */
  private checkChunk(c: number, owned: [number, number][]): number | string {
    const k = this.kmem;
    const cpu = k.cur.cpu;
    const r = this.rec(c);
    const state = k.peek32(r + R_STATE);
    const usedReg = k.peek32(r + R_USED);
    const base = k.peek64(r + R_BASE);
    let bits = 0;
    for (let w = 0; w < BITMAP_WORDS; w++) {
      let x = k.peek32(r + R_BITMAP + w * 4);
      while (x !== 0) {
        x &= x - 1;
        bits++;
      }
    }
    const vpn = this.chunkVpn(c);
    const where = `chunk ${c} (${hex(k.areaPtr(vpn))})`;
    if (state === CHUNK_UNBACKED) {
      if (usedReg !== 0 || bits !== 0 || base !== 0)
        return `${where} is unbacked but its record is not clear`;
      for (let i = 0; i < CHUNK_PAGES; i++)
        if (peekWalk(cpu, vpn + i) !== null) return `${where} is returned, yet page ${i} is still mapped`;
      return -1;
    }
    if (bits !== usedReg) return `${where}: ${bits} pages set in the bitmap, record says ${usedReg} in use`;
    if (state === CHUNK_2M) {
      const w = peekWalk(cpu, vpn);
      if (w === null || w.shift !== 9 || w.base !== base || base % CHUNK_PAGES !== 0)
        return `${where}: record says one 2 MiB leaf at frame ${hex(base)}, tables say ${w === null ? "unmapped" : `${w.shift === 9 ? "2M" : "4K"} at ${hex(w.base)}`}`;
      owned.push([base, CHUNK_PAGES]);
      return usedReg;
    }
    if (state !== CHUNK_4K) return `${where}: bad state ${state}`;
    if (base !== 0) return `${where}: a 4 KiB-backed chunk records base frame ${hex(base)}`;
    for (let i = 0; i < CHUNK_PAGES; i++) {
      const w = peekWalk(cpu, vpn + i);
      if (w === null || w.shift !== 0)
        return `${where}: record says 512 x 4K, page ${i} is ${w === null ? "unmapped" : "a large page"}`;
      owned.push([w.pfn, 1]);
    }
    return usedReg;
  }

  /** No pool frame is counted twice or on the PMM's free lists (a chunk both returned and mapped). */
  private checkNotFree(owned: [number, number][]): string | null {
    owned.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < owned.length; i++)
      if (owned[i][0] < owned[i - 1][0] + owned[i - 1][1])
        return `frame ${hex(owned[i][0] * 4096)} backs two pool pages`;
    let bad: string | null = null;
    this.pmm.forEachFree?.((pfn, count) => {
      if (bad !== null) return;
      let lo = 0;
      let hi = owned.length;
      while (lo < hi) {
        const m = (lo + hi) >>> 1;
        if (owned[m][0] + owned[m][1] <= pfn) lo = m + 1;
        else hi = m;
      }
      if (lo < owned.length && owned[lo][0] < pfn + count)
        bad = `frame ${hex(owned[lo][0] * 4096)} is mapped in the pool and free in the PMM`;
    });
    return bad;
  }
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(KernelPool);
