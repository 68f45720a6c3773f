/**
 * One x86-64 logical CPU as far as memory management sees it: the control-register bits that govern
 * paging (CR0.WP, CR3 with its PCID and no-flush bit, CR4.PGE/PCIDE/SMEP/SMAP/PKE/LA57, EFER.NXE,
 * EFLAGS.AC, PKRU), its TLBs and paging-structure caches, and the TLB-management instructions
 * (MOV to CR3, INVLPG, INVPCID types 0-3, CR4.PGE toggle).
 *
 * `translate(vpn, access)` is the hot path: L1 TLB, then STLB, then the page walk (mmu.ts).
 *
 * Stale-entry detector: with `checkStale` on, every TLB hit is compared with a side-effect-free walk of
 * the current page tables; an entry that maps another frame, or grants more than the tables now grant
 * (write, user, execute), or maps a page that is no longer present, is a missing flush. It is recorded in
 * `staleReports` and counted in `counters.staleTlbHits`. (An entry that grants *less* is legal: the
 * SDM lets software skip flushes on permission upgrades, at the price of a spurious fault.)
 */
import { bare, blank, cloneable } from "../clone.ts";
import { fail, hex } from "../../errors.ts";
import type { Counters } from "../counters.ts";
import type { PhysMem } from "../phys-mem.ts";
import { Access, checkRights, PfErr, pageFault, peekWalk, walk } from "./mmu.ts";
import { reservedHiMask } from "./pte.ts";
import {
  GOLDEN_COVE,
  PagingStructureCache,
  Tlb,
  type TlbArray,
  type TlbEpoch,
  type TlbGeometry,
  TlbPerm,
} from "./tlb.ts";
import type { Levels } from "./vaddr.ts";

/** Entries of the CPU's memo of recent first-level TLB hits (a power of two). */
const MEMO = 64;

export interface CpuOptions {
  id?: number;
  levels?: Levels;
  tlb?: TlbGeometry;
  /** Model paging-structure caches (PML4E/PDPTE/PDE caches). Default false. */
  pagingStructureCaches?: boolean;
  /** CPUID.80000001H:EDX.Page1GB. Default true. */
  pdpe1gb?: boolean;
  /** Compare every TLB hit with the page tables (the stale-entry detector). Default false. */
  checkStale?: boolean;
  /** Initial control bits (defaults: WP, NXE, PGE on; PCIDE, SMEP, SMAP, PKE off). */
  wp?: boolean;
  nxe?: boolean;
  pge?: boolean;
  pcide?: boolean;
  smep?: boolean;
  smap?: boolean;
  pke?: boolean;
}

export interface StaleReport {
  cpu: number;
  vpn: number;
  pcid: number;
  /** What the TLB entry said. */
  cachedPfn: number;
  cachedPerm: number;
  /** What the page tables say now (null: not mapped). */
  actualPfn: number | null;
  actualPerm: number | null;
  reason: string;
}

export class Cpu {
  readonly id: number;
  readonly mem: PhysMem;
  readonly counters: Counters;
  readonly levels: Levels;
  readonly tlb: Tlb;
  readonly psc: PagingStructureCache | null;
  readonly pdpe1gb: boolean;
  checkStale: boolean;
  readonly staleReports: StaleReport[] = [];

  // Control state.
  wp: boolean;
  nxe: boolean;
  pge: boolean;
  pcide: boolean;
  smep: boolean;
  smap: boolean;
  pke: boolean;
  /** EFLAGS.AC (STAC/CLAC). */
  ac = false;
  pkru = 0;
  /** CR3: root table frame and (with PCIDE) the current PCID. */
  cr3Pfn = 0;
  currentPcid = 0;
  /** Reserved high-word bits for this MAXPHYADDR and NXE (cached for the walk). */
  reservedHi: number;

  // Last page fault.
  faultCode = 0;
  cr2Vpn = 0;

