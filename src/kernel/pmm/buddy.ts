/**
 * Design 5: the buddy allocator, as Linux's mm/page_alloc.c: orders 0..10 (4 KiB .. 4 MiB), per-order
 * free lists threaded through per-page records, splitting on allocation (`expand` after
 * `__rmqueue_smallest`), coalescing with the buddy `pfn ^ (1 << order)` on free (`__free_one_page`),
 * optional per-CPU page lists (orders 0..3, batch 63) and optional migrate types with pageblock (2 MiB)
 * grouping and fallback stealing (`__rmqueue_fallback`).
 *
 * Everything lives in simulated RAM, in one standing block placed by the caller:
 *
 *     metadataPa ─> free_area[mt][order] { head u32, nr_free u32 }     (the zone's free lists)
 *                   pcp[cpu][mt][order 0..3] { head u32, count u32 }   (per-CPU page lists, one per migrate type as in Linux)
 *                   pageblock type[]       u32 per 2 MiB               (only with migrate types)
 *                   record[]               16 B (or 64 B) per usable frame, packed by region
 *
 * A record is a compact `struct page` (16 B by default; `recordBytes: 64` pads it to Linux's size so
 * the metadata cost can be compared: 0.39 % vs 1.56 % of RAM):
 *
 *     word 0:  31      24 23    20 19  16 15      8 7       0
 *             +----------+--------+------+---------+---------+
 *             | (unused) |  cpu   |  mt  |  order  |  state  |   state: Rec.NONE / BUDDY / ALLOC / PCP
 *             +----------+--------+------+---------+---------+
 *     word 1:  next record index (NIL = 0xffffffff)     word 2: prev record index     word 3: unused
 *
 * Only the HEAD record of a block carries a state (as Linux's PageBuddy on the first page): tails of free
 * and allocated blocks are NONE. Records are indexed by position in the packed region array (the
 * region bases are registers), so a sparse map costs records for its RAM only. Links are record
 * indices (u32: 16 TiB of RAM per zone).
 *
 * Guarantees: naturally aligned contiguous blocks up to 4 MiB, O(MAX_ORDER) alloc and free, buddies
 * always coalesced (checked). Costs: 16 B per frame, and a few list-head and record accesses per call.
 * Registers in JS: free and managed frame counts, the current CPU, region bases.
 */
import { bare, blank, cloneable } from "../../machine/clone.ts";
import { bulkIsFilled, type PhysPort, readWords } from "../../machine/phys-mem.ts";
import {
  allocFramesVia,
  badFree,
  checkFreeArgs as checkFreeArgs_,
  checkLayout,
  effectiveOrder,
  fits as fits_,
  invariant,
  isHard,
  MAX_ORDER as MAX_ORDER_,
  NIL as NIL_,
  NR_ORDERS as NR_ORDERS_,
  PAGE as PAGE_,
  pageRound,
  RegionTable,
  statsFromCounts,
} from "./common.ts";
import type {
  AllocConstraints,
  FrameAllocator,
  Mobility,
  PmmDesign,
  PmmEnv,
  PmmLayout,
  PmmCounts,
  PmmStats,
} from "./interface.ts";

// Module-local copies: the loader compiles imports to getter calls, too slow for hot paths.
const NIL = NIL_;
const MAX_ORDER = MAX_ORDER_;
const NR_ORDERS = NR_ORDERS_;
const PAGE = PAGE_;
const checkFreeArgs = checkFreeArgs_;
const fits = fits_;

/** Scratch: one page of record words, for the checker's bulk reads. */
const RECORDS = new Uint32Array(1024);

/** Record word-0 fields. */
export const enum Rec {
  STATE_MASK = 0xff,
  NONE = 0,
  BUDDY = 1,
  ALLOC = 2,
  PCP = 3,
  ORDER_SHIFT = 8,
  MT_SHIFT = 16,
  CPU_SHIFT = 20,
}

/** Linux's migrate types (the three that matter here). */
export const enum Mt {
  UNMOVABLE = 0,
  MOVABLE = 1,
  RECLAIMABLE = 2,
}
const MT_NAMES = ["Unmovable", "Movable", "Reclaimable"];
/** Fallback order per requested type (Linux's fallbacks[] table). */
const FALLBACKS = [
  [Mt.RECLAIMABLE, Mt.MOVABLE],
  [Mt.RECLAIMABLE, Mt.UNMOVABLE],
  [Mt.UNMOVABLE, Mt.MOVABLE],
];
const PAGEBLOCK_ORDER = 9;
/** Orders served by the per-CPU lists (Linux: up to PAGE_ALLOC_COSTLY_ORDER). */
export const PCP_ORDERS = 4;

export interface BuddyOptions {
  /** Bytes per page record: 16 (compact, default) or 64 (Linux's struct page size). */
  recordBytes?: 16 | 64;
  /** Per-CPU page lists for orders 0..3 (default true). */
  pcp?: boolean;
  /** Per-CPU batch (default 63); the high watermark is 6 batches. */
  batch?: number;
  /** Migrate types with pageblock grouping (default false). */
  migrate?: boolean;
  /** Names for /proc/buddyinfo (default node 0, zone "Normal"). */
  zone?: string;
  node?: number;
  /** Design name override (compositions). */
  name?: string;
}

