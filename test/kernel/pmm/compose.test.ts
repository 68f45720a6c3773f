import { describe, expect, it } from "vitest";
import { colourStacksDesign, numaDesign, zonedDesign } from "../../../src/kernel/pmm/compose.ts";
import { hugePoolDesign } from "../../../src/kernel/pmm/huge-pool.ts";
import { bringUp } from "../../../src/kernel/pmm/setup.ts";
import { type HarnessOptions, property } from "./harness.ts";

const MiB16 = 0x1000000;
const GiB4 = 0x100000000;
const zoned: HarnessOptions = {
  layout: {
    usable: [
      { start: 1, end: 0x9f },
      { start: 0x100, end: 0x1400 },
      { start: 0xfff00, end: 0x100500 },
    ],
    cpus: 2,
    colours: 4,
  },
  reserved: [{ start: 0x200, end: 0x240 }],
  orders: [0, 0, 1, 2, 3, 4, 9, 10],
  constraints: [
    undefined,
    { maxAddr: MiB16 },
    { maxAddr: GiB4 },
    { maxAddr: 0x800000, colour: 3 },
    { cpu: 1 },
  ],
};
const numa: HarnessOptions = {
  layout: {
    usable: [
      { start: 0x100, end: 0x1200, node: 0 },
      { start: 0x100000, end: 0x100900, node: 1 },
      { start: 0x200000, end: 0x200600, node: 2 },
    ],
  },
  reserved: [{ start: 0x100000, end: 0x100010 }],
  orders: [0, 0, 1, 3, 9, 10],
  constraints: [undefined, { node: 1 }, { node: 2 }, { node: 1, maxAddr: GiB4 }, { maxAddr: MiB16 }],
};
const colour: HarnessOptions = {
  layout: {
    usable: [
      { start: 1, end: 0x9f },
      { start: 0x100, end: 0x900 },
    ],
    colours: 8,
  },
  reserved: [{ start: 0x200, end: 0x210 }],
  orders: [0, 0, 0, 1],
  constraints: [
    undefined,
    { colour: 0 },
    { colour: 7 },
    { colour: 3, maxAddr: 0x400000 },
    { maxAddr: 0x200000 },
  ],
};
const huge: HarnessOptions = {
  layout: {
    usable: [
      { start: 0x10, end: 0x9f },
      { start: 0x100, end: 0x1a00 },
    ],
    colours: 4,
  },
  reserved: [{ start: 0x400, end: 0x402 }],
  orders: [0, 0, 0, 1, 3, 8, 9, 10],
  constraints: [undefined, { pageSize: 0x200000 }, { maxAddr: 0x800000 }, { colour: 2 }],
};

describe("compositions", () => {
  it("zoned-buddy: DMA / DMA32 / Normal with fallback and address limits", () =>
    property(zonedDesign(), zoned));
  it("numa-buddy: per-node zoned buddies with fallback by distance", () =>
    property(numaDesign(), { ...numa, runs: 15 }));
  it("colour-stacks: one stack per colour", () => property(colourStacksDesign(), colour));
  it("huge-pool: 2 MiB pool over a 4 KiB buddy", () => property(hugePoolDesign(), huge));
  it("huge-pool: runs out of memory cleanly", () =>
    property(hugePoolDesign(), {
      ...huge,
      layout: { usable: [{ start: 0x200, end: 0x600 }] },
      reserved: [],
      runs: 15,
    }));

  it("zoned-buddy prints one buddyinfo line per zone and honours ZONE_DMA", () => {
    const up = bringUp(zonedDesign(), zoned.layout);
    const lines = up.alloc.buddyinfo!();
    expect(lines.map((l) => l.slice(0, 21))).toEqual([
      "Node 0, zone      DMA",
      "Node 0, zone    DMA32",
      "Node 0, zone   Normal",
    ]);
    for (let i = 0; i < 50; i++) expect(up.alloc.alloc(2, { maxAddr: MiB16 }) * 4096).toBeLessThan(MiB16);
    expect(up.alloc.alloc(0) * 4096).toBeGreaterThanOrEqual(GiB4);
  });

  it("numa-buddy falls back to the nearest node", () => {
    const up = bringUp(numaDesign(), numa.layout);
    const p = up.alloc.alloc(0, { node: 1 });
    expect(p).toBeGreaterThanOrEqual(0x100000);
    expect(p).toBeLessThan(0x100900);
    while (up.alloc.alloc(0, { node: 2, maxAddr: 0x200000 * 4096 + 0x600000 }) >= 0x200000);
    up.alloc.check();
  });

  it("colour-stacks hands out exactly the colour asked for", () => {
    const up = bringUp(colourStacksDesign(), colour.layout);
    for (let i = 0; i < 100; i++) expect(up.alloc.alloc(0, { colour: 5 }) % 8).toBe(5);
  });

  it("huge-pool splits and re-merges 1 GiB and 2 MiB frames", () => {
    const GiB = 0x40000;
    const up = bringUp(hugePoolDesign(), { usable: [{ start: 0x100, end: 3 * GiB }] }); // metadata at the top
    const a = up.alloc;
    const g = a.alloc(0, { pageSize: 0x40000000 });
    expect(g).toBe(GiB);
    expect(a.alloc(0, { pageSize: 0x40000000 })).toBe(-1); // the other GiB frames are partly used
    const small: number[] = [];
    for (let i = 0; i < 2000; i++) small.push(a.alloc(0));
    const m = a.alloc(0, { pageSize: 0x200000 });
    expect(m % 512).toBe(0);
    a.check();
    a.free(g, 18);
    a.free(m, 9);
    for (const p of small) a.free(p, 0);
    a.check();
    expect(a.alloc(18)).toBe(GiB);
    expect(a.stats().freeFrames).toBe(3 * GiB - 0x100 - (up.metadata.end - up.metadata.start) - GiB);
  });
});
