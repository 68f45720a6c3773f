/**
 * Inspection of a page-table tree, as a debugger sees it: reads are uncounted (`peek32`) and change
 * nothing. Used by the dumps, the exporters and the invariant checker; never by simulated kernel code.
 *
 * The walk is blind, like hardware and like QEMU's `info tlb`: an entry is followed wherever it points,
 * so a recursive slot shows the tables themselves as pages. Depth is bounded by the paging levels, so
 * every walk ends. The one exception is a table address at or above 2^MAXPHYADDR: there is nothing to
 * read there (the MMU faults on such an entry with RSVD, QEMU's monitor reads no entries from it), so
 * the entry is visited with `badTable` set and its subtree is empty; the rest of the tree is walked.
 */
import { hex } from "../../errors.ts";
import type { PhysMem } from "../phys-mem.ts";
import { type PageShift, Pte, pfnOf, reservedHiMask, reservedLoMask } from "./pte.ts";
import { TlbPerm } from "./tlb.ts";
import type { Levels } from "./vaddr.ts";

export interface LeafVisit {
  /** First VPN of the leaf, its size, and the level (1..3) of its entry. */
  vpn: number;
  shift: PageShift;
  level: number;
  lo: number;
  hi: number;
  /** Base frame of the page and physical address of the entry. */
  base: number;
  entryPa: number;
  /** Effective rights over the path (TlbPerm.RW/US/XD). */
  perm: number;
}

export interface EntryVisit {
  vpn: number;
  level: number;
  lo: number;
  hi: number;
  entryPa: number;
  /** Effective rights over the path down to and including this entry. */
  perm: number;
  /** True when this entry is a leaf (level 1, or PS at level 2/3). */
  leaf: boolean;
  /**
   * True for a present non-leaf entry whose table address is at or above 2^MAXPHYADDR: it is not
   * followed (no subtree is visited). `checkTree` reports such an entry (reserved bits set, or a frame
   * beyond MAXPHYADDR).
   */
  badTable: boolean;
}

/**
 * Visit every entry (present or not) of every table reachable from `root`, in address order. Returning
 * false from the callback for a present non-leaf entry skips its subtree. A table beyond MAXPHYADDR is
 * never read (see `badTable`).
 */
export function forEachEntry(
  mem: PhysMem,
  root: number,
  levels: Levels,
  cb: (e: EntryVisit) => boolean | undefined,
): void {
  const limit = mem.limit;
  const visit = (table: number, level: number, vpnBase: number, perm: number): void => {
    const span = 2 ** ((level - 1) * 9);
    for (let i = 0; i < 512; i++) {
      const pa = table * 4096 + i * 8;
      const lo = mem.peek32(pa);
      const hi = mem.peek32(pa + 4);
      const vpn = vpnBase + i * span;
      let p = perm;
      if ((lo & Pte.RW) === 0) p &= ~TlbPerm.RW;
      if ((lo & Pte.US) === 0) p &= ~TlbPerm.US;
      if (hi >>> 31 === 1) p |= TlbPerm.XD;
      const present = (lo & Pte.P) !== 0;
      const leaf = present && (level === 1 || ((level === 2 || level === 3) && (lo & Pte.PS) !== 0));
      const next = pfnOf(lo, hi);
      const badTable = present && !leaf && next * 4096 >= limit;
      const descend = cb({ vpn, level, lo, hi, entryPa: pa, perm: p, leaf, badTable });
      if (present && !leaf && !badTable && descend !== false) visit(next, level - 1, vpn, p);
    }
  };
  visit(root, levels, 0, TlbPerm.RW | TlbPerm.US);
}

/** Visit every present leaf reachable from `root`, in address order. */
export function forEachLeaf(mem: PhysMem, root: number, levels: Levels, cb: (l: LeafVisit) => void): void {
  forEachEntry(mem, root, levels, (e) => {
    if ((e.lo & Pte.P) === 0 || !e.leaf) return undefined;
    const shift = ((e.level - 1) * 9) as PageShift;
    const pfn = pfnOf(e.lo, e.hi);
    cb({
      vpn: e.vpn,
      shift,
      level: e.level,
      lo: e.lo,
      hi: e.hi,
      base: pfn - (pfn % 2 ** shift),
      entryPa: e.entryPa,
      perm: e.perm,
    });
    return undefined;
  });
}

