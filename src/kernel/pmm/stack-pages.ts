/**
 * Design 2: linked stack pages. Each stack page is a free frame holding a pointer to the next stack page
 * and up to 511 free frame numbers (u64 each, 4 KiB in all):
 *
 *     head ──> +--------------+    +--------------+
 *              | next ────────+──> | next = -1    |
 *              | pfn[0]       |    | pfn[0..510]  |   every page but the top one is full (511)
 *              | ...          |    +--------------+
 *              | pfn[top-1]   |    registers: head (pfn of the top page), top (entries in it)
 *              +--------------+
 *
 * Free pushes into the top page; when it is full, the frame being freed becomes the new top page. Alloc
 * pops from the top page; when it is empty, the page itself is handed out and its successor becomes the
 * top. Zero standing overhead: the stack lives entirely in free frames, reached by physical address (so
 * a kernel must be able to map any frame: direct map, or a temporary window per stack-page access).
 *
 * Guarantees: O(1) order-0 alloc and free. Costs: no contiguity (maxOrder 0); constraints need a linear
 * search; bad-free detection needs the optional allocation bitmap (`checked`, default true, 1 bit/frame).
 */
import { bare, blank, cloneable } from "../../machine/clone.ts";
import { read64, readWords, write64, writeWords } from "../../machine/phys-mem.ts";
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
  PmmDesign,
  PmmEnv,
  PmmCounts,
  PmmLayout,
  PmmStats,
} from "./interface.ts";

// Module-local copies: the loader compiles imports to getter calls, too slow for hot paths.
const checkOrder0Free = checkOrder0Free_;
const fits = fits_;

/** Frame numbers per stack page (the first u64 is the link). */
export const PER_STACK_PAGE = 511;
/** Scratch: one stack page of entries as u32 halves, for bulk reads and writes. */
const RUN = new Uint32Array(2 * PER_STACK_PAGE);

export type StackPagesOptions = CheckedOptions;

export function stackPagesDesign(opts: StackPagesOptions = {}): PmmDesign {
  return checkedDesign(
    "stack-pages",
    opts,
    "Linked stack pages of 511 free frame numbers each, the pages being free frames themselves: O(1), " +
      "zero standing overhead, no contiguity.",
    (env, layout, metadataPa, checked) => new StackPages(env, layout, metadataPa, checked),
    stackHostBytes,
  );
}

export class StackPages implements FrameAllocator {
  readonly name: string;
  readonly maxOrder = 0;
  private readonly port: PhysPort;
  private readonly amap: AllocMap | null;
  private readonly regions: RegionTable;
  private readonly colours: number;
  /** Registers: the top stack page (-1: empty), entries in it, pages, free entries, managed frames. */
  private head = -1;
  private top = 0;
  private pages = 0;
  private entries = 0;
  private managed = 0;

