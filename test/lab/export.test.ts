import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { runDemo } from "../../src/lab/demo.ts";
import {
  exportPageTables,
  importPageTables,
  parseExportIndex,
  reachableTables,
} from "../../src/lab/export.ts";
import { Cpu } from "../../src/machine/x86/cpu.ts";
import { infoTlb } from "../../src/machine/x86/dump.ts";
import { peekWalk } from "../../src/machine/x86/mmu.ts";
import { hiWithPfn, loWithPfn, PAGE_1G, PAGE_2M, PAGE_4K, Pte } from "../../src/machine/x86/pte.ts";
import { vaToVpn } from "../../src/machine/x86/vaddr.ts";
import { setup, vpnOf } from "../machine/helpers.ts";

const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), "pagelab-export-"));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A small tree with every leaf size, a recursive slot at PML4[510] and a user page. */
function handTree() {
  const s = setup();
  const { mapper, m } = s;
  mapper.map(vpnOf(0x400000n), 0x60, PAGE_4K, { user: true, write: true, nx: true }).ignore();
  mapper.map(vpnOf(0xffff888000000000n), 0, PAGE_1G, { write: true, nx: true, global: true }).ignore();
  mapper.map(vpnOf(0xffff888040000000n), 0x40000, PAGE_2M, { write: true, pcd: true, pwt: true }).ignore();
  mapper.map(vpnOf(0xffffffff80000000n), 0x1000, PAGE_4K, { global: true }).ignore();
  const slot = mapper.root * 4096 + 510 * 8;
  m.mem.write32(slot + 4, hiWithPfn(mapper.root, 0x80000000));
  m.mem.write32(slot, loWithPfn(mapper.root, Pte.P | Pte.RW));
  return s;
}

