import { describe, expect, it } from "vitest";
import { ramDigest } from "../../../src/kernel/pmm/check.ts";
import { getDesign } from "../../../src/kernel/pmm/designs.ts";
import { makeLargePageTrace, runLargePageWorkload } from "../../../src/kernel/pmm/large-page-workload.ts";
import { type LargeStacks, largeStacksDesign, PER_PAGE } from "../../../src/kernel/pmm/large-stacks.ts";
import { bringUp } from "../../../src/kernel/pmm/setup.ts";
import { Rng } from "../../../src/machine/rng.ts";
import { type HarnessOptions, property, errorCode } from "./harness.ts";

const GiB = 0x40000; // frames
const M2 = { pageSize: 0x200000 } as const;
const G1 = { pageSize: 0x40000000 } as const;

/**
 * Two 2 MiB blocks either side of a whole GiB, and a scrap range at 4 GiB that takes the metadata and a
 * reservation: few loose 4 KiB frames, so 4 KiB requests split blocks and 2 MiB requests must re-form them.
 */
const big: HarnessOptions = {
  layout: {
    usable: [
      { start: GiB - 0x400, end: 2 * GiB + 0x400 },
      { start: 4 * GiB, end: 4 * GiB + 14 },
    ],
    colours: 4,
  },
  reserved: [{ start: 4 * GiB, end: 4 * GiB + 2 }],
  orders: [0, 0, 0, 9, 18],
  constraints: [undefined, M2, G1, { maxAddr: (GiB + 0x400) * 4096 }, { colour: 1 }, M2, { cpu: 0 }],
  runs: 20,
  maxSteps: 200,
};

/** Small and ragged: partial 2 MiB blocks, no GiB at all, runs out of memory. */
const tiny: HarnessOptions = {
  layout: {
    usable: [
      { start: 0x10, end: 0x14 },
      { start: 0x200, end: 0x800 },
      { start: 0x900, end: 0x908 },
    ],
    colours: 4,
  },
  reserved: [{ start: 0x12, end: 0x13 }],
  orders: [0, 0, 0, 9, 18],
  constraints: [undefined, M2, { maxAddr: 0x500000 }, { colour: 3 }],
  runs: 15,
  maxSteps: 200,
};

function up3G() {
  // [0x100, 3 GiB): 256 frames, 511 2 MiB blocks, the GiB [1, 2) whole, and the top GiB holds the metadata.
  const up = bringUp(largeStacksDesign(), { usable: [{ start: 0x100, end: 3 * GiB }], colours: 4 });
  return { ...up, a: up.alloc as LargeStacks };
}

