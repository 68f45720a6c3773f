/**
 * x86-64 paging-structure entries (Intel SDM Vol. 3A, 4.5; AMD APM Vol. 2, 5.3).
 *
 * An entry is 64 bits, kept as two u32 words `lo` (bits 31..0) and `hi` (bits 63..32) so that no BigInt
 * touches a hot path:
 *
 *   63  62..59  58..52  51 ........ M  M-1 ............ 12  11..9  8  7    6  5  4   3   2  1  0
 *  +--+-------+-------+--------------+--------------------+------+--+----+--+--+---+---+--+--+--+
 *  |XD|  PK   |  AVL  |  reserved(0) |  PFN (frame)       | AVL  |G |PS/ |D |A |PCD|PWT|US|RW|P |
 *  |  |       |       |              |                    |      |  |PAT |  |  |   |   |  |  |  |
 *  +--+-------+-------+--------------+--------------------+------+--+----+--+--+---+---+--+--+--+
 *   M = MAXPHYADDR. In a 2 MiB / 1 GiB leaf, bit 12 is PAT and bits 20..13 / 29..13 are reserved.
 *   Bit 7 is PS in PDPTEs and PDEs, PAT in 4 KiB PTEs, and reserved in PML4Es and PML5Es.
 *   G is ignored except in leaves (and only honoured with CR4.PGE). PK (bits 62..59) is used only with
 *   CR4.PKE/PKS; otherwise ignored. XD is reserved unless IA32_EFER.NXE = 1.
 *
 * The frame number is rebuilt as `(hi & 0xFFFFF) * 2^20 + (lo >>> 12)` (40 bits at most).
 */
import { fail, hex } from "../../errors.ts";

/** Bits of the low word. */
export const enum Pte {
  P = 1 << 0,
  RW = 1 << 1,
  US = 1 << 2,
  PWT = 1 << 3,
  PCD = 1 << 4,
  A = 1 << 5,
  D = 1 << 6,
  /** Page size in PDPTE/PDE; PAT in a 4 KiB PTE. */
  PS = 1 << 7,
  PAT4K = 1 << 7,
  G = 1 << 8,
  /** PAT bit of a 2 MiB / 1 GiB leaf. */
  PAT_LARGE = 1 << 12,
}

/** Bits of the high word. */
export const enum PteHi {
  /** Execute-disable, bit 63. */
  XD = 0x80000000 | 0,
  /** Protection key, bits 62..59, i.e. bits 30..27 of the high word. */
  PK_SHIFT = 27,
  PK_MASK = 0x78000000,
  /** PFN bits 51..32 live in high-word bits 19..0. */
  PFN_MASK = 0xfffff,
}

export const LEVEL_NAMES = ["pte", "pmd", "pud", "p4d", "pgd"] as const;
/** SDM names by level (1 = PT ... 5 = PML5). */
export const SDM_NAMES = ["", "PTE", "PDE", "PDPTE", "PML4E", "PML5E"] as const;

/** Leaf sizes, as log2 of 4 KiB pages: 0 = 4 KiB, 9 = 2 MiB, 18 = 1 GiB. */
export type PageShift = 0 | 9 | 18;
export const PAGE_4K: PageShift = 0;
export const PAGE_2M: PageShift = 9;
export const PAGE_1G: PageShift = 18;

export function pageShiftName(s: PageShift): string {
  return s === 0 ? "4K" : s === 9 ? "2M" : "1G";
}

/** Level of the table that holds a leaf of this size (1 = PT, 2 = PD, 3 = PDPT). */
export function leafLevel(s: PageShift): number {
  return s / 9 + 1;
}

export function pfnOf(lo: number, hi: number): number {
  return (hi & 0xfffff) * 0x100000 + (lo >>> 12);
}

/** Low word holding frame bits 31..12 of `pfn`. */
export function loWithPfn(pfn: number, flags: number): number {
  return ((pfn % 0x100000) * 4096 + (flags & 0xfff)) >>> 0;
}

export function hiWithPfn(pfn: number, hiFlags: number): number {
  return ((hiFlags & ~0xfffff) | Math.floor(pfn / 0x100000)) >>> 0;
}

/**
 * Mask of high-word bits that are reserved (must be zero) for this MAXPHYADDR: bits 51..M, and bit 63
 * when EFER.NXE = 0.
 */
export function reservedHiMask(maxPhysAddrBits: number, nxe: boolean): number {
  let m = 0;
  for (let b = maxPhysAddrBits; b <= 51; b++) m |= 1 << (b - 32);
  if (!nxe) m |= 1 << 31;
  return m >>> 0;
}

/**
 * Low-word bits reserved in an entry at `level` (1..5) that maps (`ps`) or references a table.
 * PML4E/PML5E: bit 7. 1 GiB leaf: bits 29..13. 2 MiB leaf: bits 20..13.
 */
