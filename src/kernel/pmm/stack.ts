/**
 * Design 1: the free-page stack in contiguous kernel virtual memory.
 *
 * A growable region holds u64 frame numbers, 512 per page; `n` (a register) counts them. Boot frees the
 * usable RAM frame by frame. When a free finds the stack full (every mapped page full), the frame being
 * freed is mapped as the next page of the stack instead of being pushed; when an allocation finds the
 * last page empty, that page is unmapped and handed out. So the stack never costs memory that is not
 * free: its pages ARE free memory (reported as transient metadata).
 *
 *     region:  | page 0: 512 pfns | page 1: 512 pfns | ... | page P-1: 0..512 pfns |
 *                                                              ^ n = top of stack
 *     invariant: (P-1)*512 <= n <= P*512  (the last page may be empty), or P = 0 and n = 0
 *
 * Guarantees: O(1) order-0 alloc and free (2 u64 accesses = 4 counted 32-bit references). Costs: no
 * contiguity at all (maxOrder 0), constraints (address limit, colour) need a linear search, and a free
 * cannot tell a double free without help: with `checked` (default) a 1-bit-per-frame allocation bitmap
 * (standing metadata, 32 KiB per GiB) catches double and foreign frees; `checked: false` is the bare
 * kernel version (0 standing bytes), used by the benchmark.
 */
import { bare, blank, cloneable } from "../../machine/clone.ts";
import { type CheckedOptions, checkedDesign, fillRun, stackHostBytes } from "./common.ts";
import type { PhysPort } from "../../machine/phys-mem.ts";
import {
  AllocMap,
  allocFramesVia,
  badFree,
  checkOrder0Free as checkOrder0Free_,
  checkLayout,
  effectiveOrder,
  FrameMarks,
  fits as fits_,
  invariant,
  isHard,
  joinRuns,
  RegionTable,
  allocMapBytes,
  statsFromCounts,
} from "./common.ts";
import type {
  AllocConstraints,
  FrameAllocator,
  GrowableRegion,
  PmmDesign,
  PmmEnv,
  PmmCounts,
  PmmLayout,
  PmmStats,
} from "./interface.ts";

// Module-local copies: the loader compiles imports to getter calls, too slow for hot paths.
const checkOrder0Free = checkOrder0Free_;
const fits = fits_;

const PER_PAGE = 512;
/** Scratch: one stack page of entries as u32 halves, for bulk reads and writes. */
const RUN = new Uint32Array(2 * PER_PAGE);

export type StackOptions = CheckedOptions;

export function stackDesign(opts: StackOptions = {}): PmmDesign {
  return checkedDesign(
    "stack",
    opts,
    "Free-page stack in a growable virtual region, extended with the very frame being freed: O(1), " +
      "no contiguity, costs nothing beyond free memory (plus 1 bit/frame to catch bad frees).",
    (env, layout, metadataPa, checked) => new FreePageStack(env, layout, metadataPa, checked),
    stackHostBytes,
  );
}

export class FreePageStack implements FrameAllocator {
  readonly name: string;
  readonly maxOrder = 0;
  private readonly port: PhysPort;
  private readonly region: GrowableRegion;
  private readonly amap: AllocMap | null;
  private readonly regions: RegionTable;
  private readonly colours: number;
  /** Register: number of frame numbers on the stack. */
  private n = 0;
  /** Register: frames given by addFree. */
  private managed = 0;

  constructor(
    env: PmmEnv,
    private readonly layout: PmmLayout,
    readonly metadataPa: number,
    checked: boolean,
  ) {
    if (blank()) bare(this); // a bare instance for a copy of the machine (machine/clone.ts)
    checkLayout(layout);
    if (env.region === undefined) throw new Error("the stack design needs env.region (a growable region)");
    this.name = checked ? "stack" : "stack-unchecked";
    this.port = env.port;
    this.regions = new RegionTable(layout.usable);
    this.colours = layout.colours ?? 1;
    this.region = env.region(
      "pmm-free-stack",
      Math.max(4096, Math.ceil(this.regions.frames / PER_PAGE) * 4096),
    );
    this.amap = checked ? new AllocMap(env.port, layout, metadataPa) : null;
  }

  /**
   * Push every frame of the range, in order. The frames that land in one stack page are stored as one
   * run of words (`writeWords`: the same stores, counted one by one, written in bulk).
   */
  addFree(startPfn: number, count: number): void {
    this.regions.checkAddFree(this.name, startPfn, count);
    const end = startPfn + count;
    for (let p = startPfn; p < end; ) {
      const off = this.n * 8;
      const k = Math.min(end - p, PER_PAGE - (this.n % PER_PAGE));
      if (off === this.region.mappedBytes || k < 2 || this.region.writeWords === undefined) {
        this.push(p++);
        continue;
      }
      fillRun(RUN, p, k);
      this.region.writeWords(off, RUN, 0, 2 * k);
      this.n += k;
      p += k;
    }
    this.managed += count;
  }

  private push(pfn: number): void {
    const off = this.n * 8;
    if (off === this.region.mappedBytes) {
      this.region.grow(pfn); // the freed frame becomes the next page of the stack
      return;
    }
    this.region.write32(off, pfn >>> 0);
    this.region.write32(off + 4, (pfn / 4294967296) >>> 0);
    this.n++;
  }

  private entry(i: number): number {
    return this.region.read32(i * 8 + 4) * 4294967296 + this.region.read32(i * 8);
  }