describe("exportPageTables", () => {
  it("writes the three files; index.json has exactly cr3, levels and page-aligned offsets", () => {
    const { m, mapper } = handTree();
    const dir = tmp();
    const r = exportPageTables(m.mem, mapper.root, 4, dir);
    const index = JSON.parse(readFileSync(join(dir, "index.json"), "utf8"));
    expect(Object.keys(index).sort()).toEqual(["cr3", "levels", "pages"]);
    expect(index.cr3).toBe(`0x${(mapper.root * 4096).toString(16)}`);
    expect(index.levels).toBe(4);
    // root + PDPT/PD/PT for 0x400000 + PDPT (direct map) + PD (2M) + PDPT/PD/PT (kernel) = 9 tables
    expect(index.pages).toHaveLength(9);
    expect(r.tables).toHaveLength(mapper.tables);
    const bin = readFileSync(join(dir, "pages.bin"));
    expect(bin.length).toBe(9 * 4096);
    index.pages.forEach((p: { pa: string; offset: number }, i: number) => {
      expect(p.offset).toBe(i * 4096);
      expect(p.pa).toMatch(/^0x[0-9a-f]+$/);
      expect(BigInt(p.pa) % 4096n).toBe(0n);
      expect(
        Buffer.compare(
          bin.subarray(p.offset, p.offset + 4096),
          Buffer.from(m.mem.readBytes(Number(p.pa), 4096)),
        ),
      ).toBe(0);
    });
    const pas = index.pages.map((p: { pa: string }) => Number(p.pa));
    expect(pas).toEqual([...pas].sort((a, b) => a - b));
    expect(readFileSync(join(dir, "info-tlb.txt"), "utf8")).toBe(infoTlb(m.mem, mapper.root, 4));
    expect(() =>
      parseExportIndex(readFileSync(join(dir, "index.json"), "utf8"), "index.json", bin.length),
    ).not.toThrow();
  });

  it("round trip: export, import, identical info tlb, walks and table bytes (recursive slot included)", () => {
    const { m, mapper, cpu } = handTree();
    const dir = tmp();
    exportPageTables(m.mem, mapper.root, 4, dir);
    const imp = importPageTables(dir);
    expect(imp.root).toBe(mapper.root);
    expect(imp.levels).toBe(4);
    const text = infoTlb(m.mem, mapper.root, 4);
    expect(text).toContain("ff7fbfdfe000"); // the recursive slot shows the root itself as a page
    expect(infoTlb(imp.mem, imp.root, 4)).toBe(text);
    const cpu2 = new Cpu(imp.mem, { levels: 4 });
    cpu2.writeCr3(imp.root);
    for (const va of [
      0x400123n,
      0xffff888000001000n,
      0xffff888040012000n,
      0xffffffff80000000n,
      0xffff7fbfdfeff000n,
    ]) {
      const vpn = vpnOf(va);
      expect(peekWalk(cpu2, vpn)).toEqual(peekWalk(cpu, vpn));
    }
    for (const t of imp.tables)
      expect(imp.mem.readBytes(t * 4096, 4096)).toEqual(m.mem.readBytes(t * 4096, 4096));
  });

  it("a recursive slot does not make the walk loop, and each table is written once", () => {
    const { m, mapper } = handTree();
    const t = reachableTables(m.mem, mapper.root, 4);
    expect(new Set(t).size).toBe(t.length);
    expect(t).toContain(mapper.root);
  });

  it("exports the demo address space (4- and 5-level) and re-imports it identically", () => {
    for (const levels of [4, 5] as const) {
      const demo = runDemo({ levels, map: "qemu:3G" });
      const dir = tmp();
      const r = exportPageTables(demo.machine.mem, demo.mapper.root, levels, dir);
      expect(r.tables.length).toBe(demo.pageTablePages);
      const imp = importPageTables(dir);
      expect(infoTlb(imp.mem, imp.root, levels)).toBe(infoTlb(demo.machine.mem, demo.mapper.root, levels));
      const { vpn } = vaToVpn(0xffffffff80000000n, levels);
      expect(peekWalk(new Cpu(imp.mem, { levels }), vpn, imp.root)?.base).toBe(0x1000);
    }
  });

  it("rejects bad input with PagelabError codes", () => {
    const { m, mapper } = handTree();
    expect(() => exportPageTables(m.mem, mapper.root, 3 as 4, tmp())).toThrow(/4 or 5/);
    const dir = tmp();
    exportPageTables(m.mem, mapper.root, 4, dir);
    const idx = JSON.parse(readFileSync(join(dir, "index.json"), "utf8"));
    const bad = (o: unknown) => () => parseExportIndex(JSON.stringify(o), "index.json", 8 * 4096);
    expect(bad({ ...idx, extra: 1 })).toThrow(/exactly the keys/);
    expect(bad({ ...idx, levels: 3 })).toThrow(/levels must be 4 or 5/);
    expect(bad({ ...idx, cr3: "0x1234" })).toThrow(/cr3/);
    expect(bad({ ...idx, pages: [{ pa: "0x1000", offset: 100 }] })).toThrow(/multiple of 4096/);
    expect(bad({ ...idx, pages: [{ pa: "0x1000", offset: 8 * 4096 }] })).toThrow(/past the end/);
    writeFileSync(join(dir, "index.json"), JSON.stringify({ ...idx, pages: idx.pages.slice(1) }));
    expect(() => importPageTables(dir)).toThrow(/root table/);
    expect(() => importPageTables(join(dir, "missing"))).toThrow(/cannot read/);
  });

  it("a 5-level hand tree with a 2M leaf round-trips", () => {
    const s = setup({ levels: 5 });
    const { vpn } = vaToVpn(0xff11000000200000n, 5);
    s.mapper.map(vpn, 0x200, PAGE_2M, { write: true }).ignore();
    const dir = tmp();
    exportPageTables(s.m.mem, s.mapper.root, 5, dir);
    const imp = importPageTables(dir);
    expect(imp.levels).toBe(5);
    expect(infoTlb(imp.mem, imp.root, 5)).toBe("ff11000000200000: 0000000000200000 --P-----W\n");
  });
});
