import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Machine } from "../../src/machine/machine.ts";
import type { PhysMem } from "../../src/machine/phys-mem.ts";
import { explainWalk } from "../../src/machine/x86/explain.ts";
import { Access, PfErr, peekWalk } from "../../src/machine/x86/mmu.ts";
import { PAGE_1G, PAGE_2M, PAGE_4K, Pte } from "../../src/machine/x86/pte.ts";
import { tableIndex, vaToVpn } from "../../src/machine/x86/vaddr.ts";
import { setup, vpnOf } from "./helpers.ts";

const KVA = vpnOf(0xffffffff80000000n); // kernel text, -2 GiB
const UVA = vpnOf(0x0000000000400000n); // a user page

describe("MMU walk: translations", () => {
  it("translates 4 KiB, 2 MiB and 1 GiB leaves with 4, 3 and 2 memory references", () => {
    const { m, cpu, mapper } = setup();
    mapper.map(KVA, 0x1234, PAGE_4K, { write: true }).ignore();
    mapper.map(vpnOf(0xffff888000000000n), 0x200, PAGE_2M, { write: true }).ignore();
    mapper.map(vpnOf(0xffff888040000000n), 0x40000, PAGE_1G, { write: true }).ignore();
    let r = m.counters.walkReads;
    expect(cpu.translate(KVA, Access.READ)).toBe(0x1234);
    expect(m.counters.walkReads - r).toBe(4);
    r = m.counters.walkReads;
    expect(cpu.translate(vpnOf(0xffff888000000000n) + 7, Access.READ)).toBe(0x207);
    expect(m.counters.walkReads - r).toBe(3);
    r = m.counters.walkReads;
    expect(cpu.translate(vpnOf(0xffff888040000000n) + 0x3ffff, Access.READ)).toBe(0x40000 + 0x3ffff);
    expect(m.counters.walkReads - r).toBe(2);
    expect(m.counters.walks).toBe(3);
  });

  it("walks five levels with LA57", () => {
    const { m, cpu, mapper } = setup({ levels: 5 });
    const { vpn } = vaToVpn(0xff11000000000000n, 5);
    mapper.map(vpn, 0x777, PAGE_4K, {}).ignore();
    const r = m.counters.walkReads;
    expect(cpu.translate(vpn, Access.READ)).toBe(0x777);
    expect(m.counters.walkReads - r).toBe(5);
  });

  it("sets Accessed on every level and Dirty only on a write", () => {
    const { m, cpu, mapper } = setup();
    mapper.map(KVA, 0x50, PAGE_4K, { write: true }).ignore();
    cpu.translate(KVA, Access.READ);
    let leaf = peekWalk(cpu, KVA)!;
    expect(leaf.lo & Pte.A).toBe(Pte.A);
    expect(leaf.lo & Pte.D).toBe(0);
    // every upper entry on the path is accessed too
    let table = mapper.root;
    for (let level = 4; level > 1; level--) {
      const pa = table * 4096 + tableIndex(KVA, level) * 8;
      const lo = m.mem.peek32(pa);
      expect(lo & Pte.A).toBe(Pte.A);
      table = (m.mem.peek32(pa + 4) & 0xfffff) * 2 ** 20 + (lo >>> 12);
    }
    cpu.translate(KVA, Access.WRITE); // clean TLB entry: the CPU walks again to set D
    leaf = peekWalk(cpu, KVA)!;
    expect(leaf.lo & Pte.D).toBe(Pte.D);
    expect(m.counters.walks).toBe(2);
  });

  it("leaves the leaf's A/D alone when the access faults on rights, as QEMU does", () => {
    const { cpu, mapper } = setup();
    mapper.map(KVA, 0x50, PAGE_4K, { write: false }).ignore();
    expect(cpu.translate(KVA, Access.WRITE)).toBe(-1);
    expect(peekWalk(cpu, KVA)!.lo & (Pte.A | Pte.D)).toBe(0);
  });
});