interface Geometry {
  nmt: number;
  cpus: number;
  stride: number;
  faBytes: number;
  pcpBytes: number;
  pbBytes: number;
  recOffset: number;
  total: number;
}

function geometry(layout: PmmLayout, o: BuddyOptions): Geometry {
  const nmt = o.migrate ? 3 : 1;
  const cpus = layout.cpus ?? 1;
  const stride = o.recordBytes ?? 16;
  const faBytes = nmt * NR_ORDERS * 8;
  const pcpBytes = (o.pcp ?? true) ? cpus * nmt * PCP_ORDERS * 8 : 0;
  const pbBytes = o.migrate ? (new RegionTable(layout.usable, 512).frames / 512) * 4 : 0;
  const recOffset = Math.ceil((faBytes + pcpBytes + pbBytes) / 64) * 64;
  const frames = new RegionTable(layout.usable).frames;
  return {
    nmt,
    cpus,
    stride,
    faBytes,
    pcpBytes,
    pbBytes,
    recOffset,
    total: pageRound(recOffset + frames * stride),
  };
}

export function buddyDesign(opts: BuddyOptions = {}): PmmDesign {
  const name = opts.name ?? (opts.recordBytes === 64 ? "buddy-64" : opts.migrate ? "buddy-mt" : "buddy");
  return {
    name,
    summary:
      `Linux-style buddy: orders 0-10, free lists through ${opts.recordBytes ?? 16}-byte page records, ` +
      `coalescing on free${(opts.pcp ?? true) ? ", per-CPU lists (batch 63)" : ""}${opts.migrate ? ", migrate types by pageblock" : ""}.`,
    metadataBytes: (layout) => geometry(layout, opts).total,
    create: (env, layout, metadataPa) => new Buddy(env, layout, metadataPa, { ...opts, name }),
  };
}

export class Buddy implements FrameAllocator {
  readonly name: string;
  readonly maxOrder = MAX_ORDER;
  readonly zone: string;
  readonly node: number;
  /** Register: the CPU whose per-CPU list a free goes to (Linux's this_cpu). */
  currentCpu = 0;
  /** Event counters (Zircon-style KCOUNTERs): splits, merges, pcp refills and drains, steals. */
  splits = 0;
  merges = 0;
  refills = 0;
  drains = 0;
  steals = 0;
  private readonly port: PhysPort;
  private readonly regions: RegionTable;
  private readonly pbRegions: RegionTable;
  private readonly g: Geometry;
  private readonly faPa: number;
  private readonly pcpPa: number;
  private readonly pbPa: number;
  private readonly recPa: number;
  private readonly stride: number;
  private readonly pcp: boolean;
  private readonly migrate: boolean;
  private readonly batch: number;
  private readonly colours: number;
  /** Registers: free frames (buddy lists + pcp) and managed frames. */
  private nfree = 0;
  private managed = 0;

  constructor(
    env: PmmEnv,
    private readonly layout: PmmLayout,
    readonly metadataPa: number,
    o: BuddyOptions,
  ) {
    if (blank()) bare(this); // a bare instance for a copy of the machine (machine/clone.ts)
    checkLayout(layout);
    this.name = o.name ?? "buddy";
    this.zone = o.zone ?? "Normal";
    this.node = o.node ?? 0;
    this.port = env.port;
    this.regions = new RegionTable(layout.usable);
    this.pbRegions = new RegionTable(layout.usable, 512);
    this.g = geometry(layout, o);
    this.faPa = metadataPa;
    this.pcpPa = metadataPa + this.g.faBytes;
    this.pbPa = this.pcpPa + this.g.pcpBytes;
    this.recPa = metadataPa + this.g.recOffset;
    this.stride = this.g.stride;
    this.pcp = o.pcp ?? true;
    this.migrate = o.migrate ?? false;
    this.batch = o.batch ?? 63;
    this.colours = layout.colours ?? 1;
    // The records start zeroed (NONE); lists start empty; every pageblock starts MOVABLE, as in Linux.
    for (let off = 0; off < this.g.total; off += PAGE) this.port.zeroFrame((metadataPa + off) / PAGE);
    for (let i = 0; i < (this.g.faBytes + this.g.pcpBytes) / 8; i++)
      this.port.write32(metadataPa + i * 8, NIL);
    for (let i = 0; i < this.g.pbBytes / 4; i++) this.port.write32(this.pbPa + i * 4, Mt.MOVABLE);
  }

  // ---- records and lists --------------------------------------------------------------------------

  private rec(idx: number): number {
    return this.recPa + idx * this.stride;
  }

  private pbType(pfn: number): number {
    if (!this.migrate) return 0;
    return this.port.read32(this.pbPa + (this.pbRegions.slot(pfn) >>> 9) * 4);
  }

