/**
 * What every PMM design in this folder shares: order and constraint arithmetic, the typed errors of a
 * bad free, the region table (the "region bases" registers that turn a frame number into an index of a
 * packed per-frame array, so a map of 0-4 GiB plus 128-130 TiB costs metadata for 6 GiB, not 130 TiB),
 * the allocation bitmap of the order-0 designs, and statistics derived from free blocks.
 *
 * Nothing here keeps allocator state in JS beyond registers: the bitmaps live in simulated RAM.
 */
import { bare, blank, cloneable } from "../../machine/clone.ts";
import { framesIn } from "../../firmware/frames.ts";
import { fail, hex } from "../../errors.ts";
import { type PhysPort, readWords } from "../../machine/phys-mem.ts";
import type {
  AllocConstraints,
  FrameAllocator,
  FrameRange,
  HostBytes,
  PmmDesign,
  PmmEnv,
  PmmLayout,
  PmmCounts,
  PmmStats,
  RegionStat,
} from "./interface.ts";

/** Largest buddy order (Linux's MAX_PAGE_ORDER: 4 MiB blocks); stats report orders 0..MAX_ORDER. */
export const MAX_ORDER = 10;
export const NR_ORDERS = MAX_ORDER + 1;
/** Order of 2 MiB and 1 GiB pages in 4 KiB frames. */
export const ORDER_2M = 9;
export const ORDER_1G = 18;
/** "No link" in u32 list fields. */
export const NIL = 0xffffffff;
export const PAGE = 4096;

/** Round bytes up to whole 4 KiB pages (metadata is placed in frames). */
export function pageRound(bytes: number): number {
  return Math.ceil(bytes / PAGE) * PAGE;
}

/** The order in 4 KiB frames of a request, after `pageSize`; throws on a malformed order. */
export function effectiveOrder(order: number, c: AllocConstraints | undefined): number {
  if (!Number.isInteger(order) || order < 0 || order > 52) {
    fail("BAD_ORDER", `order must be an integer from 0 to 52, got ${order}`, { order });
  }
  if (c === undefined || c.pageSize === undefined || c.pageSize === 4096) return order;
  if (c.pageSize === 0x200000) return order + ORDER_2M;
  if (c.pageSize === 0x40000000) return order + ORDER_1G;
  return fail("BAD_PAGE_SIZE", `page size must be 4096, 2 MiB or 1 GiB, got ${c.pageSize}`);
}

/** True when the constraints restrict WHICH frames may be returned (address limit or colour). */
export function isHard(c: AllocConstraints | undefined): boolean {
  return c !== undefined && (c.maxAddr !== undefined || c.colour !== undefined);
}

/** Does the block [pfn, pfn + 2^order) satisfy the hard constraints? */
export function fits(pfn: number, order: number, c: AllocConstraints | undefined, colours: number): boolean {
  if (c === undefined) return true;
  if (c.maxAddr !== undefined && (pfn + 2 ** order) * PAGE > c.maxAddr) return false;
  if (c.colour !== undefined && pfn % colours !== c.colour) return false;
  return true;
}

/** Options of the order-0 designs (stack, stack-pages, freelist). */
export interface CheckedOptions {
  /** Keep the allocation map (1 bit/frame) that catches double and foreign frees (default true). */
  checked?: boolean;
}

/**
 * The design record of an order-0 design whose allocation map (`AllocMap`, its only standing metadata)
 * catches double and foreign frees when `checked`; `NAME-unchecked` is the variant without it.
 */
export function checkedDesign(
  name: string,
  opts: CheckedOptions,
  summary: string,
  make: (env: PmmEnv, layout: PmmLayout, metadataPa: number, checked: boolean) => FrameAllocator,
  hostBytes: (layout: PmmLayout) => HostBytes,
): PmmDesign {
  const checked = opts.checked ?? true;
  return {
    name: checked ? name : `${name}-unchecked`,
    summary,
    metadataBytes: (layout) => (checked ? AllocMap.bytes(layout) : 0),
    create: (env, layout, metadataPa) => make(env, layout, metadataPa, checked),
    hostBytes,
  };
}

/** Frames of usable RAM in a layout. */
export function layoutFrames(layout: PmmLayout): number {
  return framesIn(layout.usable);
}

/** What a stack of frame numbers backs on the host: 8 bytes a free frame (a design's `hostBytes`). */
export function stackHostBytes(layout: PmmLayout): HostBytes {
  return { bytes: layoutFrames(layout) * 8, why: "its stack holds 8 bytes per free frame" };
}

