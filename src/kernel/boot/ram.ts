/**
 * Step 1's arithmetic: the RAM a boot hands to the kernel (memblock.memory in frames, cut at mem= and
 * at what the kernel mapping reaches), the MAXPHYADDR that covers it, and the KASLR slot.
 */
import { fail, hex } from "../../errors.ts";
import { framesIn } from "../../firmware/frames.ts";
import { loadMap, memblockMemory } from "../../firmware/index.ts";
import { Rng } from "../../machine/rng.ts";
import type { Levels } from "../../machine/x86/vaddr.ts";
import { IMAGE_BYTES } from "../image.ts";
import type { KmapStrategy } from "../kmap/strategy.ts";
import type { FrameRange } from "../pmm/interface.ts";
import type { BootOptions } from "./options.ts";

/** Apply mem=: keep RAM below `limit` only. */
function applyMem(ram: FrameRange[], limit: number | undefined, log: (s: string) => void): FrameRange[] {
  if (limit === undefined) return ram;
  const top = Math.floor(limit / 4096);
  const out = ram.filter((r) => r.start < top).map((r) => ({ ...r, end: Math.min(r.end, top) }));
  log(
    `mem=${hex(limit)}: RAM at and above it is ignored (${ram.length - out.length} range(s) dropped, others clipped)`,
  );
  return out;
}

export interface BootRam {
  map: ReturnType<typeof loadMap>;
  changes: ReturnType<typeof memblockMemory>["changes"];
  ram: FrameRange[];
  ramBytes: number;
  /** What the boot log says of the cuts. */
  early: string[];
}

/**
 * The RAM a boot would hand to the PMM: the map's usable ranges as memblock keeps them, cut at mem=
 * and at what the kernel mapping reaches with `levels`. Throws NO_RAM when nothing is left.
 */
export function bootRam(
  mapName: string,
  strategy: KmapStrategy,
  levels: Levels,
  mem: number | undefined,
  source: Pick<BootOptions, "mapFormat" | "loadedMap"> = {},
): BootRam {
  const map = source.loadedMap ?? loadMap(mapName, { format: source.mapFormat });
  const mb = memblockMemory(map);
  const early: string[] = [];
  let ram: FrameRange[] = applyMem(
    mb.ranges
      .map((r) => ({
        start: Number((r.start + 4095n) / 4096n),
        end: Number((r.end + 1n) / 4096n),
        node: r.node,
      }))
      .filter((r) => r.end > r.start),
    mem,
    (l) => early.push(l),
  );
  const reach = strategy.physLimit(levels);
  if (ram.some((r) => r.end * 4096 > reach)) {
    const lost = ram.reduce((s, r) => s + Math.max(0, r.end - Math.max(r.start, reach / 4096)), 0);
    ram = ram
      .filter((r) => r.start * 4096 < reach)
      .map((r) => ({ ...r, end: Math.min(r.end, reach / 4096) }));
    early.push(
      `a ${levels}-level direct map holds ${hex(reach)} bytes of physical memory: ${lost} frames of RAM above it are ignored, as Linux does (MAX_PHYSMEM_BITS); --levels 5 or --kmap recursive/quickmap/hybrid reach them`,
    );
  }
  if (ram.length === 0)
    fail(
      "NO_RAM",
      `${mapName}: the map has no usable RAM${mem !== undefined ? ` below mem=${hex(mem)}` : ""}`,
    );
  return { map, changes: mb.changes, ram, ramBytes: framesIn(ram) * 4096, early };
}

/** MAXPHYADDR that covers the map: at least 46 bits, at most 52. */
export function physBitsFor(ram: FrameRange[]): number {
  const top = Math.max(1, ...ram.map((r) => r.end)) * 4096;
  return Math.min(52, Math.max(46, Math.ceil(Math.log2(top))));
}

/** A 2 MiB-aligned RAM slot above 16 MiB for the kernel image, chosen from `seed` (KASLR). */
export function kaslrSlot(ram: FrameRange[], seed: number): { pa: number; index: number; slots: number } {
  const slots: number[] = [];
  for (const r of ram) {
    for (
      let pa = Math.ceil((r.start * 4096) / IMAGE_BYTES) * IMAGE_BYTES;
      pa + IMAGE_BYTES <= r.end * 4096 && slots.length < 65536;
      pa += IMAGE_BYTES
    ) {
      if (pa >= 0x1000000) slots.push(pa);
    }
  }
  if (slots.length === 0) return { pa: 0x1000000, index: 0, slots: 0 };
  const index = new Rng(seed).below(slots.length);
  return { pa: slots[index], index, slots: slots.length };
}