  private setPbType(pfn: number, mt: number): void {
    this.port.write32(this.pbPa + (this.pbRegions.slot(pfn) >>> 9) * 4, mt);
  }

  /** Put block idx (order o) at the head of free list (mt, o) and mark it BUDDY. */
  private push(mt: number, o: number, idx: number): void {
    const port = this.port;
    const head = this.faPa + (mt * NR_ORDERS + o) * 8;
    const h = port.read32(head);
    const r = this.rec(idx);
    port.write32(r, Rec.BUDDY | (o << Rec.ORDER_SHIFT) | (mt << Rec.MT_SHIFT));
    port.write32(r + 4, h);
    port.write32(r + 8, NIL);
    if (h !== NIL) port.write32(this.rec(h) + 8, idx);
    port.write32(head, idx);
    port.write32(head + 4, port.read32(head + 4) + 1);
  }

  /** Remove block idx from free list (mt, o); its record keeps its stale word 0 (callers rewrite it). */
  private unlink(mt: number, o: number, idx: number): void {
    const port = this.port;
    const head = this.faPa + (mt * NR_ORDERS + o) * 8;
    const r = this.rec(idx);
    const n = port.read32(r + 4);
    const p = port.read32(r + 8);
    if (p === NIL) port.write32(head, n);
    else port.write32(this.rec(p) + 4, n);
    if (n !== NIL) port.write32(this.rec(n) + 8, p);
    port.write32(head + 4, port.read32(head + 4) - 1);
  }

  /**
   * Split block (idx, pfn, order o) down to order k, keeping the sub-block at offset `target` frames and
   * putting the other halves on the free lists (Linux's expand()). Returns the kept block's index.
   */
  private expand(idx: number, pfn: number, o: number, k: number, target: number): number {
    while (o > k) {
      o--;
      this.splits++;
      const half = 1 << o;
      if (target >= half) {
        this.push(this.pbType(pfn), o, idx);
        idx += half;
        pfn += half;
        target -= half;
      } else {
        this.push(this.pbType(pfn + half), o, idx + half);
      }
    }
    return idx;
  }

  /** __rmqueue_smallest, then the migrate-type fallback. Returns a record index, or -1. */
  private takeBlock(k: number, mt: number): number {
    const port = this.port;
    for (let o = k; o <= MAX_ORDER; o++) {
      const head = this.faPa + (mt * NR_ORDERS + o) * 8;
      const idx = port.read32(head);
      if (idx === NIL) continue;
      const next = port.read32(this.rec(idx) + 4);
      port.write32(head, next);
      if (next !== NIL) port.write32(this.rec(next) + 8, NIL);
      port.write32(head + 4, port.read32(head + 4) - 1);
      if (o === k) return idx;
      return this.expand(idx, this.regions.pfnOf(idx), o, k, 0);
    }
    return this.migrate ? this.steal(k, mt) : -1;
  }

  /** __rmqueue_fallback: take the LARGEST block of a fallback type, claiming its pageblock if worth it. */
  private steal(k: number, mt: number): number {
    for (let o = MAX_ORDER; o >= k; o--) {
      for (const fmt of FALLBACKS[mt]) {
        const idx = this.port.read32(this.faPa + (fmt * NR_ORDERS + o) * 8);
        if (idx === NIL) continue;
        this.steals++;
        const pfn = this.regions.pfnOf(idx);
        if (o >= PAGEBLOCK_ORDER) {
          for (let p = pfn; p < pfn + (1 << o); p += 512) this.setPbType(p, mt);
        } else if (o >= PAGEBLOCK_ORDER >> 1 || mt !== Mt.MOVABLE) {
          this.claimPageblock(pfn, mt);
        }
        const w = this.port.read32(this.rec(idx));
        this.unlink((w >>> Rec.MT_SHIFT) & 0xf, o, idx);
        return this.expand(idx, pfn, o, k, 0);
      }
    }
    return -1;
  }

  /** If at least half of pfn's pageblock is free, retype it and move its free blocks to list mt. */
  private claimPageblock(pfn: number, mt: number): void {
    const r = this.regions.indexOf(pfn);
    const start = Math.max(pfn - (pfn % 512), this.regions.start[r]);
    const end = Math.min(pfn - (pfn % 512) + 512, this.regions.end[r]);
    let free = 0;
    for (let p = start; p < end; ) {
      const w = this.port.read32(this.rec(this.regions.base[r] + p - this.regions.start[r]));
      const st = w & Rec.STATE_MASK;
      const o = (w >>> Rec.ORDER_SHIFT) & 0xff;
      if (st === Rec.BUDDY) free += 1 << o;
      p += st === Rec.NONE ? 1 : 1 << o;
    }
    if (free < 256) return;
    this.setPbType(pfn, mt);
    for (let p = start; p < end; ) {
      const idx = this.regions.base[r] + p - this.regions.start[r];
      const w = this.port.read32(this.rec(idx));
      const st = w & Rec.STATE_MASK;
      const o = (w >>> Rec.ORDER_SHIFT) & 0xff;
      if (st === Rec.BUDDY && ((w >>> Rec.MT_SHIFT) & 0xf) !== mt) {
        this.unlink((w >>> Rec.MT_SHIFT) & 0xf, o, idx);
        this.push(mt, o, idx);
      }
      p += st === Rec.NONE ? 1 : 1 << o;
    }
  }

