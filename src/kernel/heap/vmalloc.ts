/**
 * vmalloc/vfree, after Linux's mm/vmalloc.c: virtually contiguous, physically scattered allocations
 * in the vmalloc arena, each followed by an unmapped guard page (an overrun faults).
 *
 * vmalloc: a virtual range from the arena (first fit from a hint), one order-0 frame per page from the
 * PMM, each mapped global and no-execute by the kernel's mapper (fresh mappings: no flush). The area
 * is registered in the owner table (first page -> pages).
 *
 * vfree: unmap every page (page tables are kept, as Linux keeps vmalloc's), free the frames, and:
 *   - eager: one shootdown round for the whole area to every CPU, then the range is free again;
 *   - lazy purge (Linux's vmap_lazy_nr / lazy_max_pages): the TLB flush and the release of the range
 *     are deferred - a record {first page, pages} is kmalloc'd onto the purge list - until more than
 *     `lazyMaxPages` pages are pending (or the arena is full, or `purge` is called); then one round
 *     flushes the union of every pending range (a full flush past the ceiling) and releases them.
 *     Between vfree and the purge other CPUs may still hold translations of the freed range; nothing
 *     may use it (a use would be a use-after-free, which the stale-TLB detector reports), and the range
 *     is not handed out again before the flush. As in Linux, the frames themselves are freed at once.
 *
 * Costs: per vfree, eager: one shootdown (IPIs to every other CPU); lazy: none until the purge, which
 * costs one shootdown for many vfrees. The counters show both (`ipis`, `lazyPurges`).
 */
import { cloneable } from "../../machine/clone.ts";
import { fail, hex } from "../../errors.ts";
import type { Counters } from "../../machine/counters.ts";
import type { Mapper } from "../../machine/x86/mapper.ts";
import { PAGE_4K } from "../../machine/x86/pte.ts";
import type { KPtr } from "../api.ts";
import type { FrameAllocator } from "../pmm/interface.ts";
import type { KernelFlusher, KernelMem, VaArena } from "./kmem.ts";
import { type OwnerTable, TAG_VMALLOC } from "./owners.ts";

/** Purge-list record: +0 first arena page u32, +4 pages incl. guard u32, +8 next u64. */
const LZ_FIRST = 0;
const LZ_PAGES = 4;
const LZ_NEXT = 8;
export const LAZY_RECORD_BYTES = 16;

export interface VmallocDeps {
  kmem: KernelMem;
  mapper: Mapper;
  pmm: FrameAllocator;
  arena: VaArena;
  owners: OwnerTable;
  counters: Counters;
  flusher: KernelFlusher;
  /** For purge-list records. */
  heap: { kmalloc(bytes: number): KPtr; kfree(ptr: KPtr): void };
}

export class Vmalloc {
  /** Registers: the purge list head, pages pending, live areas and pages. */
  private lazyHead: KPtr = 0;
  lazyPages = 0;
  areas = 0;
  pages = 0;

  constructor(
    private readonly d: VmallocDeps,
    readonly lazy: boolean,
    readonly lazyMaxPages: number,
  ) {}

  alloc(bytes: number): KPtr {
    if (!Number.isInteger(bytes) || bytes < 1)
      fail("BAD_SIZE", `vmalloc(${bytes}): the size must be a whole number of bytes, at least 1`);
    const d = this.d;
    const n = Math.ceil(bytes / 4096);
    let first = d.arena.alloc(n + 1);
    if (first < 0 && this.lazyPages > 0) {
      this.purge();
      first = d.arena.alloc(n + 1);
    }
    if (first < 0) return 0;
    const vpn = d.arena.baseVpn + first;
    for (let i = 0; i < n; i++) {
      const pfn = d.pmm.alloc(0);
      if (pfn < 0) {
        this.undo(vpn, i);
        d.arena.free(first, n + 1);
        return 0;
      }
      d.mapper.map(vpn + i, pfn, PAGE_4K, { write: true, nx: true, global: true }).ignore();
    }
    const ptr = d.arena.ptrOf(first);
    try {
      d.owners.set(Math.floor(ptr / 4096), n * 8 + TAG_VMALLOC);
    } catch (e) {
      this.undo(vpn, n);
      d.arena.free(first, n + 1);
      throw e;
    }
    this.areas++;
    this.pages += n;
    d.counters.vmallocs++;
    d.counters.vmallocPages += n;
    return ptr;
  }