  alloc(order: number, c?: AllocConstraints): number {
    if (order !== 0 || c !== undefined) {
      if (effectiveOrder(order, c) !== 0) return -1;
      if (isHard(c)) return this.allocConstrained(c!);
    }
    const pages = this.region.mappedBytes >>> 12;
    if (pages === 0) return -1;
    let pfn: number;
    if (this.n === (pages - 1) * PER_PAGE) pfn = this.region.shrink();
    else pfn = this.entry(--this.n);
    if (this.amap !== null) this.amap.set(pfn);
    return pfn;
  }

  /** Linear search from the top for a frame meeting the constraints; it is swapped out of the stack. */
  private allocConstrained(c: AllocConstraints): number {
    const pages = this.region.mappedBytes >>> 12;
    if (pages === 0) return -1;
    const lastEmpty = this.n === (pages - 1) * PER_PAGE;
    if (lastEmpty) {
      const page = this.region.pageFrame!(pages - 1);
      if (fits(page, 0, c, this.colours)) return this.take(this.region.shrink());
    }
    for (let i = this.n - 1; i >= 0; i--) {
      const pfn = this.entry(i);
      if (!fits(pfn, 0, c, this.colours)) continue;
      const top = this.entry(this.n - 1);
      this.region.write32(i * 8, top >>> 0);
      this.region.write32(i * 8 + 4, (top / 4294967296) >>> 0);
      this.n--;
      if (lastEmpty) this.push(this.region.shrink()); // keep (P-1)*512 <= n: the empty page refills the hole
      return this.take(pfn);
    }
    return -1;
  }

  private take(pfn: number): number {
    if (this.amap !== null) this.amap.set(pfn);
    return pfn;
  }

  allocFrames(n: number, out: number[], c?: AllocConstraints): number {
    return allocFramesVia(this, n, out, c);
  }

  free(pfn: number, order: number): void {
    checkOrder0Free(this.name, this.regions, pfn, order);
    if (this.amap !== null && !this.amap.isSet(pfn)) {
      const dbl = this.contains(pfn);
      badFree(
        dbl ? "DOUBLE_FREE" : "BAD_FREE",
        this.name,
        pfn,
        order,
        dbl ? "already free" : "never allocated (reserved or metadata)",
      );
    }
    if (this.amap !== null) this.amap.clear(pfn);
    this.push(pfn);
  }

  /** Is pfn on the stack or one of its pages? (error path and checker only: linear) */
  private contains(pfn: number): boolean {
    for (let i = 0; i < this.n; i++) if (this.entry(i) === pfn) return true;
    const pages = this.region.mappedBytes >>> 12;
    for (let i = 0; i < pages; i++) if (this.region.pageFrame!(i) === pfn) return true;
    return false;
  }

  /**
   * The free frames, bottom of the stack first, read a stack page at a time (`readWords`); frames that
   * follow each other on the stack and in memory are reported as one run.
   */
  forEachFree(fn: (pfn: number, count: number) => void): void {
    const run = new Float64Array([-1, 0]);
    for (let i = 0; i < this.n; ) {
      const k = Math.min(this.n - i, PER_PAGE - (i % PER_PAGE));
      if (this.region.readWords !== undefined) this.region.readWords(i * 8, RUN, 0, 2 * k);
      else
        for (let j = 0; j < k; j++) {
          RUN[2 * j + 1] = this.region.read32((i + j) * 8 + 4);
          RUN[2 * j] = this.region.read32((i + j) * 8);
        }
      joinRuns(RUN, k, run, fn);
      i += k;
    }
    if (run[0] >= 0) fn(run[0], run[1]);
  }

  forEachMetaFrame(fn: (pfn: number) => void): void {
    const pages = this.region.mappedBytes >>> 12;
    for (let i = 0; i < pages; i++) fn(this.region.pageFrame!(i));
  }

  stats(): PmmStats {
    return statsFromCounts(this, this.layout, this.counts());
  }

  counts(): PmmCounts {
    return {
      managedFrames: this.managed,
      freeFrames: this.n,
      metadataBytes: allocMapBytes(this.amap, this.layout),
      transientBytes: this.region.mappedBytes,
    };
  }

  check(): void {
    const pages = this.region.mappedBytes >>> 12;
    if (pages === 0 ? this.n !== 0 : this.n < (pages - 1) * PER_PAGE || this.n > pages * PER_PAGE) {
      invariant(this.name, `stack top ${this.n} does not fit ${pages} mapped pages`);
    }
    // One pass, in bounded host memory (1 bit per frame): a frame seen twice is caught as it is marked.
    const marks = this.amap?.marks() ?? new FrameMarks(new RegionTable(this.layout.usable, 32));
    const visit = (p: number, count = 1) => {
      const r = this.regions.indexOf(p);
      if (r < 0 || p + count > this.regions.end[r])
        invariant(this.name, `frame ${p} on the stack is outside usable RAM`);
      const twice = marks.markRun(p, count);
      if (twice >= 0) invariant(this.name, `frame ${twice} is on the stack twice`);
    };
    this.forEachFree(visit);
    this.forEachMetaFrame(visit);
    if (this.amap !== null) {
      const { allocated, bothPfn } = this.amap.compare(marks);
      if (bothPfn >= 0) invariant(this.name, `free frame ${bothPfn} is marked allocated`);
      if (allocated + marks.count !== this.managed)
        invariant(this.name, `allocated ${allocated} + free ${marks.count} != managed ${this.managed}`);
    }
  }

  dump(): string {
    return `${this.name}: n=${this.n} pages=${this.region.mappedBytes >>> 12} managed=${this.managed}`;
  }
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(FreePageStack);
