/**
 * Address-space mechanics shared by every kernel-mapping strategy: map, unmap and protect 4 KiB,
 * 2 MiB and 1 GiB pages in one tree of x86-64 page tables that lives in simulated RAM.
 *
 * The mapper is kernel code: it reaches the tables only through the `PhysPort` it is given (a later
 * strategy makes that port go through the direct map, the recursive slot or a temporary window), and it
 * takes page-table frames from a `FrameSource` (early allocator, then the PMM). It keeps no shadow of
 * the tables: every question is answered by reading them.
 *
 * Guarantees:
 *  - A failed call (bad input, conflict, out of frames) leaves the tables exactly as they were: conflicts
 *    are found before anything is written, and tables created for a call that then runs out of frames
 *    are unlinked and returned.
 *  - Every change returns a `Flush` token saying what the TLBs may still hold. A token that is
 *    `required` must be `apply`d to the CPUs or explicitly `ignore`d; `pending` counts the outstanding
 *    ones and the checker reports them (the `MapperFlush` discipline of Rust's x86_64 crate).
 *  - Intermediate entries are created P|RW (plus US for user leaves) and never carry XD, as Linux does
 *    (_KERNPG_TABLE / _PAGE_TABLE): the leaf decides.
 *  - Unmap frees tables that become empty (scanning them, which costs up to 512 reads), unless
 *    `freeEmptyTables` is off. Freed tables make the flush a full one (paging-structure caches).
 */
import { bare, blank, cloneable } from "../clone.ts";
import { fail, hex } from "../../errors.ts";
import type { Counters } from "../counters.ts";
import type { PhysPort } from "../phys-mem.ts";
import type { Cpu } from "./cpu.ts";
import { encodeLeaf, hiWithPfn, loWithPfn, type PageShift, type Prot, Pte, PteHi, pfnOf } from "./pte.ts";
import { formatVa, LEVEL_SPAN, type Levels, tableIndex, vpnLimit } from "./vaddr.ts";

/** Where page-table frames come from. */
export interface FrameSource {
  /** One frame for a page table, or -1 when none is left. */
  allocFrame(): number;
  freeFrame(pfn: number): void;
}

/** Linux's tlb_single_page_flush_ceiling: past this many pages a range flush becomes a full flush. */
export const FLUSH_CEILING = 33;

/** What the TLBs may still cache after a page-table change. Must be applied or ignored. */
export class Flush {
  done = false;

  constructor(
    private readonly owner: Mapper | null,
    /** First VPN affected and number of 4 KiB pages covered. */
    readonly vpn: number,
    readonly pages: number,
    /** Stride of the invalidations (leaf size), as log2 of 4 KiB pages. */
    readonly shift: PageShift,
    /** False when nothing stale can be cached (a fresh mapping of a non-present page). */
    readonly required: boolean,
    /** Page-table pages freed by the change: paging-structure caches must go too. */
    readonly tablesFreed: number,
    /** A global mapping was changed: invalidation must reach global entries. */
    readonly global: boolean,
  ) {
    if (required && owner !== null) owner.pending++;
  }

  /** A token that requires nothing (fresh mappings). */
  static none(vpn: number, pages: number): Flush {
    return new Flush(null, vpn, pages, 0, false, 0, false);
  }

  /** Number of INVLPGs this flush costs on one CPU (0 when it becomes a full flush). */
  get invlpgCount(): number {
    if (!this.required) return 0;
    const n = Math.ceil(this.pages / (1 << this.shift));
    return this.tablesFreed > 0 || n > FLUSH_CEILING ? 0 : n;
  }

  /**
   * Invalidate on each CPU given: one INVLPG per leaf up to the ceiling, else a full flush (globals
   * included when a global mapping changed). Freed tables always force a full flush.
   */
  apply(cpus: Cpu | readonly Cpu[]): void {
    this.consume();
    if (!this.required) return;
    const list = Array.isArray(cpus) ? (cpus as readonly Cpu[]) : [cpus as Cpu];
    const n = Math.ceil(this.pages / (1 << this.shift));
    for (const cpu of list) {
      if (this.tablesFreed > 0 || n > FLUSH_CEILING) {
        if (this.global) cpu.invpcid(2);
        else cpu.invpcid(3);
      } else {
        for (let i = 0; i < n; i++) cpu.invlpg(this.vpn + i * (1 << this.shift));
      }
    }
  }

  /** Declare that no CPU can hold a stale entry (e.g. the address space was never loaded). */
  ignore(): void {
    this.consume();
  }

