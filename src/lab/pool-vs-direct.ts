/**
 * `pool` versus `direct` (issue 8): do a kernel heap in its own 2 MiB chunks and a page cache share
 * the PMM better than slab pages scattered through the direct map? And what does each cost in IPIs?
 *
 * The fragmentation workload, run on both strategies from the same seed (same boot, same PMM, same
 * stream of decisions):
 *
 *   1. fill: page-cache pages (order 0, straight from the PMM through `kernel.pmmAlloc`) until they
 *      hold `cacheFraction` of the frames free after the kernel started; one kernel-heap operation
 *      every `cacheFillPerHeapOp` cache pages (kmalloc/kfree churn, sizes from heap-churn.ts's
 *      synthetic mix without its vmalloc row, from random CPUs, the live set held near `heapLive`);
 *   2. burst: `burst` more kmallocs (a dentry/inode storm: `find /`), then those objects freed in random
 *      order (the dentry cache shrunk), while the cache stays (under `pool` the chunks this grew stay mapped until the PMM starves);
 *   3. turnover: `turnover` rounds of one cache page allocated and one heap op; the cache grows into
 *      all free memory, and when the PMM refuses (after the pool's rebalance, under `pool`) a cache page
 *      chosen at random is evicted and the allocation retried (reclaim). A kmalloc that fails evicts
 *      16 cache pages and retries once (direct reclaim), under both strategies;
 *   4. drop caches: every cache page freed in random order (the heap keeps running, one op per
 *      `cacheFillPerHeapOp` frees);
 *   5. high-order requests: `highAttempts` order-9 (2 MiB) requests through `kernel.pmmAlloc`, each
 *      kept when it succeeds.
 *
 * Under `direct` a new slab's pages come from wherever the buddy has a free frame: in the middle of
 * the page cache, so after the drop each surviving slab pins its 2 MiB block. Under `pool` slab pages
 * come from the pool's 2 MiB chunks (one order-9 block each, or 512 scattered frames when the PMM has
 * no order-9 block left: the pool's weak spot, counted as `chunks4k`), and when the PMM starves the
 * pool gives its fully free chunks back with one shootdown (a rebalance).
 *
 * Figures per strategy: order-9 successes, the largest free order and free frames before the requests,
 * IPIs per kfree (measured around each kfree), IPIs per rebalance (measured around each `pmmAlloc`,
 * where rebalances happen), chunks of each kind, kmalloc failures. All counters: deterministic.
 */
import { type KernelInternals, type KernelOptions, startKernel } from "../kernel/kernel.ts";
import { Rng } from "../machine/rng.ts";
import { pickHeapSize } from "./workloads/heap-churn.ts";
import { probeLargestOrder } from "./workloads/interface.ts";

export interface PoolVsDirectOptions {
  seed?: number;
  map?: string;
  /** Linux's mem= for the boot (default 128 MiB: 64 pageblocks of 2 MiB). */
  mem?: number;
  pmm?: string;
  cpus?: number;
  /** Share of the frames free after start that the page cache fills (default 0.85). */
  cacheFraction?: number;
  /** Cache pages per heap operation during fill and drop (default 8). */
  cacheFillPerHeapOp?: number;
  /** kmallocs in the burst (default 12000), all freed again. */
  burst?: number;
  /** Rounds of cache turnover (default 8000). */
  turnover?: number;
  /** Live kmalloc objects the heap churns around (default 3000). */
  heapLive?: number;
  /** Order-9 requests at the end (default 64). */
  highAttempts?: number;
}

