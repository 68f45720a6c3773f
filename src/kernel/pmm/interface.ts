/**
 * The one interface every physical memory manager (PMM) design implements.
 *
 * A design keeps ALL of its state in simulated physical memory (free stacks, stack pages, bitmaps,
 * buddy free lists, per-page records), reached only through the `PhysPort` it is given. Only a few
 * scalar registers - the kernel's global variables (a stack top, a list head, a hint) - may live in
 * JS fields. The boot sequence binds the port to the kernel's mapping strategy (direct map, recursive
 * mapping, temporary windows), so every metadata access is translated and counted.
 *
 * Life cycle, as a kernel does it:
 *   1. `design.metadataBytes(layout)` sizes the standing metadata from the sanitized map;
 *   2. the caller places it (early allocator), maps it, and calls `design.create(env, layout, metadataPa)`;
 *   3. the caller "frees" every usable range minus its reservations with `addFree(startPfn, count)`;
 *   4. from then on: `alloc`/`free`, `stats`, `check`.
 *
 * Optional additions (issue 4), which every design in this folder implements:
 *   - `AllocConstraints.pageSize` (4 KiB / 2 MiB / 1 GiB pages: the order counts pages of that size) and
 *     `AllocConstraints.mobility` (migrate type, for buddies that group pageblocks by mobility);
 *   - `FrameAllocator.maxOrder` (largest order `alloc` can ever satisfy; larger orders return -1),
 *     `allocFrames(n, out)` ("N frames", not necessarily contiguous), `forEachFree` and
 *     `forEachMetaFrame` (for checkers and measures), `dump()` (registers and summary, for
 *     before/after comparisons) and, for buddies, `buddyinfo()` (`/proc/buddyinfo` lines);
 *   - `PmmStats.perRegion` (free frames per usable region);
 *   - `GrowableRegion.pageFrame(i)` (the frame backing page i, for checkers).
 */
import type { FrameRange } from "../../firmware/frames.ts";
import type { Counters } from "../../machine/counters.ts";
import type { PhysPort } from "../../machine/phys-mem.ts";

/** A usable range of frames [start, end) (end exclusive), with its NUMA node (firmware/frames.ts). */
export type { FrameRange } from "../../firmware/frames.ts";

/** What a design is told about the machine at creation: the usable RAM, as frame ranges. */
export interface PmmLayout {
  /** Usable RAM, sorted, disjoint, in frames [start, end). Reserved frames inside stay out of addFree. */
  usable: FrameRange[];
  /** Number of CPUs (for per-CPU caches). Default 1. */
  cpus?: number;
  /** Number of cache colours (for colouring compositions). Default 1. */
  colours?: number;
}

/** Constraints on an allocation. All optional. */
export interface AllocConstraints {
  /** Exclusive upper physical address limit, e.g. 16 MiB (ZONE_DMA) or 4 GiB (ZONE_DMA32). */
  maxAddr?: number;
  /** Preferred NUMA node (compositions fall back in distance order). */
  node?: number;
  /** Wanted cache colour: pfn % colours === colour. */
  colour?: number;
  /** CPU making the request (per-CPU lists). */
  cpu?: number;
  /**
   * Page size of the request: the block is 2^order pages of this size, i.e. the order in 4 KiB frames
   * is `order + 9` for 2 MiB and `order + 18` for 1 GiB. Default 4096.
   */
  pageSize?: PageSize;
  /** Mobility (Linux migrate type) for buddies grouping pageblocks by mobility. Default "unmovable". */
  mobility?: Mobility;
}

export type PageSize = 4096 | 0x200000 | 0x40000000;
export type Mobility = "unmovable" | "movable" | "reclaimable";

/**
 * A kernel virtual region that a design may grow and shrink page by page, for metadata that must be
 * virtually contiguous (the free-page stack). The kernel-mapping strategy implements it with real page
 * tables; `offset` is the byte offset from the region's base.
 */
export interface GrowableRegion {
  /** Bytes currently mapped (a multiple of 4096). */
  readonly mappedBytes: number;
  /** Maximum bytes the region may ever map. */
  readonly maxBytes: number;
  read32(offset: number): number;
  write32(offset: number, value: number): void;
  /** Map frame `pfn` as the next page at the end of the region: the frame becomes metadata. */
  grow(pfn: number): void;
  /** Unmap the last page of the region and return its frame (which the design may hand out). */
  shrink(): number;
  /** The frame backing page `i` of the region (a page-table lookup; for checkers, uncounted). */
  pageFrame?(i: number): number;
  /** `n` words from `offset`, within one page, counted as `n` `read32` (a bulk loop). Optional. */
  readWords?(offset: number, dst: Uint32Array, from: number, n: number): void;
  /** `n` words to `offset`, within one page, counted as `n` `write32`. Optional. */
  writeWords?(offset: number, src: Uint32Array, from: number, n: number): void;
}

