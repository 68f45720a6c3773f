/**
 * Design 3: the intrusive free list, as xv6's kalloc.c: each free frame holds, in its first 8 bytes, the
 * frame number of the next free frame; one register holds the head.
 *
 *     head ──> [frame 0x1f3: next=0x1f2] ──> [frame 0x1f2: next=0x87] ──> ... ──> [next = -1]
 *
 * free(pfn) writes the old head INTO the freed frame; alloc reads the next pointer OUT OF the frame it
 * returns. So every operation touches the frame itself: the kernel must have it mapped (a direct map of
 * all RAM, or a temporary mapping per operation): that is the whole lesson of this design.
 *
 * Guarantees: O(1) order-0 alloc and free, zero metadata beyond free memory. Costs: no contiguity
 * (maxOrder 0), a linear walk for constraints, the frame's cache line on every operation, and (like
 * the stacks) bad-free detection only through the optional 1-bit-per-frame allocation bitmap (`checked`).
 */
import { bare, blank, cloneable } from "../../machine/clone.ts";
import { read64, write64 } from "../../machine/phys-mem.ts";
import { DEFAULT_DENSE_BUDGET } from "../../machine/phys-mem.ts";
import { type CheckedOptions, checkedDesign, layoutFrames, PAGE as PAGE_BYTES } from "./common.ts";
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

export type FreeListOptions = CheckedOptions;

export function freeListDesign(opts: FreeListOptions = {}): PmmDesign {
  return checkedDesign(
    "freelist",
    opts,
    "xv6-style intrusive free list: the next pointer lives in each free frame, so every alloc and free " +
      "touches (and needs a mapping of) the frame itself.",
    (env, layout, metadataPa, checked) => new FreeList(env, layout, metadataPa, checked),
    // Simulated RAM backs a 64-byte line per touched frame (plus its index; about 105 host bytes a
    // frame measured on qemu:4G), after the dense chunks of DEFAULT_DENSE_BUDGET (src/machine/phys-mem.ts):
    // 240 bytes a frame is the conservative figure the budget is checked with.
    (layout) => ({
      bytes: Math.min(layoutFrames(layout) * PAGE_BYTES, DEFAULT_DENSE_BUDGET) + layoutFrames(layout) * 240,
      why: "it writes a next pointer into every free frame: a 64-byte line of host memory each",
    }),
  );
}

export class FreeList implements FrameAllocator {
  readonly name: string;
  readonly maxOrder = 0;
  private readonly port: PhysPort;
  private readonly amap: AllocMap | null;
  private readonly regions: RegionTable;
  private readonly colours: number;
  /** Registers: list head (-1: empty), free frames, managed frames. */
  private head = -1;
  private nfree = 0;
  private managed = 0;

  constructor(
    env: PmmEnv,
    private readonly layout: PmmLayout,
    metadataPa: number,
    checked: boolean,
  ) {
    if (blank()) bare(this); // a bare instance for a copy of the machine (machine/clone.ts)
    checkLayout(layout);
    this.name = checked ? "freelist" : "freelist-unchecked";
    this.port = env.port;
    this.regions = new RegionTable(layout.usable);
    this.colours = layout.colours ?? 1;
    this.amap = checked ? new AllocMap(env.port, layout, metadataPa) : null;
  }

  addFree(startPfn: number, count: number): void {
    this.regions.checkAddFree(this.name, startPfn, count);
    for (let i = 0; i < count; i++) this.push(startPfn + i);
    this.managed += count;
  }

  private push(pfn: number): void {
    const pa = pfn * 4096;
    write64(this.port, pa, this.head); // -1 (empty) as all ones: the list's end
    this.head = pfn;
    this.nfree++;
  }

  alloc(order: number, c?: AllocConstraints): number {
    if (order !== 0 || c !== undefined) {
      if (effectiveOrder(order, c) !== 0) return -1;
      if (isHard(c)) return this.allocConstrained(c!);
    }
    const pfn = this.head;
    if (pfn < 0) return -1;
    const pa = pfn * 4096;
    const hi = this.port.read32(pa + 4);
    this.head = hi === 0xffffffff ? -1 : hi * 4294967296 + this.port.read32(pa);
    this.nfree--;
    if (this.amap !== null) this.amap.set(pfn);
    return pfn;
  }

  /** Walk the list with a trailing pointer and unlink the first frame meeting the constraints. */
  private allocConstrained(c: AllocConstraints): number {
    let prev = -1;
    for (let p = this.head; p >= 0; ) {
      const next = read64(this.port, p * 4096);
      if (fits(p, 0, c, this.colours)) {
        if (prev < 0) this.head = next;
        else write64(this.port, prev * 4096, next);
        this.nfree--;
        if (this.amap !== null) this.amap.set(p);
        return p;
      }
      prev = p;
      p = next;
    }
    return -1;
  }

  allocFrames(n: number, out: number[], c?: AllocConstraints): number {
    return allocFramesVia(this, n, out, c);
  }

  free(pfn: number, order: number): void {
    checkOrder0Free(this.name, this.regions, pfn, order);
    if (this.amap !== null && !this.amap.isSet(pfn)) {
      let dbl = false;
      this.forEachFree((p) => {
        if (p === pfn) dbl = true;
      });
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

  forEachFree(fn: (pfn: number, count: number) => void): void {
    let n = 0;
    for (let p = this.head; p >= 0 && n <= this.nfree; p = read64(this.port, p * 4096), n++) fn(p, 1);
  }

  forEachMetaFrame(_fn: (pfn: number) => void): void {}

  stats(): PmmStats {
    return statsFromCounts(this, this.layout, this.counts());
  }

  counts(): PmmCounts {
    return {
      managedFrames: this.managed,
      freeFrames: this.nfree,
      metadataBytes: allocMapBytes(this.amap, this.layout),
      transientBytes: 0,
    };
  }

  check(): void {
    // One pass, in bounded host memory (1 bit per frame): a frame seen twice is caught as it is marked.
    const marks = this.amap?.marks() ?? new FrameMarks(new RegionTable(this.layout.usable, 32));
    let listed = 0;
    this.forEachFree((p) => {
      listed++;
      if (this.regions.indexOf(p) < 0) invariant(this.name, `frame ${p} on the list is outside usable RAM`);
      if (marks.mark(p) === 0) invariant(this.name, `frame ${p} is on the list twice`);
    });
    if (listed !== this.nfree)
      invariant(this.name, `list holds ${listed} frames (or loops), register says ${this.nfree}`);
    if (this.amap !== null) {
      const { allocated, bothPfn } = this.amap.compare(marks);
      if (bothPfn >= 0) invariant(this.name, `free frame ${bothPfn} is marked allocated`);
      if (allocated + marks.count !== this.managed)
        invariant(this.name, `allocated ${allocated} + free ${marks.count} != managed ${this.managed}`);
    }
  }

  dump(): string {
    return `${this.name}: head=${this.head} free=${this.nfree} managed=${this.managed}`;
  }
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(FreeList);