export interface StrategyFigures {
  kmap: string;
  cachePagesPeak: number;
  heapLiveAtEnd: number;
  kmallocs: number;
  kmallocFailures: number;
  /** kmallocs that failed once and were retried after evicting 16 cache pages. */
  kmallocReclaims: number;
  /** Cache pages evicted because the PMM refused a cache page during turnover. */
  cacheEvictions: number;
  kfrees: number;
  ipisInKfree: number;
  ipisPerKfree: number;
  slabPagesAllocated: number;
  slabPagesFreed: number;
  /** Pool only (0 under direct): chunks backed by one 2 MiB leaf / by 512 4 KiB frames, rebalances. */
  chunks2m: number;
  chunks4k: number;
  rebalances: number;
  ipisInRebalances: number;
  ipisPerRebalance: number;
  returnedBytes: number;
  /** Before the order-9 requests (after the cache drop): free frames and the largest free order. */
  freeFramesBeforeHigh: number;
  largestFreeOrderBeforeHigh: number;
  /** 2 MiB blocks wholly free in the PMM before the requests (from its free-block walk). */
  freeBlocks2mBeforeHigh: number;
  order9Attempts: number;
  order9Successes: number;
  order9SuccessPercent: number;
  /** Order-9 successes that needed a rebalance first (pool). */
  order9AfterRebalance: number;
}

export interface PoolVsDirectResult {
  options: Required<PoolVsDirectOptions>;
  direct: StrategyFigures;
  pool: StrategyFigures;
}

export const POOL_VS_DIRECT_DEFAULTS: Required<PoolVsDirectOptions> = {
  seed: 8,
  map: "qemu:256M",
  mem: 128 * 2 ** 20,
  pmm: "buddy",
  cpus: 4,
  cacheFraction: 0.85,
  cacheFillPerHeapOp: 8,
  burst: 12_000,
  turnover: 8000,
  heapLive: 3000,
  highAttempts: 64,
};

/** A kmalloc size from heap-churn's mix, its vmalloc row re-drawn (vmalloc does not use the pool). */
function kmallocSize(rng: Rng): number {
  for (;;) {
    const s = pickHeapSize(rng);
    if (s > 0) return s;
  }
}

/** Naturally aligned free blocks of `span` frames, from the PMM's free blocks merged into runs. */
function freeAlignedBlocks(k: KernelInternals, span: number): number {
  const runs: number[] = [];
  k.pmm.forEachFree?.((pfn, count) => {
    runs.push(pfn, count);
  });
  const idx = Array.from({ length: runs.length / 2 }, (_, i) => i).sort((a, b) => runs[2 * a] - runs[2 * b]);
  let blocks = 0;
  let s = -1;
  let e = -1;
  const close = () => {
    if (s < 0) return;
    const first = Math.ceil(s / span) * span;
    if (first + span <= e) blocks += Math.floor((e - first) / span);
  };
  for (const i of idx) {
    const p = runs[2 * i];
    const n = runs[2 * i + 1];
    if (p === e) e += n;
    else {
      close();
      s = p;
      e = p + n;
    }
  }
  close();
  return blocks;
}

class Run {
  readonly rng: Rng;
  readonly c;
  live = new Float64Array(1 << 14);
  nLive = 0;
  cache: Int32Array;
  nCache = 0;
  f: StrategyFigures;

  constructor(
    readonly k: KernelInternals,
    readonly o: Required<PoolVsDirectOptions>,
    kmap: string,
  ) {
    this.rng = new Rng(o.seed);
    this.c = k.counters;
    this.cache = new Int32Array(k.pmm.stats().freeFrames + 1);
    this.f = {
      kmap,
      cachePagesPeak: 0,
      heapLiveAtEnd: 0,
      kmallocs: 0,
      kmallocFailures: 0,
      kmallocReclaims: 0,
      cacheEvictions: 0,
      kfrees: 0,
      ipisInKfree: 0,
      ipisPerKfree: 0,
      slabPagesAllocated: 0,
      slabPagesFreed: 0,
      chunks2m: 0,
      chunks4k: 0,
      rebalances: 0,
      ipisInRebalances: 0,
      ipisPerRebalance: 0,
      returnedBytes: 0,
      freeFramesBeforeHigh: 0,
      largestFreeOrderBeforeHigh: 0,
      freeBlocks2mBeforeHigh: 0,
      order9Attempts: 0,
      order9Successes: 0,
      order9SuccessPercent: 0,
      order9AfterRebalance: 0,
    };
  }