export function popcount32(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (Math.imul((x + (x >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24) & 0xff;
}

export function invariant(design: string, message: string, details: Record<string, unknown> = {}): never {
  return fail("PMM_INVARIANT", `${design}: ${message}`, details);
}

/**
 * A typed error for a bad free. Codes: DOUBLE_FREE (already free), BAD_FREE (never allocated, reserved,
 * metadata, inside a block, or outside usable RAM), MISALIGNED_FREE (pfn not a multiple of 2^order),
 * WRONG_ORDER (the block at pfn was allocated with another order). Thrown before any state changes.
 */
export function badFree(code: string, design: string, pfn: number, order: number, why: string): never {
  return fail(code, `${design}: free(${hex(pfn)}, order ${order}): ${why}`, { pfn, order });
}

/** Validate the frame number and order of a free: integers, order in range, aligned. */
export function checkFreeArgs(design: string, pfn: number, order: number, maxOrder: number): void {
  if (!Number.isInteger(pfn) || pfn < 0) badFree("BAD_FREE", design, pfn, order, "not a frame number");
  if (!Number.isInteger(order) || order < 0 || order > maxOrder) {
    badFree("WRONG_ORDER", design, pfn, order, `this design only hands out orders 0..${maxOrder}`);
  }
  // Order 0 skips the modulo: on a double it is a call to fmod, a third of a stack's free.
  if (order !== 0 && pfn % (1 << order) !== 0) {
    badFree("MISALIGNED_FREE", design, pfn, order, `not aligned to ${2 ** order} frames`);
  }
}

/**
 * The argument checks of an order-0 design's free: a frame number, order 0, in usable RAM. A frame of
 * the region last hit is one range test; anything else takes the full checks, which name what is wrong.
 */
export function checkOrder0Free(design: string, regions: RegionTable, pfn: number, order: number): void {
  if (order === 0 && regions.holdsAtHint(pfn)) return;
  checkFreeArgs(design, pfn, order, 0);
  if (regions.indexOf(pfn) < 0) badFree("BAD_FREE", design, pfn, order, "not in usable RAM");
}

/** Validate the layout: sorted, disjoint, non-empty integer ranges. */
export function checkLayout(layout: PmmLayout): void {
  let prev = -1;
  for (const r of layout.usable) {
    if (!Number.isInteger(r.start) || !Number.isInteger(r.end) || r.start < 0 || r.end <= r.start) {
      fail("BAD_LAYOUT", `usable range [${r.start}, ${r.end}) is empty or not made of frame numbers`);
    }
    if (r.start < prev) fail("BAD_LAYOUT", `usable ranges are not sorted and disjoint at ${hex(r.start)}`);
    prev = r.end;
  }
}

/**
 * The region registers: usable ranges, optionally widened to `align` frames (and merged where the
 * widened ranges touch), with the index of each region's first frame in a packed per-frame array.
 * `slot(pfn)` is that index (or -1 outside every region); lookups remember the last region hit.
 */
export class RegionTable {
  readonly count: number;
  readonly start: number[];
  readonly end: number[];
  readonly base: number[];
  readonly node: number[];
  /** Frames covered by all regions (the size of a packed per-frame array). */
  readonly frames: number;
  private hint = 0;

  constructor(ranges: readonly FrameRange[], align = 1) {
    if (blank()) bare(this); // a bare instance for a copy of the machine (machine/clone.ts)
    this.start = [];
    this.end = [];
    this.base = [];
    this.node = [];
    let total = 0;
    for (const r of ranges) {
      const s = Math.floor(r.start / align) * align;
      const e = Math.ceil(r.end / align) * align;
      const n = this.start.length;
      if (n > 0 && s <= this.end[n - 1]) {
        if (e > this.end[n - 1]) {
          total += e - this.end[n - 1];
          this.end[n - 1] = e;
        }
        continue;
      }
      this.start.push(s);
      this.end.push(e);
      this.base.push(total);
      this.node.push(r.node ?? 0);
      total += e - s;
    }
    this.count = this.start.length;
    this.frames = total;
  }

  /**
   * addFree's check: every frame of [startPfn, startPfn + count) lies in a region, walked region by
   * region. Throws BAD_FREE naming the first frame outside.
   */
  checkAddFree(design: string, startPfn: number, count: number): void {
    for (let p = startPfn; p < startPfn + count; ) {
      const r = this.indexOf(p);
      if (r < 0) badFree("BAD_FREE", design, p, 0, "addFree outside the usable RAM of the layout");
      p = this.end[r];
    }
  }

  /** Is pfn a frame of the region last hit? (the common case of a free: one range test, no search) */
  holdsAtHint(pfn: number): boolean {
    const h = this.hint;
    return pfn >= this.start[h] && pfn < this.end[h] && Number.isInteger(pfn);
  }

  /** Index of the region holding pfn, or -1. */
  indexOf(pfn: number): number {
    const h = this.hint;
    if (h < this.count && pfn >= this.start[h] && pfn < this.end[h]) return h;
    let lo = 0;
    let hi = this.count - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (pfn < this.start[mid]) hi = mid - 1;
      else if (pfn >= this.end[mid]) lo = mid + 1;
      else {
        this.hint = mid;
        return mid;
      }
    }
    return -1;
  }

  /** Packed index of pfn, or -1 outside every region. */
  slot(pfn: number): number {
    const r = this.indexOf(pfn);
    return r < 0 ? -1 : this.base[r] + (pfn - this.start[r]);
  }

  /** Inverse of slot(). */
  pfnOf(slot: number): number {
    const h = this.hint;
    if (h < this.count && slot >= this.base[h] && slot - this.base[h] < this.end[h] - this.start[h]) {
      return this.start[h] + (slot - this.base[h]);
    }
    let lo = 0;
    let hi = this.count - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.base[mid] <= slot) lo = mid;
      else hi = mid - 1;
    }
    this.hint = lo;
    return this.start[lo] + (slot - this.base[lo]);
  }
}

