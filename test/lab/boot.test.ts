import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { PagelabError } from "../../src/errors.ts";
import { PRESETS } from "../../src/firmware/index.ts";
import { startKernel } from "../../src/kernel/kernel.ts";
import { DESIGN_NAMES } from "../../src/kernel/pmm/designs.ts";
import { type BootOptions, bootKernel, KMAP_NAMES } from "../../src/kernel/boot/index.ts";
import { Access, peekWalk } from "../../src/machine/x86/mmu.ts";
import { vaToVpn } from "../../src/machine/x86/vaddr.ts";

const PMMS = ["stack", "stack-pages", "freelist", "bitmap", "buddy"];
const MiB = 2 ** 20;

/** Boot within a small host budget; a refusal must be the clear HOST_MEMORY error, then boot mem=1G. */
function bootOrCap(opts: BootOptions) {
  try {
    return { r: bootKernel({ hostBudget: 512 * MiB, ...opts }), capped: false };
  } catch (e) {
    expect(e).toBeInstanceOf(PagelabError);
    expect((e as PagelabError).code).toBe("HOST_MEMORY");
    expect((e as Error).message).toMatch(/would back about .* GiB of host memory .*--mem/);
    return { r: bootKernel({ ...opts, mem: 2 ** 30 }), capped: true };
  }
}

function tmpMap(entries: { start: string; end: string; type: string }[]): string {
  const dir = mkdtempSync(join(tmpdir(), "pagelab-map-"));
  const f = join(dir, "map.json");
  writeFileSync(f, JSON.stringify({ entries }));
  return f;
}

describe("boot: every PMM x kmap on every preset", () => {
  for (const preset of PRESETS) {
    it(`boots ${preset} with every combination, checks passing`, () => {
      // Only designs whose simulation backs host memory in proportion to RAM (a pointer in every free
      // frame, 8 bytes per free frame on a stack, 16-byte page records over 2 TiB) may be refused.
      const mayBeRefused = ["freelist", "stack", "stack-pages", ...(preset === "sparse" ? ["buddy"] : [])];
      for (const pmm of PMMS) {
        for (const kmap of KMAP_NAMES) {
          const { r, capped } = bootOrCap({ map: preset, pmm, kmap });
          if (capped) expect(mayBeRefused, `${pmm}/${kmap} was refused`).toContain(pmm);
          expect(r.checks.length, `${pmm}/${kmap}`).toBeGreaterThanOrEqual(5);
          expect(r.freePagesAfterBoot).toBeGreaterThan(0);
          expect(r.freePagesAfterBoot).toBeLessThan(r.usablePages);
          expect(r.pageTablePages).toBe(r.pageTableBytes / 4096);
          expect(r.bootSteps.map((s) => s.step)).toEqual([1, 2, 3, 4, 5, 6, 7]);
          expect(r.counters.cr3Writes).toBe(2); // boot root, then the final root
        }
      }
    }, 120_000);
  }
});

describe("boot: the stale-TLB detector stays silent for every combination", () => {
  it("qemu:256M, 4- and 5-level", () => {
    for (const levels of [4, 5] as const) {
      for (const pmm of PMMS) {
        for (const kmap of KMAP_NAMES) {
          const r = bootKernel({ map: "qemu:256M", pmm, kmap, levels, checkStale: true });
          expect(r.machine.staleReports(), `${pmm}/${kmap}/${levels}`).toEqual([]);
          expect(r.checks).toContain("no stale TLB entry was ever used");
        }
      }
    }
  }, 120_000);
});