  /** The frame the last `load32`/`store32` reached (for the bulk runs). */
  private lastPfn = 0;

  // Flyweight out-parameters of the STLB lookup.
  private hitArr: TlbArray;
  private hitShift = 0;

  /**
   * The last first-level hits of kernel data accesses (READ or WRITE, supervisor page; WRITE only
   * through a dirty writable entry), MEMO of them by page number: page, access, PCID, the entry (array,
   * index, size) and the frame, each valid while the TLB epoch is the one seen then. Repeating such an
   * access can only find the same entry in the same array (nothing was filled, invalidated or flushed
   * since, so no array that is searched before it has gained an entry for the page), pass the same
   * rights check (a supervisor read or write of a supervisor page does not depend on SMAP, PKRU or
   * CR0.WP once the entry is writable) and need no dirty assist, so it is served by counting the same
   * hit and refreshing the same entry's recency: identical counters and TLB state, without the lookups
   * (three of them for a page of the direct map in a 1 GiB entry: the 4 KiB and 2 MiB arrays miss first).
   */
  private readonly mVpn = new Float64Array(MEMO).fill(Number.NaN);
  /** The access and the PCID, `access | pcid << 8`. */
  private readonly mKey = new Int32Array(MEMO);
  private readonly mEpoch = new Float64Array(MEMO).fill(-1);
  /** The entry, `i | shift << 16`: its array is the data array of that size (d4k, d2m or d1g). */
  private readonly mEntry = new Int32Array(MEMO);
  private readonly mPfn = new Float64Array(MEMO);
  private readonly epoch: TlbEpoch;

  constructor(mem: PhysMem, opts: CpuOptions = {}) {
    if (blank()) bare(this); // a bare instance for a copy of the machine (machine/clone.ts)
    this.id = opts.id ?? 0;
    this.mem = mem;
    this.counters = mem.counters;
    this.levels = opts.levels ?? 4;
    this.tlb = new Tlb(opts.tlb ?? GOLDEN_COVE);
    this.psc = opts.pagingStructureCaches ? new PagingStructureCache() : null;
    this.pdpe1gb = opts.pdpe1gb ?? true;
    this.checkStale = opts.checkStale ?? false;
    this.wp = opts.wp ?? true;
    this.nxe = opts.nxe ?? true;
    this.pge = opts.pge ?? true;
    this.pcide = opts.pcide ?? false;
    this.smep = opts.smep ?? false;
    this.smap = opts.smap ?? false;
    this.pke = opts.pke ?? false;
    this.reservedHi = reservedHiMask(mem.maxPhysAddrBits, this.nxe);
    this.hitArr = this.tlb.stlb;
    this.epoch = this.tlb.epoch;
  }