/** Scratch for reading one page of metadata in bulk (`readWords`). */
const PAGE_WORDS = new Uint32Array(1024);

/**
 * One bit per frame of the usable regions, in simulated RAM: set = allocated (handed out by `alloc`).
 * The order-0 designs (stacks, free list) keep it when `checked` so that double frees and frees of
 * reserved or never-allocated frames are caught; a kernel without such checks drops it (0.003 % of RAM).
 */
export class AllocMap {
  private readonly regions: RegionTable;

  constructor(
    private readonly port: PhysPort,
    layout: PmmLayout,
    private readonly pa: number,
  ) {
    if (blank()) bare(this); // a bare instance for a copy of the machine (machine/clone.ts)
    this.regions = new RegionTable(layout.usable, 32);
    for (let off = 0; off < AllocMap.bytes(layout); off += PAGE) port.zeroFrame((pa + off) / PAGE);
  }

  static bytes(layout: PmmLayout): number {
    return pageRound(new RegionTable(layout.usable, 32).frames / 8);
  }

  private wordPa(slot: number): number {
    return this.pa + Math.floor(slot / 32) * 4;
  }

  isSet(pfn: number): boolean {
    const s = this.regions.slot(pfn);
    if (s < 0) return false;
    return ((this.port.read32(this.wordPa(s)) >>> (s & 31)) & 1) === 1;
  }

  set(pfn: number): void {
    const s = this.regions.slot(pfn);
    const a = this.wordPa(s);
    this.port.write32(a, (this.port.read32(a) | (1 << (s & 31))) >>> 0);
  }

  clear(pfn: number): void {
    const s = this.regions.slot(pfn);
    const a = this.wordPa(s);
    this.port.write32(a, (this.port.read32(a) & ~(1 << (s & 31))) >>> 0);
  }

  /** Number of set bits (allocated frames), for the checker. */
  popcount(): number {
    let n = 0;
    for (let w = 0; w < this.regions.frames / 32; w++) n += popcount32(this.port.read32(this.pa + w * 4));
    return n;
  }

  /** Scratch marks laid out like this map's words (for `compare`). */
  marks(): FrameMarks {
    return new FrameMarks(this.regions);
  }

  /**
   * The checker's pass over the map, one word at a time against marks made by `marks()`: the number of
   * set bits (allocated frames), and the first marked frame whose bit is also set (-1 if none).
   */
  compare(m: FrameMarks): { allocated: number; bothPfn: number } {
    let allocated = 0;
    let bothPfn = -1;
    const words = this.regions.frames / 32;
    const page = PAGE_WORDS;
    for (let w0 = 0; w0 < words; w0 += 1024) {
      const k = Math.min(1024, words - w0);
      readWords(this.port, this.pa + w0 * 4, page, 0, k); // the map, a page at a time
      for (let i = 0; i < k; i++) {
        const a = page[i];
        if (a === 0) continue;
        allocated += popcount32(a);
        const both = a & m.bits[w0 + i];
        if (both !== 0 && bothPfn < 0)
          bothPfn = this.regions.pfnOf((w0 + i) * 32 + 31 - Math.clz32(both & -both));
      }
    }
    return { allocated, bothPfn };
  }
}