describe("MMU walk: page faults and error codes (SDM 4.7)", () => {
  it("not present: P=0, with W/U/I bits of the access and CR2", () => {
    const { cpu } = setup();
    expect(cpu.translate(UVA, Access.READ)).toBe(-1);
    expect(cpu.faultCode).toBe(0);
    expect(cpu.cr2Vpn).toBe(UVA);
    cpu.translate(UVA, Access.WRITE | Access.USER);
    expect(cpu.faultCode).toBe(PfErr.W | PfErr.U);
    cpu.translate(UVA, Access.FETCH | Access.USER);
    expect(cpu.faultCode).toBe(PfErr.U | PfErr.I); // NXE is on: I/D is reported
  });

  it("I/D is clear for fetches when neither NXE nor SMEP is on", () => {
    const { cpu } = setup({ nxe: false });
    cpu.translate(UVA, Access.FETCH | Access.USER);
    expect(cpu.faultCode).toBe(PfErr.U);
  });

  it("user access to a supervisor page: P|U; user write to read-only: P|W|U", () => {
    const { cpu, mapper } = setup();
    mapper.map(KVA, 0x50, PAGE_4K, { write: true }).ignore();
    mapper.map(UVA, 0x60, PAGE_4K, { user: true, write: false }).ignore();
    expect(cpu.translate(KVA, Access.READ | Access.USER)).toBe(-1);
    expect(cpu.faultCode).toBe(PfErr.P | PfErr.U);
    expect(cpu.translate(UVA, Access.READ | Access.USER)).toBe(0x60);
    expect(cpu.translate(UVA, Access.WRITE | Access.USER)).toBe(-1);
    expect(cpu.faultCode).toBe(PfErr.P | PfErr.W | PfErr.U);
  });

  it("CR0.WP decides whether the kernel may write read-only pages", () => {
    const { cpu, mapper } = setup();
    mapper.map(KVA, 0x50, PAGE_4K, { write: false }).ignore();
    expect(cpu.translate(KVA, Access.WRITE)).toBe(-1);
    expect(cpu.faultCode).toBe(PfErr.P | PfErr.W);
    cpu.setControl({ wp: false });
    expect(cpu.translate(KVA, Access.WRITE)).toBe(0x50);
  });

  it("XD: fetching from a no-execute page faults with P|I", () => {
    const { cpu, mapper } = setup();
    mapper.map(KVA, 0x50, PAGE_4K, { nx: true }).ignore();
    expect(cpu.translate(KVA, Access.READ)).toBe(0x50);
    expect(cpu.translate(KVA, Access.FETCH)).toBe(-1);
    expect(cpu.faultCode).toBe(PfErr.P | PfErr.I);
  });

  it("XD set while EFER.NXE = 0 is a reserved-bit fault", () => {
    const { cpu, mapper } = setup({ nxe: false });
    mapper.map(KVA, 0x50, PAGE_4K, { nx: true }).ignore();
    expect(cpu.translate(KVA, Access.READ)).toBe(-1);
    expect(cpu.faultCode).toBe(PfErr.P | PfErr.RSVD);
  });

  it("reserved bits: PS in a PML4E, address bits above MAXPHYADDR, bits 20..13 of a 2 MiB leaf", () => {
    const { m, cpu, mapper } = setup({ maxPhysAddrBits: 40 });
    mapper.map(KVA, 0x50, PAGE_4K, {}).ignore();
    const pml4e = mapper.root * 4096 + tableIndex(KVA, 4) * 8;
    const lo = m.mem.peek32(pml4e);
    m.mem.poke32(pml4e, lo | Pte.PS);
    expect(cpu.translate(KVA, Access.READ)).toBe(-1);
    expect(cpu.faultCode).toBe(PfErr.P | PfErr.RSVD);
    m.mem.poke32(pml4e, lo);
    m.mem.poke32(pml4e + 4, 1 << 9); // physical address bit 41 with MAXPHYADDR 40
    expect(cpu.translate(KVA, Access.WRITE)).toBe(-1);
    expect(cpu.faultCode).toBe(PfErr.P | PfErr.RSVD | PfErr.W);
    m.mem.poke32(pml4e + 4, 0);
    const big = vpnOf(0xffff888000000000n);
    mapper.map(big, 0x200, PAGE_2M, {}).ignore();
    const leaf = peekWalk(cpu, big)!;
    m.mem.poke32(leaf.entryPa, leaf.lo | (1 << 13));
    expect(cpu.translate(big, Access.READ)).toBe(-1);
    expect(cpu.faultCode).toBe(PfErr.P | PfErr.RSVD);
  });

  it("a 1 GiB leaf is a reserved-bit fault without CPUID Page1GB", () => {
    const { cpu, mapper } = setup({ pdpe1gb: false });
    mapper.map(vpnOf(0xffff888000000000n), 0, PAGE_1G, {}).ignore();
    expect(cpu.translate(vpnOf(0xffff888000000000n), Access.READ)).toBe(-1);
    expect(cpu.faultCode).toBe(PfErr.P | PfErr.RSVD);
  });

  it("SMEP: the kernel may not execute user pages", () => {
    const { cpu, mapper } = setup({ smep: true });
    mapper.map(UVA, 0x60, PAGE_4K, { user: true }).ignore();
    expect(cpu.translate(UVA, Access.FETCH | Access.USER)).toBe(0x60);
    expect(cpu.translate(UVA, Access.FETCH)).toBe(-1);
    expect(cpu.faultCode).toBe(PfErr.P | PfErr.I);
  });

  it("SMAP: kernel data access to user pages needs EFLAGS.AC, and implicit accesses never pass", () => {
    const { cpu, mapper } = setup({ smap: true });
    mapper.map(UVA, 0x60, PAGE_4K, { user: true, write: true }).ignore();
    expect(cpu.translate(UVA, Access.READ)).toBe(-1);
    expect(cpu.faultCode).toBe(PfErr.P);
    cpu.setControl({ ac: true }); // STAC
    expect(cpu.translate(UVA, Access.WRITE)).toBe(0x60);
    expect(cpu.translate(UVA, Access.READ | Access.IMPLICIT)).toBe(-1);
  });

  it("protection keys: PKRU.AD blocks reads, PKRU.WD blocks writes, with the PK bit", () => {
    const { cpu, mapper } = setup({ pke: true });
    mapper.map(UVA, 0x60, PAGE_4K, { user: true, write: true, pk: 3 }).ignore();
    cpu.pkru = 1 << (2 * 3 + 1); // WD for key 3
    expect(cpu.translate(UVA, Access.READ | Access.USER)).toBe(0x60);
    expect(cpu.translate(UVA, Access.WRITE | Access.USER)).toBe(-1);
    expect(cpu.faultCode).toBe(PfErr.P | PfErr.W | PfErr.U | PfErr.PK);
    cpu.pkru = 1 << (2 * 3); // AD for key 3
    cpu.invlpg(UVA);
    expect(cpu.translate(UVA, Access.READ | Access.USER)).toBe(-1);
    expect(cpu.faultCode).toBe(PfErr.P | PfErr.U | PfErr.PK);
    expect(cpu.translate(UVA, Access.FETCH | Access.USER)).toBe(0x60); // keys do not govern fetches
  });

  it("rights accumulate over levels: a read-only upper entry makes the page read-only", () => {
    const { m, cpu, mapper } = setup();
    mapper.map(KVA, 0x50, PAGE_4K, { write: true }).ignore();
    const pml4e = mapper.root * 4096 + tableIndex(KVA, 4) * 8;
    m.mem.poke32(pml4e, m.mem.peek32(pml4e) & ~Pte.RW);
    expect(cpu.translate(KVA, Access.WRITE)).toBe(-1);
    expect(cpu.faultCode).toBe(PfErr.P | PfErr.W);
  });
});