  private consume(): void {
    if (this.done) fail("FLUSH_REUSED", `flush token for ${hex(this.vpn)} was already applied or ignored`);
    this.done = true;
    if (this.required && this.owner !== null) this.owner.pending--;
  }
}

/**
 * How kernel code reaches page-table entries. An entry is named by the table frame that holds it, its
 * level (1 = PT .. 5 = PML5) and a VPN on its path: physical-style access (direct map, windows) uses the
 * frame; recursive mapping uses the level and VPN, because it reaches tables by their place in the tree.
 */
export interface TableAccess {
  /** Word 0 (bits 31..0) or 4 (bits 63..32) of the entry for `vpn` at `level`, in table frame `table`. */
  read(table: number, level: number, vpn: number, word: number): number;
  write(table: number, level: number, vpn: number, word: number, value: number): void;
  /** Low word of entry `i` of the table at `level` on the path of `vpn` (emptiness scans). */
  readIndex(table: number, level: number, vpn: number, i: number): number;
  /** A fresh table frame before it is linked (physical access zeroes it here). */
  prepare(table: number): void;
  /** A new table of `level` on the path of `vpn` was just linked (recursive access zeroes it here). */
  linked(table: number, level: number, vpn: number): void;
  /** The table of `level` on the path of `vpn` was just unlinked, before it is freed. */
  unlinked(table: number, level: number, vpn: number): void;
}

/** Entries reached by physical address through a `PhysPort` (raw RAM, the direct map, windows). */
export class PortTableAccess implements TableAccess {
  constructor(readonly port: PhysPort) {}

  read(table: number, level: number, vpn: number, word: number): number {
    return this.port.read32(table * 4096 + tableIndex(vpn, level) * 8 + word);
  }

  write(table: number, level: number, vpn: number, word: number, value: number): void {
    this.port.write32(table * 4096 + tableIndex(vpn, level) * 8 + word, value);
  }

  readIndex(table: number, _level: number, _vpn: number, i: number): number {
    return this.port.read32(table * 4096 + i * 8);
  }

  prepare(table: number): void {
    this.port.zeroFrame(table);
  }

  linked(): void {}

  unlinked(): void {}
}

export interface MapperOptions {
  levels: Levels;
  maxPhysAddrBits: number;
  counters: Counters;
  /** An existing root table (e.g. the boot PML4); a new one is allocated otherwise. */
  root?: number;
  freeEmptyTables?: boolean;
}

export interface Leaf {
  /** Frame of the 4 KiB page that holds the queried VPN, and the leaf's base frame and size. */
  pfn: number;
  base: number;
  baseVpn: number;
  shift: PageShift;
  level: number;
  lo: number;
  hi: number;
  /** The table holding the leaf entry, and the entry's physical address. */
  table: number;
  entryPa: number;
}

export interface Unmapped {
  base: number;
  shift: PageShift;
  flush: Flush;
}

export class Mapper {
  readonly access: TableAccess;
  readonly frames: FrameSource;
  readonly levels: Levels;
  readonly maxPhysAddrBits: number;
  readonly counters: Counters;
  readonly root: number;
  freeEmptyTables: boolean;
  /** Page-table pages owned by this tree, root included. */
  tables = 0;
  /** Required flush tokens not yet applied or ignored. */
  pending = 0;

  constructor(access: TableAccess | PhysPort, frames: FrameSource, opts: MapperOptions) {
    if (blank()) bare(this); // a bare instance for a copy of the machine (machine/clone.ts)
    this.access = "readIndex" in access ? access : new PortTableAccess(access);
    this.frames = frames;
    this.levels = opts.levels;
    this.maxPhysAddrBits = opts.maxPhysAddrBits;
    this.counters = opts.counters;
    this.freeEmptyTables = opts.freeEmptyTables ?? true;
    if (opts.root !== undefined) {
      this.root = opts.root;
      this.tables = 1;
    } else {
      const t = this.newTable();
      if (t < 0) fail("OUT_OF_MEMORY", "no frame left for a root page table");
      this.access.linked(t, this.levels, 0);
      this.root = t;
    }
  }

  private newTable(): number {
    const t = this.frames.allocFrame();
    if (t < 0) return -1;
    this.access.prepare(t);
    this.tables++;
    const c = this.counters;
    c.ptPages++;
    c.ptPagesAllocated++;
    if (c.ptPages > c.ptPagesPeak) c.ptPagesPeak = c.ptPages;
    return t;
  }

  private freeTable(t: number): void {
    this.frames.freeFrame(t);
    this.tables--;
    this.counters.ptPages--;
    this.counters.ptPagesFreed++;
  }