  /** __free_one_page: merge with free buddies of equal order, then list the result. */
  private freeBlock(idx: number, pfn: number, k: number, r: number): void {
    const port = this.port;
    const rs = this.regions.start[r];
    const re = this.regions.end[r];
    while (k < MAX_ORDER) {
      const size = 1 << k;
      // pfn is aligned to size: its buddy is above when bit k of pfn is clear (no fmod on a double).
      const bpfn = (Math.floor(pfn / size) & 1) === 0 ? pfn + size : pfn - size;
      if (bpfn < rs || bpfn + size > re) break;
      const bidx = idx + (bpfn - pfn);
      const w = port.read32(this.rec(bidx));
      if ((w & 0xffff) !== (Rec.BUDDY | (k << Rec.ORDER_SHIFT))) break;
      this.unlink((w >>> Rec.MT_SHIFT) & 0xf, k, bidx);
      this.merges++;
      if (bpfn < pfn) {
        port.write32(this.rec(idx), Rec.NONE);
        idx = bidx;
        pfn = bpfn;
      } else {
        port.write32(this.rec(bidx), Rec.NONE);
      }
      k++;
    }
    this.push(this.pbType(pfn), k, idx);
  }

  // ---- per-CPU lists --------------------------------------------------------------------------------

  /** Address of cpu's per-CPU list of order k for migrate type mt. */
  private pcpSlot(cpu: number, mt: number, k: number): number {
    return this.pcpPa + ((cpu * this.g.nmt + mt) * PCP_ORDERS + k) * 8;
  }

  private batchFor(k: number): number {
    return Math.max(this.batch >> k, 1);
  }

  /** rmqueue_bulk: move up to a batch of order-k blocks from the buddy to cpu's list. */
  private refill(cpu: number, k: number, mt: number): number {
    const port = this.port;
    const pa = this.pcpSlot(cpu, mt, k);
    let head = port.read32(pa);
    const count = port.read32(pa + 4);
    const n = this.batchFor(k);
    let got = 0;
    for (; got < n; got++) {
      const idx = this.takeBlock(k, mt);
      if (idx < 0) break;
      const r = this.rec(idx);
      port.write32(r, Rec.PCP | (k << Rec.ORDER_SHIFT) | (cpu << Rec.CPU_SHIFT));
      port.write32(r + 4, head);
      head = idx;
    }
    port.write32(pa, head);
    port.write32(pa + 4, count + got);
    if (got > 0) this.refills++;
    return got;
  }

  /** free_pcppages_bulk: give `n` blocks of cpu's order-k list of type mt back to the buddy. */
  private drain(cpu: number, mt: number, k: number, n: number): void {
    const port = this.port;
    const pa = this.pcpSlot(cpu, mt, k);
    let head = port.read32(pa);
    let count = port.read32(pa + 4);
    for (let i = 0; i < n && head !== NIL; i++) {
      const idx = head;
      head = port.read32(this.rec(idx) + 4);
      count--;
      const pfn = this.regions.pfnOf(idx);
      this.freeBlock(idx, pfn, k, this.regions.indexOf(pfn));
    }
    port.write32(pa, head);
    port.write32(pa + 4, count);
    this.drains++;
  }

  /** drain_all_pages: empty every per-CPU list (before giving up on an allocation). Returns frames moved. */
  drainAll(): number {
    if (!this.pcp) return 0;
    let moved = 0;
    for (let cpu = 0; cpu < this.g.cpus; cpu++) {
      for (let mt = 0; mt < this.g.nmt; mt++) {
        for (let k = 0; k < PCP_ORDERS; k++) {
          const count = this.port.read32(this.pcpSlot(cpu, mt, k) + 4);
          if (count === 0) continue;
          this.drain(cpu, mt, k, count);
          moved += count * (1 << k);
        }
      }
    }
    return moved;
  }

  // ---- the interface --------------------------------------------------------------------------------

  addFree(startPfn: number, count: number): void {
    const end = startPfn + count;
    this.regions.checkAddFree(this.name, startPfn, count);
    for (let p = startPfn; p < end; ) {
      const r = this.regions.indexOf(p);
      let o = MAX_ORDER;
      while (o > 0 && (p % (1 << o) !== 0 || p + (1 << o) > Math.min(end, this.regions.end[r]))) o--;
      const idx = this.regions.base[r] + p - this.regions.start[r];
      if ((this.port.read32(this.rec(idx)) & Rec.STATE_MASK) !== Rec.NONE) {
        badFree("BAD_FREE", this.name, p, o, "addFree of a frame the allocator already manages");
      }
      this.freeBlock(idx, p, o, r);
      p += 1 << o;
    }
    this.managed += count;
    this.nfree += count;
  }

