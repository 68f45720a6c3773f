import { describe, expect, it } from "vitest";
import { bitmapDesign } from "../../../src/kernel/pmm/bitmap.ts";
import { bringUp } from "../../../src/kernel/pmm/setup.ts";
import { type HarnessOptions, property } from "./harness.ts";

const layout = {
  usable: [
    { start: 1, end: 0x9f },
    { start: 0x100, end: 0xc00 },
    { start: 0x1000, end: 0x1c05 },
  ],
  colours: 8,
};
const reserved = [{ start: 0x200, end: 0x233 }];
const opts: HarnessOptions = {
  layout,
  reserved,
  orders: [0, 0, 0, 1, 2, 3, 5, 6, 8, 10, 11],
  constraints: [undefined, { maxAddr: 0x400000 }, { colour: 5 }, { maxAddr: 0x300000, colour: 1 }],
};

describe("bitmap", () => {
  it("survives random alloc/free sequences with constraints and bad frees", () =>
    property(bitmapDesign(), opts));
  it("runs out of memory cleanly on a tiny machine", () =>
    property(bitmapDesign(), {
      ...opts,
      layout: { usable: [{ start: 0x13, end: 0x90 }], colours: 8 },
      reserved: [],
      runs: 15,
    }));

  it("sizes bitmaps from the map: 0-4 GiB plus 2 GiB at 128 TiB costs 6 GiB of bitmap, not 128 TiB", () => {
    const GiB = 262144; // frames
    const sparse = {
      usable: [
        { start: 0, end: 4 * GiB },
        { start: 128 * 1024 * GiB, end: 128 * 1024 * GiB + 2 * GiB },
      ],
    };
    const bytes = bitmapDesign().metadataBytes(sparse);
    expect(bytes).toBe((6 * GiB * 3) / 8 + (6 * GiB * 2) / 32 / 8); // 3 bits per frame, 2 per 32 frames
  });

  it("finds 2 MiB and 1 GiB frames through the summary level, next-fit", () => {
    const up = bringUp(bitmapDesign(), { usable: [{ start: 0x100, end: 0xc0000 }] }); // ~3 GiB, metadata at the top
    const a = up.alloc;
    const g = a.alloc(0, { pageSize: 0x40000000 });
    expect(g).toBe(0x40000);
    const m = a.alloc(0, { pageSize: 0x200000 });
    expect(m % 512).toBe(0);
    expect(a.alloc(0, { pageSize: 0x40000000 })).toBe(-1);
    a.free(g, 18);
    a.free(m, 9);
    a.check();
    expect(a.stats().freeFrames).toBe(0xc0000 - 0x100 - (up.metadata.end - up.metadata.start));
  });
});
