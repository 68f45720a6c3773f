/**
 * The kernel's public API (types and constants; `startKernel` is in kernel.ts, which re-exports all
 * of this). The running kernel: a booted machine (src/kernel/boot/) with SMP wired in - per-CPU TLB state and
 * address-space switching, TLB shootdowns by IPI or broadcast, a kernel heap (slab kmalloc, vmalloc)
 * and user address spaces (processes). Everything the kernel keeps lives in simulated RAM, reached
 * through the kernel's own mappings; the JS objects below hold only a few scalar registers.
 *
 *   const k = startKernel({ map: "qemu:256M", pmm: "buddy", kmap: "direct", cpus: 4, checkStale: true });
 *   const p = k.processes.create();
 *   k.processes.mmap(p, 0x400, 8, { write: true });
 *   k.processes.touch(p, 0x400, "write", 1);       // CPU 1 switches to p (CR3 + PCID) and stores
 *   const obj = k.run(2, () => k.heap.kmalloc(96)); // kernel code on CPU 2
 *   k.heap.write32(obj, 0, 42);
 *   k.processes.munmap(p, 0x400, 8);                // shootdown to p's cpumask
 *   k.check();                                      // heap, PMM, page tables, stale TLB: all checkers
 *
 * Kernel pointers (`KPtr`) are plain numbers below 2^53, never BigInt:
 *   - below 2^52: a physical address, reached through the direct map (strategies direct/hybrid, for
 *     frames the direct map covers): the virtual address is directMap + ptr;
 *   - from 2^52 (`KPTR_AREA`): 2^52 + the byte offset from the base of the vmalloc area
 *     (0xffffc90000000000 with 4-level paging). The area holds vmalloc allocations (first
 *     `vmallocBytes`) and, one 512 GiB slot higher, the kernel heap region where heap pages are mapped
 *     page by page when no direct map reaches them (recursive, quickmap, hybrid above its limit, or a
 *     PMM without contiguous orders).
 *   0 is NULL (the first MiB is never handed out): kmalloc and vmalloc return 0 when memory runs out.
 *
 * Module map: smp/ipi.ts (IPIs and their cost model), smp/tlbstate.ts (per-CPU TLB state, mm structs,
 * switch_mm), smp/shootdown.ts (Linux's flush protocol), heap/kmem.ts (kernel pages and pointers),
 * heap/owners.ts (which allocation owns a page), heap/slab.ts (size-class caches), heap/vmalloc.ts,
 * heap/kmalloc.ts (the KernelHeap), mm/process.ts (user address spaces).
 */
import { fail } from "../errors.ts";
import type { BootOptions, BootResult } from "./boot/index.ts";
import type { Counters } from "../machine/counters.ts";
import type { Machine } from "../machine/machine.ts";
import type { Cpu } from "../machine/x86/cpu.ts";
import type { Flush, Mapper } from "../machine/x86/mapper.ts";
import type { Current } from "./percpu.ts";
import type { FrameAllocator } from "./pmm/interface.ts";

/** A kernel pointer: see the header. */
export type KPtr = number;

/** Pointers at and above this are in the vmalloc area (offset from its base); below are physical. */
export const KPTR_AREA = 2 ** 52;

/** Modelled costs, in cycles, accumulated in `Counters` (never host time). */
export interface IpiCostModel {
  /** Per IPI sent: the send, the remote interrupt entry and the acknowledgement the sender waits for. */
  ipiCycles: number;
  /** Per INVLPG executed (on any CPU). */
  invlpgCycles: number;
  /** Per full TLB flush (CR3 reload or INVPCID all-context). */
  fullFlushCycles: number;
  /** Per INVLPGB broadcast instruction (one covers a range of pages on every CPU). */
  invlpgbCycles: number;
  /** Per TLBSYNC (waits for the broadcasts of this CPU to complete everywhere). */
  tlbsyncCycles: number;
}

export const DEFAULT_COSTS: IpiCostModel = {
  ipiCycles: 1200,
  invlpgCycles: 250,
  fullFlushCycles: 500,
  invlpgbCycles: 300,
  tlbsyncCycles: 600,
};