  /**
   * Translate `vpn` for an access (Access bits). Returns the 4 KiB frame number, or -1 after a page
   * fault (`faultCode`, `cr2Vpn`).
   */
  translate(vpn: number, access: number): number {
    const pcid = this.currentPcid;
    const c = this.counters;
    const m = vpn & (MEMO - 1);
    if (
      vpn === this.mVpn[m] &&
      (access | (pcid << 8)) === this.mKey[m] &&
      this.epoch.n === this.mEpoch[m] &&
      !this.checkStale
    ) {
      c.tlbL1Hits++;
      const e = this.mEntry[m];
      const shift = e >>> 16;
      const tlb = this.tlb;
      if (shift === 0) {
        c.tlbHits4k++;
        tlb.d4k.touch(e & 0xffff);
      } else if (shift === 9) {
        c.tlbHits2m++;
        tlb.d2m.touch(e & 0xffff);
      } else {
        c.tlbHits1g++;
        tlb.d1g.touch(e & 0xffff);
      }
      return this.mPfn[m];
    }
    const tlb = this.tlb;
    const fetch = (access & Access.FETCH) !== 0;
    let arr: TlbArray = fetch ? tlb.i4k : tlb.d4k;
    let shift = 0;
    let i = arr.lookup(vpn, 0, pcid);
    if (i < 0) {
      shift = 9;
      arr = fetch ? tlb.i2m : tlb.d2m;
      i = arr.lookup(Math.floor(vpn / 512), 9, pcid);
      if (i < 0 && !fetch) {
        shift = 18;
        arr = tlb.d1g;
        i = arr.lookup(Math.floor(vpn / 262144), 18, pcid);
      }
    }
    if (i >= 0) {
      c.tlbL1Hits++;
      const epoch = this.epoch.n;
      const pfn = this.useEntry(arr, i, shift, vpn, access);
      const perm = arr.perm[i];
      if (
        pfn >= 0 &&
        this.epoch.n === epoch &&
        (perm & TlbPerm.US) === 0 &&
        (access === Access.READ ||
          (access === Access.WRITE && (perm & (TlbPerm.RW | TlbPerm.DIRTY)) === (TlbPerm.RW | TlbPerm.DIRTY)))
      ) {
        this.mVpn[m] = vpn;
        this.mKey[m] = access | (pcid << 8);
        this.mEpoch[m] = epoch;
        this.mEntry[m] = i | (shift << 16);
        this.mPfn[m] = pfn;
      }
      return pfn;
    } else {
      i = this.lookupStlb(vpn, pcid, access);
      if (i < 0) {
        c.tlbMisses++;
        return walk(this, vpn, access);
      }
      c.tlbL2Hits++;
      arr = this.hitArr;
      shift = this.hitShift;
    }
    return this.useEntry(arr, i, shift, vpn, access);
  }

  private lookupStlb(vpn: number, pcid: number, access: number): number {
    const tlb = this.tlb;
    let i = tlb.stlb.lookup(vpn, 0, pcid);
    let shift = 0;
    let arr = tlb.stlb;
    if (i < 0) {
      shift = 9;
      i = tlb.stlb.lookup(Math.floor(vpn / 512), 9, pcid);
      if (i < 0) {
        shift = 18;
        arr = tlb.stlb1g;
        i = arr.lookup(Math.floor(vpn / 262144), 18, pcid);
      }
    }
    if (i < 0) return -1;
    // Refill the first level from the second.
    this.fillL1(vpn, shift, arr.base[i], arr.perm[i], arr.global[i], access);
    this.hitArr = arr;
    this.hitShift = shift;
    return i;
  }

  /** Serve an access from a TLB entry: stale check, rights check, dirty assist. */
  private useEntry(arr: TlbArray, i: number, shift: number, vpn: number, access: number): number {
    const perm = arr.perm[i];
    const span = 1 << shift;
    const pfn = arr.base[i] + (vpn & (span - 1)); // low bits of an integer below 2^53: no fmod
    if (this.checkStale) this.staleCheck(vpn, pfn, perm);
    if (shift === 0) this.counters.tlbHits4k++;
    else if (shift === 9) this.counters.tlbHits2m++;
    else this.counters.tlbHits1g++;
    const rights = checkRights(this, access, perm);
    if (rights !== 0) {
      // A cached entry may be more restrictive than the tables (a permission upgrade without a flush):
      // the access faults and the fault drops the entry, as on hardware.
      return pageFault(this, vpn, access, rights === 2 ? PfErr.P | PfErr.PK : PfErr.P);
    }
    if ((access & Access.WRITE) !== 0 && (perm & TlbPerm.DIRTY) === 0) {
      // First write through a clean entry: the processor walks again to set the Dirty flag.
      return walk(this, vpn, access);
    }
    return pfn;
  }

  /** Called by the walk with a completed translation. */
  fillTlb(vpn: number, shift: number, base: number, perm: number, global: number, access: number): void {
    const tlb = this.tlb;
    const pcid = this.currentPcid;
    if (shift === 18) tlb.stlb1g.insert(Math.floor(vpn / 262144), 18, pcid, global, base, perm);
    else tlb.stlb.insert(shift === 0 ? vpn : Math.floor(vpn / 512), shift, pcid, global, base, perm);
    this.fillL1(vpn, shift, base, perm, global, access);
  }

