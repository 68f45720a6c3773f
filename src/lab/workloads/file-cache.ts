/**
 * File-cache pressure, then high-order requests: the fragmentation argument.
 *
 *   1. fill: order-0 allocations until 90 % of the frames free at the start are taken; 15 of 16 are page
 *      cache (movable), 1 of 16 is kernel memory (unmovable: inodes, dentries, slab pages), interleaved
 *      as they are when a kernel reads files;
 *   2. reclaim: the oldest half of the page cache is evicted, oldest first (an LRU approximation);
 *      the kernel memory stays;
 *   3. high-order requests: 64 order-9 (2 MiB, transparent huge page) then 64 order-4 (64 KiB) requests,
 *      each kept when it succeeds.
 *
 * Half of RAM is free after step 2, yet a design that scattered the unmovable pages among the cache
 * pages has almost no free 2 MiB block: every pageblock is pinned by a few kernel pages. A buddy that
 * groups pageblocks by mobility (buddy-mt, Linux's migrate types) keeps them together, so evicting
 * old cache frees whole pageblocks. Designs without contiguity (stacks) refuse every order above 0.
 *
 * The amount of work follows RAM, not `--ops` (filling memory is the point), so the workload asks
 * for a 512 MiB boot (`bootMem`); `ops` only sets the sampling cadence. Samples of the largest order
 * that would succeed are taken throughout: the "largest successful allocation over time" figure.
 */
import type { AllocConstraints } from "../../kernel/pmm/interface.ts";
import type { Rng } from "../../machine/rng.ts";
import {
  bump,
  checkOps,
  type LabKernel,
  probeLargestOrder,
  type SamplePoint,
  uncounted,
  type Workload,
  type WorkloadOptions,
  type WorkloadResult,
} from "./interface.ts";

const MOVABLE: AllocConstraints = { mobility: "movable" };
const HIGH = [
  { order: 9, attempts: 64 },
  { order: 4, attempts: 64 },
];

export const fileCache: Workload = {
  name: "file-cache",
  defaultOps: 1_000,
  describe:
    "fill 90% of RAM with page cache (1 in 16 pages unmovable kernel memory), evict the oldest half, then ask for 64 order-9 and 64 order-4 blocks",
  bootMem: 512 * 2 ** 20,
  run(k: LabKernel, rng: Rng, opts: WorkloadOptions, sample: (p: SamplePoint) => void): WorkloadResult {
    checkOps(this.name, opts);
    const a = k.pmm;
    const c = k.counters;
    const target = Math.floor(uncounted(c, () => a.stats().freeFrames) * 0.9);
    const every = Math.max(1, opts.sampleEvery ?? Math.ceil((target * 1.5 + 128) / 64));
    const cache = new Int32Array(target); // page cache in allocation (LRU) order
    const kernel = new Int32Array(target);
    let nCache = 0;
    let nKernel = 0;
    let head = 0; // oldest cache page still held
    let op = 0;
    const ops: Record<string, number> = { alloc: 0, free: 0, highAlloc: 0 };
    const failed: Record<string, number> = {};
    const highHeld: { pfn: number; order: number }[] = [];
    const tick = () => {
      op++;
      if (op % every === 0) sample({ op, largestOrder: probeLargestOrder(c, a), heldFrames: heldFrames() });
    };
    const heldFrames = () => nCache - head + nKernel + highHeld.reduce((s, h) => s + 2 ** h.order, 0);

    // 1. fill
    while (nCache + nKernel < target) {
      const unmovable = rng.below(16) === 0;
      ops.alloc++;
      const p = unmovable ? a.alloc(0) : a.alloc(0, MOVABLE);
      if (p < 0) {
        bump(failed, "fill");
        tick();
        break;
      }
      if (unmovable) kernel[nKernel++] = p;
      else cache[nCache++] = p;
      tick();
    }
    const filled = nCache + nKernel;
    // 2. reclaim the oldest half of the cache
    const evict = Math.floor(nCache / 2);
    for (let i = 0; i < evict; i++) {
      ops.free++;
      a.free(cache[head++], 0);
      tick();
    }
    const largestAfterReclaim = probeLargestOrder(c, a);
    // 3. high-order requests
    const info: Record<string, number> = {
      filledFrames: filled,
      kernelFrames: nKernel,
      evictedFrames: evict,
      largestOrderAfterReclaim: largestAfterReclaim,
    };
    for (const h of HIGH) {
      let ok = 0;
      for (let i = 0; i < h.attempts; i++) {
        ops.highAlloc++;
        const p = rng.below(2) === 0 ? a.alloc(h.order, MOVABLE) : a.alloc(h.order);
        if (p >= 0) {
          ok++;
          highHeld.push({ pfn: p, order: h.order });
        } else bump(failed, `order${h.order}`);
        tick();
      }
      info[`order${h.order}Successes`] = ok;
      info[`order${h.order}Attempts`] = h.attempts;
      info[`order${h.order}SuccessPercent`] = Math.round((1000 * ok) / h.attempts) / 10;
    }
    sample({ op, largestOrder: probeLargestOrder(c, a), heldFrames: heldFrames() });
    if (opts.drain) {
      for (const h of highHeld) {
        ops.free++;
        a.free(h.pfn, h.order);
      }
      highHeld.length = 0;
      while (head < nCache) {
        ops.free++;
        a.free(cache[head++], 0);
      }
      while (nKernel > 0) {
        ops.free++;
        a.free(kernel[--nKernel], 0);
      }
    }
    return { ops, failed, info, notes: [] };
  },
};
