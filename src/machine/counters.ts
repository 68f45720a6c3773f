/**
 * The single registry of simulated costs. Every component of one machine increments fields of the same
 * `Counters` object: plain numbers, so the hot paths stay monomorphic. Host time is never a counter.
 *
 * Later floors (allocators, shootdowns, heaps) add fields here so that one snapshot shows everything.
 */
import { cloneable } from "./clone.ts";
export class Counters {
  /** 32-bit (or narrower) loads from simulated RAM, by anyone. */
  memReads = 0;
  /** 32-bit (or narrower) stores to simulated RAM, by anyone. */
  memWrites = 0;
  /** Bytes moved by bulk operations (zeroFrame, fill, copy). */
  memBulkBytes = 0;

  /** Page walks started by the MMU (TLB misses that reached the page tables). */
  walks = 0;
  /** Paging-structure entries read by the MMU during walks (the memory references of a walk). */
  walkReads = 0;
  /** Accessed/Dirty-bit updates written back by the MMU. */
  walkWrites = 0;
  /** Walks that ended in a page fault. */
  pageFaults = 0;

  tlbL1Hits = 0;
  tlbL2Hits = 0;
  tlbMisses = 0;
  tlbHits4k = 0;
  tlbHits2m = 0;
  tlbHits1g = 0;
  /** Walks shortened by a paging-structure cache hit. */
  pscHits = 0;

  invlpg = 0;
  invpcid = 0;
  cr3Writes = 0;
  /** Full (non-global) TLB flushes, from CR3 writes without the no-flush bit or explicit flushes. */
  tlbFullFlushes = 0;
  /** Flushes that also dropped global entries (CR4.PGE toggle, INVPCID type 2). */
  tlbGlobalFlushes = 0;

  /** Page-table pages currently allocated by mappers (gauge) and the peak. */
  ptPages = 0;
  ptPagesPeak = 0;
  ptPagesAllocated = 0;
  ptPagesFreed = 0;

  /** Temporary-window (fixmap) remaps: a PTE rewrite plus an INVLPG each. */
  windowRemaps = 0;

  /** Stale TLB entries found by the checker (a missing flush). */
  staleTlbHits = 0;

  // SMP and shootdowns (src/kernel/smp).
  /** Inter-processor interrupts sent (one per target CPU) and their modelled cost (sender + ack). */
  ipis = 0;
  ipiCycles = 0;
  /** Shootdown rounds started (one per flush_tlb_mm_range / kernel range flush that reached anyone). */
  shootdowns = 0;
  /** Pages named by shootdown rounds (the range, before any escalation). */
  shootdownPages = 0;
  /** Full flushes done by shootdown handlers (ceiling exceeded, tables freed, or a CPU behind by > 1). */
  fullFlushesByShootdown = 0;
  /** Modelled cycles of the invalidations done by shootdowns (INVLPGs and full flushes, all CPUs). */
  shootdownFlushCycles = 0;
  /** Lazy-TLB CPUs skipped by a shootdown, and lazy CPUs that switched to init_mm instead. */
  lazySkips = 0;
  lazyToInitMm = 0;
  /** Targets that found their TLB already at the mm's generation (nothing to do). */
  genUpToDate = 0;
  /** Targets behind by more than one generation (full flush instead of a range). */
  genBehindFull = 0;
  /** Shootdown request records allocated per request (policy `alloc`) and written into per-CPU slots. */
  shootdownReqAllocs = 0;
  shootdownReqSlotWrites = 0;
  /** INVLPGB-style broadcast invalidations and the TLBSYNCs that wait for them. */
  invlpgb = 0;
  tlbsync = 0;
  /** Address-space switches (switch_mm), of which CR3 writes with the no-flush bit, and lazy entries. */
  mmSwitches = 0;
  mmSwitchNoFlush = 0;
  lazyEnters = 0;

  // Kernel heap (src/kernel/heap).
  slabAllocs = 0;
  slabFrees = 0;
  slabPagesAllocated = 0;
  slabPagesFreed = 0;
  largeAllocs = 0;
  largeFrees = 0;
  vmallocs = 0;
  vfrees = 0;
  vmallocPages = 0;
  /** Lazy vmalloc purges (one batched flush each) and the pages they covered. */
  lazyPurges = 0;
  lazyPurgedPages = 0;
  /** Kernel pages mapped into / unmapped from the kernel heap region (no direct map for them). */
  kheapMaps = 0;
  kheapUnmaps = 0;

  // Kernel pool (src/kernel/heap/pool.ts, kmap `pool`).
  /** 2 MiB chunks added to the pool, of which backed by one 2 MiB leaf or by 512 4 KiB frames. */
  poolGrows = 0;
  poolChunks2m = 0;
  poolChunks4k = 0;
  /** Rebalances that gave chunks back (one shootdown each) and the bytes they returned to the PMM. */
  poolRebalances = 0;
  poolReturnedBytes = 0;

  /** A plain copy of every field, for reports and determinism checks. */
  snapshot(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(this)) if (typeof v === "number") out[k] = v;
    return out;
  }

  reset(): void {
    for (const k of Object.keys(this)) {
      if (typeof (this as unknown as Record<string, unknown>)[k] === "number") {
        (this as unknown as Record<string, number>)[k] = 0;
      }
    }
  }

  /** Field-by-field difference `after - before` of two snapshots, dropping zeros. */
  static diff(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
    const out: Record<string, number> = {};
    for (const k of Object.keys(after)) {
      const d = after[k] - (before[k] ?? 0);
      if (d !== 0) out[k] = d;
    }
    return out;
  }
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(Counters);
