/**
 * Whatever a caller passes to free (or alloc), every design answers with a typed error that names it,
 * never a RangeError or TypeError of its own, and leaves its state as it was.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { hex, PagelabError } from "../../../src/errors.ts";
import { ramDigest } from "../../../src/kernel/pmm/check.ts";
import { DESIGN_NAMES, getDesign } from "../../../src/kernel/pmm/designs.ts";
import { bringUp } from "../../../src/kernel/pmm/setup.ts";

const layout = {
  usable: [
    { start: 0x100, end: 0x9f00, node: 0 },
    { start: 0x10000, end: 0x20000, node: 1 },
  ],
  cpus: 2,
  colours: 4,
};
const odd = [
  Number.NaN,
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
  -1,
  -0.5,
  0.5,
  2 ** 53,
  2 ** 60,
  1e300,
];

describe.each(DESIGN_NAMES)("%s", (name) => {
  it("refuses frees of odd frame numbers and orders with a PagelabError, changing nothing", () => {
    const up = bringUp(getDesign(name), layout);
    const a = up.alloc;
    const held = [a.alloc(0), a.alloc(0)];
    const ram = ramDigest(up.mem);
    fc.assert(
      fc.property(
        fc.oneof(
          fc.constantFrom(...odd),
          fc.constantFrom(...held).map((p) => p + 0.25),
        ),
        fc.oneof(fc.constantFrom(0, 1, ...odd), fc.integer({ min: 53, max: 99 })),
        (pfn, order) => {
          const writes = up.counters.memWrites;
          const stats = JSON.stringify(a.stats());
          let err: unknown = null;
          try {
            a.free(pfn, order);
          } catch (e) {
            err = e;
          }
          expect(err).toBeInstanceOf(PagelabError);
          expect((err as Error).message).toContain("free(");
          expect(up.counters.memWrites).toBe(writes); // refused before any store
          expect(JSON.stringify(a.stats())).toBe(stats);
        },
      ),
      { numRuns: 60 },
    );
    expect(ramDigest(up.mem)).toBe(ram);
    for (const p of held) a.free(p, 0); // the frames held are still the design's to take back
    a.check();
  });

  it("refuses odd orders of alloc with a PagelabError or -1, never another error", () => {
    const a = bringUp(getDesign(name), layout).alloc;
    for (const order of odd) {
      let r: number | null = null;
      try {
        r = a.alloc(order);
      } catch (e) {
        expect(e).toBeInstanceOf(PagelabError);
      }
      if (r !== null) expect(r).toBe(-1);
    }
    a.check();
  });
});

describe("hex", () => {
  it("formats what an error message may name: integers, negatives, non-integers, bigints", () => {
    expect(hex(0x1f000)).toBe("0x1f000");
    expect(hex(-1)).toBe("-0x1");
    expect(hex(2046.5)).toBe("2046.5");
    expect(hex(Number.NaN)).toBe("NaN");
    expect(hex(Number.POSITIVE_INFINITY)).toBe("Infinity");
    expect(hex(2n ** 64n)).toBe("0x10000000000000000");
    expect(hex(-16n)).toBe("-0x10");
  });
});