  /** Adopt tables built elsewhere (e.g. boot tables in .bss) into this tree's count. */
  adoptTables(n: number): void {
    this.tables += n;
  }

  private checkVpn(vpn: number, shift: PageShift, what: string): void {
    if (!Number.isInteger(vpn) || vpn < 0 || vpn >= vpnLimit(this.levels)) {
      fail("NON_CANONICAL", `${what}: page number ${vpn} is outside the ${this.levels}-level address space`);
    }
    if (vpn % (1 << shift) !== 0) {
      fail(
        "MISALIGNED",
        `${what}: ${formatVa(vpn, this.levels)} is not aligned to a ${sizeName(shift)} page`,
      );
    }
  }

  /**
   * Map `pfn` at `vpn` as one leaf of size `shift`. Throws (tables unchanged) on misalignment, a frame
   * beyond MAXPHYADDR, an existing mapping, a large page in the way, or no frame for a table.
   */
  map(vpn: number, pfn: number, shift: PageShift, prot: Prot): Flush {
    this.checkVpn(vpn, shift, "map");
    const span = 1 << shift;
    if (!Number.isInteger(pfn) || pfn < 0 || pfn % span !== 0) {
      fail("MISALIGNED", `map: frame ${hex(pfn)} is not aligned to a ${sizeName(shift)} page`);
    }
    if ((pfn + span) * 4096 > 2 ** this.maxPhysAddrBits) {
      fail(
        "PA_OUT_OF_RANGE",
        `map: physical ${hex(pfn * 4096)} is beyond MAXPHYADDR (${this.maxPhysAddrBits} bits)`,
      );
    }
    const leafLevel = shift / 9 + 1;
    const { lo, hi } = encodeLeaf(pfn, shift, prot);
    const table = this.descendCreating(vpn, leafLevel, prot.user === true, "map");
    // Set the high word first and the Present bit last, as a kernel must.
    this.access.write(table, leafLevel, vpn, 4, hi);
    this.access.write(table, leafLevel, vpn, 0, lo);
    return new Flush(this, vpn, span, shift, false, 0, prot.global === true);
  }

  /**
   * Create the tables down to level 1 for [vpn, vpn + pages) without mapping anything, so that later
   * maps there never allocate (a region "pre-wired" at boot). Returns the number of tables created.
   */
  prewire(vpn: number, pages: number): number {
    const before = this.tables;
    for (let v = vpn - (vpn % 512); v < vpn + pages; v += 512) {
      this.checkVpn(v, 0, "prewire");
      this.descendCreating(v, 1, false, "prewire", true);
    }
    return this.tables - before;
  }

  /**
   * Walk from the root to the table at `leafLevel` for `vpn`, creating missing tables. Checks the leaf
   * slot is free (unless `anySlot`). On failure, everything created is undone.
   */
  private descendCreating(
    vpn: number,
    leafLevel: number,
    user: boolean,
    what: string,
    anySlot = false,
  ): number {
    const a = this.access;
    let table = this.root;
    const created: { parent: number; level: number; table: number }[] = [];
    const upgrade: { table: number; level: number }[] = [];
    for (let level: number = this.levels; level > leafLevel; level--) {
      const lo = a.read(table, level, vpn, 0);
      if ((lo & Pte.P) === 0) {
        const t = this.newTable();
        if (t < 0) {
          this.undo(created, vpn);
          fail(
            "OUT_OF_MEMORY",
            `${what} ${formatVa(vpn, this.levels)}: no frame left for a level-${level - 1} page table`,
          );
        }
        a.write(table, level, vpn, 4, hiWithPfn(t, 0));
        a.write(table, level, vpn, 0, loWithPfn(t, Pte.P | Pte.RW | (user ? Pte.US : 0)));
        a.linked(t, level - 1, vpn);
        created.push({ parent: table, level, table: t });
        table = t;
        continue;
      }
      if ((level === 2 || level === 3) && (lo & Pte.PS) !== 0) {
        fail(
          "LARGE_PAGE_CONFLICT",
          `${what} ${formatVa(vpn, this.levels)}: a ${level === 3 ? "1 GiB" : "2 MiB"} page already maps this range`,
        );
      }
      if (user && (lo & Pte.US) === 0) upgrade.push({ table, level });
      table = pfnOf(lo, a.read(table, level, vpn, 4));
    }
    const leafLo = anySlot ? 0 : a.read(table, leafLevel, vpn, 0);
    if ((leafLo & Pte.P) !== 0) {
      const isTable = leafLevel > 1 && (leafLo & Pte.PS) === 0;
      fail(
        isTable ? "TABLE_CONFLICT" : "ALREADY_MAPPED",
        isTable
          ? `${what} ${formatVa(vpn, this.levels)}: a page table already maps part of this ${leafLevel === 3 ? "1 GiB" : "2 MiB"} range`
          : `${what} ${formatVa(vpn, this.levels)}: already mapped`,
      );
    }
    for (const u of upgrade)
      a.write(u.table, u.level, vpn, 0, (a.read(u.table, u.level, vpn, 0) | Pte.US) >>> 0);
    return table;
  }

