/**
 * `startKernel`: boot (src/kernel/boot/) with N CPUs (default 4), then bring up what the running kernel
 * needs, in this order:
 *
 *   1. the kernel heap region and vmalloc arenas (their bitmaps mapped in their own first pages; their
 *      root entries created now, so every process root copies them);
 *   2. the per-CPU area (TLB state, shootdown request slots) and the kernel data page (slab cache
 *      descriptors, the global-PCID bitmap), from `KernelPages`;
 *   3. PCIDs turned on (CR4.PCIDE) unless disabled; the shootdown, installed as the flusher of the
 *      boot's regions and of the heap region;
 *   4. the heap (owner table, slab caches, vmalloc) and the process manager.
 *
 * The API (types, pointer encoding, options) is documented in api.ts and re-exported here.
 */
import { type CloneOptions, cloneGraph } from "../machine/clone.ts";
import { fail } from "../errors.ts";
import { type BootResult, bootKernel } from "./boot/index.ts";
import { checkTree } from "../machine/x86/inspect.ts";
import {
  DEFAULT_COSTS,
  type HeapOptions,
  type Kernel,
  type KernelOptions,
  type ShootdownOptions,
} from "./api.ts";
import { Heap } from "./heap/kmalloc.ts";
import { KernelMem, KernelPages, KHEAP_OFFSET, VaArena } from "./heap/kmem.ts";
import { KernelPool } from "./heap/pool.ts";
import { SIZE_CLASSES } from "./heap/slab.ts";
import { ProcessManager } from "./mm/process.ts";
import type { AllocConstraints } from "./pmm/interface.ts";
import { Ipi } from "./smp/ipi.ts";
import { Shootdown } from "./smp/shootdown.ts";
import { PCPU_BYTES, TlbState } from "./smp/tlbstate.ts";

export * from "./api.ts";

/** The running kernel, with its parts typed as implemented (tests and benches reach inside). */
export interface KernelInternals extends Kernel {
  heap: Heap;
  shootdown: Shootdown;
  processes: ProcessManager;
  tlbState: TlbState;
  kmem: KernelMem;
  kpages: KernelPages;
  /** The kernel pool (kmap `pool`, heap/pool.ts), else null. */
  pool: KernelPool | null;
  /**
   * A PMM request from a subsystem other than the heap (page cache, huge pages): `pmm.alloc`, and when
   * it fails, `reclaim()` and one retry. Without a pool it is exactly `pmm.alloc`.
   */
  pmmAlloc(order: number, c?: AllocConstraints): number;
  /** Shrinkers: the pool gives back its fully free chunks (one shootdown). Frames returned. */
  reclaim(): number;
}

const GIB = 2 ** 30;

function pagesOption(bytes: number | undefined, dflt: number, what: string): number {
  const b = bytes ?? dflt;
  if (!Number.isInteger(b) || b < 2 ** 20 || b > 256 * GIB || b % 4096 !== 0)
    fail("BAD_OPTION", `${what} must be a multiple of 4 KiB from 1 MiB to 256 GiB (got ${bytes})`);
  return b / 4096;
}

/** fls(): the position of the highest set bit (fls(4) = 3). */
function fls(n: number): number {
  return 32 - Math.clz32(n);
}

export function startKernel(opts: KernelOptions = {}): KernelInternals {
  const ncpus = opts.cpus ?? 4;
  const boot = bootKernel({ ...opts, cpus: ncpus });
  const sdo = opts.shootdown ?? {};
  const ho = opts.heap ?? {};
  const policy = shootdownPolicy(sdo);
  const arenas = createArenas(boot, ho); // 1. arenas
  const areas = allocKernelAreas(arenas.kpages, ncpus); // 2. per-CPU area and kernel data
  const smp = startShootdown(boot, arenas, areas, sdo, policy); // 3. PCIDs, TLB state, shootdowns
  const heap = startHeap(boot, arenas, areas, smp.shootdown, ho, ncpus); // 4. heap and processes
  const processes = startProcesses(boot, arenas.kmem, heap, smp, policy.mode);
  return assembleKernel(boot, ncpus, arenas, smp, heap, processes);
}

/** The shootdown protocol chosen by the options (validated; thrown as BAD_OPTION). */
interface ShootdownPolicy {
  mode: "ipi" | "invlpgb";
  requests: "percpu" | "alloc";
  ceiling: number;
}

function shootdownPolicy(sdo: ShootdownOptions): ShootdownPolicy {
  const mode = sdo.mode ?? "ipi";
  if (mode !== "ipi" && mode !== "invlpgb")
    fail("BAD_OPTION", `shootdown mode must be ipi or invlpgb (got ${mode})`);
  const requests = sdo.requests ?? "percpu";
  if (requests !== "percpu" && requests !== "alloc")
    fail("BAD_OPTION", `shootdown requests must be percpu or alloc (got ${requests})`);
  const ceiling = sdo.ceiling ?? 33;
  if (!Number.isInteger(ceiling) || ceiling < 0)
    fail("BAD_OPTION", `flush ceiling must be a whole number (got ${ceiling})`);
  return { mode, requests, ceiling };
}

