/**
 * The MMU page walk, as the SDM specifies it (Vol. 3A, 4.5 "4-level and 5-level paging", 4.6 "access
 * rights", 4.7 "page-fault exceptions", 4.8 "accessed and dirty flags").
 *
 *   CR3 ──► PML5 ──► PML4 ──► PDPT ──► PD ──► PT ──► 4 KiB page
 *  (LA57)   [56:48]  [47:39]  [38:30]  [29:21] [20:12]
 *                               │PS=1     │PS=1
 *                               ▼         ▼
 *                             1 GiB     2 MiB page
 *
 * At every level: a non-present entry faults (error code P=0); a set reserved bit faults with P=1 and
 * RSVD=1; otherwise the rights accumulate (RW and US are ANDed over the levels, XD is ORed) and the
 * Accessed flag of the entry is set. At the leaf the accumulated rights are checked against the access
 * (CPL, write, fetch, CR0.WP, CR4.SMEP/SMAP, EFLAGS.AC, protection keys); if allowed, A (and D on a
 * write) is set in the leaf and the translation is cached in the TLB.
 *
 * As in QEMU and real processors, the Accessed flags of the upper levels are set before the final
 * rights check, so a walk that faults on rights still leaves them set; the leaf's A/D are set only when
 * the access is allowed.
 *
 * Every entry read is one memory reference (`walkReads`), every A/D write-back one `walkWrites`.
 */
import type { Cpu } from "./cpu.ts";
import { Pte, reservedLoMask } from "./pte.ts";
import { TlbPerm } from "./tlb.ts";
import { LEVEL_SPAN, tableIndex } from "./vaddr.ts";

/** What kind of access: combine READ/WRITE/FETCH with USER (CPL 3) and IMPLICIT (supervisor implicit). */
export const enum Access {
  READ = 0,
  WRITE = 1,
  FETCH = 2,
  /** The access is made at CPL 3. */
  USER = 4,
  /** An implicit supervisor access (descriptor tables etc.): SMAP applies regardless of EFLAGS.AC. */
  IMPLICIT = 8,
}

/** Page-fault error code bits (SDM 4.7). */
export const enum PfErr {
  P = 1,
  W = 2,
  U = 4,
  RSVD = 8,
  I = 16,
  PK = 32,
}

const DENY = 1;
const DENY_PK = 2;

/**
 * Rights check of the SDM's section 4.6 for an access against the effective rights `perm` (TlbPerm
 * bits, protection key in bits 7..4). Returns 0 (allowed), DENY or DENY_PK.
 */
export function checkRights(cpu: Cpu, access: number, perm: number): number {
  const user = (access & Access.USER) !== 0;
  const write = (access & Access.WRITE) !== 0;
  const fetch = (access & Access.FETCH) !== 0;
  const pUser = (perm & TlbPerm.US) !== 0;
  if (user) {
    if (!pUser) return DENY;
    if (fetch) return (perm & TlbPerm.XD) !== 0 ? DENY : 0;
    if (write && (perm & TlbPerm.RW) === 0) return DENY;
  } else if (fetch) {
    if (pUser && cpu.smep) return DENY;
    return (perm & TlbPerm.XD) !== 0 ? DENY : 0;
  } else {
    if (pUser && cpu.smap && ((access & Access.IMPLICIT) !== 0 || !cpu.ac)) return DENY;
    if (write && (perm & TlbPerm.RW) === 0 && cpu.wp) return DENY;
  }
  if (cpu.pke && pUser && !fetch) {
    const k = perm >>> 4;
    if (((cpu.pkru >>> (2 * k)) & 1) !== 0) return DENY_PK;
    if (write && ((cpu.pkru >>> (2 * k + 1)) & 1) !== 0 && (user || cpu.wp)) return DENY_PK;
  }
  return 0;
}

