/**
 * Translation lookaside buffers of one CPU (SDM Vol. 3A, 4.10).
 *
 * Model: an L1 data TLB with one set-associative array per page size, an L1 instruction TLB, and a
 * unified second-level TLB (STLB) shared by data and instruction translations, holding 4 KiB and 2 MiB
 * entries, plus a small array for 1 GiB entries. Every array is set-associative with true LRU. Entries
 * are tagged with a 12-bit PCID; global entries (G=1 with CR4.PGE) match every PCID.
 *
 * An entry caches what the walk concluded: the frame of the page base, the page size, and the
 * *effective* rights of the whole walk (RW and US ANDed over all levels, XD ORed) plus the leaf's dirty
 * flag, exactly the information the SDM says a TLB entry holds (4.10.2.2).
 *
 * Defaults are those of an Intel Golden Cove core (L1 dTLB 96 entries 6-way for 4 KiB, 32 entries
 * 4-way for 2 MiB, 8 fully associative for 1 GiB; STLB 2048 entries 16-way for 4 KiB/2 MiB and 1024 for
 * 1 GiB, here 16 entries 4-way as a conservative 1 GiB store); see shared field notes.
 *
 * Storage is flat typed arrays indexed by `set * ways + way`; lookups allocate nothing.
 */
import { bare, blank, cloneable } from "../clone.ts";
import { fail } from "../../errors.ts";
import type { PageShift } from "./pte.ts";
import { LEVEL_SPAN } from "./vaddr.ts";

/** Bits of a cached entry's rights byte. */
export const enum TlbPerm {
  RW = 1,
  US = 2,
  XD = 4,
  DIRTY = 8,
}

export interface TlbArrayGeometry {
  entries: number;
  ways: number;
}

export interface TlbGeometry {
  l1d4k: TlbArrayGeometry;
  l1d2m: TlbArrayGeometry;
  l1d1g: TlbArrayGeometry;
  l1i4k: TlbArrayGeometry;
  l1i2m: TlbArrayGeometry;
  /** Unified second level for 4 KiB and 2 MiB. */
  stlb: TlbArrayGeometry;
  stlb1g: TlbArrayGeometry;
}

export const GOLDEN_COVE: TlbGeometry = {
  l1d4k: { entries: 96, ways: 6 },
  l1d2m: { entries: 32, ways: 4 },
  l1d1g: { entries: 8, ways: 8 },
  l1i4k: { entries: 256, ways: 8 },
  l1i2m: { entries: 32, ways: 8 },
  stlb: { entries: 2048, ways: 16 },
  stlb1g: { entries: 16, ways: 4 },
};

/** AMD Zen 4: L1 dTLB 72 entries fully associative (all sizes), L2 3072 entries 12-way. */
export const ZEN4: TlbGeometry = {
  l1d4k: { entries: 72, ways: 72 },
  l1d2m: { entries: 72, ways: 72 },
  l1d1g: { entries: 72, ways: 72 },
  l1i4k: { entries: 64, ways: 64 },
  l1i2m: { entries: 64, ways: 64 },
  stlb: { entries: 3072, ways: 12 },
  stlb1g: { entries: 64, ways: 4 },
};

/**
 * Bumped by every change to the entries of a CPU's TLB arrays (fill, invalidation, flush): a CPU may
 * serve a repeated first-level hit without the lookup while the epoch it saw is current (cpu.ts).
 */
export class TlbEpoch {
  n = 0;
}

/** Buckets of a TLB array's miss filter (a power of two). */
const BUCKETS = 1024;

/**
 * One set-associative array. `tag` is the page number at the entry's size (VPN >> shift), -1 when
 * the way is invalid. Mixed-size arrays (the STLB) also compare `shift`.
 */
export class TlbArray {
  readonly sets: number;
  readonly ways: number;
  readonly tag: Float64Array;
  readonly shift: Uint8Array;
  readonly pcid: Uint16Array;
  readonly global: Uint8Array;
  readonly base: Float64Array;
  readonly perm: Uint8Array;
  readonly lru: Float64Array;
  /** Valid entries per page shift (index 0, 9, 18): lookups of a size with none return at once. */
  readonly live = new Int32Array(19);
  /**
   * Valid entries per bucket of their page number (`pn & (BUCKETS - 1)`, any size): a lookup whose
   * bucket holds none is a miss without scanning the set (Zen 4's fully associative first level
   * compares 72 tags to miss; a direct-map access in a 1 GiB entry misses the 4 KiB and 2 MiB arrays
   * first).
   */
  readonly bucket = new Uint16Array(BUCKETS);
  private clock = 0;
  readonly epoch: TlbEpoch;