  /** Unmap pages nobody has touched yet (no pointer was handed out): nothing can be cached. */
  private undo(vpn: number, mapped: number): void {
    for (let j = 0; j < mapped; j++) {
      const u = this.d.mapper.unmap(vpn + j, { keepTables: true });
      u.flush.ignore();
      this.d.pmm.free(u.base, 0);
    }
  }

  /** vfree of an area the caller has looked up (`pages` from its owner entry). */
  free(ptr: KPtr, n: number): void {
    const d = this.d;
    if (ptr % 4096 !== 0)
      fail("HEAP_BAD_FREE", `vfree(${hex(ptr)}): not the start of a vmalloc area`, { ptr });
    d.owners.delete(Math.floor(ptr / 4096));
    const first = d.arena.indexOf(ptr);
    const vpn = d.arena.baseVpn + first;
    const rec = this.lazy ? d.heap.kmalloc(LAZY_RECORD_BYTES) : 0;
    const g = rec === 0 ? d.flusher.gatherKernel() : null;
    const frames: number[] = [];
    for (let i = 0; i < n; i++) {
      const u = d.mapper.unmap(vpn + i, { keepTables: true });
      frames.push(u.base);
      if (g !== null) g.add(u.flush);
      else u.flush.ignore(); // the obligation moves to the purge list
    }
    this.areas--;
    this.pages -= n;
    d.counters.vfrees++;
    if (g !== null) {
      g.finish();
      for (const f of frames) d.pmm.free(f, 0);
      d.arena.free(first, n + 1);
      return;
    }
    for (const f of frames) d.pmm.free(f, 0);
    const k = d.kmem;
    k.write32(rec + LZ_FIRST, first);
    k.write32(rec + LZ_PAGES, n + 1);
    k.write64(rec + LZ_NEXT, this.lazyHead);
    this.lazyHead = rec;
    this.lazyPages += n;
    if (this.lazyPages > this.lazyMaxPages) this.purge();
  }

  /** __purge_vmap_area_lazy: one flush for the union of the pending ranges, then release them. */
  purge(): void {
    if (this.lazyHead === 0) return;
    const d = this.d;
    const k = d.kmem;
    let lo = Number.POSITIVE_INFINITY;
    let hi = 0;
    for (let r = this.lazyHead; r !== 0; r = k.read64(r + LZ_NEXT)) {
      const f = k.read32(r + LZ_FIRST);
      const e = f + k.read32(r + LZ_PAGES) - 1; // the guard page was never mapped
      if (f < lo) lo = f;
      if (e > hi) hi = e;
    }
    const head = this.lazyHead;
    const pages = this.lazyPages;
    this.lazyHead = 0;
    this.lazyPages = 0;
    d.flusher.kernelRange(d.arena.baseVpn + lo, hi - lo, 0, false, false);
    d.counters.lazyPurges++;
    d.counters.lazyPurgedPages += pages;
    for (let r = head; r !== 0; ) {
      const next = k.read64(r + LZ_NEXT);
      d.arena.free(k.read32(r + LZ_FIRST), k.read32(r + LZ_PAGES));
      d.heap.kfree(r);
      r = next;
    }
  }

  /** Checker: visit pending ranges (uncounted). */
  peekLazy(fn: (first: number, pages: number) => void): void {
    const k = this.d.kmem;
    let steps = 0;
    for (let r = this.lazyHead; r !== 0; r = k.peek64(r + LZ_NEXT)) {
      if (++steps > 1 << 22) fail("HEAP_INVARIANT", "vmalloc purge list does not end");
      fn(k.peek32(r + LZ_FIRST), k.peek32(r + LZ_PAGES));
    }
  }
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(Vmalloc);