/**
 * A host-side scratch bitmap for checkers: one bit per frame of a region table's packed slots (32 MiB
 * per TiB of RAM), so that a checker visits millions of single frames in bounded memory, finding
 * duplicates as it goes, instead of collecting and sorting them.
 */
export class FrameMarks {
  readonly bits: Uint32Array;
  /** Frames marked (each counted once). */
  count = 0;

  constructor(readonly regions: RegionTable) {
    this.bits = new Uint32Array(Math.ceil(regions.frames / 32));
  }

  /**
   * Mark the run [pfn, pfn + count) (inside one region): returns -1 when it was all unmarked (now
   * marked), else the first frame of it that was marked already (nothing is marked then). Word at a time.
   */
  markRun(pfn: number, count: number): number {
    const s = this.regions.slot(pfn);
    const bits = this.bits;
    for (let i = s; i < s + count; ) {
      const w = Math.floor(i / 32);
      const lo = i & 31;
      const n = Math.min(32 - lo, s + count - i);
      const mask = n === 32 ? 0xffffffff : ((1 << n) - 1) << lo;
      const both = bits[w] & mask;
      if (both !== 0) return pfn + (w * 32 + 31 - Math.clz32(both & -both) - s);
      i += n;
    }
    for (let i = s; i < s + count; ) {
      const w = Math.floor(i / 32);
      const lo = i & 31;
      const n = Math.min(32 - lo, s + count - i);
      bits[w] |= n === 32 ? 0xffffffff : ((1 << n) - 1) << lo;
      i += n;
    }
    this.count += count;
    return -1;
  }

  /** Mark pfn: 1 when newly marked, 0 when it was marked already, -1 outside every region. */
  mark(pfn: number): number {
    const s = this.regions.slot(pfn);
    if (s < 0) return -1;
    const w = Math.floor(s / 32);
    const bit = 1 << (s % 32);
    if ((this.bits[w] & bit) !== 0) return 0;
    this.bits[w] |= bit;
    this.count++;
    return 1;
  }
}

/** `statsFromFree` for a design that keeps its counts in registers (`counts()`): one source for both. */
export function statsFromCounts(a: FrameAllocator, layout: PmmLayout, c: PmmCounts): PmmStats {
  return statsFromFree(a, layout, c.managedFrames, c.metadataBytes, c.transientBytes);
}

/** Standing bytes of a stack or list's optional allocation bitmap (`checked`): 0 without one. */
export function allocMapBytes(amap: AllocMap | null, layout: PmmLayout): number {
  return amap !== null ? AllocMap.bytes(layout) : 0;
}

/**
 * Statistics from an allocator's free blocks: runs are merged, then cut into naturally aligned blocks of
 * at most MAX_ORDER (the buddy view of memory that is not kept by a buddy).
 *
 * Host memory stays bounded whatever the RAM size and block count. While `forEachFree` reports blocks
 * in address order (a bitmap does), they are merged into a list of runs as they come. When a block
 * comes out of order (stacks, free lists, buddies), or the run list would outgrow it, a scratch bitmap
 * over the usable ranges takes over (1 bit per frame: 32 MiB per TiB) and is scanned in address order.
 * Either way, no per-block array, no sort.
 */
