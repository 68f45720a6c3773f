/**
 * The boot's summary observes the PMM (its free frames, largest run) without costing the simulated
 * machine anything: the design reads through an InspectPort, uncounted and touching no TLB or window.
 */
import { describe, expect, it } from "vitest";
import { bootKernel } from "../../../src/kernel/boot/index.ts";
import { Counters } from "../../../src/machine/counters.ts";
import { InspectPort, PhysMem } from "../../../src/machine/phys-mem.ts";

describe("the boot summary observes the PMM for free", () => {
  it("a free list under quickmap costs one window remap a free frame (the hand-over), none for the summary", () => {
    const b = bootKernel({ map: "qemu:256M", pmm: "freelist", kmap: "quickmap", check: false });
    const handedOver = b.freePagesAfterBoot;
    expect(handedOver).toBeGreaterThan(60_000);
    // Every free frame had its link written through the window once; the summary walked the whole list
    // (freePagesAfterBoot is its count) without a single remap or load more.
    expect(b.counters.windowRemaps).toBeGreaterThanOrEqual(handedOver);
    expect(b.counters.windowRemaps).toBeLessThan(handedOver + 64);
    expect(b.counters.memReads).toBeLessThan(handedOver / 4);
    const summary = b.bootSteps.at(-1)!;
    expect(summary.title).toMatch(/Summary/);
    expect(summary.counters).toEqual({});
  });

  it("the same figures as an observation through the kernel's own mappings gives", () => {
    for (const pmm of ["freelist", "stack", "bitmap", "buddy"]) {
      for (const kmap of ["quickmap", "recursive", "direct"]) {
        const b = bootKernel({ map: "qemu:128M", pmm, kmap, check: true });
        const reads = b.machine.counters.memReads;
        const st = b.pmmAllocator.stats(); // through the PMM's port, now the final mappings again
        expect(st.freeFrames, `${pmm}/${kmap}`).toBe(b.freePagesAfterBoot);
        expect(b.machine.counters.memReads, `${pmm}/${kmap}: the port is the kernel's again`).toBeGreaterThan(
          pmm === "freelist" ? reads + st.freeFrames : reads,
        );
        expect(b.checks.length, pmm).toBeGreaterThan(0);
      }
    }
  });

  it("an InspectPort reads RAM uncounted and refuses writes", () => {
    const counters = new Counters();
    const mem = new PhysMem({ maxPhysAddrBits: 40, counters });
    mem.write32(0x1000, 7);
    const before = counters.memReads;
    const port = new InspectPort(mem);
    expect(port.read32(0x1000)).toBe(7);
    const dst = new Uint32Array(4);
    port.readWords(0x1000, dst, 0, 4);
    expect([...dst]).toEqual([7, 0, 0, 0]);
    expect(counters.memReads).toBe(before);
    expect(() => port.write32(0x1000)).toThrow(/observer/);
    expect(() => port.zeroFrame(1)).toThrow(/observer/);
  });
});