  alloc(order: number, c?: AllocConstraints): number {
    if (order === 0 && c === undefined && this.pcp) {
      // Fast path: pop from this CPU's order-0 list.
      const port = this.port;
      const pa = this.pcpSlot(this.currentCpu, Mt.UNMOVABLE, 0); // no constraints: unmovable
      const count = port.read32(pa + 4);
      if (count !== 0) {
        const idx = port.read32(pa);
        const r = this.rec(idx);
        port.write32(pa, port.read32(r + 4));
        port.write32(pa + 4, count - 1);
        port.write32(r, Rec.ALLOC);
        this.nfree--;
        return this.regions.pfnOf(idx);
      }
    }
    return this.allocSlow(order, c);
  }

  private allocSlow(order: number, c: AllocConstraints | undefined): number {
    const k = effectiveOrder(order, c);
    if (k > MAX_ORDER) return -1;
    const mt = this.migrate ? mobilityType(c?.mobility) : 0;
    const cpu = c?.cpu !== undefined ? c.cpu % this.g.cpus : this.currentCpu;
    let idx: number;
    if (isHard(c)) {
      idx = this.takeMatching(k, mt, c!);
      if (idx < 0 && this.drainAll() > 0) idx = this.takeMatching(k, mt, c!);
    } else if (this.pcp && k < PCP_ORDERS) {
      const pa = this.pcpSlot(cpu, mt, k);
      if (this.port.read32(pa + 4) === 0 && this.refill(cpu, k, mt) === 0) {
        this.drainAll();
        if (this.refill(cpu, k, mt) === 0) return -1;
      }
      idx = this.port.read32(pa);
      this.port.write32(pa, this.port.read32(this.rec(idx) + 4));
      this.port.write32(pa + 4, this.port.read32(pa + 4) - 1);
    } else {
      idx = this.takeBlock(k, mt);
      if (idx < 0 && this.drainAll() > 0) idx = this.takeBlock(k, mt);
    }
    if (idx < 0) return -1;
    this.port.write32(this.rec(idx), Rec.ALLOC | (k << Rec.ORDER_SHIFT));
    this.nfree -= 1 << k;
    return this.regions.pfnOf(idx);
  }

  /** Constrained search: walk the lists for a block holding a fitting order-k sub-block. */
  private takeMatching(k: number, mt: number, c: AllocConstraints): number {
    const nmt = this.g.nmt;
    for (let o = k; o <= MAX_ORDER; o++) {
      for (let t = 0; t < nmt; t++) {
        const list = (mt + t) % nmt;
        for (let idx = this.port.read32(this.faPa + (list * NR_ORDERS + o) * 8); idx !== NIL; ) {
          const pfn = this.regions.pfnOf(idx);
          const subs = Math.min(1 << (o - k), Math.max(this.colours, 1));
          for (let j = 0; j < subs; j++) {
            if (!fits(pfn + j * (1 << k), k, c, this.colours)) continue;
            this.unlink(list, o, idx);
            return this.expand(idx, pfn, o, k, j * (1 << k));
          }
          idx = this.port.read32(this.rec(idx) + 4);
        }
      }
    }
    return -1;
  }

  allocFrames(n: number, out: number[], c?: AllocConstraints): number {
    return allocFramesVia(this, n, out, c);
  }

  free(pfn: number, order: number): void {
    const r = this.regions.indexOf(pfn);
    if (
      r < 0 ||
      !Number.isInteger(pfn) ||
      !Number.isInteger(order) ||
      order < 0 ||
      order > MAX_ORDER ||
      (order !== 0 && pfn % (1 << order) !== 0) // no fmod on the order-0 path
    ) {
      checkFreeArgs(this.name, pfn, order, MAX_ORDER);
      badFree("BAD_FREE", this.name, pfn, order, "not in usable RAM");
    }
    const port = this.port;
    const idx = this.regions.base[r] + pfn - this.regions.start[r];
    const rp = this.rec(idx);
    const w = port.read32(rp);
    if (w !== (Rec.ALLOC | (order << Rec.ORDER_SHIFT))) this.diagnose(pfn, order, idx, r, w);
    this.nfree += 1 << order;
    if (this.pcp && order < PCP_ORDERS) {
      const cpu = this.currentCpu;
      // Linux frees to the per-CPU list of the page's pageblock migrate type.
      const mt = this.migrate ? this.pbType(pfn) : 0;
      const pa = this.pcpSlot(cpu, mt, order);
      port.write32(rp, Rec.PCP | (order << Rec.ORDER_SHIFT) | (cpu << Rec.CPU_SHIFT));
      port.write32(rp + 4, port.read32(pa));
      port.write32(pa, idx);
      const count = port.read32(pa + 4) + 1;
      port.write32(pa + 4, count);
      if (count > 6 * this.batchFor(order)) this.drain(cpu, mt, order, this.batchFor(order));
      return;
    }
    this.freeBlock(idx, pfn, order, r);
  }