/** Raise a page fault: record CR2 and the error code, drop TLB entries for the address (SDM 4.10.4.1). */
export function pageFault(cpu: Cpu, vpn: number, access: number, bits: number): number {
  let code = bits;
  if ((access & Access.WRITE) !== 0) code |= PfErr.W;
  if ((access & Access.USER) !== 0) code |= PfErr.U;
  if ((access & Access.FETCH) !== 0 && (cpu.nxe || cpu.smep)) code |= PfErr.I;
  cpu.faultCode = code;
  cpu.cr2Vpn = vpn;
  cpu.counters.pageFaults++;
  cpu.tlb.invalidateAddress(vpn, cpu.currentPcid, false);
  return -1;
}

const pscOut = { base: 0, perm: 0 };

/**
 * Walk the page tables for `vpn` and fill the TLB. Returns the frame number of the 4 KiB frame that
 * holds the page, or -1 after raising a page fault (see `cpu.faultCode`, `cpu.cr2Vpn`).
 */
export function walk(cpu: Cpu, vpn: number, access: number): number {
  const c = cpu.counters;
  const mem = cpu.mem;
  const pcid = cpu.currentPcid;
  c.walks++;
  let table = cpu.cr3Pfn;
  let level = cpu.levels;
  // Accumulated rights: RW and US start allowed and are ANDed, XD starts clear and is ORed.
  let perm = TlbPerm.RW | TlbPerm.US;
  const psc = cpu.psc;
  if (psc !== null) {
    const l = psc.lookup(vpn, pcid, cpu.levels, pscOut);
    if (l !== 0) {
      c.pscHits++;
      table = pscOut.base;
      perm = pscOut.perm;
      level = l - 1;
    }
  }
  const rsvdHi = cpu.reservedHi;
  for (;;) {
    const index = level <= 3 ? (vpn >>> ((level - 1) * 9)) & 511 : (vpn / LEVEL_SPAN[level]) & 511;
    const pa = table * 4096 + index * 8;
    const lo = mem.peek32(pa);
    const hi = mem.peek32(pa + 4);
    c.walkReads++;
    if ((lo & Pte.P) === 0) return pageFault(cpu, vpn, access, 0);
    const ps = (level === 2 || level === 3) && (lo & Pte.PS) !== 0;
    // The test of `reservedEntry`, inlined for the hot path (as in peekWalk): keep them in step.
    if (
      (hi & rsvdHi) !== 0 ||
      (lo & reservedLoMask(level, ps)) !== 0 ||
      (level === 3 && ps && !cpu.pdpe1gb)
    ) {
      return pageFault(cpu, vpn, access, PfErr.P | PfErr.RSVD);
    }
    if ((lo & Pte.RW) === 0) perm &= ~TlbPerm.RW;
    if ((lo & Pte.US) === 0) perm &= ~TlbPerm.US;
    if (hi >>> 31 === 1) perm |= TlbPerm.XD;
    if (level === 1 || ps) return walkLeaf(cpu, vpn, access, level, pa, lo, hi, perm);
    if ((lo & Pte.A) === 0) {
      mem.poke32(pa, (lo | Pte.A) >>> 0);
      c.walkWrites++;
    }
    const next = (hi & 0xfffff) * 0x100000 + (lo >>> 12);
    if (psc !== null) psc.insert(level, vpn, pcid, next, perm);
    table = next;
    level--;
  }
}

function walkLeaf(
  cpu: Cpu,
  vpn: number,
  access: number,
  level: number,
  pa: number,
  lo: number,
  hi: number,
  perm: number,
): number {
  const pk = (hi >>> 27) & 15;
  const rights = checkRights(cpu, access, perm | (pk << 4));
  if (rights !== 0) return pageFault(cpu, vpn, access, rights === DENY_PK ? PfErr.P | PfErr.PK : PfErr.P);
  let nlo = lo | Pte.A;
  if ((access & Access.WRITE) !== 0) nlo |= Pte.D;
  if (nlo !== lo) {
    cpu.mem.poke32(pa, nlo >>> 0);
    cpu.counters.walkWrites++;
  }
  const shift = (level - 1) * 9;
  const span = 1 << shift;
  const pfn = (hi & 0xfffff) * 0x100000 + (lo >>> 12);
  const base = pfn - (pfn & (span - 1)); // drops the PAT bit (bit 12) of a large leaf; & (no fmod) on integers below 2^53
  if ((nlo & Pte.D) !== 0) perm |= TlbPerm.DIRTY;
  const global = (lo & Pte.G) !== 0 && cpu.pge ? 1 : 0;
  cpu.fillTlb(vpn, shift, base, perm | (pk << 4), global, access);
  return base + (vpn & (span - 1));
}

