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

/** The workload's state: the frames it holds, in order, and what it counted. */
interface Cache {
  k: LabKernel;
  rng: Rng;
  sample: (p: SamplePoint) => void;
  every: number;
  cache: Int32Array; // page cache in allocation (LRU) order
  kernel: Int32Array;
  nCache: number;
  nKernel: number;
  head: number; // oldest cache page still held
  op: number;
  ops: Record<string, number>;
  failed: Record<string, number>;
  highHeld: { pfn: number; order: number }[];
}

function heldFrames(st: Cache): number {
  return st.nCache - st.head + st.nKernel + st.highHeld.reduce((s, h) => s + 2 ** h.order, 0);
}

/** One operation done: a sample every `every` operations. */
function tick(st: Cache): void {
  st.op++;
  if (st.op % st.every === 0)
    st.sample({
      op: st.op,
      largestOrder: probeLargestOrder(st.k.counters, st.k.pmm),
      heldFrames: heldFrames(st),
    });
}

/** 1. fill: order-0 allocations up to `target` frames, 1 in 16 unmovable kernel memory, the rest cache. */
function fill(st: Cache, target: number): void {
  const a = st.k.pmm;
  while (st.nCache + st.nKernel < target) {
    const unmovable = st.rng.below(16) === 0;
    st.ops.alloc++;
    const p = unmovable ? a.alloc(0) : a.alloc(0, MOVABLE);
    if (p < 0) {
      bump(st.failed, "fill");
      tick(st);
      break;
    }
    if (unmovable) st.kernel[st.nKernel++] = p;
    else st.cache[st.nCache++] = p;
    tick(st);
  }
}

/** 3. high-order requests: each kept when it succeeds; successes per order go to `info`. */
function highOrderRequests(st: Cache, info: Record<string, number>): void {
  const a = st.k.pmm;
  for (const h of HIGH) {
    let ok = 0;
    for (let i = 0; i < h.attempts; i++) {
      st.ops.highAlloc++;
      const p = st.rng.below(2) === 0 ? a.alloc(h.order, MOVABLE) : a.alloc(h.order);
      if (p >= 0) {
        ok++;
        st.highHeld.push({ pfn: p, order: h.order });
      } else bump(st.failed, `order${h.order}`);
      tick(st);
    }
    info[`order${h.order}Successes`] = ok;
    info[`order${h.order}Attempts`] = h.attempts;
    info[`order${h.order}SuccessPercent`] = Math.round((1000 * ok) / h.attempts) / 10;
  }
}

/** With --drain: free the high-order blocks, the cache still held, then the kernel memory. */
function drainHeld(st: Cache): void {
  const a = st.k.pmm;
  for (const h of st.highHeld) {
    st.ops.free++;
    a.free(h.pfn, h.order);
  }
  st.highHeld.length = 0;
  while (st.head < st.nCache) {
    st.ops.free++;
    a.free(st.cache[st.head++], 0);
  }
  while (st.nKernel > 0) {
    st.ops.free++;
    a.free(st.kernel[--st.nKernel], 0);
  }
}

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
    const st: Cache = {
      k,
      rng,
      sample,
      every: Math.max(1, opts.sampleEvery ?? Math.ceil((target * 1.5 + 128) / 64)),
      cache: new Int32Array(target),
      kernel: new Int32Array(target),
      nCache: 0,
      nKernel: 0,
      head: 0,
      op: 0,
      ops: { alloc: 0, free: 0, highAlloc: 0 },
      failed: {},
      highHeld: [],
    };
    fill(st, target);
    const filled = st.nCache + st.nKernel;
    // 2. reclaim the oldest half of the cache
    const evict = Math.floor(st.nCache / 2);
    for (let i = 0; i < evict; i++) {
      st.ops.free++;
      a.free(st.cache[st.head++], 0);
      tick(st);
    }
    const largestAfterReclaim = probeLargestOrder(c, a);
    const info: Record<string, number> = {
      filledFrames: filled,
      kernelFrames: st.nKernel,
      evictedFrames: evict,
      largestOrderAfterReclaim: largestAfterReclaim,
    };
    highOrderRequests(st, info);
    sample({ op: st.op, largestOrder: probeLargestOrder(c, a), heldFrames: heldFrames(st) });
    if (opts.drain) drainHeld(st);
    return { ops: st.ops, failed: st.failed, info, notes: [] };
  },
};