  constructor(
    env: PmmEnv,
    private readonly layout: PmmLayout,
    metadataPa: number,
    checked: boolean,
  ) {
    if (blank()) bare(this); // a bare instance for a copy of the machine (machine/clone.ts)
    checkLayout(layout);
    this.name = checked ? "stack-pages" : "stack-pages-unchecked";
    this.port = env.port;
    this.regions = new RegionTable(layout.usable);
    this.colours = layout.colours ?? 1;
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
      const k = Math.min(end - p, PER_STACK_PAGE - this.top);
      if (this.head < 0 || k < 2) {
        this.push(p++);
        continue;
      }
      fillRun(RUN, p, k);
      writeWords(this.port, this.head * 4096 + 8 + this.top * 8, RUN, 0, 2 * k);
      this.top += k;
      this.entries += k;
      p += k;
    }
    this.managed += count;
  }

  /** Give one frame back; exported for compositions (colour stacks) that own the checking. */
  push(pfn: number): void {
    if (this.head < 0 || this.top === PER_STACK_PAGE) {
      write64(this.port, pfn * 4096, this.head); // the freed frame becomes the new top page
      this.head = pfn;
      this.top = 0;
      this.pages++;
      return;
    }
    const pa = this.head * 4096 + 8 + this.top * 8;
    this.port.write32(pa, pfn >>> 0);
    this.port.write32(pa + 4, (pfn / 4294967296) >>> 0);
    this.top++;
    this.entries++;
  }

  /** Take one frame (no checking, no constraints); -1 when empty. */
  pop(): number {
    const h = this.head;
    if (h < 0) return -1;
    if (this.top === 0) {
      this.head = read64(this.port, h * 4096); // hand out the empty stack page itself
      this.top = this.head < 0 ? 0 : PER_STACK_PAGE;
      this.pages--;
      return h;
    }
    this.top--;
    this.entries--;
    const pa = h * 4096 + 8 + this.top * 8;
    return this.port.read32(pa + 4) * 4294967296 + this.port.read32(pa);
  }

  alloc(order: number, c?: AllocConstraints): number {
    if (order !== 0 || c !== undefined) {
      if (effectiveOrder(order, c) !== 0) return -1;
      if (isHard(c)) return this.take(this.popMatching(c!));
    }
    const pfn = this.pop();
    if (pfn >= 0 && this.amap !== null) this.amap.set(pfn);
    return pfn;
  }

  private take(pfn: number): number {
    if (pfn >= 0 && this.amap !== null) this.amap.set(pfn);
    return pfn;
  }

  /** Linear search through the pages for a frame meeting the constraints; -1 if none. */
  popMatching(c: AllocConstraints): number {
    if (this.head < 0) return -1;
    if (this.top === 0 && fits(this.head, 0, c, this.colours)) return this.pop();
    let page = this.head;
    let n = this.top;
    while (page >= 0) {
      for (let i = n - 1; i >= 0; i--) {
        const pa = page * 4096 + 8 + i * 8;
        const pfn = read64(this.port, pa);
        if (!fits(pfn, 0, c, this.colours)) continue;
        // Fill the hole with the top entry, or with the empty top page itself.
        const filler = this.pop();
        if (filler !== pfn) write64(this.port, pa, filler);
        return pfn;
      }
      // A full stack page below the top is metadata: it is not a candidate (it cannot be unlinked cheaply).
      page = read64(this.port, page * 4096);
      n = PER_STACK_PAGE;
    }
    return -1;
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

  contains(pfn: number): boolean {
    let found = false;
    this.forEachFree((p, n) => {
      if (pfn >= p && pfn < p + n) found = true;
    });
    this.forEachMetaFrame((p) => {
      if (p === pfn) found = true;
    });
    return found;
  }

  /**
   * The free frames, top page first, read a stack page at a time (`readWords`, the same loads as one by
   * one); frames that follow each other in a page and in memory are reported as one run.
   */
  forEachFree(fn: (pfn: number, count: number) => void): void {
    let page = this.head;
    let n = this.top;
    const run = new Float64Array([-1, 0]);
    const tooLarge = (j: number) => read64(this.port, page * 4096 + 8 + j * 8); // throws VALUE_TOO_LARGE
    while (page >= 0) {
      readWords(this.port, page * 4096 + 8, RUN, 0, 2 * n);
      joinRuns(RUN, n, run, fn, tooLarge);
      page = read64(this.port, page * 4096);
      n = PER_STACK_PAGE;
    }
    if (run[0] >= 0) fn(run[0], run[1]);
  }

  forEachMetaFrame(fn: (pfn: number) => void): void {
    for (let page = this.head; page >= 0; page = read64(this.port, page * 4096)) fn(page);
  }

  get freeCount(): number {
    return this.entries;
  }

  get managedCount(): number {
    return this.managed;
  }

  get pageCount(): number {
    return this.pages;
  }

  stats(): PmmStats {
    return statsFromCounts(this, this.layout, this.counts());
  }

  counts(): PmmCounts {
    return {
      managedFrames: this.managed,
      freeFrames: this.entries,
      metadataBytes: allocMapBytes(this.amap, this.layout),
      transientBytes: this.pages * 4096,
    };
  }

  check(): void {
    // One pass, in bounded host memory (1 bit per frame): a frame seen twice is caught as it is marked.
    const marks = this.amap?.marks() ?? new FrameMarks(new RegionTable(this.layout.usable, 32));
    const visit = (p: number, count = 1) => {
      const r = this.regions.indexOf(p);
      if (r < 0 || p + count > this.regions.end[r])
        invariant(this.name, `frame ${p} on the stack is outside usable RAM`);
      const twice = marks.markRun(p, count);
      if (twice >= 0) invariant(this.name, `frame ${twice} is on the stack twice`);
    };
    let entries = 0;
    this.forEachFree((p, count) => {
      visit(p, count);
      entries += count;
    });
    let pages = 0;
    this.forEachMetaFrame((p) => {
      visit(p);
      pages++;
    });
    if (pages !== this.pages)
      invariant(this.name, `${pages} stack pages linked, register says ${this.pages}`);
    if (entries !== this.entries) invariant(this.name, `${entries} entries, register says ${this.entries}`);
    if (this.head >= 0 && (this.top < 0 || this.top > PER_STACK_PAGE))
      invariant(this.name, `top ${this.top} out of range`);
    if (this.amap !== null) {
      const { allocated, bothPfn } = this.amap.compare(marks);
      if (bothPfn >= 0) invariant(this.name, `free frame ${bothPfn} is marked allocated`);
      if (allocated + marks.count !== this.managed)
        invariant(this.name, `allocated ${allocated} + free ${marks.count} != managed ${this.managed}`);
    }
  }

  dump(): string {
    return `${this.name}: head=${this.head} top=${this.top} pages=${this.pages} entries=${this.entries} managed=${this.managed}`;
  }
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(StackPages);
