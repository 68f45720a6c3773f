/**
 * Number helpers over a map: usable page frames, as a simulated kernel's physical memory manager wants
 * them. BigInt stays here, at the edge; everything returned is a plain number (frame numbers of RAM are
 * below 2^40 because physical addresses are below 2^52).
 */
import { isUsable } from "./e820-types.ts";
import { sanitize } from "./sanitize.ts";
import { type MemoryMap, type NodeRange, PAGE_SHIFT } from "./types.ts";

/**
 * A run of whole frames: pfns `start` .. `end - 1`, on NUMA node `node` (0 when left out). The one
 * definition: the PMM interface and the kernel use it too.
 */
export interface FrameRange {
  start: number;
  /** Exclusive frame number. */
  end: number;
  node?: number;
}

/** Highest frame number + 1 that can be RAM (MAXPHYADDR 52). Usable entries above it are clipped. */
export const MAX_PFN = 2 ** (52 - PAGE_SHIFT);

const PAGE = 1n << BigInt(PAGE_SHIFT);

/** Split [start, end) (pfns) by the node ranges; parts outside every node go to node 0. */
function splitByNodes(start: number, end: number, nodes: readonly NodeRange[]): FrameRange[] {
  if (nodes.length === 0) return [{ start, end, node: 0 }];
  const cuts = new Set<number>([start, end]);
  for (const n of nodes) {
    const s = Number(n.start >> BigInt(PAGE_SHIFT));
    const e = Number((n.end + 1n) >> BigInt(PAGE_SHIFT));
    if (s > start && s < end) cuts.add(s);
    if (e > start && e < end) cuts.add(e);
  }
  const points = [...cuts].sort((a, b) => a - b);
  const out: FrameRange[] = [];
  for (let i = 0; i + 1 < points.length; i++) {
    const addr = BigInt(points[i]) << BigInt(PAGE_SHIFT);
    const node = nodes.find((n) => n.start <= addr && addr <= n.end)?.node ?? 0;
    const last = out[out.length - 1];
    if (last && last.node === node && last.end === points[i]) last.end = points[i + 1];
    else out.push({ start: points[i], end: points[i + 1], node });
  }
  return out;
}

/**
 * The usable RAM of `map` as whole 4 KiB frames: the map is sanitized (if it is not already), each
 * usable range is aligned INWARD (start rounded up, end rounded down to a page), empty ones vanish,
 * and ranges are split at NUMA node boundaries when the map has `nodes`. Linux's own early edits
 * (page 0, the 0xA0000-0xFFFFF hole) are NOT applied here: see `memblockMemory()` in memblock.ts.
 */
export function usableFrameRanges(map: MemoryMap): FrameRange[] {
  const clean = map.sanitized ? map : sanitize(map);
  const out: FrameRange[] = [];
  for (const e of clean.entries) {
    if (!isUsable(e.type)) continue;
    const s = Number((e.start + PAGE - 1n) >> BigInt(PAGE_SHIFT));
    const endEx = Number((e.end + 1n) >> BigInt(PAGE_SHIFT));
    const t = Math.min(endEx, MAX_PFN);
    if (t > s) out.push(...splitByNodes(s, t, clean.nodes ?? []));
  }
  return out;
}

/** Frames in a list of ranges. */
export function framesIn(ranges: readonly FrameRange[]): number {
  let n = 0;
  for (const r of ranges) n += r.end - r.start;
  return n;
}

/**
 * Ranges sorted and merged where they overlap or touch (the union), as new {start, end} objects;
 * their nodes are dropped.
 */
export function mergeRanges(ranges: readonly FrameRange[]): { start: number; end: number }[] {
  const merged: { start: number; end: number }[] = [];
  for (const o of [...ranges].sort((x, y) => x.start - y.start)) {
    const last = merged[merged.length - 1];
    if (last && o.start <= last.end) last.end = Math.max(last.end, o.end);
    else merged.push({ start: o.start, end: o.end });
  }
  return merged;
}

/** Number of whole usable frames (the sum over `usableFrameRanges`). */
export function usablePages(map: MemoryMap): number {
  return framesIn(usableFrameRanges(map));
}