export interface ShootdownOptions {
  /** `ipi`: Linux's IPI protocol (default). `invlpgb`: AMD-style broadcast invalidation, no IPIs. */
  mode?: "ipi" | "invlpgb";
  /**
   * Where shootdown request records live: `percpu` (one slot per CPU allocated at boot, written by
   * the sender, read by each target; default) or `alloc` (kmalloc'd per request, freed after the last
   * acknowledgement). Flushes from inside the PMM (region shrink) always use the per-CPU slot.
   */
  requests?: "percpu" | "alloc";
  /** Pages above which a range flush becomes a full flush (Linux's tlb_single_page_flush_ceiling). */
  ceiling?: number;
  /** Lazy TLB mode: a CPU switching to a kernel thread keeps the old mm loaded (default true). */
  lazyTlb?: boolean;
  /** Use PCIDs (6 dynamic ones per CPU, as Linux): switches keep TLB entries (default true). */
  pcid?: boolean;
  cost?: Partial<IpiCostModel>;
  /**
   * Deliberately broken protocols, for tests that prove the stale-TLB detector catches them:
   * `skipIpiTo`: never send shootdown IPIs to this CPU; `ignoreGenerations`: switch_mm never checks
   * tlb_gen (reuses a PCID without flushing what it missed).
   */
  faults?: { skipIpiTo?: number; ignoreGenerations?: boolean };
}

export interface HeapOptions {
  /** Red zones (8 bytes each side of every slab object) and poisoning of free objects (default true). */
  redZones?: boolean;
  /** Empty slabs a cache keeps before giving pages back (Linux's min_partial; default 2). */
  minPartial?: number;
  /** Bytes of virtual space for vmalloc (default 1 GiB) and for the kernel heap region (default 1 GiB). */
  vmallocBytes?: number;
  kheapBytes?: number;
  /**
   * Lazy purge of vfree'd areas (Linux's vmap_lazy_nr): unmap at once but defer the TLB flush until
   * `lazyMaxPages` pages are pending, then one batched flush. Default true.
   */
  lazyPurge?: boolean;
  /** Default as Linux's lazy_max_pages(): 32 MiB worth of pages times fls(online CPUs). */
  lazyMaxPages?: number;
}

export interface KernelOptions extends BootOptions {
  /** Number of CPUs (default 4). */
  cpus?: number;
  shootdown?: ShootdownOptions;
  heap?: HeapOptions;
}

/** A flush batch: gather the tokens of several changes, send one shootdown round at `finish`. */
export interface TlbGather {
  add(f: Flush): void;
  /** Pages gathered so far. */
  readonly pages: number;
  finish(): void;
}

/** TLB shootdowns (smp/shootdown.ts). All run on `kernel.current`'s CPU as the sender. */
export interface TlbShootdown {
  readonly mode: "ipi" | "invlpgb";
  readonly requests: "percpu" | "alloc";
  readonly cost: IpiCostModel;
  /** A change to a kernel (global) mapping: invalidate on every online CPU (flush_tlb_kernel_range). */
  flushKernel(f: Flush): void;
  /** Same for a range of kernel pages given directly (stride 4 KiB). */
  flushKernelRange(vpn: number, pages: number, opts?: { freedTables?: boolean }): void;
  /** A change to a user mapping of `proc`: flush_tlb_mm_range to its cpumask (consumes the token). */
  flushUser(proc: Process, f: Flush): void;
  /** A batch for kernel mappings (proc null) or for one address space. */
  gather(proc: Process | null): TlbGather;
}

export interface HeapStats {
  caches: {
    name: string;
    objSize: number;
    slotSize: number;
    order: number;
    objsPerSlab: number;
    slabs: number;
    activeObjs: number;
  }[];
  /** Pages held by slabs, by large kmalloc allocations, by vmalloc areas (guard pages excluded). */
  slabPages: number;
  largeAllocs: number;
  largePages: number;
  vmallocAreas: number;
  vmallocPages: number;
  /** vfree'd pages whose flush (and virtual range) is still pending a lazy purge. */
  lazyPages: number;
  /** Pages mapped in the kernel heap region (heap pages without a direct-map address). */
  kheapPages: number;
  /** Bytes of heap metadata: slab headers, the owner table, arena bitmaps, cache descriptors. */
  metadataBytes: number;
}