  constructor(g: TlbArrayGeometry, epoch: TlbEpoch = new TlbEpoch()) {
    if (blank()) bare(this); // a bare instance for a copy of the machine (machine/clone.ts)
    this.epoch = epoch;
    if (g.entries % g.ways !== 0)
      fail("BAD_TLB", `TLB of ${g.entries} entries is not a multiple of ${g.ways} ways`);
    const sets = g.entries / g.ways;
    if ((sets & (sets - 1)) !== 0)
      fail("BAD_TLB", `TLB with ${sets} sets: the set count must be a power of two`);
    this.sets = sets;
    this.ways = g.ways;
    this.tag = new Float64Array(g.entries).fill(-1);
    this.shift = new Uint8Array(g.entries);
    this.pcid = new Uint16Array(g.entries);
    this.global = new Uint8Array(g.entries);
    this.base = new Float64Array(g.entries);
    this.perm = new Uint8Array(g.entries);
    this.lru = new Float64Array(g.entries);
  }

  /** Index of the entry for page number `pn` of size `shift` visible under `pcid`, or -1. */
  lookup(pn: number, shift: number, pcid: number): number {
    if (this.live[shift] === 0 || this.bucket[pn & (BUCKETS - 1)] === 0) return -1;
    const ways = this.ways;
    const first = (pn & (this.sets - 1)) * ways;
    const tag = this.tag;
    for (let i = first; i < first + ways; i++) {
      if (tag[i] === pn && this.shift[i] === shift && (this.pcid[i] === pcid || this.global[i] === 1)) {
        this.lru[i] = ++this.clock;
        return i;
      }
    }
    return -1;
  }

  /** What a repeated `lookup` that finds entry `i` again does: make it the most recently used. */
  touch(i: number): void {
    this.lru[i] = ++this.clock;
  }

  /** Insert (or refresh) an entry, evicting the set's least recently used way. Returns its index. */
  insert(pn: number, shift: number, pcid: number, global: number, base: number, perm: number): number {
    this.epoch.n++;
    const ways = this.ways;
    const first = (pn & (this.sets - 1)) * ways;
    let victim = first;
    for (let i = first; i < first + ways; i++) {
      if (this.tag[i] === pn && this.shift[i] === shift && this.pcid[i] === pcid) {
        victim = i;
        break;
      }
      if (this.tag[i] === -1) {
        victim = i;
        break;
      }
      if (this.lru[i] < this.lru[victim]) victim = i;
    }
    if (this.tag[victim] !== -1) {
      this.live[this.shift[victim]]--;
      this.bucket[this.tag[victim] & (BUCKETS - 1)]--;
    }
    this.live[shift]++;
    this.bucket[pn & (BUCKETS - 1)]++;
    this.tag[victim] = pn;
    this.shift[victim] = shift;
    this.pcid[victim] = pcid;
    this.global[victim] = global;
    this.base[victim] = base;
    this.perm[victim] = perm;
    this.lru[victim] = ++this.clock;
    return victim;
  }

  /**
   * Drop entries covering `vpn` (any size stored here) that belong to `pcid`, and global ones
   * (INVLPG semantics; with `keepGlobal`, INVPCID type 0 semantics). Returns how many were dropped.
   */
  invalidateAddress(vpn: number, pcid: number, keepGlobal: boolean, sizes: readonly PageShift[]): number {
    this.epoch.n++;
    let n = 0;
    for (let k = 0; k < sizes.length; k++) {
      const s = sizes[k];
      if (this.live[s] === 0) continue;
      const pn = s === 0 ? vpn : Math.floor(vpn / (1 << s));
      const first = (pn & (this.sets - 1)) * this.ways;
      for (let i = first; i < first + this.ways; i++) {
        if (this.tag[i] !== pn || this.shift[i] !== s) continue;
        const g = this.global[i] === 1;
        if ((g && !keepGlobal) || (!g && this.pcid[i] === pcid)) {
          this.tag[i] = -1;
          this.live[s]--;
          this.bucket[pn & (BUCKETS - 1)]--;
          n++;
        }
      }
    }
    return n;
  }

  /**
   * Drop the non-global entries of `pcid`, or of every PCID when pcid < 0. Global entries are dropped
   * only by an all-PCID flush without `keepGlobal` (CR4.PGE toggle, INVPCID type 2): no x86 operation
   * drops the globals of one PCID.
   */
  flush(pcid: number, keepGlobal: boolean): number {
    this.epoch.n++;
    let n = 0;
    for (let i = 0; i < this.tag.length; i++) {
      if (this.tag[i] === -1) continue;
      const drop = this.global[i] === 1 ? pcid < 0 && !keepGlobal : pcid < 0 || this.pcid[i] === pcid;
      if (drop) {
        this.bucket[this.tag[i] & (BUCKETS - 1)]--;
        this.tag[i] = -1;
        this.live[this.shift[i]]--;
        n++;
      }
    }
    return n;
  }

