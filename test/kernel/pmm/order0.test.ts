import { describe, expect, it } from "vitest";
import { PagelabError } from "../../../src/errors.ts";
import { freeListDesign } from "../../../src/kernel/pmm/freelist.ts";
import type { PmmDesign } from "../../../src/kernel/pmm/interface.ts";
import { bringUp } from "../../../src/kernel/pmm/setup.ts";
import { stackDesign } from "../../../src/kernel/pmm/stack.ts";
import { PER_STACK_PAGE, stackPagesDesign } from "../../../src/kernel/pmm/stack-pages.ts";
import { type HarnessOptions, property, errorCode } from "./harness.ts";

const layout = {
  usable: [
    { start: 1, end: 0x9f },
    { start: 0x100, end: 0x800 },
  ],
  colours: 4,
};
const reserved = [{ start: 0x200, end: 0x220 }];
const base: HarnessOptions = {
  layout,
  reserved,
  orders: [0, 0, 0, 1],
  constraints: [
    undefined,
    { maxAddr: 0x200000 },
    { colour: 1 },
    { maxAddr: 0x180000, colour: 3 },
    { cpu: 0 },
  ],
};
const tiny: HarnessOptions = {
  ...base,
  layout: { usable: [{ start: 0x10, end: 0x40 }], colours: 4 },
  reserved: [],
};

const designs: PmmDesign[] = [stackDesign(), stackPagesDesign(), freeListDesign()];

describe.each(designs.map((d) => [d.name, d] as const))("%s", (_name, design) => {
  it("survives random alloc/free sequences with constraints and bad frees", () => property(design, base));
  it("runs out of memory cleanly on a tiny machine", () => property(design, { ...tiny, runs: 15 }));

  it("hands out every usable frame exactly once, then -1", () => {
    const up = bringUp(design, layout, { reserved });
    const got = new Set<number>();
    for (;;) {
      const p = up.alloc.alloc(0);
      if (p < 0) break;
      expect(got.has(p)).toBe(false);
      got.add(p);
    }
    const metaFrames = up.metadata.end - up.metadata.start;
    expect(got.size).toBe(0x9e + 0x700 - 0x20 - metaFrames);
    expect(up.alloc.alloc(1)).toBe(-1);
    expect(up.alloc.stats().freeFrames).toBe(0);
    for (const p of got) up.alloc.free(p, 0);
    up.alloc.check();
    expect(() => up.alloc.free(0x205, 0)).toThrow(PagelabError);
  });

  it("names what is wrong with a free's arguments, in the region last hit or not (unchecked too)", () => {
    const unchecked = [stackDesign, stackPagesDesign, freeListDesign]
      .map((f) => f({ checked: false }))
      .find((u) => u.name === `${design.name}-unchecked`)!;
    for (const d of [design, unchecked]) {
      const a = bringUp(d, layout, { reserved }).alloc;
      const code = errorCode;
      const q = a.alloc(0);
      a.free(q, 0); // the region last hit is now q's
      expect(a.alloc(0)).toBe(q);
      expect(code(() => a.free(q + 0.5, 0))).toBe("BAD_FREE");
      expect(code(() => a.free(-1, 0))).toBe("BAD_FREE");
      expect(code(() => a.free(q, 1))).toBe("WRONG_ORDER");
      expect(code(() => a.free(0x9f, 0))).toBe("BAD_FREE"); // the hole between the regions
      expect(code(() => a.free(0x800, 0))).toBe("BAD_FREE"); // past the last region
      // Frames of either region pass the argument checks, whichever region was hit last.
      const frames: number[] = [];
      for (let f = a.alloc(0); f >= 0; f = a.alloc(0)) frames.push(f);
      const low = frames.find((f) => f < 0x9f)!;
      const high = frames.find((f) => f >= 0x100)!;
      for (const f of [high, low, q]) expect(code(() => a.free(f, 0))).toBe("none");
      if (d === design) expect(code(() => a.free(high, 0))).toBe("DOUBLE_FREE");
      const st = a.stats(); // a stack's first frame freed became its page: transient metadata
      expect(st.freeFrames + st.transientBytes / 4096).toBe(3);
    }
  });
});

describe("stack pages", () => {
  it("uses the freed frame as a new stack page after 511 entries, and hands an emptied page out", () => {
    const up = bringUp(stackPagesDesign({ checked: false }), {
      usable: [{ start: 0x1000, end: 0x1000 + 1 + PER_STACK_PAGE + 1 }],
    });
    expect(up.alloc.stats().transientBytes).toBe(2 * 4096);
    expect(up.alloc.stats().freeFrames).toBe(PER_STACK_PAGE);
    expect(up.alloc.alloc(0)).toBe(0x1000 + 1 + PER_STACK_PAGE); // the second page, empty: handed out
  });
});
