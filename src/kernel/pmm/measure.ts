/**
 * The measures every PMM design reports, computed the same way for all of them on a layout,
 * deterministically (seeded RNG; no host time):
 *
 *   - metadata: standing bytes (placed at creation), per GiB of managed RAM and as a percentage;
 *     transient bytes (frames holding the allocator's own structures) after boot and at the peak seen;
 *   - memory references (32-bit reads + writes through the port, from `Counters`) per order-0 alloc and
 *     per order-0 free, averaged over a batch in the state right after boot;
 *   - the largest order that still succeeds, after boot and after churn;
 *   - Linux's unusable free space index per order (mm/vmstat.c `unusable_free_index`):
 *     (free_pages - sum_{o >= j} nr_free[o] * 2^o) / free_pages, after churn (0 = every free frame is in
 *     a block of order >= j, 1 = none is);
 *   - the success rate of high-order requests after churn: attempts = min(64, free frames / 2^k) blocks
 *     of order k (kept while probing), successes / attempts.
 *
 * Churn: fill to `fill` (70 %) of the free frames with orders 0..3 (weights 8:4:2:1; order 0 only for
 * designs without contiguity; 3/4 of requests movable, 1/4 unmovable kernel allocations), then `churnSteps` random alloc/free steps around that level, then free a
 * random half of what is held: the fragmented state that a long-running kernel sees.
 */
import type { Counters } from "../../machine/counters.ts";
import { Rng } from "../../machine/rng.ts";
import { MAX_ORDER } from "./common.ts";
import type { AllocConstraints, FrameAllocator, FrameRange, PmmDesign, PmmLayout } from "./interface.ts";
import { bringUp } from "./setup.ts";

export interface MeasureOptions {
  seed?: number;
  reserved?: FrameRange[];
  fill?: number;
  churnSteps?: number;
  /** Orders whose high-order success rate is reported (default 4 and 9). */
  highOrders?: number[];
}

export interface HighOrderRate {
  order: number;
  attempts: number;
  successes: number;
  rate: number;
}

export interface PmmMeasures {
  design: string;
  /** Frames given to the allocator, and free right after bring-up (before the measures). */
  managedFrames: number;
  freeFramesAfterBoot: number;
  summary: string;
  maxOrder: number;
  managedBytes: number;
  metadataBytes: number;
  metadataPerGiB: number;
  metadataPercent: number;
  transientBytesBoot: number;
  transientBytesPeak: number;
  refsPerAlloc: number;
  refsPerFree: number;
  largestOrderBoot: number;
  largestOrderChurn: number;
  largestFreeRunChurn: number;
  /** Unusable free space index per order 0..10, after churn, as a fraction 0..1. */
  unusableIndex: number[];
  highOrder: HighOrderRate[];
  /** `/proc/buddyinfo` lines after churn (buddy designs). */
  buddyinfo: string[];
}

/** Linux's unusable_free_index for order j, as a fraction (Linux prints it x1000 as 0.xxx). */
export function unusableIndex(freeByOrder: number[], j: number): number {
  let free = 0;
  let suitable = 0;
  for (let o = 0; o < freeByOrder.length; o++) {
    free += freeByOrder[o] * 2 ** o;
    if (o >= j) suitable += freeByOrder[o] * 2 ** o;
  }
  return free === 0 ? 0 : Math.floor(((free - suitable) * 1000) / free) / 1000;
}

/** The largest order (from maxOrder down) whose allocation succeeds now; the block is freed again. */
export function largestOrder(a: FrameAllocator): number {
  for (let k = a.maxOrder ?? MAX_ORDER; k >= 0; k--) {
    const p = a.alloc(k);
    if (p >= 0) {
      a.free(p, k);
      return k;
    }
  }
  return -1;
}

/** Bring `design` up alone on `layout` (setup.ts, for unit tests and validation) and measure it. */
export function measure(design: PmmDesign, layout: PmmLayout, opts: MeasureOptions = {}): PmmMeasures {
  const up = bringUp(design, layout, { reserved: opts.reserved });
  return measureAllocator(design, up.alloc, up.counters, opts);
}

/**
 * Measure an allocator that is already up (as `pagelab pmm` does on each design's booted kernel):
 * references are counted on `c`, the machine's counters, through whatever port the allocator uses.
 */
export function measureAllocator(
  design: PmmDesign,
  a: FrameAllocator,
  c: Counters,
  opts: MeasureOptions = {},
): PmmMeasures {
  const rng = new Rng(opts.seed ?? 42);
  const boot = a.stats();
  const refs = refsPerOp(a, c, boot.freeFrames);
  const largestBoot = largestOrder(a);
  const filledTransient = churn(a, rng, boot.freeFrames, opts);
  const churned = a.stats();
  const transientPeak = Math.max(boot.transientBytes, filledTransient, churned.transientBytes);
  const unusable: number[] = [];
  for (let j = 0; j <= MAX_ORDER; j++) unusable.push(unusableIndex(churned.freeByOrder, j));
  const buddyinfo = a.buddyinfo?.() ?? [];
  const largestChurn = largestOrder(a);
  const highOrder = (opts.highOrders ?? [4, 9]).map((k) => highOrderRate(a, k, churned.freeFrames));

  const managedBytes = boot.managedFrames * 4096;
  return {
    design: design.name,
    managedFrames: boot.managedFrames,
    freeFramesAfterBoot: boot.freeFrames,
    summary: design.summary,
    maxOrder: a.maxOrder ?? MAX_ORDER,
    managedBytes,
    metadataBytes: boot.metadataBytes,
    metadataPerGiB: managedBytes === 0 ? 0 : boot.metadataBytes / (managedBytes / 2 ** 30),
    metadataPercent: managedBytes === 0 ? 0 : (100 * boot.metadataBytes) / managedBytes,
    transientBytesBoot: boot.transientBytes,
    transientBytesPeak: transientPeak,
    refsPerAlloc: refs.alloc,
    refsPerFree: refs.free,
    largestOrderBoot: largestBoot,
    largestOrderChurn: largestChurn,
    largestFreeRunChurn: churned.largestFreeRun,
    unusableIndex: unusable,
    highOrder,
    buddyinfo,
  };
}