export interface TreeStats {
  tablesByLevel: number[];
  tables: number;
  leaves4k: number;
  leaves2m: number;
  leaves1g: number;
  /** Bytes of virtual address space mapped. */
  mappedBytes: number;
}

export interface CheckOptions {
  maxPhysAddrBits: number;
  nxe?: boolean;
  /** Root-table slots that point back to the root (recursive mapping): allowed cycles. */
  recursiveSlots?: number[];
  /** The number of tables the owner believes it has (root included). */
  expectTables?: number;
}

/**
 * The page-table invariant checker. Returns the violations found (empty when the tree is sound):
 * reserved bits set, PS in a PML4E/PML5E, a table reachable twice or from inside itself (except the
 * declared recursive slots), a table or page beyond MAXPHYADDR, and a table count that differs from
 * what the owner believes. A table beyond MAXPHYADDR (of `opts` or of the machine) is reported, never
 * read: the rest of the tree is still checked.
 */
export function checkTree(
  mem: PhysMem,
  root: number,
  levels: Levels,
  opts: CheckOptions,
): { violations: string[]; stats: TreeStats } {
  const violations: string[] = [];
  const rsvdHi = reservedHiMask(opts.maxPhysAddrBits, opts.nxe ?? true);
  const limitPfn = 2 ** (Math.min(opts.maxPhysAddrBits, mem.maxPhysAddrBits) - 12);
  const seen = new Set<number>([root]);
  const recursive = new Set(opts.recursiveSlots ?? []);
  const stats: TreeStats = {
    tablesByLevel: [0, 0, 0, 0, 0, 0],
    tables: 1,
    leaves4k: 0,
    leaves2m: 0,
    leaves1g: 0,
    mappedBytes: 0,
  };
  stats.tablesByLevel[levels] = 1;
  const visit = (table: number, level: number): void => {
    for (let i = 0; i < 512; i++) {
      const pa = table * 4096 + i * 8;
      const lo = mem.peek32(pa);
      const hi = mem.peek32(pa + 4);
      if ((lo & Pte.P) === 0) continue;
      const ps = (level === 2 || level === 3) && (lo & Pte.PS) !== 0;
      const where = `level-${level} entry ${i} of table ${hex(table * 4096)}`;
      if ((hi & rsvdHi) !== 0 || (lo & reservedLoMask(level, ps)) !== 0) {
        violations.push(`${where}: reserved bits set (${hex((BigInt(hi) << 32n) | BigInt(lo))})`);
        continue;
      }
      const pfn = pfnOf(lo, hi);
      const beyond = pfn >= limitPfn;
      if (beyond) violations.push(`${where}: frame ${hex(pfn)} beyond MAXPHYADDR`);
      if (level === 1 || ps) {
        const shift = (level - 1) * 9;
        if (shift === 0) stats.leaves4k++;
        else if (shift === 9) stats.leaves2m++;
        else stats.leaves1g++;
        stats.mappedBytes += 4096 * 2 ** shift;
        continue;
      }
      if (beyond) continue; // no table to read there
      if (level === levels && recursive.has(i) && pfn === root) continue;
      if (seen.has(pfn)) {
        violations.push(`${where}: table ${hex(pfn * 4096)} is reachable twice (shared or cyclic)`);
        continue;
      }
      seen.add(pfn);
      stats.tables++;
      stats.tablesByLevel[level - 1]++;
      visit(pfn, level - 1);
    }
  };
  visit(root, levels);
  if (opts.expectTables !== undefined && opts.expectTables !== stats.tables) {
    violations.push(`the owner counts ${opts.expectTables} page-table pages, the tree has ${stats.tables}`);
  }
  return { violations, stats };
}