/** The kernel heap (heap/kmalloc.ts). Every call runs on `kernel.current`'s CPU. */
export interface KernelHeap {
  /** 1 B..8 KiB from a slab cache; larger straight from the PMM. Returns 0 (NULL) when out of memory. */
  kmalloc(size: number): KPtr;
  /** Throws HEAP_BAD_FREE (double free, not a heap pointer, middle of an object), state unchanged. */
  kfree(ptr: KPtr): void;
  /** Usable bytes of a live allocation (Linux's ksize). */
  ksize(ptr: KPtr): number;
  /** Virtually contiguous, physically scattered, a guard page after. Returns 0 when out of memory. */
  vmalloc(bytes: number): KPtr;
  vfree(ptr: KPtr): void;
  /** Flush every lazily freed vmalloc area now (vm_unmap_aliases). */
  purgeLazy(): void;
  /** Loads and stores through the kernel's mapping of `ptr + off` (4-byte aligned). */
  read32(ptr: KPtr, off: number): number;
  write32(ptr: KPtr, off: number, value: number): void;
  /** Invariant checker: throws HEAP_INVARIANT naming the first violation (uncounted reads). */
  check(): void;
  stats(): HeapStats;
}

/** A user process: a handle on its mm struct (in simulated RAM). */
export interface Process {
  readonly pid: number;
  /** Kernel pointer to the mm struct. */
  readonly mm: KPtr;
  /** Frame of the root page table. */
  readonly root: number;
}

export type UserAccess = "read" | "write" | "fetch";

export interface UserProt {
  write?: boolean;
  exec?: boolean;
}

/** User address spaces (mm/process.ts). */
export interface Processes {
  /** A new address space: a root from the PMM with the kernel half shared, an mm struct, a pid. */
  create(): Process;
  /** Map `pages` fresh zeroed frames at user page `vpn` (below the canonical hole). */
  mmap(p: Process, vpn: number, pages: number, prot?: UserProt): void;
  /** Unmap [vpn, vpn+pages) (whole mappings), free the frames, one shootdown to the mm's cpumask. */
  munmap(p: Process, vpn: number, pages: number): void;
  /**
   * Run `p` on CPU `cpu` (switch_mm: CR3 with its PCID, no-flush when the PCID is current) and make
   * a user access at `vpn`. Returns the frame. Throws SEGFAULT outside p's mappings.
   */
  touch(p: Process, vpn: number, access: UserAccess, cpu: number): number;
  /** Switch CPU `cpu` to `p`, or to a kernel thread (null: lazy TLB keeps the old mm loaded). */
  switchTo(cpu: number, p: Process | null): void;
  /** A copy of `p` (eager: every page copied). */
  fork(p: Process): Process;
  /** Tear `p` down: CPUs running it go to init_mm, frames and page tables return to the PMM. */
  exit(p: Process): void;
  /** Live processes. */
  list(): Process[];
  /** The process loaded on a CPU (null: init_mm), and whether that CPU is lazy. */
  loadedOn(cpu: number): { proc: Process | null; lazy: boolean };
  /** Invariant checker (mm structs, cpumasks, page tables of every process). */
  check(): void;
}

export interface Kernel {
  boot: BootResult;
  machine: Machine;
  current: Current;
  cpus: Cpu[];
  pmm: FrameAllocator;
  /** The kernel's mapper (init_mm's root; the kernel half is shared by every process). */
  mapper: Mapper;
  shootdown: TlbShootdown;
  heap: KernelHeap;
  processes: Processes;
  counters: Counters;
  /** Run kernel code on CPU `cpu` (then come back). */
  run<T>(cpu: number, fn: () => T): T;
  /** Every checker: heap, processes, PMM, page tables, stale TLB use. Throws on the first violation. */
  check(): void;
}

export function notImplemented(what: string): never {
  return fail("NOT_IMPLEMENTED", `${what} is not implemented yet`);
}