export function statsFromFree(
  a: FrameAllocator,
  layout: PmmLayout,
  managedFrames: number,
  metadataBytes: number,
  transientBytes: number,
): PmmStats {
  const rs = layout.usable;
  const base: number[] = [];
  let total = 0;
  for (const r of rs) {
    base.push(total);
    total += r.end - r.start;
  }
  const scratchWords = Math.ceil(total / 32) + 1;
  let runs = new Float64Array(64);
  let nruns = 0;
  let lastEnd = -1;
  let bits: Uint32Array | null = null;
  let freeFrames = 0;
  let hint = 0;
  /** Visit the usable ranges holding [pfn, end): fn(range index, from, to); free frames outside fail. */
  const split = (pfn: number, end: number, fn: (r: number, from: number, to: number) => void) => {
    for (let p = pfn; p < end; ) {
      if (!(rs[hint].start <= p && p < rs[hint].end)) hint = regionOf(rs, p);
      if (hint < 0) {
        hint = 0;
        return invariant(a.name, `free frame ${p} lies outside the usable RAM of the layout`);
      }
      const stop = Math.min(end, rs[hint].end);
      fn(hint, p, stop);
      p = stop;
    }
  };
  const setRange = (r: number, from: number, to: number) =>
    setBits(bits!, base[r] + from - rs[r].start, to - from);
  const toBits = () => {
    bits = new Uint32Array(scratchWords);
    for (let i = 0; i < nruns; i++) split(runs[2 * i], runs[2 * i + 1], setRange);
    runs = new Float64Array(0);
    nruns = 0;
  };
  a.forEachFree!((pfn, count) => {
    freeFrames += count;
    if (bits === null && pfn >= lastEnd) {
      split(pfn, pfn + count, () => {});
      if (nruns > 0 && runs[2 * nruns - 1] === pfn) runs[2 * nruns - 1] = pfn + count;
      else {
        if (2 * nruns + 2 > runs.length) {
          const grown = new Float64Array(runs.length * 2);
          grown.set(runs);
          runs = grown;
        }
        runs[2 * nruns] = pfn;
        runs[2 * nruns + 1] = pfn + count;
        nruns++;
      }
      lastEnd = pfn + count;
      if (nruns * 16 > scratchWords * 4) toBits();
      return;
    }
    if (bits === null) toBits();
    split(pfn, pfn + count, setRange);
  });
  const head = { managedFrames, freeFrames, metadataBytes, transientBytes };
  if (bits !== null) return scanRuns(bits, rs, base, head);
  return statsFromRuns(runs, nruns, rs, head);
}

function regionOf(rs: readonly { start: number; end: number }[], p: number): number {
  let lo = 0;
  let hi = rs.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (rs[mid].end <= p) lo = mid + 1;
    else if (rs[mid].start > p) hi = mid - 1;
    else return mid;
  }
  return -1;
}

function setBits(bits: Uint32Array, from: number, n: number): void {
  let i = from;
  const end = from + n;
  while (i < end && (i & 31) !== 0) {
    bits[Math.floor(i / 32)] |= 1 << (i & 31);
    i++;
  }
  while (i + 32 <= end) {
    bits[i / 32] = 0xffffffff;
    i += 32;
  }
  while (i < end) {
    bits[Math.floor(i / 32)] |= 1 << (i & 31);
    i++;
  }
}

type StatsHead = { managedFrames: number; freeFrames: number; metadataBytes: number; transientBytes: number };

/** Runs of free frames in address order -> largest run and buddy-view orders (shared by both paths). */
class RunCutter {
  readonly freeByOrder = new Array<number>(NR_ORDERS).fill(0);
  largest = 0;

  cut(runStart: number, runEnd: number): void {
    this.largest = Math.max(this.largest, runEnd - runStart);
    const top = 1 << MAX_ORDER;
    for (let p = runStart; p < runEnd; ) {
      // The largest order that p is aligned to and that fits before runEnd (bit arithmetic on the low
      // MAX_ORDER bits: p itself may exceed 2^32).
      const low = p % top;
      const align = low === 0 ? MAX_ORDER : 31 - Math.clz32(low & -low);
      const fit = 31 - Math.clz32(Math.min(runEnd - p, top));
      const o = Math.min(align, fit);
      this.freeByOrder[o]++;
      p += 1 << o;
    }
  }
}

function perRegionOf(rs: readonly { start: number; end: number; node?: number }[]): RegionStat[] {
  return rs.map((r) => ({ start: r.start, end: r.end, node: r.node ?? 0, freeFrames: 0 }));
}

/** Sorted, merged runs (pairs start, end) -> stats; runs touching across contiguous ranges are one. */
function statsFromRuns(
  runs: Float64Array,
  nruns: number,
  rs: readonly { start: number; end: number; node?: number }[],
  head: StatsHead,
): PmmStats {
  const cutter = new RunCutter();
  const perRegion = perRegionOf(rs);
  let r = 0;
  for (let i = 0; i < nruns; i++) {
    const s = runs[2 * i];
    const e = runs[2 * i + 1];
    cutter.cut(s, e);
    while (r < rs.length && rs[r].end <= s) r++;
    for (let k = r; k < rs.length && rs[k].start < e; k++)
      perRegion[k].freeFrames += Math.min(e, rs[k].end) - Math.max(s, rs[k].start);
  }
  return { ...head, freeByOrder: cutter.freeByOrder, largestFreeRun: cutter.largest, perRegion };
}

