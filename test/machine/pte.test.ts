import { describe, expect, it } from "vitest";
import {
  decodePte,
  encodeLeaf,
  flagString,
  PAGE_1G,
  PAGE_2M,
  PAGE_4K,
  pfnOf,
  reservedHiMask,
  reservedLoMask,
  splitPte,
} from "../../src/machine/x86/pte.ts";
import {
  formatVa,
  isCanonical,
  parseVpn,
  tableIndex,
  vaToVpn,
  vpnToVa,
} from "../../src/machine/x86/vaddr.ts";

describe("page-table entry encoding", () => {
  it("puts every architectural bit where the SDM says", () => {
    const e = encodeLeaf(0x12345, PAGE_4K, {
      write: true,
      user: true,
      pwt: true,
      pcd: true,
      global: true,
      pat: true,
      nx: true,
      pk: 9,
    });
    const raw = (BigInt(e.hi) << 32n) | BigInt(e.lo);
    expect(raw & 1n).toBe(1n); // P
    expect((raw >> 1n) & 1n).toBe(1n); // RW
    expect((raw >> 2n) & 1n).toBe(1n); // US
    expect((raw >> 3n) & 1n).toBe(1n); // PWT
    expect((raw >> 4n) & 1n).toBe(1n); // PCD
    expect((raw >> 7n) & 1n).toBe(1n); // PAT of a 4 KiB PTE is bit 7
    expect((raw >> 8n) & 1n).toBe(1n); // G
    expect((raw >> 12n) & ((1n << 40n) - 1n)).toBe(0x12345n); // PFN bits 12..51
    expect((raw >> 59n) & 15n).toBe(9n); // protection key bits 59..62
    expect(raw >> 63n).toBe(1n); // XD
    const d = decodePte(e.lo, e.hi, 1);
    expect(d).toMatchObject({
      present: true,
      writable: true,
      user: true,
      pwt: true,
      pcd: true,
      pat: true,
      global: true,
      nx: true,
      pk: 9,
      pfn: 0x12345,
    });
    expect(d.ps).toBe(true); // bit 7 is set: in a PTE it means PAT
  });

  it("places PAT at bit 12 and PS at bit 7 in large leaves", () => {
    const e = encodeLeaf(0x200, PAGE_2M, { pat: true });
    expect(e.lo & 0x80).toBe(0x80);
    expect(e.lo & 0x1000).toBe(0x1000);
    const d = decodePte(e.lo, e.hi, 2);
    expect(d.pat).toBe(true);
    expect(d.pfn).toBe(0x200); // the PAT bit is not part of the frame
    const g = encodeLeaf(0x40000, PAGE_1G, { write: true });
    expect(decodePte(g.lo, g.hi, 3)).toMatchObject({ ps: true, pfn: 0x40000, writable: true, pat: false });
  });

  it("round-trips frame numbers up to 2^40 - 1", () => {
    for (const pfn of [0, 1, 0xfffff, 0x100000, 2 ** 40 - 1, 0x123456789]) {
      const e = encodeLeaf(pfn, PAGE_4K, {});
      expect(pfnOf(e.lo, e.hi)).toBe(pfn);
    }
  });

  it("knows the reserved bits", () => {
    expect(reservedHiMask(52, true)).toBe(0);
    expect(reservedHiMask(52, false)).toBe(0x80000000);
    expect(reservedHiMask(46, true)).toBe(0x000fc000); // bits 51..46
    expect(reservedLoMask(4, false)).toBe(0x80); // PS in a PML4E
    expect(reservedLoMask(5, false)).toBe(0x80);
    expect(reservedLoMask(3, true)).toBe(0x3fffe000); // 1 GiB leaf: bits 29..13
    expect(reservedLoMask(2, true)).toBe(0x001fe000); // 2 MiB leaf: bits 20..13
    expect(reservedLoMask(1, false)).toBe(0);
  });

  it("splits bigints and prints flags", () => {
    const { lo, hi } = splitPte(0x8000000000000067n);
    expect(flagString(lo, hi, 1)).toBe("P RW US A D NX");
    expect(() => splitPte(1n << 64n)).toThrow(/64-bit/);
  });
});

describe("virtual addresses", () => {
  it("checks canonical form for 48- and 57-bit addresses", () => {
    expect(isCanonical(0x00007fffffffffffn, 4)).toBe(true);
    expect(isCanonical(0xffff800000000000n, 4)).toBe(true);
    expect(isCanonical(0x0000800000000000n, 4)).toBe(false);
    expect(isCanonical(0xff00000000000000n, 5)).toBe(true);
    expect(isCanonical(0x0100000000000000n, 5)).toBe(false);
    expect(isCanonical(0x0000800000000000n, 5)).toBe(true);
    expect(() => vaToVpn(0x0000800000000000n, 4)).toThrow(/not canonical for 4-level paging/);
  });

  it("converts between addresses and VPNs", () => {
    const { vpn, offset } = vaToVpn(0xffff888000001234n, 4);
    expect(offset).toBe(0x234);
    expect(vpnToVa(vpn, 4, offset)).toBe(0xffff888000001234n);
    expect(formatVa(vpn, 4)).toBe("0xffff888000001000");
    expect(tableIndex(vpn, 4)).toBe(273); // Linux's direct map lives in PML4 slot 273
    expect(tableIndex(vpn, 1)).toBe(1);
    const five = parseVpn("0xff11000000000000", 5);
    expect(tableIndex(five.vpn, 5)).toBe(273); // 5-level direct map: PML5 slot 273 (bits 56..48)
    expect(tableIndex(five.vpn, 4)).toBe(0);
    expect(() => parseVpn("0xzz", 4)).toThrow(/not a hex/);
  });
});
