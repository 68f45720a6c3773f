import { describe, expect, it } from "vitest";
import { infoMem, infoTlb, ptdump } from "../../src/machine/x86/dump.ts";
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