  /** Name what is wrong with a free whose head record is not ALLOC of that order (throws). */
  private diagnose(pfn: number, order: number, idx: number, r: number, w: number): never {
    const st = w & Rec.STATE_MASK;
    const o = (w >>> Rec.ORDER_SHIFT) & 0xff;
    if (st === Rec.BUDDY || st === Rec.PCP) badFree("DOUBLE_FREE", this.name, pfn, order, "already free");
    if (st === Rec.ALLOC)
      badFree("WRONG_ORDER", this.name, pfn, order, `the block was allocated with order ${o}`);
    for (let j = 1; j <= MAX_ORDER; j++) {
      const h = pfn - (pfn % (1 << j));
      if (h < this.regions.start[r]) break;
      const hw = this.port.read32(this.rec(idx - (pfn - h)));
      const hs = hw & Rec.STATE_MASK;
      const ho = (hw >>> Rec.ORDER_SHIFT) & 0xff;
      if (hs !== Rec.NONE && ho >= j) {
        if (hs === Rec.ALLOC)
          badFree(
            "BAD_FREE",
            this.name,
            pfn,
            order,
            `inside an allocated block of order ${ho} at 0x${h.toString(16)}`,
          );
        badFree(
          "DOUBLE_FREE",
          this.name,
          pfn,
          order,
          `inside a free block of order ${ho} at 0x${h.toString(16)}`,
        );
      }
    }
    return badFree("BAD_FREE", this.name, pfn, order, "never allocated (reserved or metadata)");
  }

  // ---- inspection -----------------------------------------------------------------------------------

  /** Free blocks of order >= k in the buddy lists (read from nr_free in RAM). */
  freeBlocksAtLeast(k: number): number {
    let n = 0;
    for (let mt = 0; mt < this.g.nmt; mt++) {
      for (let o = k; o <= MAX_ORDER; o++) n += this.port.read32(this.faPa + (mt * NR_ORDERS + o) * 8 + 4);
    }
    return n;
  }

  /** Word 0 of pfn's record (state | order << 8 | ...), or -1 outside the regions. */
  recordWord(pfn: number): number {
    const s = this.regions.slot(pfn);
    return s < 0 ? -1 : this.port.read32(this.rec(s));
  }

  private nrFree(mt: number, o: number): number {
    return this.port.read32(this.faPa + (mt * NR_ORDERS + o) * 8 + 4);
  }

  forEachFree(fn: (pfn: number, count: number) => void): void {
    for (let mt = 0; mt < this.g.nmt; mt++) {
      for (let o = 0; o <= MAX_ORDER; o++) {
        let guard = this.nrFree(mt, o) + 1;
        for (let idx = this.port.read32(this.faPa + (mt * NR_ORDERS + o) * 8); idx !== NIL && guard-- > 0; ) {
          fn(this.regions.pfnOf(idx), 1 << o);
          idx = this.port.read32(this.rec(idx) + 4);
        }
      }
    }
    if (!this.pcp) return;
    for (let list = 0; list < this.g.cpus * this.g.nmt; list++) {
      for (let k = 0; k < PCP_ORDERS; k++) {
        const pa = this.pcpPa + (list * PCP_ORDERS + k) * 8;
        let n = this.port.read32(pa + 4);
        for (
          let idx = this.port.read32(pa);
          idx !== NIL && n-- > 0;
          idx = this.port.read32(this.rec(idx) + 4)
        ) {
          fn(this.regions.pfnOf(idx), 1 << k);
        }
      }
    }
  }

  forEachMetaFrame(_fn: (pfn: number) => void): void {}

  counts(): PmmCounts {
    return {
      managedFrames: this.managed,
      freeFrames: this.nfree,
      metadataBytes: this.g.total,
      transientBytes: 0,
    };
  }

  stats(): PmmStats {
    const s = statsFromCounts(this, this.layout, this.counts());
    s.freeByOrder = new Array<number>(NR_ORDERS).fill(0);
    this.forEachFree((_p, n) => {
      s.freeByOrder[Math.log2(n)]++;
    });
    return s;
  }

  /** `/proc/buddyinfo`: free blocks per order in the zone's free lists (per-CPU lists excluded). */
  buddyinfo(): string[] {
    let line = `Node ${this.node}, zone ${this.zone.padStart(8)} `;
    for (let o = 0; o <= MAX_ORDER; o++) {
      let n = 0;
      for (let mt = 0; mt < this.g.nmt; mt++) n += this.nrFree(mt, o);
      line += `${String(n).padStart(6)} `;
    }
    return [line];
  }

  /** `/proc/pagetypeinfo`-style lines (free blocks per order and migrate type). */
  pagetypeinfo(): string[] {
    if (!this.migrate) return [];
    const out: string[] = [];
    for (let mt = 0; mt < 3; mt++) {
      let line = `Node ${this.node}, zone ${this.zone.padStart(8)}, type ${MT_NAMES[mt].padStart(12)} `;
      for (let o = 0; o <= MAX_ORDER; o++) line += `${String(this.nrFree(mt, o)).padStart(6)} `;
      out.push(line);
    }
    return out;
  }