  private undo(created: { parent: number; level: number; table: number }[], vpn: number): void {
    for (let i = created.length - 1; i >= 0; i--) {
      const c = created[i];
      this.access.write(c.parent, c.level, vpn, 0, 0);
      this.access.write(c.parent, c.level, vpn, 4, 0);
      this.access.unlinked(c.table, c.level - 1, vpn);
      this.freeTable(c.table);
    }
  }

  /** Kernel-side lookup of the leaf mapping `vpn` (reads through the access, so it is counted). */
  query(vpn: number): Leaf | null {
    const a = this.access;
    let table = this.root;
    for (let level: number = this.levels; level >= 1; level--) {
      const lo = a.read(table, level, vpn, 0);
      if ((lo & Pte.P) === 0) return null;
      const hi = a.read(table, level, vpn, 4);
      const pfn = pfnOf(lo, hi);
      if (level === 1 || ((level === 2 || level === 3) && (lo & Pte.PS) !== 0)) {
        const shift = ((level - 1) * 9) as PageShift;
        const span = 1 << shift;
        const base = pfn - (pfn % span);
        const entryPa = table * 4096 + tableIndex(vpn, level) * 8;
        return {
          pfn: base + (vpn % span),
          base,
          baseVpn: vpn - (vpn % span),
          shift,
          level,
          lo,
          hi,
          table,
          entryPa,
        };
      }
      table = pfn;
    }
    return null;
  }

  /**
   * Unmap the leaf that starts at `vpn`. Frees tables left empty (unless `keepTables` or the mapper's
   * `freeEmptyTables` is off). Throws NOT_MAPPED / MISALIGNED.
   */
  unmap(vpn: number, opts: { keepTables?: boolean } = {}): Unmapped {
    this.checkVpn(vpn, 0, "unmap");
    const leaf = this.query(vpn);
    if (leaf === null) fail("NOT_MAPPED", `unmap: ${formatVa(vpn, this.levels)} is not mapped`);
    if (leaf.baseVpn !== vpn) {
      fail(
        "MISALIGNED",
        `unmap: ${formatVa(vpn, this.levels)} is inside a ${sizeName(leaf.shift)} page that starts at ${formatVa(leaf.baseVpn, this.levels)}`,
      );
    }
    this.access.write(leaf.table, leaf.level, vpn, 0, 0);
    this.access.write(leaf.table, leaf.level, vpn, 4, 0);
    const freed = this.freeEmptyTables && !opts.keepTables ? this.pruneFrom(vpn, leaf.level) : 0;
    const global = (leaf.lo & Pte.G) !== 0;
    return {
      base: leaf.base,
      shift: leaf.shift,
      flush: new Flush(this, vpn, 1 << leaf.shift, leaf.shift, true, freed, global),
    };
  }

  /** Free the table holding a just-cleared entry at `level`, and its parents, while they are empty. */
  private pruneFrom(vpn: number, level: number): number {
    let freed = 0;
    for (let l = level; l < this.levels; l++) {
      const parent = this.tableAt(vpn, l + 1);
      const a = this.access;
      const table = pfnOf(a.read(parent, l + 1, vpn, 0), a.read(parent, l + 1, vpn, 4));
      if (!this.tableEmpty(table, l, vpn)) break;
      a.write(parent, l + 1, vpn, 0, 0);
      a.write(parent, l + 1, vpn, 4, 0);
      a.unlinked(table, l, vpn);
      this.freeTable(table);
      freed++;
    }
    return freed;
  }

  /** The table frame at `level` on the path of `vpn` (the path must exist down to it). */
  private tableAt(vpn: number, level: number): number {
    let table = this.root;
    for (let l: number = this.levels; l > level; l--) {
      table = pfnOf(this.access.read(table, l, vpn, 0), this.access.read(table, l, vpn, 4));
    }
    return table;
  }

  private tableEmpty(table: number, level: number, vpn: number): boolean {
    for (let i = 0; i < 512; i++)
      if ((this.access.readIndex(table, level, vpn, i) & Pte.P) !== 0) return false;
    return true;
  }