/** Phase 1's products: the kernel's view of memory, the two arenas, page allocation and the pool. */
interface Arenas {
  kmem: KernelMem;
  vmArena: VaArena;
  kpages: KernelPages;
  pool: KernelPool | null;
}

/** 1. The kernel heap region and the vmalloc arena (and the kernel pool, if the kmap has one). */
function createArenas(boot: BootResult, ho: HeapOptions): Arenas {
  const { mapper, layout, machine } = boot;
  const pmm = boot.pmmAllocator;
  const direct = boot.strategy.directMapCoverage();
  const kmem = new KernelMem(boot.current, layout, direct);
  const kheapPages = pagesOption(ho.kheapBytes, GIB, "kheapBytes");
  const vmallocPages = pagesOption(ho.vmallocBytes, GIB, "vmallocBytes");
  const heapArena = new VaArena(
    "kernel heap",
    kmem,
    mapper,
    pmm,
    layout.vmalloc + KHEAP_OFFSET / 4096,
    kheapPages,
  );
  const vmArena = new VaArena("vmalloc", kmem, mapper, pmm, layout.vmalloc, vmallocPages);
  const kpages = new KernelPages(kmem, mapper, pmm, heapArena, machine.counters);
  const pool = boot.strategy.kernelPool ? new KernelPool(kmem, mapper, pmm, machine.counters) : null;
  kpages.pool = pool;
  return { kmem, vmArena, kpages, pool };
}

/** Phase 2's pages: the per-CPU area and the kernel data page. */
interface KernelAreas {
  percpu: number;
  kdata: number;
}

/** 2. The per-CPU area (a power of two of pages) and the kernel data page. */
function allocKernelAreas(kpages: KernelPages, ncpus: number): KernelAreas {
  const pcpuPages = 2 ** Math.ceil(Math.log2(Math.ceil((ncpus * PCPU_BYTES) / 4096)));
  const percpu = kpages.alloc(pcpuPages, true);
  const kdata = kpages.alloc(1, true);
  if (percpu === 0 || kdata === 0) fail("OUT_OF_MEMORY", "no pages for the per-CPU area and kernel data");
  return { percpu, kdata };
}

/** Phase 3's products. */
interface Smp {
  tlbState: TlbState;
  shootdown: Shootdown;
}

/** 3. PCIDs and the TLB state, then the shootdown, installed as the flusher of every kernel region. */
function startShootdown(
  boot: BootResult,
  { kmem, kpages, pool }: Arenas,
  { percpu, kdata }: KernelAreas,
  sdo: ShootdownOptions,
  { mode, requests, ceiling }: ShootdownPolicy,
): Smp {
  const { machine, current: cur, mapper } = boot;
  const counters = machine.counters;
  const tlbState = new TlbState(
    kmem,
    cur,
    machine.cpus,
    percpu,
    kdata + 2048,
    mapper.root,
    {
      pcid: sdo.pcid ?? true,
      lazy: sdo.lazyTlb ?? true,
      broadcast: mode === "invlpgb",
      ignoreGenerations: sdo.faults?.ignoreGenerations === true,
    },
    counters,
  );
  const cost = { ...DEFAULT_COSTS, ...(sdo.cost ?? {}) };
  const ipi = new Ipi(cur, counters, cost);
  const shootdown = new Shootdown(cur, machine.cpus, kmem, tlbState, ipi, counters, {
    mode,
    requests,
    ceiling,
    cost,
    skipIpiTo: sdo.faults?.skipIpiTo ?? -1,
  });
  kpages.flusher = shootdown;
  if (pool !== null) pool.flusher = shootdown;
  for (const r of boot.regions) r.flusher = shootdown;
  return { tlbState, shootdown };
}

/** 4a. The heap (owner table, slab caches, vmalloc); the alloc request policy takes records from it. */
function startHeap(
  boot: BootResult,
  { kmem, kpages, vmArena }: Arenas,
  { kdata }: KernelAreas,
  shootdown: Shootdown,
  ho: HeapOptions,
  ncpus: number,
): Heap {
  if (SIZE_CLASSES.length * 64 > 2048) fail("KERNEL_BUG", "cache descriptors overflow the kernel data page");
  const heap = new Heap(
    {
      kmem,
      kpages,
      mapper: boot.mapper,
      pmm: boot.pmmAllocator,
      vmArena,
      counters: boot.machine.counters,
      flusher: shootdown,
      descs: kdata,
    },
    {
      redZones: ho.redZones ?? true,
      minPartial: ho.minPartial ?? 2,
      lazyPurge: ho.lazyPurge ?? true,
      lazyMaxPages: ho.lazyMaxPages ?? 8192 * fls(ncpus),
    },
  );
  shootdown.allocator = heap;
  return heap;
}