  dump(): string {
    const parts = [`${this.name}: free=${this.nfree} managed=${this.managed}`];
    for (let mt = 0; mt < this.g.nmt; mt++) {
      const heads: string[] = [];
      for (let o = 0; o <= MAX_ORDER; o++) {
        const h = this.faPa + (mt * NR_ORDERS + o) * 8;
        heads.push(`${this.port.read32(h)}/${this.port.read32(h + 4)}`);
      }
      parts.push(`mt${mt} ${heads.join(" ")}`);
    }
    if (this.pcp) {
      for (let cpu = 0; cpu < this.g.cpus; cpu++) {
        const l: string[] = [];
        for (let mt = 0; mt < this.g.nmt; mt++) {
          for (let k = 0; k < PCP_ORDERS; k++) {
            const pa = this.pcpSlot(cpu, mt, k);
            l.push(`${this.port.read32(pa)}/${this.port.read32(pa + 4)}`);
          }
        }
        parts.push(`pcp${cpu} ${l.join(" ")}`);
      }
    }
    return parts.join("\n");
  }

  /**
   * The invariants: the free lists and per-CPU lists agree with their counts and their records, no two
   * free buddies are left uncoalesced, the records' states agree with the lists, no two blocks overlap,
   * free + allocated frames = managed, and every pageblock has a valid migrate type.
   */
  check(): void {
    const name = this.name;
    const iv: number[] = []; // every block seen, as (first pfn, frames) pairs
    const lists = this.checkFreeLists(iv);
    const pcp = this.checkPcpLists(iv);
    const free = lists.free + pcp.free;
    if (free !== this.nfree) invariant(name, `lists hold ${free} free frames, register says ${this.nfree}`);
    const recs = this.checkRecords(iv);
    if (recs.heads !== lists.listed)
      invariant(name, `${recs.heads} records say BUDDY, ${lists.listed} are on free lists`);
    if (recs.pcpHeads !== pcp.listed)
      invariant(name, `${recs.pcpHeads} records say PCP, ${pcp.listed} are on pcp lists`);
    checkNoOverlap(name, iv);
    if (free + recs.allocated !== this.managed)
      invariant(name, `free ${free} + allocated ${recs.allocated} != managed ${this.managed}`);
    this.checkPageblocks();
  }

  /** Every free list (each migrate type and order), adding its blocks to iv: blocks listed, frames. */
  private checkFreeLists(iv: number[]): { listed: number; free: number } {
    let listed = 0;
    let free = 0;
    for (let mt = 0; mt < this.g.nmt; mt++) {
      for (let o = 0; o <= MAX_ORDER; o++) {
        const n = this.checkFreeList(mt, o, iv);
        listed += n;
        free += n * (1 << o);
      }
    }
    return { listed, free };
  }

  /** One free list: as long as nr_free, doubly linked, each block a BUDDY head of order o. Its length. */
  private checkFreeList(mt: number, o: number, iv: number[]): number {
    const port = this.port;
    const nr = this.nrFree(mt, o);
    let n = 0;
    let prev = NIL;
    for (let idx = port.read32(this.faPa + (mt * NR_ORDERS + o) * 8); idx !== NIL; ) {
      if (++n > nr)
        invariant(this.name, `free list (mt ${mt}, order ${o}) is longer than nr_free ${nr} (or loops)`);
      const r = this.rec(idx);
      const w = port.read32(r);
      if (w !== (Rec.BUDDY | (o << Rec.ORDER_SHIFT) | (mt << Rec.MT_SHIFT))) {
        invariant(this.name, `record ${idx} on list (mt ${mt}, order ${o}) has word 0x${w.toString(16)}`);
      }
      if (port.read32(r + 8) !== prev) invariant(this.name, `record ${idx}: prev link broken`);
      const pfn = this.regions.pfnOf(idx);
      this.checkFreeBlock(pfn, o);
      iv.push(pfn, 1 << o);
      prev = idx;
      idx = port.read32(r + 4);
    }
    if (n !== nr)
      invariant(this.name, `free list (mt ${mt}, order ${o}) holds ${n} blocks, nr_free says ${nr}`);
    return n;
  }

  /** A free block of order o: aligned, inside its region, and its buddy (if inside too) not free at o. */
  private checkFreeBlock(pfn: number, o: number): void {
    const name = this.name;
    const reg = this.regions.indexOf(pfn);
    if (pfn % (1 << o) !== 0) invariant(name, `free block 0x${pfn.toString(16)} misaligned for order ${o}`);
    if (pfn + (1 << o) > this.regions.end[reg])
      invariant(name, `free block 0x${pfn.toString(16)} leaves its region`);
    if (o >= MAX_ORDER) return;
    const b = pfn % (1 << (o + 1)) === 0 ? pfn + (1 << o) : pfn - (1 << o);
    const inside = b >= this.regions.start[reg] && b + (1 << o) <= this.regions.end[reg];
    const bi = this.regions.base[reg] + b - this.regions.start[reg];
    if (inside && (this.port.read32(this.rec(bi)) & 0xffff) === (Rec.BUDDY | (o << Rec.ORDER_SHIFT))) {
      invariant(name, `buddies 0x${pfn.toString(16)} and 0x${b.toString(16)} are both free at order ${o}`);
    }
  }

