/**
 * From a firmware memory map to a `PmmLayout`: the usable frame ranges of the sanitized map (with their
 * NUMA nodes), optionally limited like Linux's `mem=` (keep usable RAM in ascending address order up to
 * a total), and the reservations a small kernel makes before its PMM runs: page 0 (as Linux does) and
 * the kernel image at 16 MiB (CONFIG_PHYSICAL_START, here 16 MiB long).
 */
import { usableFrameRanges } from "../../firmware/frames.ts";
import type { MemoryMap } from "../../firmware/types.ts";
import type { FrameRange, PmmLayout } from "./interface.ts";

export const KERNEL_IMAGE: FrameRange = { start: 0x1000, end: 0x2000, node: 0 };

export interface LayoutOptions {
  /** Keep at most this many bytes of usable RAM, lowest addresses first (Linux's mem=). */
  memLimit?: number;
  cpus?: number;
  colours?: number;
}

export interface MapLayout {
  layout: PmmLayout;
  /** The whole map's layout (before mem=), for analytic metadata sizes. */
  full: PmmLayout;
  reserved: FrameRange[];
  clipped: boolean;
}

export function layoutFromMap(map: MemoryMap, o: LayoutOptions = {}): MapLayout {
  const all = usableFrameRanges(map).map((r) => ({ start: r.start, end: r.end, node: r.node }));
  const extra = { cpus: o.cpus ?? 1, colours: o.colours ?? 1 };
  let budget = o.memLimit === undefined ? Number.POSITIVE_INFINITY : Math.floor(o.memLimit / 4096);
  const usable: FrameRange[] = [];
  for (const r of all) {
    if (budget <= 0) break;
    const end = Math.min(r.end, r.start + budget);
    usable.push({ start: r.start, end, node: r.node });
    budget -= end - r.start;
  }
  const clipped = usable.length !== all.length || usable[usable.length - 1]?.end !== all[all.length - 1]?.end;
  const reserved: FrameRange[] = [];
  const inside = (f: FrameRange) => usable.some((r) => f.start < r.end && f.end > r.start);
  if (inside({ start: 0, end: 1 })) reserved.push({ start: 0, end: 1, node: 0 });
  for (const r of usable) {
    const s = Math.max(r.start, KERNEL_IMAGE.start);
    const e = Math.min(r.end, KERNEL_IMAGE.end);
    if (e > s) reserved.push({ start: s, end: e, node: r.node });
  }
  return { layout: { usable, ...extra }, full: { usable: all, ...extra }, reserved, clipped };
}
