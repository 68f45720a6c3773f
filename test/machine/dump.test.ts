import { describe, expect, it } from "vitest";
import { Machine } from "../../src/machine/machine.ts";
import { infoMem, infoTlb, ptdump } from "../../src/machine/x86/dump.ts";
import { checkTree } from "../../src/machine/x86/inspect.ts";
import { Access } from "../../src/machine/x86/mmu.ts";
import { PAGE_1G, PAGE_2M, PAGE_4K } from "../../src/machine/x86/pte.ts";
import { setup, vpnOf } from "./helpers.ts";

function sample() {
  const s = setup();
  const { mapper } = s;
  mapper.map(vpnOf(0x400000n), 0x60, PAGE_4K, { user: true, write: true, nx: true }).ignore();
  mapper.map(vpnOf(0xffff888000000000n), 0, PAGE_1G, { write: true, nx: true, global: true }).ignore();
  mapper.map(vpnOf(0xffff888040000000n), 0x40000, PAGE_2M, { write: true, nx: true, global: true }).ignore();
  mapper.map(vpnOf(0xffffffff80000000n), 0x1000, PAGE_4K, { global: true }).ignore();
  mapper.map(vpnOf(0xffffffff80001000n), 0x1001, PAGE_4K, { global: true }).ignore();
  return s;
}

describe("renderers", () => {
  it("QEMU info tlb: one line per leaf with X G P D A C T U W", () => {
    const s = sample();
    s.cpu.translate(vpnOf(0x400000n), Access.WRITE | Access.USER);
    expect(infoTlb(s.m.mem, s.mapper.root, 4)).toBe(
      [
        "0000000000400000: 0000000000060000 X--DA--UW",
        "ffff888000000000: 0000000000000000 XGP-----W",
        "ffff888040000000: 0000000040000000 XGP-----W",
        "ffffffff80000000: 0000000001000000 -G-------",
        "ffffffff80001000: 0000000001001000 -G-------",
        "",
      ].join("\n"),
    );
  });

  it("QEMU info mem: ranges of equal user/write rights", () => {
    const s = sample();
    expect(infoMem(s.m.mem, s.mapper.root, 4)).toBe(
      [
        "0000000000400000-0000000000401000 0000000000001000 urw",
        "ffff888000000000-ffff888040200000 0000000040200000 -rw",
        "ffffffff80000000-ffffffff80002000 0000000000002000 -r-",
        "",
      ].join("\n"),
    );
  });

  it("Linux ptdump: runs of equal entries with sizes, flags and level", () => {
    const s = sample();
    const text = ptdump(s.m.mem, s.mapper.root, 4, [
      { vpn: vpnOf(0xffff888000000000n), name: "Low Kernel Mapping" },
      { vpn: vpnOf(0xffffffff80000000n), name: "High Kernel Mapping" },
    ]);
    const lines = text.split("\n");
    expect(lines[0]).toBe("---[ User Space ]---");
    expect(lines).toContain(
      "0x0000000000400000-0x0000000000401000           4K USR RW                     NX pte",
    );
    expect(lines).toContain(
      "0xffff888000000000-0xffff888040000000           1G     RW         PSE     GLB NX pud",
    );
    expect(lines).toContain(
      "0xffff888040000000-0xffff888040200000           2M     RW         PSE     GLB NX pmd",
    );
    expect(lines).toContain(
      "0xffffffff80000000-0xffffffff80002000           8K     ro                 GLB x  pte",
    );
    expect(lines).toContain("---[ Kernel Space ]---");
    expect(lines).toContain("---[ High Kernel Mapping ]---");
    // a hole is printed with 30 blank flag columns and the level where it was found
    expect(lines).toContain(
      "0x0000000000000000-0x0000000000400000           4M                               pmd",
    );
    expect(lines.at(-3)).toBe(
      "0xffffffff80200000-0xffffffffc0000000        1022M                               pmd",
    );
    expect(lines.at(-2)).toBe(
      "0xffffffffc0000000-0x0000000000000000           1G                               pud",
    );
  });
});