  /** Every per-CPU list: as long as its count, each block a PCP head of its order and CPU. */
  private checkPcpLists(iv: number[]): { listed: number; free: number } {
    const port = this.port;
    const name = this.name;
    let listed = 0;
    let free = 0;
    if (!this.pcp) return { listed, free };
    for (let list = 0; list < this.g.cpus * this.g.nmt; list++) {
      const cpu = Math.floor(list / this.g.nmt);
      for (let k = 0; k < PCP_ORDERS; k++) {
        const pa = this.pcpPa + (list * PCP_ORDERS + k) * 8;
        const count = port.read32(pa + 4);
        let n = 0;
        for (let idx = port.read32(pa); idx !== NIL; idx = port.read32(this.rec(idx) + 4)) {
          if (++n > count)
            invariant(name, `pcp list (cpu ${cpu}, order ${k}) longer than its count ${count}`);
          const w = port.read32(this.rec(idx));
          if (w !== (Rec.PCP | (k << Rec.ORDER_SHIFT) | (cpu << Rec.CPU_SHIFT)))
            invariant(name, `pcp record ${idx} has word 0x${w.toString(16)}`);
          iv.push(this.regions.pfnOf(idx), 1 << k);
          free += 1 << k;
        }
        if (n !== count) invariant(name, `pcp list (cpu ${cpu}, order ${k}) holds ${n}, count says ${count}`);
        listed += n;
      }
    }
    return { listed, free };
  }

  /**
   * Every record, in frame order: a known state; allocated heads aligned and inside their region (added
   * to iv). Counts of BUDDY and PCP heads, and allocated frames.
   */
  private checkRecords(iv: number[]): { heads: number; pcpHeads: number; allocated: number } {
    let heads = 0;
    let pcpHeads = 0;
    let allocated = 0;
    // A page of records at a time: all zero (NONE: the inside of free blocks) is one bulk compare,
    // otherwise the page's words are read in one run: the check costs about one read of the records,
    // not one access per frame.
    const sw = this.stride / 4;
    for (let r = 0; r < this.regions.count; r++) {
      const end = this.regions.end[r];
      for (let p = this.regions.start[r]; p < end; ) {
        const idx = this.regions.base[r] + p - this.regions.start[r];
        const pa = this.rec(idx);
        // The records whose state word lies in this page.
        const n = Math.min(end - p, Math.ceil((4096 - (pa % 4096)) / this.stride));
        if (this.zeroRecords(idx, n)) {
          p += n;
          continue;
        }
        readWords(this.port, pa, RECORDS, 0, (n - 1) * sw + 1);
        for (let j = 0; j < n; j++, p++) {
          const w = RECORDS[j * sw];
          const st = w & Rec.STATE_MASK;
          const o = (w >>> Rec.ORDER_SHIFT) & 0xff;
          if (st === Rec.BUDDY) heads++;
          else if (st === Rec.PCP) pcpHeads++;
          else if (st === Rec.ALLOC) {
            if (p % (1 << o) !== 0 || p + (1 << o) > end)
              invariant(this.name, `allocated block 0x${p.toString(16)} (order ${o}) misplaced`);
            iv.push(p, 1 << o);
            allocated += 1 << o;
          } else if (st !== Rec.NONE) invariant(this.name, `record of 0x${p.toString(16)} has state ${st}`);
        }
      }
    }
    return { heads, pcpHeads, allocated };
  }

  /** Are the `n` records from `idx` all zero (NONE)? One bulk compare. */
  private zeroRecords(idx: number, n: number): boolean {
    return bulkIsFilled(this.port, this.rec(idx), n * this.stride, 0);
  }

  /** With migrate types: every pageblock's type is one of the three. */
  private checkPageblocks(): void {
    if (!this.migrate) return;
    for (let i = 0; i < this.g.pbBytes / 4; i++) {
      if (this.port.read32(this.pbPa + i * 4) > Mt.RECLAIMABLE)
        invariant(this.name, `pageblock ${i} has a bad migrate type`);
    }
  }
}

/** No two of the blocks (iv: (first pfn, frames) pairs) overlap. */
function checkNoOverlap(name: string, iv: number[]): void {
  const order = Array.from({ length: iv.length / 2 }, (_, i) => i).sort((a, b) => iv[2 * a] - iv[2 * b]);
  for (let i = 1; i < order.length; i++) {
    const a = order[i - 1];
    const b = order[i];
    if (iv[2 * b] < iv[2 * a] + iv[2 * a + 1])
      invariant(name, `blocks at 0x${iv[2 * a].toString(16)} and 0x${iv[2 * b].toString(16)} overlap`);
  }
}

function mobilityType(m: Mobility | undefined): number {
  return m === "movable" ? Mt.MOVABLE : m === "reclaimable" ? Mt.RECLAIMABLE : Mt.UNMOVABLE;
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(Buddy);