  /** Number of valid entries. */
  occupancy(): number {
    let n = 0;
    for (let i = 0; i < this.tag.length; i++) if (this.tag[i] !== -1) n++;
    return n;
  }
}

/** Which array of a TLB an entry index belongs to (for the hit flyweight). */
export class Tlb {
  readonly geometry: TlbGeometry;
  readonly d4k: TlbArray;
  readonly d2m: TlbArray;
  readonly d1g: TlbArray;
  readonly i4k: TlbArray;
  readonly i2m: TlbArray;
  readonly stlb: TlbArray;
  readonly stlb1g: TlbArray;
  /** Shared by the arrays: bumped by any change to any entry. */
  readonly epoch = new TlbEpoch();

  constructor(geometry: TlbGeometry = GOLDEN_COVE) {
    if (blank()) bare(this); // a bare instance for a copy of the machine (machine/clone.ts)
    this.geometry = geometry;
    const e = this.epoch;
    this.d4k = new TlbArray(geometry.l1d4k, e);
    this.d2m = new TlbArray(geometry.l1d2m, e);
    this.d1g = new TlbArray(geometry.l1d1g, e);
    this.i4k = new TlbArray(geometry.l1i4k, e);
    this.i2m = new TlbArray(geometry.l1i2m, e);
    this.stlb = new TlbArray(geometry.stlb, e);
    this.stlb1g = new TlbArray(geometry.stlb1g, e);
  }

  arrays(): TlbArray[] {
    return [this.d4k, this.d2m, this.d1g, this.i4k, this.i2m, this.stlb, this.stlb1g];
  }

  /** INVLPG / INVPCID type 0 for one VPN in every array. */
  invalidateAddress(vpn: number, pcid: number, keepGlobal: boolean): number {
    return (
      this.d4k.invalidateAddress(vpn, pcid, keepGlobal, SIZES_4K) +
      this.d2m.invalidateAddress(vpn, pcid, keepGlobal, SIZES_2M) +
      this.d1g.invalidateAddress(vpn, pcid, keepGlobal, SIZES_1G) +
      this.i4k.invalidateAddress(vpn, pcid, keepGlobal, SIZES_4K) +
      this.i2m.invalidateAddress(vpn, pcid, keepGlobal, SIZES_2M) +
      this.stlb.invalidateAddress(vpn, pcid, keepGlobal, SIZES_4K_2M) +
      this.stlb1g.invalidateAddress(vpn, pcid, keepGlobal, SIZES_1G)
    );
  }

  flush(pcid: number, keepGlobal: boolean): number {
    let n = 0;
    for (const a of this.arrays()) n += a.flush(pcid, keepGlobal);
    return n;
  }

  occupancy(): number {
    let n = 0;
    for (const a of this.arrays()) n += a.occupancy();
    return n;
  }
}

const SIZES_4K: readonly PageShift[] = [0];
const SIZES_2M: readonly PageShift[] = [9];
const SIZES_1G: readonly PageShift[] = [18];
const SIZES_4K_2M: readonly PageShift[] = [0, 9];

/**
 * Paging-structure caches (SDM 4.10.3): PML4E/PDPTE/PDE caches keyed by the upper VPN bits, holding
 * the frame of the next table and the rights accumulated so far. A hit lets a walk skip the upper
 * levels. Small, fully associative, LRU. Optional (off by default so walks show all their references).
 */
export class PagingStructureCache {
  /** One array per level whose entry is cached: index 2 = PDE cache ... 5 = PML5E cache. */
  private readonly arrays: TlbArray[];

  constructor(entriesPerLevel = 32) {
    this.arrays = [];
    for (let l = 0; l <= 5; l++)
      this.arrays.push(new TlbArray({ entries: entriesPerLevel, ways: entriesPerLevel }));
  }

  /**
   * Deepest cached level for `vpn`: returns the level L (2..5) whose entry is cached (the walk resumes
   * at level L-1 with table `out.base`), or 0 when nothing is cached.
   */
  lookup(vpn: number, pcid: number, levels: number, out: { base: number; perm: number }): number {
    for (let l = 2; l <= levels; l++) {
      const pn = Math.floor(vpn / LEVEL_SPAN[l]);
      const i = this.arrays[l].lookup(pn, 0, pcid);
      if (i >= 0) {
        out.base = this.arrays[l].base[i];
        out.perm = this.arrays[l].perm[i];
        return l;
      }
    }
    return 0;
  }

  insert(level: number, vpn: number, pcid: number, nextTable: number, perm: number): void {
    const pn = Math.floor(vpn / LEVEL_SPAN[level]);
    this.arrays[level].insert(pn, 0, pcid, 0, nextTable, perm);
  }

  /** Paging-structure caches hold no global entries; flush the PCID's (or all when pcid < 0). */
  flush(pcid: number): void {
    for (const a of this.arrays) a.flush(pcid, false);
  }
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(Tlb, TlbArray, TlbEpoch);