/** A hand-built tree in raw RAM (MAXPHYADDR 40, CR3 0x100000), as a differential test against QEMU writes it. */
function rawTree(entries: [pa: number, raw: bigint][]) {
  const m = new Machine({ maxPhysAddrBits: 40 });
  for (const [pa, raw] of entries) {
    m.mem.write32(pa, Number(raw & 0xffffffffn));
    m.mem.write32(pa + 4, Number(raw >> 32n));
  }
  return { mem: m.mem, root: 0x100 };
}

/** A table pointer whose address field (1 TiB + 0x101000) is at 2^MAXPHYADDR or above. */
const BAD_POINTER = 0x0000010000101003n;

describe("renderers: a table pointer beyond MAXPHYADDR", () => {
  // PML4[0] points beyond MAXPHYADDR, PML4[1] to a PDPT at 0x101000 whose entry 0 is a 1 GiB page at 0.
  const qemuRepro = () =>
    rawTree([
      [0x100000, BAD_POINTER],
      [0x100008, 0x0000000000101003n],
      [0x101000, 0x83n],
    ]);

  it("info tlb lists the rest of the tree and skips the bad PML4E, as QEMU does", () => {
    const { mem, root } = qemuRepro();
    expect(infoTlb(mem, root, 4)).toBe("0000008000000000: 0000000000000000 --P-----W\n");
  });

  it("info mem lists the rest of the tree and treats the bad PML4E as a hole", () => {
    const { mem, root } = qemuRepro();
    expect(infoMem(mem, root, 4)).toBe("0000008000000000-0000008040000000 0000000040000000 -rw\n");
  });

  it("ptdump shows the bad PML4E as a hole at its level and the 1 GiB page after it", () => {
    const { mem, root } = qemuRepro();
    const lines = ptdump(mem, root, 4).split("\n");
    expect(lines[1]).toBe(
      "0x0000000000000000-0x0000008000000000         512G                               pgd",
    );
    expect(lines[2]).toBe(
      "0x0000008000000000-0x0000008040000000           1G     RW         PSE         x  pud",
    );
  });

  it("skips a bad pointer in a PDPTE and in a PDE too, keeping the neighbours", () => {
    // PML4[0] -> PDPT 0x101000: [0] bad, [1] -> PD 0x102000: [0] bad, [1] 2 MiB page at 0x200000,
    // [2] -> PT 0x103000: [0] 4 KiB page at 0x5000.
    const { mem, root } = rawTree([
      [0x100000, 0x101003n],
      [0x101000, BAD_POINTER],
      [0x101008, 0x102003n],
      [0x102000, BAD_POINTER],
      [0x102008, 0x200083n],
      [0x102010, 0x103003n],
      [0x103000, 0x5003n],
    ]);
    expect(infoTlb(mem, root, 4)).toBe(
      [
        "0000000040200000: 0000000000200000 --P-----W",
        "0000000040400000: 0000000000005000 --------W",
        "",
      ].join("\n"),
    );
    expect(infoMem(mem, root, 4)).toBe("0000000040200000-0000000040401000 0000000000201000 -rw\n");
    const dump = ptdump(mem, root, 4);
    expect(dump).toContain(
      "0x0000000040200000-0x0000000040400000           2M     RW         PSE         x  pmd",
    );
    expect(dump).toContain(
      "0x0000000040400000-0x0000000040401000           4K     RW                     x  pte",
    );
    // the entries a walk cannot follow are holes at their own level
    expect(dump).toContain(
      "0x0000000000000000-0x0000000040000000           1G                               pud",
    );
    expect(dump).toContain(
      "0x0000000040000000-0x0000000040200000           2M                               pmd",
    );
  });

  it("checkTree reports the bad pointer as reserved bits and goes on with the rest", () => {
    const { mem, root } = qemuRepro();
    const { violations, stats } = checkTree(mem, root, 4, { maxPhysAddrBits: 40 });
    expect(violations).toEqual(["level-4 entry 0 of table 0x100000: reserved bits set (0x10000101003)"]);
    expect(stats.leaves1g).toBe(1);
    // told of a wider MAXPHYADDR than the machine has, it still reports instead of reading beyond RAM
    const wide = checkTree(mem, root, 4, { maxPhysAddrBits: 52 });
    expect(wide.violations).toEqual([
      "level-4 entry 0 of table 0x100000: frame 0x10000101 beyond MAXPHYADDR",
    ]);
    expect(wide.stats.leaves1g).toBe(1);
  });
});
