import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { getPreset } from "../../../src/firmware/presets.ts";
import { buddyDesign } from "../../../src/kernel/pmm/buddy.ts";
import { DESIGN_NAMES, getDesign } from "../../../src/kernel/pmm/designs.ts";
import { bootKernel } from "../../../src/kernel/boot/index.ts";
import { usableFrameRanges } from "../../../src/firmware/frames.ts";
import { measure, measureAllocator, unusableIndex } from "../../../src/kernel/pmm/measure.ts";
import { SimRegion } from "../../../src/kernel/pmm/sim-region.ts";
import { PhysMem } from "../../../src/machine/phys-mem.ts";

const GiB = 0x40000; // frames
const oneGiB = { usable: [{ start: 0, end: GiB }] };

describe("metadata budgets (bytes of bookkeeping per frame, against Linux's 64 B struct page)", () => {
  it.each([
    ["stack", 32 * 1024], // 1 bit per frame (allocation map); the stack itself lives in free frames
    ["stack-pages", 32 * 1024],
    ["freelist", 32 * 1024],
    ["bitmap", 100 * 1024], // 3 bits per frame + 2 bits per 32 frames (98 KiB), in whole pages
    ["buddy", 4 * 1024 * 1024 + 4096], // 16 B per frame + one page of free-area heads
    ["buddy-64", 16 * 1024 * 1024 + 4096], // Linux's 64 B per frame: 1.56 % of RAM
  ])("%s costs %i bytes per GiB", (name, bytes) => {
    expect(getDesign(name).metadataBytes(oneGiB)).toBe(bytes);
  });

  it("the unchecked stacks cost nothing at all", () => {
    expect(getDesign("stack").metadataBytes({ usable: [] })).toBe(0);
  });
});

describe("measures", () => {
  it("computes Linux's unusable free space index", () => {
    // 4 free order-0 blocks and 1 order-2 block: 8 free pages; at order 2, 4 of them are unusable.
    expect(unusableIndex([4, 0, 1], 0)).toBe(0);
    expect(unusableIndex([4, 0, 1], 1)).toBe(0.5);
    expect(unusableIndex([4, 0, 1], 3)).toBe(1);
    expect(unusableIndex([0, 0, 0], 3)).toBe(0);
  });

  it("is deterministic and reports what each design can do", () => {
    const layout = { usable: [{ start: 0x100, end: 0x4000 }], cpus: 2, colours: 8 };
    const a = measure(buddyDesign(), layout, { churnSteps: 3000 });
    const b = measure(buddyDesign(), layout, { churnSteps: 3000 });
    expect(a).toEqual(b);
    expect(a.largestOrderBoot).toBe(10);
    expect(a.refsPerAlloc).toBeGreaterThan(0);
    const s = measure(getDesign("stack-pages"), layout, { churnSteps: 3000 });
    expect(s.largestOrderBoot).toBe(0);
    expect(s.highOrder.map((h) => h.successes)).toEqual([0, 0]);
    expect(s.transientBytesBoot).toBeGreaterThan(0);
  });

  it("measures every design on the kernel a boot brings up (qemu:4G, mem=64M)", () => {
    for (const n of DESIGN_NAMES) {
      const boot = bootKernel({ map: "qemu:4G", pmm: n, mem: 64 * 2 ** 20, cpus: 2, colours: 4 });
      const free = boot.freePagesAfterBoot;
      const m = measureAllocator(getDesign(n), boot.pmmAllocator, boot.machine.counters, {
        churnSteps: 2000,
      });
      expect(m.freeFramesAfterBoot).toBe(free);
      // 64 MiB less the first MiB, the 2 MiB image and the boot's own allocations.
      expect(m.managedBytes).toBeGreaterThan(56 * 2 ** 20);
      expect(m.managedBytes).toBeLessThan(63 * 2 ** 20);
      expect(m.refsPerAlloc).toBeGreaterThan(0);
    }
  });

  it("sizes bitmaps by region on the sparse preset (2 TiB at 128 TiB), not by span", () => {
    const usable = usableFrameRanges(getPreset("sparse"));
    const frames = usable.reduce((s, r) => s + r.end - r.start, 0);
    expect(getDesign("bitmap").metadataBytes({ usable })).toBeLessThan((frames * 3.1) / 8);
  });
});

describe("SimRegion", () => {
  it("grows with given frames, translates offsets, and shrinks", () => {
    const mem = new PhysMem();
    const r = new SimRegion(mem, "t", 8192);
    r.grow(0x50);
    r.write32(8, 7);
    expect(mem.read32(0x50 * 4096 + 8)).toBe(7);
    expect(() => r.read32(4096)).toThrow(/beyond the mapped/);
    r.grow(0x20);
    expect(() => r.grow(0x21)).toThrow(/cannot grow/);
    expect(r.shrink()).toBe(0x20);
    expect(r.pageFrame(0)).toBe(0x50);
  });
});

describe("pagelab pmm", () => {
  it("prints the measures table and buddyinfo lines", () => {
    const out = execFileSync("node", ["bin/pagelab.mjs", "pmm", "--design", "zoned-buddy", "--mem", "64M"], {
      encoding: "utf8",
    });
    expect(out).toMatch(/zoned-buddy/);
    expect(out).toMatch(/Node 0, zone {4}DMA32/);
  });

  it("rejects an unknown design with a typed error", () => {
    expect(() =>
      execFileSync("node", ["bin/pagelab.mjs", "pmm", "--design", "nope"], {
        encoding: "utf8",
        stdio: "pipe",
      }),
    ).toThrow(/UNKNOWN_DESIGN/);
  });
});