  private fillL1(
    vpn: number,
    shift: number,
    base: number,
    perm: number,
    global: number,
    access: number,
  ): void {
    const tlb = this.tlb;
    const pcid = this.currentPcid;
    if ((access & Access.FETCH) !== 0) {
      if (shift === 0) tlb.i4k.insert(vpn, 0, pcid, global, base, perm);
      else {
        // The instruction TLB has no 1 GiB entries: a 1 GiB page is cached as the 2 MiB piece used.
        const pn = Math.floor(vpn / 512);
        tlb.i2m.insert(pn, 9, pcid, global, shift === 9 ? base : base + (pn & 511) * 512, perm);
      }
      return;
    }
    if (shift === 0) tlb.d4k.insert(vpn, 0, pcid, global, base, perm);
    else if (shift === 9) tlb.d2m.insert(Math.floor(vpn / 512), 9, pcid, global, base, perm);
    else tlb.d1g.insert(Math.floor(vpn / 262144), 18, pcid, global, base, perm);
  }

  private staleCheck(vpn: number, pfn: number, perm: number): void {
    const now = peekWalk(this, vpn);
    let reason = "";
    if (now === null) reason = "page no longer mapped";
    else if (now.pfn !== pfn) reason = `maps frame ${hex(now.pfn)} now, TLB says ${hex(pfn)}`;
    else if ((perm & TlbPerm.RW) !== 0 && (now.perm & TlbPerm.RW) === 0) reason = "write permission revoked";
    else if ((perm & TlbPerm.US) !== 0 && (now.perm & TlbPerm.US) === 0) reason = "user access revoked";
    else if ((perm & TlbPerm.XD) === 0 && (now.perm & TlbPerm.XD) !== 0)
      reason = "execute permission revoked";
    if (reason === "") return;
    this.counters.staleTlbHits++;
    if (this.staleReports.length < 1000) {
      this.staleReports.push({
        cpu: this.id,
        vpn,
        pcid: this.currentPcid,
        cachedPfn: pfn,
        cachedPerm: perm,
        actualPfn: now === null ? null : now.pfn,
        actualPerm: now === null ? null : now.perm,
        reason,
      });
    }
  }

  /**
   * MOV to CR3. Without CR4.PCIDE: flushes every non-global TLB entry. With PCIDE: selects `pcid`, and
   * unless `noFlush` (CR3 bit 63) flushes that PCID's non-global entries. Paging-structure caches for
   * the PCID are flushed likewise.
   */
  writeCr3(rootPfn: number, pcid = 0, noFlush = false): void {
    if (!Number.isInteger(rootPfn) || rootPfn < 0 || rootPfn * 4096 >= this.mem.limit) {
      fail(
        "BAD_CR3",
        `CR3 root frame ${hex(rootPfn)} is beyond MAXPHYADDR (${this.mem.maxPhysAddrBits} bits)`,
      );
    }
    if (!this.pcide && (pcid !== 0 || noFlush)) {
      fail("GP_FAULT", "#GP: CR3 PCID bits or bit 63 set while CR4.PCIDE = 0");
    }
    if (!Number.isInteger(pcid) || pcid < 0 || pcid > 4095) fail("BAD_CR3", `PCID ${pcid} is not 0..4095`);
    this.counters.cr3Writes++;
    this.cr3Pfn = rootPfn;
    this.currentPcid = pcid;
    if (!noFlush) {
      this.counters.tlbFullFlushes++;
      this.tlb.flush(this.pcide ? pcid : -1, true);
      this.psc?.flush(this.pcide ? pcid : -1);
    }
  }