describe("boot: what each strategy maps", () => {
  it("direct maps all RAM at 0xffff888000000000 with large pages; quickmap has no direct map", () => {
    const d = bootKernel({ map: "qemu:4G", pmm: "bitmap", kmap: "direct" });
    const cpu = d.machine.cpu0;
    const dm = vaToVpn(0xffff888000000000n, 4).vpn;
    expect(cpu.translate(dm + 0x12345, Access.READ)).toBe(0x12345);
    expect(cpu.translate(dm + 0x100000 + 7, Access.READ)).toBe(0x100007); // RAM above 4 GiB
    expect(cpu.translate(dm + 0xc0000, Access.READ)).toBe(-1); // the PCI hole stays unmapped
    const q = bootKernel({ map: "qemu:4G", pmm: "bitmap", kmap: "quickmap" });
    expect(q.machine.cpu0.translate(dm + 0x12345, Access.READ)).toBe(-1);
    expect(q.counters.windowRemaps).toBeGreaterThan(0);
    expect(q.pageTablePages).toBeLessThan(d.pageTablePages);
  });

  it("--map-holes maps MMIO in the direct map and says so", () => {
    const r = bootKernel({ map: "qemu:4G", pmm: "bitmap", kmap: "direct", mapHoles: true });
    const dm = vaToVpn(0xffff888000000000n, 4).vpn;
    expect(r.machine.cpu0.translate(dm + 0xfee00, Access.READ)).toBe(0xfee00); // the local APIC page
    expect(r.bootSteps[3].log.join("\n")).toMatch(/HAZARD: --map-holes mapped \d+ non-RAM range/);
  });

  it("recursive: the slot shows the root as a page; slot 511 is refused", () => {
    const r = bootKernel({ map: "qemu:4G", pmm: "buddy", kmap: "recursive" });
    const slot = 510;
    const self = slot * 2 ** 27 + slot * 2 ** 18 + slot * 2 ** 9 + slot;
    expect(r.machine.cpu0.translate(self, Access.READ)).toBe(r.mapper.root);
    expect(r.recursiveSlots).toEqual([510]);
    expect(() => bootKernel({ kmap: "recursive", recursiveSlot: 511 })).toThrow(
      /slot 511 is taken by the kernel image/,
    );
  });

  it("sparse: 4-level direct ignores RAM above 64 TiB (MAX_PHYSMEM_BITS); 5-level or windows reach it", () => {
    const four = bootKernel({ map: "sparse", pmm: "bitmap", kmap: "direct", check: false });
    expect(four.ramBytes).toBeLessThan(5 * 2 ** 30);
    expect(four.bootSteps[0].log.join("\n")).toMatch(/RAM above it are ignored, as Linux does/);
    const five = bootKernel({ map: "sparse", pmm: "bitmap", kmap: "direct", levels: 5, check: false });
    expect(five.ramBytes).toBeGreaterThan(2 * 2 ** 40);
    // bitmaps per region: metadata for 2 TiB + 4 GiB, not for the 130 TiB span
    expect(five.metadataBytes).toBeLessThan(0.0001 * five.ramBytes);
    expect(five.machine.mem.backedBytes).toBeLessThan(400 * MiB);
  });
});

describe("boot: SMP", () => {
  it("application processors load the final CR3; each CPU touches frames through its own window", () => {
    const r = bootKernel({ map: "qemu:256M", pmm: "freelist", kmap: "quickmap", cpus: 4, checkStale: true });
    expect(r.machine.cpus.map((c) => c.cr3Pfn)).toEqual([
      r.mapper.root,
      r.mapper.root,
      r.mapper.root,
      r.mapper.root,
    ]);
    expect(r.counters.cr3Writes).toBe(2 + 3);
    const pfn = r.current.run(2, () => r.pmmAllocator.alloc(0)); // the free list reads the frame's next pointer
    expect(pfn).toBeGreaterThan(0);
    r.current.run(3, () => r.pmmAllocator.free(pfn, 0)); // and writes it back from CPU 3
    // CPU 2 used fixmap slot 4 (2 x cpu + data), CPU 3 slot 6: each its own PTE, its own INVLPG
    const fix = r.layout.fixmap;
    expect(peekWalk(r.machine.cpus[2], fix + 4)?.pfn).toBe(pfn);
    expect(peekWalk(r.machine.cpus[3], fix + 6)?.pfn).toBe(pfn);
    expect(r.machine.staleReports()).toEqual([]);
  });
});

