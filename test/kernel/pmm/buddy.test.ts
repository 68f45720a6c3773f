import { describe, expect, it } from "vitest";
import { PagelabError } from "../../../src/errors.ts";
import { type Buddy, buddyDesign } from "../../../src/kernel/pmm/buddy.ts";
import { bringUp } from "../../../src/kernel/pmm/setup.ts";
import { type HarnessOptions, property, errorCode } from "./harness.ts";

const layout = {
  usable: [
    { start: 1, end: 0x9f },
    { start: 0x100, end: 0xc00 },
  ],
  colours: 4,
  cpus: 2,
};
const reserved = [{ start: 0x200, end: 0x233 }];
const opts: HarnessOptions = {
  layout,
  reserved,
  orders: [0, 0, 0, 1, 2, 3, 4, 9, 10, 11],
  constraints: [
    undefined,
    { maxAddr: 0x400000 },
    { colour: 2 },
    { cpu: 1 },
    { mobility: "movable" },
    { maxAddr: 0x300000, colour: 1 },
  ],
};
const tiny: HarnessOptions = {
  ...opts,
  layout: { usable: [{ start: 0x10, end: 0x90 }], colours: 4, cpus: 2 },
  reserved: [],
  orders: [0, 1, 2, 3, 5],
};

const variants = [
  buddyDesign(),
  buddyDesign({ pcp: false }),
  buddyDesign({ migrate: true, recordBytes: 64 }),
  buddyDesign({ migrate: true, pcp: false, name: "buddy-mt-nopcp" }),
];

describe.each(variants.map((d) => [d.name, d] as const))("%s", (_n, design) => {
  it("survives random alloc/free sequences with constraints and bad frees", () => property(design, opts));
  it("runs out of memory cleanly on a tiny machine", () => property(design, { ...tiny, runs: 15 }));
});

describe("buddy", () => {
  it("coalesces everything back into maximal blocks", () => {
    const up = bringUp(buddyDesign({ pcp: false }), { usable: [{ start: 0, end: 4096 }] });
    const b = up.alloc;
    const before = b.stats();
    const got: number[] = [];
    for (let i = 0; i < 300; i++) got.push(b.alloc(i % 4));
    expect(got.every((p) => p >= 0)).toBe(true);
    for (let i = 0; i < got.length; i++) b.free(got[i], i % 4);
    b.check();
    expect(b.stats().freeByOrder).toEqual(before.freeByOrder);
  });

  it("prints /proc/buddyinfo lines", () => {
    const up = bringUp(buddyDesign(), { usable: [{ start: 0x100, end: 0x100 + 2048 + 3 }] });
    const line = (up.alloc as Buddy).buddyinfo()[0];
    expect(line).toMatch(/^Node 0, zone {3}Normal( +\d+){11} $/);
  });

  it("rejects bad frees with typed errors", () => {
    const up = bringUp(
      buddyDesign(),
      { usable: [{ start: 0x100, end: 0x400 }] },
      { reserved: [{ start: 0x120, end: 0x121 }] },
    );
    const b = up.alloc;
    const p = b.alloc(2);
    const code = errorCode;
    expect(code(() => b.free(p + 1, 2))).toBe("MISALIGNED_FREE");
    expect(code(() => b.free(p, 1))).toBe("WRONG_ORDER");
    expect(code(() => b.free(p + 2, 1))).toBe("BAD_FREE");
    expect(code(() => b.free(0x120, 0))).toBe("BAD_FREE");
    expect(code(() => b.free(0x5000, 0))).toBe("BAD_FREE");
    b.free(p, 2);
    expect(code(() => b.free(p, 2))).toBe("DOUBLE_FREE");
    expect(() => b.free(p, 11)).toThrow(PagelabError);
  });
});