/** What a design is given to work with. */
export interface PmmEnv {
  /** The only door to physical memory. */
  port: PhysPort;
  counters: Counters;
  /** Creates a growable kernel virtual region (only designs that need one call it). */
  region?: (name: string, maxBytes: number) => GrowableRegion;
}

export interface PmmStats {
  /** Frames ever given to the allocator by addFree (its managed RAM). */
  managedFrames: number;
  /** Frames currently free (in the allocator, including per-CPU caches). */
  freeFrames: number;
  /** Standing metadata bytes (placed at creation). */
  metadataBytes: number;
  /** Transient metadata bytes: frames currently used to hold the allocator's own structures. */
  transientBytes: number;
  /** Free blocks per order 0..10 (buddy-style view; designs without orders derive it from runs). */
  freeByOrder: number[];
  /** Largest run of physically contiguous free frames. */
  largestFreeRun: number;
  /** Free frames per usable range of the layout, in layout order. */
  perRegion?: RegionStat[];
}

/** The part of `PmmStats` a design keeps in registers (`FrameAllocator.counts`). */
export type PmmCounts = Pick<PmmStats, "managedFrames" | "freeFrames" | "metadataBytes" | "transientBytes">;

export interface RegionStat {
  start: number;
  end: number;
  node: number;
  freeFrames: number;
}

export interface FrameAllocator {
  readonly name: string;
  /** Give frames [startPfn, startPfn+count) to the allocator (boot-time freeing of usable RAM). */
  addFree(startPfn: number, count: number): void;
  /**
   * Allocate 2^order physically contiguous frames, naturally aligned. Returns the first frame number,
   * or -1 when no block satisfies the request (out of memory is a normal answer, not an exception).
   */
  alloc(order: number, c?: AllocConstraints): number;
  /** Free a block from `alloc`. Double, misaligned, wrong-order or foreign frees throw, state unchanged. */
  free(pfn: number, order: number): void;
  stats(): PmmStats;
  /**
   * The figures the allocator keeps in registers (no walk of its structures), equal to those of
   * `stats()`: the boot's summary asks for these when a design has them (a 1 TiB stack's walk reads
   * 2 GiB). Optional; the checkers hold each design's registers to its structures.
   */
  counts?(): PmmCounts;
  /** Invariant checker: throws PagelabError("PMM_INVARIANT", ...) naming the first violation. */
  check(): void;
  /** Largest order `alloc` may satisfy (0 for the stacks, 10 for the buddy, 18 for 1 GiB pools). */
  readonly maxOrder?: number;
  /**
   * Allocate `n` frames, not necessarily contiguous, into `out` (order-0 frames, freed one by one).
   * Returns how many were allocated (fewer than `n` when memory runs out; those stay allocated).
   */
  allocFrames?(n: number, out: number[], c?: AllocConstraints): number;
  /** Calls `fn(pfn, count)` for every free block (blocks are disjoint, not necessarily maximal). */
  forEachFree?(fn: (pfn: number, count: number) => void): void;
  /** Calls `fn(pfn)` for every frame currently holding transient metadata (stack pages...). */
  forEachMetaFrame?(fn: (pfn: number) => void): void;
  /** Registers and a summary of the state, as text: equal dumps mean equal allocator state. */
  dump?(): string;
  /** `/proc/buddyinfo` lines (`Node 0, zone   Normal      1      0 ...`), for buddy designs. */
  buddyinfo?(): string[];
}

export interface PmmDesign {
  /** CLI name: stack, stack-pages, freelist, bitmap, buddy, ... */
  readonly name: string;
  /** One sentence: what it guarantees and what it costs. */
  readonly summary: string;
  /** Standing metadata bytes the design needs for this layout (0 if none); placed by the caller. */
  metadataBytes(layout: PmmLayout): number;
  create(env: PmmEnv, layout: PmmLayout, metadataPa: number): FrameAllocator;
  /**
   * Host memory the simulation backs for this design on `layout` beyond its standing metadata, and
   * why: what it writes into the free frames themselves. Leave it out when all state is in the
   * standing metadata. Boots are refused up front when metadata + this exceeds the host budget.
   */
  hostBytes?(layout: PmmLayout): HostBytes;
}

/** Host bytes a design's simulation backs beyond its standing metadata, and the reason in a phrase. */
export interface HostBytes {
  bytes: number;
  why: string;
}