/** Walk the scratch bitmap in address order: runs of free frames, per-region counts, buddy-view orders. */
function scanRuns(
  bits: Uint32Array,
  rs: readonly { start: number; end: number; node?: number }[],
  base: number[],
  head: StatsHead,
): PmmStats {
  const cutter = new RunCutter();
  const perRegion = perRegionOf(rs);
  let runStart = -1;
  let runEnd = -1;
  const closeRun = () => {
    if (runStart < 0) return;
    cutter.cut(runStart, runEnd);
    runStart = -1;
  };
  for (let r = 0; r < rs.length; r++) {
    if (r > 0 && rs[r - 1].end !== rs[r].start) closeRun();
    const len = rs[r].end - rs[r].start;
    for (let i = 0; i < len; ) {
      const g = base[r] + i;
      const w = bits[Math.floor(g / 32)];
      if ((g & 31) === 0 && i + 32 <= len && (w === 0 || w === 0xffffffff)) {
        if (w === 0) closeRun();
        else {
          if (runStart < 0) runStart = rs[r].start + i;
          runEnd = rs[r].start + i + 32;
          perRegion[r].freeFrames += 32;
        }
        i += 32;
        continue;
      }
      if (((w >>> (g & 31)) & 1) === 1) {
        if (runStart < 0) runStart = rs[r].start + i;
        runEnd = rs[r].start + i + 1;
        perRegion[r].freeFrames++;
      } else closeRun();
      i++;
    }
  }
  closeRun();
  return { ...head, freeByOrder: cutter.freeByOrder, largestFreeRun: cutter.largest, perRegion };
}

/**
 * The 64-bit frame numbers p, p+1, ..., p+k-1 as little-endian u32 halves in `run[0..2k)`: what a
 * stack's bulk push stores (one carry per 2^32 frames instead of a division per entry).
 */
export function fillRun(run: Uint32Array, p: number, k: number): void {
  let lo = p % 4294967296;
  let hi = Math.floor(p / 4294967296);
  for (let i = 0; i < 2 * k; i += 2) {
    run[i] = lo;
    run[i + 1] = hi;
    if (++lo === 4294967296) {
      lo = 0;
      hi++;
    }
  }
}

/**
 * Join frame numbers into runs of consecutive frames, for `forEachFree` of the stack designs: `words`
 * holds k entries as u64 halves (lo, hi); `run` carries the open run across calls ([start, length],
 * start -1 for none) and each finished run goes to `fn`. Entries that continue the run one frame at a
 * time (a stack filled by the handover) are compared in one tight loop. `bad(j)` is called for an entry
 * whose high word puts it at or above 2^53 (it must throw).
 */
export function joinRuns(
  words: Uint32Array,
  k: number,
  run: Float64Array,
  fn: (pfn: number, count: number) => void,
  bad?: (j: number) => void,
): void {
  let start = run[0];
  let len = run[1];
  for (let j = 0; j < k; ) {
    if (start >= 0) {
      const next = start + len;
      const hi = Math.floor(next / 4294967296);
      const lo = next - hi * 4294967296;
      if (words[2 * j] === lo && words[2 * j + 1] === hi) {
        let m = j + 1;
        let want = lo + 1;
        while (m < k && want <= 0xffffffff && words[2 * m] === want && words[2 * m + 1] === hi) {
          m++;
          want++;
        }
        len += m - j;
        j = m;
        continue;
      }
    }
    if (words[2 * j + 1] > 0x1fffff) bad?.(j);
    const pfn = words[2 * j + 1] * 4294967296 + words[2 * j];
    if (start >= 0) fn(start, len);
    start = pfn;
    len = 1;
    j++;
  }
  run[0] = start;
  run[1] = len;
}

/** `allocFrames` for any allocator: order-0 allocations until n or out of memory. */
export function allocFramesVia(a: FrameAllocator, n: number, out: number[], c?: AllocConstraints): number {
  let got = 0;
  while (got < n) {
    const pfn = a.alloc(0, c);
    if (pfn < 0) break;
    out.push(pfn);
    got++;
  }
  return got;
}

/** Split the layout's usable ranges at the given frame boundaries (for zones and nodes). */
export function cutRanges(usable: readonly FrameRange[], lo: number, hi: number): FrameRange[] {
  const out: FrameRange[] = [];
  for (const r of usable) {
    const s = Math.max(r.start, lo);
    const e = Math.min(r.end, hi);
    if (e > s) out.push({ start: s, end: e, node: r.node ?? 0 });
  }
  return out;
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(AllocMap, RegionTable);