  /** `kernel.pmmAlloc` on a random CPU, charging its IPIs to rebalances. */
  pmmAlloc(order: number): number {
    const k = this.k;
    const before = this.c.ipis;
    const pfn = k.run(this.rng.below(k.cpus.length), () => k.pmmAlloc(order));
    this.f.ipisInRebalances += this.c.ipis - before;
    return pfn;
  }

  cacheAlloc(): boolean {
    const pfn = this.pmmAlloc(0);
    if (pfn < 0) return false;
    this.cache[this.nCache++] = pfn;
    if (this.nCache > this.f.cachePagesPeak) this.f.cachePagesPeak = this.nCache;
    return true;
  }

  cacheFreeRandom(): void {
    const i = this.rng.below(this.nCache);
    this.k.pmm.free(this.cache[i], 0);
    this.cache[i] = this.cache[--this.nCache];
  }

  /** One kmalloc or kfree: below the live target allocate, above free, around it a coin. */
  heapOp(target = this.o.heapLive): void {
    const { k, rng, f } = this;
    const cpu = rng.below(k.cpus.length);
    const grow = this.nLive < target * 0.9 || (this.nLive < target * 1.1 && rng.below(2) === 0);
    if (grow || this.nLive === 0) {
      const size = kmallocSize(rng);
      f.kmallocs++;
      let p = k.run(cpu, () => k.heap.kmalloc(size));
      if (p === 0 && this.nCache > 0) {
        for (let i = 0; i < 16 && this.nCache > 0; i++) this.cacheFreeRandom();
        f.kmallocReclaims++;
        p = k.run(cpu, () => k.heap.kmalloc(size));
      }
      if (p === 0) {
        f.kmallocFailures++;
        return;
      }
      k.run(cpu, () => k.heap.write32(p, 0, size)); // a constructor's first store
      this.live[this.nLive++] = p;
      return;
    }
    this.kfreeAt(rng.below(this.nLive), cpu);
  }

  /** kfree live object j on `cpu`, charging the IPIs it causes to kfree. */
  kfreeAt(j: number, cpu: number): void {
    const { k, f } = this;
    const p = this.live[j];
    this.live[j] = this.live[--this.nLive];
    const before = this.c.ipis;
    k.run(cpu, () => k.heap.kfree(p));
    f.ipisInKfree += this.c.ipis - before;
    f.kfrees++;
  }

  run(): StrategyFigures {
    const { k, o, f } = this;
    const target = Math.floor(k.pmm.stats().freeFrames * o.cacheFraction);
    let n = 0;
    while (this.nCache < target && this.cacheAlloc()) if (++n % o.cacheFillPerHeapOp === 0) this.heapOp();
    const base = this.nLive;
    while (this.nLive < base + o.burst && f.kmallocs < 1e7) this.heapOp(Number.POSITIVE_INFINITY);
    while (this.nLive > base)
      this.kfreeAt(base + this.rng.below(this.nLive - base), this.rng.below(k.cpus.length));
    for (let i = 0; i < o.turnover; i++) {
      if (!this.cacheAlloc() && this.nCache > 0) {
        this.cacheFreeRandom();
        f.cacheEvictions++;
        this.cacheAlloc();
      }
      this.heapOp();
    }
    n = 0;
    while (this.nCache > 0) {
      this.cacheFreeRandom();
      if (++n % o.cacheFillPerHeapOp === 0) this.heapOp();
    }
    const st = k.pmm.stats();
    f.freeFramesBeforeHigh = st.freeFrames;
    f.largestFreeOrderBeforeHigh = probeLargestOrder(this.c, k.pmm);
    f.freeBlocks2mBeforeHigh = freeAlignedBlocks(k, 512);
    for (let i = 0; i < o.highAttempts; i++) {
      const r = this.c.poolRebalances;
      f.order9Attempts++;
      if (this.pmmAlloc(9) >= 0) {
        f.order9Successes++;
        if (this.c.poolRebalances !== r) f.order9AfterRebalance++;
      }
    }
    const c = this.c;
    f.heapLiveAtEnd = this.nLive;
    f.ipisPerKfree = f.kfrees === 0 ? 0 : f.ipisInKfree / f.kfrees;
    f.slabPagesAllocated = c.slabPagesAllocated;
    f.slabPagesFreed = c.slabPagesFreed;
    f.chunks2m = c.poolChunks2m;
    f.chunks4k = c.poolChunks4k;
    f.rebalances = c.poolRebalances;
    f.ipisPerRebalance = f.rebalances === 0 ? 0 : f.ipisInRebalances / f.rebalances;
    f.returnedBytes = c.poolReturnedBytes;
    f.order9SuccessPercent = Math.round((1000 * f.order9Successes) / f.order9Attempts) / 10;
    return f;
  }
}