describe("large-stacks", () => {
  it("survives random 4 KiB / 2 MiB / 1 GiB sequences with constraints and bad frees", () =>
    property(largeStacksDesign(), big));
  it("runs out of memory cleanly on a ragged tiny machine", () => property(largeStacksDesign(), tiny));

  it("is registered, serves exactly the three x86 page sizes and sizes its metadata", () => {
    const d = getDesign("large-stacks");
    // 1 bit per frame (32 KiB per GiB) + 2 B per 2 MiB (1 KiB per GiB) + 2 B per GiB, in whole pages.
    expect(d.metadataBytes({ usable: [{ start: 0, end: GiB }] })).toBe(32 * 1024 + 4096);
    const { a } = up3G();
    expect(a.maxOrder).toBe(18);
    for (const k of [1, 2, 8, 10, 17]) expect(a.alloc(k)).toBe(-1);
    expect(a.alloc(1, M2)).toBe(-1); // 4 MiB
    a.check();
  });

  it("carves addFree into 1 GiB, 2 MiB and 4 KiB entries tagged with their size", () => {
    const { a, metadata } = up3G();
    expect(a.s1.entries).toBe(1); // [1 GiB, 2 GiB); the top GiB holds the metadata
    expect(a.s2.entries).toBe(511 + 511);
    const meta = metadata.end - metadata.start;
    expect([a.s2.pages, a.s1.pages]).toEqual([2, 1]); // their pages are 4 KiB frames
    expect(a.s4.entries + a.s4.pages + a.s2.pages + a.s1.pages).toBe(0x100 + (512 - meta));
    expect(a.alloc(18)).toBe(GiB);
    expect(a.alloc(18)).toBe(-1);
    a.check();
  });

  it("splits a 2 MiB block when the 4 KiB stack is empty and a 1 GiB block when the 2 MiB stack is", () => {
    const { a } = up3G();
    const small: number[] = [];
    while (a.s4.head >= 0) small.push(a.alloc(0));
    const p = a.alloc(0); // splits the top 2 MiB block: its first frame, 511 frames pushed
    expect(p % 512).toBe(0);
    expect(a.splits2M).toBe(1);
    expect(a.s4.entries + a.s4.pages).toBe(511);
    expect(a.alloc(0)).toBe(p + 1); // pushed high to low: handed out low to high
    const big: number[] = [];
    for (let q = a.alloc(9); q >= 0 && a.s2.entries > 0; q = a.alloc(9)) big.push(q);
    expect(a.s2.entries).toBe(0);
    expect(a.splits1G).toBe(0);
    const m = a.alloc(9); // the 2 MiB stack is empty: the GiB is split
    expect(m).toBe(GiB);
    expect(a.splits1G).toBe(1);
    expect(a.s2.entries).toBe(511);
    expect(a.alloc(18)).toBe(-1);
    a.check();
    // Everything back: the GiB re-forms on demand (a 2 MiB-stack pass), the 2 MiB blocks from 4 KiB frames.
    a.free(m, 9);
    for (const q of big) a.free(q, 9);
    for (const q of small) a.free(q, 0);
    a.free(p, 0);
    a.free(p + 1, 0);
    a.check();
    expect(a.alloc(18)).toBe(GiB);
    expect(a.compactions2M).toBe(1);
    expect(a.reformed1G).toBe(1);
    a.check();
  });

  it("re-forms a 2 MiB block by compaction after its 512 frames are freed one by one", () => {
    const { a, counters } = up3G();
    const blocks: number[] = [];
    for (let q = a.alloc(9); q >= 0; q = a.alloc(9)) blocks.push(q); // every 2 MiB block, the GiB split
    const small: number[] = [];
    for (let q = a.alloc(0); q >= 0; q = a.alloc(0)) small.push(q); // and every 4 KiB frame
    expect(a.alloc(9)).toBe(-1);
    const victim = blocks.pop()!;
    a.free(victim, 9);
    const frames: number[] = [];
    while (a.s2.entries > 0 || a.s4.head >= 0) {
      const q = a.alloc(0);
      if (q >= victim && q < victim + 512) frames.push(q);
      else small.push(q);
    }
    expect(frames.length).toBe(512); // the whole block went out as 4 KiB frames
    expect(a.alloc(9)).toBe(-1);
    // Free them one by one, in a scrambled order, with other 4 KiB frees interleaved.
    const rng = new Rng(7);
    for (let i = frames.length - 1; i > 0; i--) {
      const j = rng.below(i + 1);
      [frames[i], frames[j]] = [frames[j], frames[i]];
    }
    for (let i = 0; i < frames.length; i++) {
      a.free(frames[i], 0);
      if (i % 64 === 0) a.free(small.pop()!, 0);
      if (i < frames.length - 1) expect(a.alloc(9, { maxAddr: victim * 4096 })).toBe(-1);
    }
    a.check();
    const refs = counters.memReads + counters.memWrites;
    expect(a.alloc(9)).toBe(victim);
    expect(a.compactions4K).toBe(1);
    expect(a.reformed2M).toBe(1);
    expect(a.compactRefs).toBeGreaterThan(512 * 4); // every free frame read, kept ones pushed back
    expect(counters.memReads + counters.memWrites - refs).toBeGreaterThanOrEqual(a.compactRefs);
    expect(a.s4.entries + a.s4.pages).toBe(8); // the interleaved frees stay on the 4 KiB stack
    a.check();
  });

  it("re-forms a block whose frame holds a 4 KiB stack page", () => {
    const { a } = up3G();
    const others: number[] = [];
    while (a.s4.head >= 0) others.push(a.alloc(0));
    const victim = a.alloc(0); // splits a block: all of it goes out
    const mine = [victim];
    for (let i = 1; i < 512; i++) mine.push(a.alloc(0));
    expect(mine.every((q) => q >= victim && q < victim + 512)).toBe(true);
    // Free the others first, then the block: one of its frames becomes a stack page.
    for (const q of others) a.free(q, 0);
    while (a.s4.top !== PER_PAGE) a.free(mine.pop()!, 0);
    const page = mine.pop()!;
    a.free(page, 0);
    expect(a.s4.head).toBe(page);
    for (const q of mine) a.free(q, 0);
    expect(a.s4.pages).toBeGreaterThan(0);
    // Empty the 2 MiB stack: the next request re-forms (before splitting the GiB), stack page and all.
    const got: number[] = [];
    for (let q = a.alloc(9); q >= 0 && q !== victim; q = a.alloc(9)) got.push(q);
    expect(got.length).toBe(511 + 511 - 1); // the blocks on the stack (the one split for others)
    expect([a.compactions4K, a.reformed2M, a.splits1G]).toEqual([1, 1, 0]);
    a.check();
    for (const q of got) a.free(q, 9);
    a.free(victim, 9);
    a.check();
  });

  it("honours maxAddr and colour by searching, and splits a fitting block when the stack has none", () => {
    const { a } = up3G();
    const lim = 0x300000; // 3 MiB: frames 0x100..0x2ff
    const got: number[] = [];
    for (let q = a.alloc(0, { maxAddr: lim }); q >= 0; q = a.alloc(0, { maxAddr: lim })) got.push(q);
    // The 256 loose frames and the first 2 MiB block, split; full stack pages below the top are not candidates.
    let pagesBelow = 0;
    a.forEachMetaFrame((q) => {
      if (q < 0x300) pagesBelow++;
    });
    expect(got.length + pagesBelow).toBe(0x200);
    expect(pagesBelow).toBeLessThan(8);
    for (const q of got) expect((q + 1) * 4096).toBeLessThanOrEqual(lim);
    for (let i = 0; i < 40; i++) expect(a.alloc(0, { colour: 3 }) % 4).toBe(3);
    expect(a.alloc(9, { maxAddr: 0x400000 })).toBe(-1); // the only block below 4 MiB is split and in use
    expect(a.alloc(9, { maxAddr: 0x600000 })).toBe(0x400);
    expect(a.alloc(0, { pageSize: 0x200000, colour: 1 })).toBe(-1); // 2 MiB blocks have colour 0
    a.check();
  });

  it("rejects bad frees with typed errors and leaves RAM unchanged", () => {
    const { a, mem, metadata } = up3G();
    const p = a.alloc(0);
    const m = a.alloc(9);
    const g = a.alloc(18);
    const before = `${a.dump()}\n${ramDigest(mem)}`;
    const code = errorCode;
    expect(code(() => a.free(m, 0))).toBe("WRONG_ORDER"); // the head of a 2 MiB page
    expect(code(() => a.free(m + 1, 0))).toBe("BAD_FREE");
    expect(code(() => a.free(m, 18))).toBe("MISALIGNED_FREE");
    expect(code(() => a.free(g, 9))).toBe("WRONG_ORDER");
    expect(code(() => a.free(g + 512, 9))).toBe("BAD_FREE");
    expect(code(() => a.free(p, 9))).toBe("MISALIGNED_FREE");
    expect(code(() => a.free(p - (p % 2), 1))).toBe("WRONG_ORDER");
    expect(code(() => a.free(metadata.start, 0))).toBe("BAD_FREE");
    expect(code(() => a.free(3 * GiB + 5, 0))).toBe("BAD_FREE");
    expect(code(() => a.free(m - 512, 9))).toBe("DOUBLE_FREE");
    expect(code(() => a.free(2 * GiB + 0x200 * 4, 0))).toBe("DOUBLE_FREE");
    expect(code(() => a.free(a.s4.head, 0))).toBe("BAD_FREE"); // a stack page
    expect(`${a.dump()}\n${ramDigest(mem)}`).toBe(before);
    a.free(p, 0);
    expect(code(() => a.free(p, 0))).toBe("DOUBLE_FREE");
    a.free(m, 9);
    a.free(g, 18);
    expect(code(() => a.free(g, 18))).toBe("DOUBLE_FREE");
    a.check();
  });
});