  /** INVLPG: drop the translations of `vpn` for the current PCID and any global one; all PSC entries of the PCID. */
  invlpg(vpn: number): void {
    this.counters.invlpg++;
    this.tlb.invalidateAddress(vpn, this.currentPcid, false);
    this.psc?.flush(this.currentPcid);
  }

  /**
   * INVPCID. Type 0: one address in `pcid` (globals kept). Type 1: every non-global entry of `pcid`.
   * Type 2: everything, globals included. Type 3: everything but globals.
   */
  invpcid(type: 0 | 1 | 2 | 3, pcid = 0, vpn = 0): void {
    if (!Number.isInteger(pcid) || pcid < 0 || pcid > 4095)
      fail("GP_FAULT", `#GP: INVPCID with PCID ${pcid}`);
    this.counters.invpcid++;
    if (type === 0) {
      this.tlb.invalidateAddress(vpn, pcid, true);
      this.psc?.flush(pcid);
    } else if (type === 1) {
      this.tlb.flush(pcid, true);
      this.psc?.flush(pcid);
    } else {
      if (type === 2) this.counters.tlbGlobalFlushes++;
      else this.counters.tlbFullFlushes++;
      this.tlb.flush(-1, type === 3);
      this.psc?.flush(-1);
    }
  }

  /** Toggle CR4.PGE off and on: flushes the whole TLB including global entries. */
  flushAllIncludingGlobal(): void {
    this.counters.tlbGlobalFlushes++;
    this.tlb.flush(-1, false);
    this.psc?.flush(-1);
  }

  /** Set CR4 bits that may change at run time. Changing PGE, PCIDE or SMEP flushes everything (SDM 4.10.4.1). */
  setControl(bits: {
    wp?: boolean;
    smep?: boolean;
    smap?: boolean;
    pke?: boolean;
    pge?: boolean;
    pcide?: boolean;
    ac?: boolean;
  }): void {
    if (bits.pcide === true && !this.pcide && this.cr3Pfn !== 0 && this.currentPcid !== 0) {
      fail("GP_FAULT", "#GP: setting CR4.PCIDE requires CR3[11:0] = 0");
    }
    const flush =
      (bits.pge !== undefined && bits.pge !== this.pge) ||
      (bits.pcide !== undefined && bits.pcide !== this.pcide) ||
      (bits.smep !== undefined && bits.smep !== this.smep);
    if (bits.wp !== undefined) this.wp = bits.wp;
    if (bits.smep !== undefined) this.smep = bits.smep;
    if (bits.smap !== undefined) this.smap = bits.smap;
    if (bits.pke !== undefined) this.pke = bits.pke;
    if (bits.pge !== undefined) this.pge = bits.pge;
    if (bits.pcide !== undefined) this.pcide = bits.pcide;
    if (bits.ac !== undefined) this.ac = bits.ac;
    if (flush) this.flushAllIncludingGlobal();
  }

  /** Load a u32 through the MMU (counted as a memory read). Throws PAGE_FAULT on a fault. */
  load32(vpn: number, offset: number, access: number = Access.READ): number {
    const pfn = this.translate(vpn, access & ~Access.WRITE);
    if (pfn < 0) this.raise(vpn, offset);
    this.lastPfn = pfn;
    return this.mem.read32(pfn * 4096 + offset);
  }

  /** Store a u32 through the MMU. Throws PAGE_FAULT on a fault. */
  store32(vpn: number, offset: number, value: number, access: number = Access.WRITE): void {
    const pfn = this.translate(vpn, access | Access.WRITE);
    if (pfn < 0) this.raise(vpn, offset);
    this.lastPfn = pfn;
    this.mem.write32(pfn * 4096 + offset, value);
  }