describe("boot: real maps, bad maps, determinism, CLI contract", () => {
  it("boots a sample of the corpus's real machines", () => {
    const lines = readFileSync(new URL("../../corpus/e820-real.jsonl", import.meta.url), "utf8")
      .trim()
      .split("\n");
    const sample = lines.filter((_, i) => i % 30 === 0).map((l) => JSON.parse(l));
    expect(sample.length).toBeGreaterThanOrEqual(8);
    for (const rec of sample) {
      const f = tmpMap(rec.e820);
      // The whole machine with the bitmap; the heavier designs on its first 2 GiB (mem=2G), where the
      // firmware's holes and reservations are.
      const whole = bootKernel({ map: f, pmm: "bitmap", kmap: "direct" });
      expect(whole.checks.length, `${rec.id} bitmap/direct`).toBeGreaterThanOrEqual(5);
      for (const [pmm, kmap] of [
        ["buddy", "recursive"],
        ["stack-pages", "hybrid"],
        ["freelist", "quickmap"],
      ]) {
        const r = bootKernel({ map: f, pmm, kmap, mem: 2 ** 32 });
        expect(r.checks.length, `${rec.id} ${pmm}/${kmap}`).toBeGreaterThanOrEqual(5);
      }
    }
  }, 120_000);

  it("a map with no room for the kernel image names the shortfall", () => {
    const f = tmpMap([{ start: "0x0", end: "0xfffff", type: "usable" }]);
    expect(() => bootKernel({ map: f })).toThrow(
      /no 2 MiB-aligned run of 2 MiB of RAM for the kernel image.*short by 0x/,
    );
  });

  it("a map with room for the kernel but not its metadata names what is missing", () => {
    // 1 MiB low + exactly the 2 MiB kernel image at 16 MiB + 8 KiB: page tables and metadata cannot fit.
    const f = tmpMap([
      { start: "0x0", end: "0x9ffff", type: "usable" },
      { start: "0x1000000", end: "0x1201fff", type: "usable" },
    ]);
    expect(() => bootKernel({ map: f, pmm: "buddy" })).toThrow(/(no frame left|metadata needs .* short by)/);
  });

  it("is deterministic, and --kaslr depends on the seed only", () => {
    const a = bootKernel({ pmm: "buddy", kmap: "recursive", levels: 5 });
    const b = bootKernel({ pmm: "buddy", kmap: "recursive", levels: 5 });
    expect(a.counters).toEqual(b.counters);
    expect(a.bootSteps).toEqual(b.bootSteps);
    const k1 = bootKernel({ kaslr: true, seed: 7, pmm: "bitmap" }).kernelPhys;
    expect(bootKernel({ kaslr: true, seed: 7, pmm: "bitmap" }).kernelPhys).toBe(k1);
    const others = [1, 2, 3, 4].map((s) => bootKernel({ kaslr: true, seed: s, pmm: "bitmap" }).kernelPhys);
    expect(new Set([k1, ...others]).size).toBeGreaterThan(1);
  });

  it("bottom-up memblock places metadata low, top-down high", () => {
    const top = bootKernel({ pmm: "bitmap" }).bootSteps[3].allocated.find((a) =>
      a.what.includes("metadata"),
    )!;
    const bottom = bootKernel({ pmm: "bitmap", bottomUp: true }).bootSteps[3].allocated.find((a) =>
      a.what.includes("metadata"),
    )!;
    expect(Number(bottom.pa)).toBeLessThan(Number(top.pa));
  });
});

describe("boot: the placement allocator (early allocator mode)", () => {
  it("bumps the end of the kernel past each allocation while the first RAM range lasts", () => {
    const r = bootKernel({ pmm: "bitmap", early: "placement" });
    const allocs = r.bootSteps.flatMap((s) => s.allocated).filter((a) => a.what.includes("placement"));
    expect(allocs.length).toBeGreaterThan(2);
    expect(Number(allocs[0].pa)).toBe(0x1200000); // right after the 2 MiB kernel image at 16 MiB
    for (let i = 1; i < allocs.length; i++)
      expect(Number(allocs[i].pa)).toBeGreaterThanOrEqual(Number(allocs[i - 1].pa) + allocs[i - 1].bytes);
    expect(r.checks.length).toBeGreaterThanOrEqual(5);
  });

  it("cannot skip the hole after the first range: it says by how much the metadata overflows", () => {
    // 4 GiB of buddy page records do not fit between 18 MiB and the PCI hole at 3 GiB; memblock places them above 4 GiB.
    expect(() => bootKernel({ map: "qemu:1T", pmm: "buddy", early: "placement", check: false })).toThrow(
      /placement allocator: buddy PMM metadata needs 0x[0-9a-f]+ bytes .* ends at 0xbffe0000 \(a hole follows\): short by 0x/,
    );
  });
});

describe("boot: the pool strategy (issue 8)", () => {
  it("pool boots with every PMM on qemu:256M, checks passing, no direct map, stale detector silent", () => {
    expect(KMAP_NAMES).toContain("pool");
    for (const pmm of DESIGN_NAMES) {
      const r = bootKernel({ map: "qemu:256M", pmm, kmap: "pool", cpus: 2, checkStale: true });
      expect(r.kmap).toBe("pool");
      expect(r.checks.length, pmm).toBeGreaterThanOrEqual(5);
      expect(r.checks).toContain("no stale TLB entry was ever used");
      expect(r.strategy.directMapCoverage()).toBeNull();
      const dm = vaToVpn(0xffff888000000000n, 4).vpn;
      expect(r.machine.cpu0.translate(dm + 0x1000, Access.READ)).toBeLessThan(0);
    }
  }, 60_000);

  it("a pool kernel starts on every PMM: its pool grows, its checkers pass", () => {
    for (const pmm of DESIGN_NAMES) {
      const k = startKernel({
        map: "qemu:256M",
        mem: 64 * MiB,
        pmm,
        kmap: "pool",
        cpus: 2,
        checkStale: true,
      });
      const p = k.heap.kmalloc(100_000);
      expect(p, pmm).toBeGreaterThan(0);
      k.heap.kfree(p);
      expect(k.counters.poolGrows, pmm).toBeGreaterThanOrEqual(1);
      k.check();
    }
  }, 60_000);
});
