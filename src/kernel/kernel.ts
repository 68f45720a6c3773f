/**
 * `startKernel`: boot (src/lab/boot.ts) with N CPUs (default 4), then bring up what the running kernel
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
import { fail } from "../errors.ts";
import { bootKernel } from "./boot/index.ts";
import { checkTree } from "../machine/x86/inspect.ts";
import { DEFAULT_COSTS, type Kernel, type KernelOptions } from "./api.ts";
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
  const machine = boot.machine;
  const cur = boot.current;
  const counters = machine.counters;
  const pmm = boot.pmmAllocator;
  const mapper = boot.mapper;
  const layout = boot.layout;
  const sdo = opts.shootdown ?? {};
  const ho = opts.heap ?? {};
  const mode = sdo.mode ?? "ipi";
  if (mode !== "ipi" && mode !== "invlpgb")
    fail("BAD_OPTION", `shootdown mode must be ipi or invlpgb (got ${mode})`);
  const requests = sdo.requests ?? "percpu";
  if (requests !== "percpu" && requests !== "alloc")
    fail("BAD_OPTION", `shootdown requests must be percpu or alloc (got ${requests})`);
  const ceiling = sdo.ceiling ?? 33;
  if (!Number.isInteger(ceiling) || ceiling < 0)
    fail("BAD_OPTION", `flush ceiling must be a whole number (got ${ceiling})`);

  // 1. Arenas.
  const direct = boot.strategy.directMapCoverage();
  const kmem = new KernelMem(cur, layout, direct);
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
  const kpages = new KernelPages(kmem, mapper, pmm, heapArena, counters);
  const pool = boot.strategy.kernelPool ? new KernelPool(kmem, mapper, pmm, counters) : null;
  kpages.pool = pool;

  // 2. Per-CPU area and kernel data.
  const pcpuPages = 2 ** Math.ceil(Math.log2(Math.ceil((ncpus * PCPU_BYTES) / 4096)));
  const percpu = kpages.alloc(pcpuPages, true);
  const kdata = kpages.alloc(1, true);
  if (percpu === 0 || kdata === 0) fail("OUT_OF_MEMORY", "no pages for the per-CPU area and kernel data");

  // 3. PCIDs, TLB state, shootdowns.
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
  for (const r of boot.regions) r.flusher = (f) => shootdown.flushKernelAtomic(f);

  // 4. Heap and processes.
  if (SIZE_CLASSES.length * 64 > 2048) fail("KERNEL_BUG", "cache descriptors overflow the kernel data page");
  const heap = new Heap(
    { kmem, kpages, mapper, pmm, vmArena, counters, flusher: () => shootdown, descs: kdata },
    {
      redZones: ho.redZones ?? true,
      minPartial: ho.minPartial ?? 2,
      lazyPurge: ho.lazyPurge ?? true,
      lazyMaxPages: ho.lazyMaxPages ?? 8192 * fls(ncpus),
    },
  );
  shootdown.allocator = heap;
  const processes = new ProcessManager({
    cur,
    cpus: machine.cpus,
    kmem,
    heap,
    pmm,
    port: boot.pmmPort,
    kernelMapper: mapper,
    state: tlbState,
    shootdown,
    levels: boot.levels,
    counters,
    recursiveSlot: boot.recursiveSlots[0] ?? -1,
    broadcast: mode === "invlpgb",
  });

  const kernel: KernelInternals = {
    boot,
    machine,
    current: cur,
    cpus: machine.cpus,
    pmm,
    mapper,
    shootdown,
    heap,
    processes,
    counters,
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
    check: () => {
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
    },
  };
  return kernel;
}