  /**
   * Change the protections of the leaf that starts at `vpn`, keeping its frame and its A/D flags. The
   * flush is required when anything is taken away or an attribute changes; pure upgrades need none.
   */
  protect(vpn: number, prot: Prot): Flush {
    this.checkVpn(vpn, 0, "protect");
    const leaf = this.query(vpn);
    if (leaf === null) fail("NOT_MAPPED", `protect: ${formatVa(vpn, this.levels)} is not mapped`);
    if (leaf.baseVpn !== vpn) {
      fail("MISALIGNED", `protect: ${formatVa(vpn, this.levels)} is inside a ${sizeName(leaf.shift)} page`);
    }
    const n = encodeLeaf(leaf.base, leaf.shift, prot);
    const lo = (n.lo | (leaf.lo & (Pte.A | Pte.D))) >>> 0;
    const lost =
      ((leaf.lo & Pte.RW) !== 0 && (lo & Pte.RW) === 0) ||
      ((leaf.lo & Pte.US) !== 0 && (lo & Pte.US) === 0) ||
      ((leaf.hi & PteHi.XD) === 0 && (n.hi & PteHi.XD) !== 0);
    const attrs = Pte.PWT | Pte.PCD | Pte.G | (leaf.shift === 0 ? Pte.PAT4K : Pte.PAT_LARGE);
    const changed =
      (leaf.lo & attrs) !== (lo & attrs) || (leaf.hi & PteHi.PK_MASK) !== (n.hi & PteHi.PK_MASK);
    if (prot.user === true) this.descendUpgradeUser(vpn, leaf.level);
    this.access.write(leaf.table, leaf.level, vpn, 4, n.hi);
    this.access.write(leaf.table, leaf.level, vpn, 0, lo);
    const global = ((leaf.lo | lo) & Pte.G) !== 0;
    return new Flush(this, vpn, 1 << leaf.shift, leaf.shift, lost || changed, 0, global);
  }

  private descendUpgradeUser(vpn: number, leafLevel: number): void {
    let table = this.root;
    const a = this.access;
    for (let level: number = this.levels; level > leafLevel; level--) {
      const lo = a.read(table, level, vpn, 0);
      if ((lo & Pte.US) === 0) a.write(table, level, vpn, 0, (lo | Pte.US) >>> 0);
      table = pfnOf(lo, a.read(table, level, vpn, 4));
    }
  }

  /** Write a raw entry in the root table (recursive slots, shared kernel halves). */
  setRootEntry(index: number, lo: number, hi: number): void {
    const vpn = index * LEVEL_SPAN[this.levels];
    this.access.write(this.root, this.levels, vpn, 4, hi);
    this.access.write(this.root, this.levels, vpn, 0, lo);
  }

  /** Read a raw root-table entry. */
  rootEntry(index: number): { lo: number; hi: number } {
    const vpn = index * LEVEL_SPAN[this.levels];
    return {
      lo: this.access.read(this.root, this.levels, vpn, 0),
      hi: this.access.read(this.root, this.levels, vpn, 4),
    };
  }

  /**
   * Map `pages` 4 KiB pages of physically contiguous memory from `pfn` at `vpn`, using the largest
   * leaves that alignment allows, up to `maxShift`. Returns the leaves used per size and one flush.
   */
  mapRange(vpn: number, pfn: number, pages: number, prot: Prot, maxShift: PageShift = 18): MapRangeResult {
    const out: MapRangeResult = { leaves4k: 0, leaves2m: 0, leaves1g: 0, flush: Flush.none(vpn, pages) };
    let done = 0;
    while (done < pages) {
      const v = vpn + done;
      const p = pfn + done;
      const left = pages - done;
      let s: PageShift = 0;
      if (maxShift >= 18 && v % 262144 === 0 && p % 262144 === 0 && left >= 262144) s = 18;
      else if (maxShift >= 9 && v % 512 === 0 && p % 512 === 0 && left >= 512) s = 9;
      this.map(v, p, s, prot).ignore();
      if (s === 18) out.leaves1g++;
      else if (s === 9) out.leaves2m++;
      else out.leaves4k++;
      done += 1 << s;
    }
    return out;
  }
}

export interface MapRangeResult {
  leaves4k: number;
  leaves2m: number;
  leaves1g: number;
  flush: Flush;
}

export function sizeName(shift: number): string {
  return shift === 0 ? "4 KiB" : shift === 9 ? "2 MiB" : "1 GiB";
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(Mapper, PortTableAccess);