/**
 * References (reads + writes counted on `c`) per order-0 alloc and per order-0 free: a batch of up to
 * 1000 allocations from the state right after boot, then their frees in reverse order.
 */
function refsPerOp(a: FrameAllocator, c: Counters, freeFrames: number): { alloc: number; free: number } {
  const batch = Math.min(1000, Math.floor(freeFrames / 2));
  const got: number[] = [];
  let r0 = c.memReads + c.memWrites;
  for (let i = 0; i < batch; i++) got.push(a.alloc(0));
  const alloc = (c.memReads + c.memWrites - r0) / Math.max(batch, 1);
  r0 = c.memReads + c.memWrites;
  for (let i = batch - 1; i >= 0; i--) a.free(got[i], 0);
  const free = (c.memReads + c.memWrites - r0) / Math.max(batch, 1);
  return { alloc, free };
}

/** Churn's state: the allocator, the RNG, and the blocks held (parallel pfn and order arrays, total frames). */
interface Held {
  a: FrameAllocator;
  rng: Rng;
  movable: AllocConstraints;
  pfn: number[];
  ord: number[];
  frames: number;
}

/** Allocate a block of order k (1 in 4 unmovable, else movable) and hold it; false if refused. */
function take(h: Held, k: number): boolean {
  const p = h.rng.below(4) === 0 ? h.a.alloc(k) : h.a.alloc(k, h.movable);
  if (p < 0) return false;
  h.pfn.push(p);
  h.ord.push(k);
  h.frames += 2 ** k;
  return true;
}

/** Free held block i (the last one takes its place). */
function drop(h: Held, i: number): void {
  h.a.free(h.pfn[i], h.ord[i]);
  h.frames -= 2 ** h.ord[i];
  h.pfn[i] = h.pfn[h.pfn.length - 1];
  h.ord[i] = h.ord[h.ord.length - 1];
  h.pfn.pop();
  h.ord.pop();
}

/** An order 0..maxSmall, weighted 8:4:2:1 (orders above maxSmall fold into it). */
function pickOrder(rng: Rng, maxSmall: number): number {
  if (maxSmall === 0) return 0;
  const x = rng.below(15);
  return Math.min(maxSmall, x < 8 ? 0 : x < 12 ? 1 : x < 14 ? 2 : 3);
}

/**
 * Churn (see the header): fill, random steps around the fill level, free a random half of what is
 * held. Returns the transient metadata bytes seen when full.
 */
function churn(a: FrameAllocator, rng: Rng, freeFrames: number, opts: MeasureOptions): number {
  const maxSmall = Math.min(3, a.maxOrder ?? MAX_ORDER);
  const h: Held = { a, rng, movable: { mobility: "movable" }, pfn: [], ord: [], frames: 0 };
  const target = Math.floor(freeFrames * (opts.fill ?? 0.7));
  // A design may refuse some orders outright (large-stacks serves 0, 9 and 18 only): a refused order
  // falls back to a single frame, and the fill stops only when even that fails.
  while (h.frames < target) {
    const k = pickOrder(rng, maxSmall);
    if (!take(h, k) && (k === 0 || !take(h, 0))) break;
  }
  const filledTransient = a.stats().transientBytes;
  const steps = opts.churnSteps ?? 50_000;
  for (let s = 0; s < steps; s++) {
    if (h.pfn.length > 0 && (h.frames >= target || rng.below(2) === 0)) drop(h, rng.below(h.pfn.length));
    else take(h, pickOrder(rng, maxSmall));
  }
  for (let i = h.pfn.length - 1; i >= 0; i--) if (rng.below(2) === 0) drop(h, i);
  return filledTransient;
}

/**
 * High-order success rate: min(64, free frames / 2^k) requests of order k, every success kept until
 * the probe ends (then freed); no request at all for an order above the design's maximum.
 */
function highOrderRate(a: FrameAllocator, k: number, freeFrames: number): HighOrderRate {
  const attempts = Math.min(64, Math.floor(freeFrames / 2 ** k));
  const probe: number[] = [];
  if (k <= (a.maxOrder ?? MAX_ORDER)) {
    for (let i = 0; i < attempts; i++) {
      const p = a.alloc(k);
      if (p >= 0) probe.push(p);
    }
  }
  for (const p of probe) a.free(p, k);
  return {
    order: k,
    attempts,
    successes: probe.length,
    rate: attempts === 0 ? 0 : probe.length / attempts,
  };
}