/** Result of an inspection walk (no side effects, nothing counted). */
export interface PeekResult {
  /** Frame of the 4 KiB page holding vpn. */
  pfn: number;
  /** Base frame of the leaf and its size as log2 of 4 KiB pages (0, 9, 18). */
  base: number;
  shift: number;
  /** Effective rights (TlbPerm bits, PK in 7..4); DIRTY from the leaf. */
  perm: number;
  /** Level of the leaf entry (1..3) and its raw words. */
  level: number;
  lo: number;
  hi: number;
  /** Physical address of the leaf entry. */
  entryPa: number;
}

/**
 * True when a present entry at `level` (1..5) has a bit set that this CPU reserves, so that a walk
 * through it faults with P|RSVD (SDM 4.5, 4.7): address bits at or above MAXPHYADDR, XD without
 * EFER.NXE, PS in a PML4E/PML5E, bits 20..13 / 29..13 of a 2 MiB / 1 GiB leaf, and PS in a PDPTE
 * without CPUID.80000001H:EDX.Page1GB. `walk` and `peekWalk` inline the same test.
 */
export function reservedEntry(cpu: Cpu, level: number, lo: number, hi: number): boolean {
  const ps = (level === 2 || level === 3) && (lo & Pte.PS) !== 0;
  return (
    (hi & cpu.reservedHi) !== 0 ||
    (lo & reservedLoMask(level, ps)) !== 0 ||
    (level === 3 && ps && !cpu.pdpe1gb)
  );
}

/**
 * Translate without touching A/D bits or counters, as a debugger or checker would. Returns null where
 * the hardware would fault for a non-present or reserved entry (the same reserved bits as `walk`,
 * CPUID Page1GB included).
 */
export function peekWalk(cpu: Cpu, vpn: number, root = cpu.cr3Pfn): PeekResult | null {
  let table = root;
  let perm = TlbPerm.RW | TlbPerm.US;
  for (let level: number = cpu.levels; level >= 1; level--) {
    const pa = table * 4096 + tableIndex(vpn, level) * 8;
    const lo = cpu.mem.peek32(pa);
    const hi = cpu.mem.peek32(pa + 4);
    if ((lo & Pte.P) === 0) return null;
    const ps = (level === 2 || level === 3) && (lo & Pte.PS) !== 0;
    if (
      (hi & cpu.reservedHi) !== 0 ||
      (lo & reservedLoMask(level, ps)) !== 0 ||
      (level === 3 && ps && !cpu.pdpe1gb)
    )
      return null;
    if ((lo & Pte.RW) === 0) perm &= ~TlbPerm.RW;
    if ((lo & Pte.US) === 0) perm &= ~TlbPerm.US;
    if (hi >>> 31 === 1) perm |= TlbPerm.XD;
    const pfn = (hi & 0xfffff) * 0x100000 + (lo >>> 12);
    if (level === 1 || ps) {
      const shift = (level - 1) * 9;
      const span = 2 ** shift;
      const base = pfn - (pfn & (span - 1));
      if ((lo & Pte.D) !== 0) perm |= TlbPerm.DIRTY;
      perm |= ((hi >>> 27) & 15) << 4;
      return { pfn: base + (vpn & (span - 1)), base, shift, perm, level, lo, hi, entryPa: pa };
    }
    table = pfn;
  }
  return null;
}