/** Write raw 64-bit entries into RAM. */
function poke64(mem: PhysMem, entries: [pa: number, raw: bigint][]): void {
  for (const [pa, raw] of entries) {
    mem.write32(pa, Number(raw & 0xffffffffn));
    mem.write32(pa + 4, Number(raw >> 32n));
  }
}

describe("peekWalk agrees with the MMU", () => {
  // PML4[0] -> PDPT at 0x101000, whose entry 1 has PS=1: a 1 GiB page at 0x40000000.
  const oneGig = (pdpe1gb: boolean) => {
    const m = new Machine({ maxPhysAddrBits: 40, pdpe1gb });
    poke64(m.mem, [
      [0x100000, 0x101003n],
      [0x101008, 0x40000083n],
    ]);
    m.cpu0.writeCr3(0x100);
    return m.cpu0;
  };

  it("a PS=1 PDPTE without CPUID Page1GB: no translation from peekWalk, RSVD from translate", () => {
    const cpu = oneGig(false);
    expect(peekWalk(cpu, 0x40005)).toBeNull();
    expect(cpu.translate(0x40005, Access.READ)).toBe(-1);
    expect(cpu.faultCode).toBe(PfErr.P | PfErr.RSVD);
  });

  it("the same PDPTE with Page1GB maps the 1 GiB page for both", () => {
    const cpu = oneGig(true);
    expect(peekWalk(cpu, 0x40005)?.pfn).toBe(0x40005);
    expect(peekWalk(cpu, 0x40005)?.shift).toBe(PAGE_1G);
    expect(cpu.translate(0x40005, Access.READ)).toBe(0x40005);
  });

  it("explainWalk stops at an entry with reserved bits, as the MMU does, instead of reading beyond RAM", () => {
    const m = new Machine({ maxPhysAddrBits: 40 });
    poke64(m.mem, [[0x100000, 0x0000010000101003n]]); // PML4[0]: address field at 2^40 + 0x101000
    m.cpu0.writeCr3(0x100);
    const e = explainWalk(m.cpu0, 0x5, 0, Access.READ);
    expect(e.steps).toHaveLength(1);
    expect(e.steps[0].meaning).toMatch(/^reserved bits set/);
    expect(e.fault?.errorCode).toBe(PfErr.P | PfErr.RSVD);
    const g = explainWalk(oneGig(false), 0x40005, 0, Access.READ);
    expect(g.steps.map((s) => s.entry)).toEqual(["PML4E", "PDPTE"]);
    expect(g.steps[1].meaning).toMatch(/^reserved bits set/);
    expect(g.fault?.errorCode).toBe(PfErr.P | PfErr.RSVD);
  });

  it("property: peekWalk and translate agree on random small trees, with and without Page1GB", () => {
    // Six tables at frames 0x100..0x105 (root 0x100), entries 0..3 of each filled at random: pointers
    // to the tables (cycles included), frames aligned for large pages or not, below or beyond
    // MAXPHYADDR (40 bits), random flag bits (PS anywhere, XD with or without NXE).
    const TABLES = 6;
    const entry = fc.record({
      present: fc.nat(9).map((n) => n !== 0),
      pfn: fc.oneof(
        fc.integer({ min: 0x100, max: 0x100 + TABLES - 1 }),
        fc.nat(2 ** 10 - 1).map((n) => n * 2 ** 18), // 1 GiB-aligned
        fc.nat(2 ** 19 - 1).map((n) => n * 2 ** 9), // 2 MiB-aligned
        fc.nat(2 ** 28 - 1),
        fc.integer({ min: 2 ** 28, max: 2 ** 40 - 1 }), // beyond MAXPHYADDR: reserved bits
      ),
      flags: fc.integer({ min: 0, max: 0x1ff }),
      ps: fc.boolean(),
      xd: fc.boolean(),
    });
    const idx = fc.integer({ min: 0, max: 3 });
    fc.assert(
      fc.property(
        fc.array(entry, { minLength: TABLES * 4, maxLength: TABLES * 4 }),
        fc.array(fc.tuple(idx, idx, idx, idx), { minLength: 1, maxLength: 24 }),
        fc.boolean(),
        fc.boolean(),
        (entries, paths, pdpe1gb, nxe) => {
          const m = new Machine({ maxPhysAddrBits: 40, pdpe1gb, nxe, checkStale: true });
          entries.forEach((e, k) => {
            let lo = (e.pfn % 2 ** 20) * 4096 + (e.flags & ~(Pte.P | Pte.PS));
            if (e.present) lo += Pte.P;
            if (e.ps) lo += Pte.PS;
            const hi = Math.floor(e.pfn / 2 ** 20) + (e.xd ? 2 ** 31 : 0);
            const pa = (0x100 + (k >> 2)) * 4096 + (k & 3) * 8;
            m.mem.write32(pa, lo >>> 0);
            m.mem.write32(pa + 4, hi >>> 0);
          });
          const cpu = m.cpu0;
          cpu.writeCr3(0x100);
          for (const [i4, i3, i2, i1] of paths) {
            const vpn = i4 * 2 ** 27 + i3 * 2 ** 18 + i2 * 2 ** 9 + i1;
            const peek = peekWalk(cpu, vpn);
            const pfn = cpu.translate(vpn, Access.READ);
            expect(peek === null ? -1 : peek.pfn).toBe(pfn);
          }
          expect(m.staleReports()).toEqual([]);
        },
      ),
      { numRuns: 400 },
    );
  });
});