function runOne(kmap: string, o: Required<PoolVsDirectOptions>, check: boolean): StrategyFigures {
  const opts: KernelOptions = {
    map: o.map,
    mem: o.mem,
    pmm: o.pmm,
    kmap,
    cpus: o.cpus,
    seed: o.seed,
    heap: { redZones: false },
  };
  const k = startKernel(opts);
  const f = new Run(k, o, kmap).run();
  if (check) k.check();
  return f;
}

/** Both strategies, same seed. `check`: run every checker at the end of each run (tests). */
export function measurePoolVsDirect(opts: PoolVsDirectOptions = {}, check = false): PoolVsDirectResult {
  const o = { ...POOL_VS_DIRECT_DEFAULTS, ...opts };
  return { options: o, direct: runOne("direct", o, check), pool: runOne("pool", o, check) };
}

/** The figures as a small table (for the bench and the final report). */
export function formatPoolVsDirect(r: PoolVsDirectResult): string {
  const rows: [string, (f: StrategyFigures) => string][] = [
    ["order-9 successes", (f) => `${f.order9Successes}/${f.order9Attempts} (${f.order9SuccessPercent}%)`],
    ["  of which after a rebalance", (f) => `${f.order9AfterRebalance}`],
    ["largest free order before", (f) => `${f.largestFreeOrderBeforeHigh}`],
    ["free 2 MiB blocks before", (f) => `${f.freeBlocks2mBeforeHigh}`],
    ["free frames before", (f) => `${f.freeFramesBeforeHigh}`],
    [
      "kfrees / IPIs in kfree",
      (f) => `${f.kfrees} / ${f.ipisInKfree} (${f.ipisPerKfree.toFixed(4)} per kfree)`,
    ],
    ["kmallocs (reclaims, failed)", (f) => `${f.kmallocs} (${f.kmallocReclaims}, ${f.kmallocFailures})`],
    ["cache peak / evictions", (f) => `${f.cachePagesPeak} / ${f.cacheEvictions}`],
    ["slab pages alloc/freed", (f) => `${f.slabPagesAllocated}/${f.slabPagesFreed}`],
    ["pool chunks 2M / 4K", (f) => `${f.chunks2m} / ${f.chunks4k}`],
    ["rebalances / IPIs each", (f) => `${f.rebalances} / ${f.ipisPerRebalance.toFixed(1)}`],
    ["returned to the PMM", (f) => `${(f.returnedBytes / 2 ** 20).toFixed(0)} MiB`],
  ];
  const w = Math.max(...rows.map((x) => x[0].length));
  const lines = [`${"".padEnd(w)}  ${"direct".padEnd(28)}pool`];
  for (const [name, fn] of rows) lines.push(`${name.padEnd(w)}  ${fn(r.direct).padEnd(28)}${fn(r.pool)}`);
  return lines.join("\n");
}