export function reservedLoMask(level: number, ps: boolean): number {
  if (level >= 4) return Pte.PS;
  if (level === 3 && ps) return 0x3fffe000;
  if (level === 2 && ps) return 0x001fe000;
  return 0;
}

/** A decoded entry, for the edges (dumps, the CLI, tests). Never used on hot paths. */
export interface DecodedPte {
  raw: bigint;
  present: boolean;
  writable: boolean;
  user: boolean;
  pwt: boolean;
  pcd: boolean;
  accessed: boolean;
  dirty: boolean;
  /** Bit 7: PS for levels 2/3, PAT for level 1. */
  ps: boolean;
  global: boolean;
  pat: boolean;
  nx: boolean;
  pk: number;
  /** Available-to-software bits 11..9 and 58..52, as one number (bits 9..11 in 0..2, 52..58 in 3..9). */
  avl: number;
  pfn: number;
}

export function decodePte(lo: number, hi: number, level = 1): DecodedPte {
  const large = (level === 2 || level === 3) && (lo & Pte.PS) !== 0;
  let pfn = pfnOf(lo, hi);
  if (large) pfn -= pfn % 2; // bit 12 is PAT in a large leaf
  return {
    raw: (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0),
    present: (lo & Pte.P) !== 0,
    writable: (lo & Pte.RW) !== 0,
    user: (lo & Pte.US) !== 0,
    pwt: (lo & Pte.PWT) !== 0,
    pcd: (lo & Pte.PCD) !== 0,
    accessed: (lo & Pte.A) !== 0,
    dirty: (lo & Pte.D) !== 0,
    ps: (lo & Pte.PS) !== 0,
    global: (lo & Pte.G) !== 0,
    pat: level === 1 ? (lo & Pte.PAT4K) !== 0 : large && (lo & Pte.PAT_LARGE) !== 0,
    nx: (hi & PteHi.XD) !== 0,
    pk: (hi & PteHi.PK_MASK) >>> PteHi.PK_SHIFT,
    avl: ((lo >>> 9) & 7) | (((hi >>> 20) & 0x7f) << 3),
    pfn,
  };
}

/** Split a 64-bit bigint entry into words. */
export function splitPte(raw: bigint): { lo: number; hi: number } {
  if (raw < 0n || raw >= 1n << 64n) fail("BAD_PTE", `page-table entry ${raw} is not a 64-bit value`);
  return { lo: Number(raw & 0xffffffffn), hi: Number(raw >> 32n) };
}

/** Permissions and attributes for a mapping, as the mapper's callers give them. */
export interface Prot {
  write?: boolean;
  user?: boolean;
  nx?: boolean;
  global?: boolean;
  pwt?: boolean;
  pcd?: boolean;
  pat?: boolean;
  /** Protection key 0..15. */
  pk?: number;
}

/** Encode a leaf entry for `pfn` at page size `s` with protections `p` (P is always set). */
export function encodeLeaf(pfn: number, s: PageShift, p: Prot): { lo: number; hi: number } {
  let flags = Pte.P;
  if (p.write) flags |= Pte.RW;
  if (p.user) flags |= Pte.US;
  if (p.pwt) flags |= Pte.PWT;
  if (p.pcd) flags |= Pte.PCD;
  if (p.global) flags |= Pte.G;
  if (s !== 0) flags |= Pte.PS;
  let lo = loWithPfn(pfn, flags);
  if (p.pat) lo = (lo | (s === 0 ? Pte.PAT4K : Pte.PAT_LARGE)) >>> 0;
  let hiFlags = p.nx ? PteHi.XD : 0;
  if (p.pk !== undefined) {
    if (!Number.isInteger(p.pk) || p.pk < 0 || p.pk > 15)
      fail("BAD_PROT", `protection key ${p.pk} is not 0..15`);
    hiFlags |= p.pk << PteHi.PK_SHIFT;
  }
  return { lo, hi: hiWithPfn(pfn, hiFlags) };
}

/** Short flag string for tables and logs: e.g. "P RW US A D PS G NX". */
export function flagString(lo: number, hi: number, level = 1): string {
  const d = decodePte(lo, hi, level);
  const f: string[] = [];
  if (d.present) f.push("P");
  if (d.writable) f.push("RW");
  if (d.user) f.push("US");
  if (d.pwt) f.push("PWT");
  if (d.pcd) f.push("PCD");
  if (d.accessed) f.push("A");
  if (d.dirty) f.push("D");
  if (level !== 1 && d.ps) f.push("PS");
  if (d.pat) f.push("PAT");
  if (d.global) f.push("G");
  if (d.pk) f.push(`PK${d.pk}`);
  if (d.nx) f.push("NX");
  return f.join(" ");
}

export function describeEntry(lo: number, hi: number, level: number): string {
  return `${SDM_NAMES[level]} ${hex((BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0))} [${flagString(lo, hi, level)}]`;
}