/** 4b. The process manager. */
function startProcesses(
  boot: BootResult,
  kmem: KernelMem,
  heap: Heap,
  { tlbState, shootdown }: Smp,
  mode: ShootdownPolicy["mode"],
): ProcessManager {
  return new ProcessManager({
    cur: boot.current,
    cpus: boot.machine.cpus,
    kmem,
    heap,
    pmm: boot.pmmAllocator,
    port: boot.pmmPort,
    kernelMapper: boot.mapper,
    state: tlbState,
    shootdown,
    levels: boot.levels,
    counters: boot.machine.counters,
    recursiveSlot: boot.recursiveSlots[0] ?? -1,
    broadcast: mode === "invlpgb",
  });
}

/**
 * A copy of a booted kernel and its machine, to run a workload on while `k` stays as it was: the state
 * a fresh boot with the same options reaches (boot is deterministic), at the cost of copying its RAM
 * and registers instead of booting again. Throws `CloneRefused` when some part cannot be copied (a
 * design loaded from the user's file may keep closures); the caller then boots afresh.
 */
export function forkKernel(k: KernelInternals, opts: Omit<CloneOptions, "shared"> = {}): KernelInternals {
  const parts = {
    boot: k.boot,
    kmem: k.kmem,
    kpages: k.kpages,
    pool: k.pool,
    tlbState: k.tlbState,
    shootdown: k.shootdown,
    heap: k.heap,
    processes: k.processes,
  };
  // The design is its description (name, sizing, constructor): configuration, shared as it is.
  const c = cloneGraph(parts, { ...opts, shared: [k.boot.design] });
  return assembleKernel(
    c.boot,
    k.cpus.length,
    c,
    { tlbState: c.tlbState, shootdown: c.shootdown },
    c.heap,
    c.processes,
  );
}

/** The running kernel: its parts, and the calls that span them (pmmAlloc, reclaim, run, check). */
function assembleKernel(
  boot: BootResult,
  ncpus: number,
  { kmem, kpages, pool }: Pick<Arenas, "kmem" | "kpages" | "pool">,
  { tlbState, shootdown }: Smp,
  heap: Heap,
  processes: ProcessManager,
): KernelInternals {
  const { machine, current: cur, mapper } = boot;
  const pmm = boot.pmmAllocator;
  return {
    boot,
    machine,
    current: cur,
    cpus: machine.cpus,
    pmm,
    mapper,
    shootdown,
    heap,
    processes,
    counters: machine.counters,
    tlbState,
    kmem,
    kpages,
    pool,
    pmmAlloc: (order, c) => {
      const pfn = pmm.alloc(order, c);
      if (pfn >= 0 || pool === null || pool.rebalance() === 0) return pfn;
      return pmm.alloc(order, c);
    },
    reclaim: () => (pool === null ? 0 : pool.rebalance()),
    run: (cpu, fn) => {
      if (!Number.isInteger(cpu) || cpu < 0 || cpu >= ncpus)
        fail("BAD_CPU", `CPU ${cpu} does not exist (0..${ncpus - 1})`);
      return cur.run(cpu, fn);
    },
    check: () => checkKernel(boot, heap, pool, processes),
  };
}

/**
 * Kernel.check: every part's invariant checker, the kernel page tables, and no stale TLB entry used.
 * The checkers are observers: the counters their reads moved are restored.
 */
function checkKernel(boot: BootResult, heap: Heap, pool: KernelPool | null, processes: ProcessManager): void {
  const { machine, mapper } = boot;
  const pmm = boot.pmmAllocator;
  const counters = machine.counters;
  const snap = { ...counters.snapshot() };
  heap.check();
  pool?.check();
  processes.check();
  pmm.check();
  if (mapper.pending !== 0) fail("KERNEL_INVARIANT", `${mapper.pending} kernel flush tokens outstanding`);
  const tree = checkTree(machine.mem, mapper.root, boot.levels, {
    maxPhysAddrBits: machine.mem.maxPhysAddrBits,
    recursiveSlots: boot.recursiveSlots,
  });
  if (tree.violations.length > 0) fail("KERNEL_INVARIANT", `kernel page tables: ${tree.violations[0]}`);
  const stale = machine.staleReports();
  if (stale.length > 0) {
    const s = stale[0];
    fail(
      "STALE_TLB",
      `CPU ${s.cpu} used a stale TLB entry for page 0x${s.vpn.toString(16)} (PCID ${s.pcid}): ${s.reason}`,
      { report: s },
    );
  }
  // The checkers are observers: restore whatever their reads counted (pmm.check reads through the port).
  Object.assign(counters, snap);
}