describe("the large-page workload", () => {
  // A whole GiB with 16 MiB below it and 2 MiB above (the metadata at the top).
  const layout = { usable: [{ start: GiB - 0x1000, end: 2 * GiB + 0x200 }] };
  const trace = makeLargePageTrace({ frames: GiB + 0x1200, ops: 3000, seed: 3 });
  let memo: ReturnType<typeof runLargePageWorkload>[] | null = null;
  const both = () =>
    (memo ??= [
      runLargePageWorkload(largeStacksDesign(), layout, trace),
      runLargePageWorkload(getDesign("buddy"), layout, trace),
    ]);
  const strip = (r: ReturnType<typeof runLargePageWorkload>) => ({
    ...r,
    phases: r.phases.map((p) => ({ ...p, nsPerOp: 0 })),
  });

  it("is deterministic and design-independent in what it asks", () => {
    expect(makeLargePageTrace({ frames: GiB + 0x1200, ops: 3000, seed: 3 })).toEqual(trace);
    const [a, b] = both();
    expect(strip(runLargePageWorkload(largeStacksDesign(), layout, trace))).toEqual(strip(a));
    expect(b.phases.map((p) => p.requests)).toEqual(a.phases.map((p) => p.requests));
  });

  it("large-stacks re-forms 2 MiB and 1 GiB pages that the buddy cannot give", () => {
    const [ls, bd] = both();
    const [, , large, recover] = ls.phases;
    expect(large.requests[1]).toBeGreaterThan(500);
    expect(large.successes[1]).toBeGreaterThan(0);
    expect(recover.successes[2]).toBe(1); // the whole GiB, re-formed after the fragmentation
    expect(ls.events.reformed1G).toBeGreaterThanOrEqual(1);
    expect(ls.events.compactRefs).toBeGreaterThan(0);
    for (const p of bd.phases) expect(p.successes[2]).toBe(0); // the buddy stops at order 10
    expect(ls.metadataBytes * 100).toBeLessThan(bd.metadataBytes);
  });
});
