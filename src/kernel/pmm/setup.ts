/**
 * Bring a PMM design up the way a kernel does, in miniature (for tests, measures, the CLI and the
 * benchmark; the narrated boot sequence in src/lab does the same with its own early allocator):
 *
 *   1. size the standing metadata with `design.metadataBytes(layout)`;
 *   2. place it top-down (as memblock does) in the highest usable range that holds it, outside the
 *      reserved ranges (kernel image, firmware...);
 *   3. `design.create(env, layout, metadataPa)`, with simulated RAM as the port and simulated growable
 *      regions;
 *   4. "free" every usable range minus the reserved ranges and the metadata, in ascending order.
 */
import { fail } from "../../errors.ts";
import { Counters } from "../../machine/counters.ts";
import { PhysMem } from "../../machine/phys-mem.ts";
import { checkLayout } from "./common.ts";
import type { FrameAllocator, FrameRange, PmmDesign, PmmEnv, PmmLayout } from "./interface.ts";
import { simRegions } from "./sim-region.ts";

export interface BringUpOptions {
  /** Simulated RAM to use (default: a fresh PhysMem with MAXPHYADDR 52 and fresh counters). */
  mem?: PhysMem;
  /** Frame ranges inside usable RAM that must never be handed out (kernel image, initrd...). */
  reserved?: FrameRange[];
}

export interface BroughtUp {
  alloc: FrameAllocator;
  mem: PhysMem;
  counters: Counters;
  env: PmmEnv;
  layout: PmmLayout;
  /** Where the standing metadata was placed, in frames [start, end). */
  metadata: FrameRange;
  reserved: FrameRange[];
  /** The ranges given to addFree. */
  freed: FrameRange[];
}

/** [a] minus the union of [cuts], as sorted ranges. */
export function subtractRanges(ranges: readonly FrameRange[], cuts: readonly FrameRange[]): FrameRange[] {
  const sorted = [...cuts].filter((c) => c.end > c.start).sort((x, y) => x.start - y.start);
  const out: FrameRange[] = [];
  for (const r of ranges) {
    let s = r.start;
    for (const c of sorted) {
      if (c.end <= s || c.start >= r.end) continue;
      if (c.start > s) out.push({ start: s, end: c.start, node: r.node ?? 0 });
      s = Math.max(s, c.end);
    }
    if (s < r.end) out.push({ start: s, end: r.end, node: r.node ?? 0 });
  }
  return out;
}

export function bringUp(design: PmmDesign, layout: PmmLayout, opts: BringUpOptions = {}): BroughtUp {
  checkLayout(layout);
  const mem = opts.mem ?? new PhysMem({ maxPhysAddrBits: 52, counters: new Counters() });
  const reserved = opts.reserved ?? [];
  const bytes = design.metadataBytes(layout);
  const frames = Math.ceil(bytes / 4096);
  const candidates = subtractRanges(layout.usable, reserved);
  let metadata: FrameRange = { start: 0, end: 0, node: 0 };
  if (frames > 0) {
    const home = [...candidates].reverse().find((r) => r.end - r.start >= frames);
    if (home === undefined)
      fail("NO_ROOM_FOR_METADATA", `${design.name}: no usable range holds ${bytes} bytes of metadata`);
    metadata = { start: home.end - frames, end: home.end, node: home.node ?? 0 };
  }
  const env: PmmEnv = { port: mem, counters: mem.counters, region: simRegions(mem) };
  const alloc = design.create(env, layout, metadata.start * 4096);
  const freed = subtractRanges(candidates, [metadata]);
  for (const r of freed) alloc.addFree(r.start, r.end - r.start);
  return { alloc, mem, counters: mem.counters, env, layout, metadata, reserved, freed };
}