  /**
   * `n` loads of consecutive words of page `vpn` from `offset` into `dst[from..]`, counted exactly as
   * `n` calls of `load32` would be. The first two loads are made one by one; when the second was a
   * plain first-level TLB hit (and the stale-entry detector is off), every further load of the page is
   * the same hit (a hit only refreshes its own entry's recency), so they are counted as such and the
   * words are copied in bulk. Otherwise every load is made one by one.
   */
  load32Run(vpn: number, offset: number, dst: Uint32Array, from: number, n: number): void {
    if (offset + 4 * n > 4096) this.crossesPage(offset, n);
    if (n < 3 || this.checkStale) {
      for (let i = 0; i < n; i++) dst[from + i] = this.load32(vpn, offset + 4 * i);
      return;
    }
    dst[from] = this.load32(vpn, offset);
    const hit = this.snapHit();
    dst[from + 1] = this.load32(vpn, offset + 4);
    if (!this.sameHit(hit, n - 2)) {
      for (let i = 2; i < n; i++) dst[from + i] = this.load32(vpn, offset + 4 * i);
      return;
    }
    this.mem.readWords(this.lastPfn * 4096 + offset + 8, dst, from + 2, n - 2);
  }

  /** `n` stores of `src[from..]` at consecutive words of page `vpn` from `offset`: as `load32Run`, for `store32`. */
  store32Run(vpn: number, offset: number, src: Uint32Array, from: number, n: number): void {
    if (offset + 4 * n > 4096) this.crossesPage(offset, n);
    if (n < 3 || this.checkStale) {
      for (let i = 0; i < n; i++) this.store32(vpn, offset + 4 * i, src[from + i]);
      return;
    }
    // The first store, backing RAM for the whole run at once (a page written whole is backed whole).
    const first = this.translate(vpn, Access.WRITE);
    if (first < 0) this.raise(vpn, offset);
    this.mem.writeWords(first * 4096 + offset, src, from, 1, 4 * n);
    const hit = this.snapHit();
    this.store32(vpn, offset + 4, src[from + 1]);
    if (!this.sameHit(hit, n - 2)) {
      for (let i = 2; i < n; i++) this.store32(vpn, offset + 4 * i, src[from + i]);
      return;
    }
    this.mem.writeWords(this.lastPfn * 4096 + offset + 8, src, from + 2, n - 2);
  }

  // The counters a translation may move, before the second access of a run (see load32Run).
  private hitL1 = 0;
  private hit4k = 0;
  private hit2m = 0;
  private hit1g = 0;
  private hitOther = 0;

  private snapHit(): number {
    const c = this.counters;
    this.hitL1 = c.tlbL1Hits;
    this.hit4k = c.tlbHits4k;
    this.hit2m = c.tlbHits2m;
    this.hit1g = c.tlbHits1g;
    this.hitOther = c.tlbL2Hits + c.tlbMisses + c.walks + c.pageFaults + c.staleTlbHits;
    return this.hitL1;
  }

  /**
   * Was the access since `snapHit` a plain L1 hit? Then count `more` identical hits and return true.
   * The frame it reached is `lastPfn`.
   */
  private sameHit(l1: number, more: number): boolean {
    const c = this.counters;
    if (c.tlbL1Hits !== l1 + 1) return false;
    if (c.tlbL2Hits + c.tlbMisses + c.walks + c.pageFaults + c.staleTlbHits !== this.hitOther) return false;
    c.tlbL1Hits += more;
    c.tlbHits4k += (c.tlbHits4k - this.hit4k) * more;
    c.tlbHits2m += (c.tlbHits2m - this.hit2m) * more;
    c.tlbHits1g += (c.tlbHits1g - this.hit1g) * more;
    return true;
  }

  private crossesPage(offset: number, n: number): never {
    return fail("MISALIGNED", `a run of ${n} words at page offset ${hex(offset)} crosses its page`);
  }

  private raise(vpn: number, offset: number): never {
    fail(
      "PAGE_FAULT",
      `#PF at linear page ${hex(vpn)} offset ${hex(offset)}, error code ${hex(this.faultCode)}`,
      {
        vpn,
        offset,
        errorCode: this.faultCode,
      },
    );
  }
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(Cpu);
