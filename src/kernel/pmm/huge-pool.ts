/**
 * Design 6 (part 2): a separate pool of 2 MiB and 1 GiB frames over a buddy of 4 KiB frames, in the
 * manner of Linux's hugetlb pool: whole 2 MiB frames live in the pool, not in the buddy; 4 KiB (up to
 * order 8) requests are served by the buddy, which is given a 2 MiB frame from the pool when it runs
 * dry (splitting); whenever a free lets the buddy coalesce a whole 2 MiB block again, the block goes
 * back to the pool (re-merging). When all 512 2 MiB frames of a 1 GiB frame are in the pool, they merge
 * into a 1 GiB frame; a 2 MiB request with an empty 2 MiB list splits a 1 GiB frame.
 *
 * Metadata, after the inner buddy's (which has records for every frame and sees every pool frame as an
 * allocated order-9 block):
 *
 *     header:     list2M { head u32, count u32 }, list1G { head u32, count u32 }
 *     rec2M[]:    16 B per 2 MiB of the 1 GiB-aligned regions: { state, next, prev, - }
 *     rec1G[]:    16 B per 1 GiB: { state, nPool2M (its 2 MiB frames in the pool), next, prev }
 *
 *     2 MiB state: BUDDY (its frames belong to the buddy) | POOL | ALLOC (handed out) | IN1G
 *     1 GiB state: SPLIT (its 2 MiB frames are on their own) | POOL | ALLOC
 *
 * Orders served: 0..8 (buddy), 9 (2 MiB), 18 (1 GiB); orders 10..17 return -1. Guarantees: 2 MiB and
 * 1 GiB frames are O(1) while the pool holds them, and 4 KiB churn cannot fragment pool frames it does
 * not hold. Costs: the buddy's 16 B/frame plus 16 B per 2 MiB; a merge into 1 GiB unlinks 512 records.
 */
import { bare, blank, cloneable } from "../../machine/clone.ts";
import type { PhysPort } from "../../machine/phys-mem.ts";
import { type Buddy, buddyDesign, Rec } from "./buddy.ts";
import {
  allocFramesVia,
  badFree,
  checkFreeArgs as checkFreeArgs_,
  effectiveOrder,
  fits as fits_,
  invariant,
  NIL as NIL_,
  ORDER_1G as ORDER_1G_,
  ORDER_2M as ORDER_2M_,
  PAGE as PAGE_,
  pageRound,
  RegionTable,
  statsFromFree,
} from "./common.ts";
import type {
  AllocConstraints,
  FrameAllocator,
  PmmDesign,
  PmmEnv,
  PmmLayout,
  PmmStats,
} from "./interface.ts";

// Module-local copies: the loader compiles imports to getter calls, too slow for hot paths.
const NIL = NIL_;
const PAGE = PAGE_;
const ORDER_1G = ORDER_1G_;
const ORDER_2M = ORDER_2M_;
const checkFreeArgs = checkFreeArgs_;
const fits = fits_;

const enum S2 {
  BUDDY = 0,
  POOL = 1,
  ALLOC = 2,
  IN1G = 3,
}
const enum S1 {
  SPLIT = 0,
  POOL = 1,
  ALLOC = 2,
}
const GIG = 2 ** ORDER_1G;
const STATES2 = ["buddy", "pool", "allocated as 2 MiB", "part of a 1 GiB frame"];

const inner = buddyDesign({ pcp: false, name: "huge-pool:buddy" });

function poolBytes(layout: PmmLayout): number {
  const frames = new RegionTable(layout.usable, GIG).frames;
  return pageRound(16 + (frames / 512) * 16 + (frames / GIG) * 16);
}

export function hugePoolDesign(): PmmDesign {
  return {
    name: "huge-pool",
    summary:
      "A pool of 2 MiB and 1 GiB frames over a 4 KiB buddy: splits a 2 MiB frame into the buddy on demand and " +
      "takes it back when the buddy re-coalesces it; 512 pooled 2 MiB frames merge into 1 GiB.",
    metadataBytes: (layout) => pageRound(inner.metadataBytes(layout)) + poolBytes(layout),
    create: (env, layout, metadataPa) => new HugePool(env, layout, metadataPa),
  };
}

export class HugePool implements FrameAllocator {
  readonly name = "huge-pool";
  readonly maxOrder = ORDER_1G;
  /** Event counters. */
  splits2M = 0;
  merges2M = 0;
  splits1G = 0;
  merges1G = 0;
  readonly buddy: Buddy;
  private readonly port: PhysPort;
  private readonly regions: RegionTable;
  private readonly colours: number;
  private readonly hdr: number;
  private readonly rec2: number;
  private readonly rec1: number;
  private readonly bytes: number;

  constructor(
    env: PmmEnv,
    private readonly layout: PmmLayout,
    metadataPa: number,
  ) {
    if (blank()) bare(this); // a bare instance for a copy of the machine (machine/clone.ts)
    this.port = env.port;
    this.colours = layout.colours ?? 1;
    this.buddy = inner.create(env, layout, metadataPa) as Buddy;
    this.regions = new RegionTable(layout.usable, GIG);
    this.hdr = metadataPa + pageRound(inner.metadataBytes(layout));
    this.rec2 = this.hdr + 16;
    this.rec1 = this.rec2 + (this.regions.frames / 512) * 16;
    this.bytes = pageRound(inner.metadataBytes(layout)) + poolBytes(layout);
    const pb = poolBytes(layout);
    for (let off = 0; off < pb; off += PAGE) this.port.zeroFrame((this.hdr + off) / PAGE);
    this.port.write32(this.hdr, NIL);
    this.port.write32(this.hdr + 8, NIL);
  }

  // ---- records and the two pool lists (doubly linked through the records) -------------------------

  private r2(i: number): number {
    return this.rec2 + i * 16;
  }

  private r1(g: number): number {
    return this.rec1 + g * 16;
  }

  /** Index of the 2 MiB frame holding pfn (-1 outside the regions). */
  private idx2(pfn: number): number {
    const s = this.regions.slot(pfn);
    return s < 0 ? -1 : Math.floor(s / 512);
  }

  private pfn2(i: number): number {
    return this.regions.pfnOf(i * 512);
  }

  /** The record of entry `i` of a list of 2 MiB frames (`size` 2) or of 1 GiB frames (`size` 1). */
  private rec(size: 1 | 2, i: number): number {
    return size === 2 ? this.r2(i) : this.r1(i);
  }

  /** Link record `i` of the `size` records (link words at +off) onto the list whose header is at `head`. */
  private link(head: number, size: 1 | 2, off: number, i: number): void {
    const port = this.port;
    const h = port.read32(head);
    port.write32(this.rec(size, i) + off, h);
    port.write32(this.rec(size, i) + off + 4, NIL);
    if (h !== NIL) port.write32(this.rec(size, h) + off + 4, i);
    port.write32(head, i);
    port.write32(head + 4, port.read32(head + 4) + 1);
  }

  private unlinkRec(head: number, size: 1 | 2, off: number, i: number): void {
    const port = this.port;
    const n = port.read32(this.rec(size, i) + off);
    const p = port.read32(this.rec(size, i) + off + 4);
    if (p === NIL) port.write32(head, n);
    else port.write32(this.rec(size, p) + off, n);
    if (n !== NIL) port.write32(this.rec(size, n) + off + 4, p);
    port.write32(head + 4, port.read32(head + 4) - 1);
  }

  /** Put 2 MiB frame i in the pool; merge its 1 GiB frame when that completes it. */
  private pool2M(i: number): void {
    this.port.write32(this.r2(i), S2.POOL);
    this.link(this.hdr, 2, 4, i);
    const g = i >>> 9;
    const n = this.port.read32(this.r1(g) + 4) + 1;
    this.port.write32(this.r1(g) + 4, n);
    if (n === 512) this.merge1G(g);
  }

  private merge1G(g: number): void {
    for (let i = g * 512; i < g * 512 + 512; i++) {
      this.unlinkRec(this.hdr, 2, 4, i);
      this.port.write32(this.r2(i), S2.IN1G);
    }
    this.port.write32(this.r1(g) + 4, 0);
    this.port.write32(this.r1(g), S1.POOL);
    this.link(this.hdr + 8, 1, 8, g);
    this.merges1G++;
  }

  /** Take every whole 2 MiB block the buddy has coalesced back into the pool. */
  private reclaim(): void {
    while (this.buddy.freeBlocksAtLeast(ORDER_2M) > 0) {
      const pfn = this.buddy.alloc(ORDER_2M);
      this.pool2M(this.idx2(pfn));
      this.merges2M++;
    }
  }

  /** A 2 MiB frame out of the pool (splitting a 1 GiB frame if needed), or -1. */
  private take2M(c: AllocConstraints | undefined): number {
    for (let i = this.port.read32(this.hdr); i !== NIL; i = this.port.read32(this.r2(i) + 4)) {
      const pfn = this.pfn2(i);
      if (!fits(pfn, ORDER_2M, c, this.colours)) continue;
      this.unlinkRec(this.hdr, 2, 4, i);
      const g = i >>> 9;
      this.port.write32(this.r1(g) + 4, this.port.read32(this.r1(g) + 4) - 1);
      return i;
    }
    for (let g = this.port.read32(this.hdr + 8); g !== NIL; g = this.port.read32(this.r1(g) + 8)) {
      const base = this.pfn2(g * 512);
      if (!fits(base, ORDER_2M, c, this.colours)) continue;
      this.unlinkRec(this.hdr + 8, 1, 8, g);
      this.port.write32(this.r1(g), S1.SPLIT);
      for (let i = g * 512 + 1; i < g * 512 + 512; i++) {
        this.port.write32(this.r2(i), S2.POOL);
        this.link(this.hdr, 2, 4, i);
      }
      this.port.write32(this.r1(g) + 4, 511);
      this.splits1G++;
      return g * 512;
    }
    return -1;
  }

  addFree(startPfn: number, count: number): void {
    this.buddy.addFree(startPfn, count);
    this.reclaim();
  }

  alloc(order: number, c?: AllocConstraints): number {
    const k = effectiveOrder(order, c);
    if (k < ORDER_2M) {
      const sub = c?.pageSize !== undefined ? { ...c, pageSize: undefined } : c;
      const pfn = this.buddy.alloc(k, sub);
      if (pfn >= 0) return pfn;
      const i = this.take2M(c?.maxAddr !== undefined ? { maxAddr: c.maxAddr } : undefined);
      if (i < 0) return -1;
      this.port.write32(this.r2(i), S2.BUDDY);
      this.buddy.free(this.pfn2(i), ORDER_2M); // split: the buddy gets a whole 2 MiB frame
      this.splits2M++;
      const again = this.buddy.alloc(k, sub);
      if (again < 0) this.reclaim(); // the constraint could not be met inside it: take it back
      return again;
    }
    if (k === ORDER_2M) {
      const i = this.take2M(c);
      if (i < 0) return -1;
      this.port.write32(this.r2(i), S2.ALLOC);
      return this.pfn2(i);
    }
    if (k !== ORDER_1G) return -1;
    for (let g = this.port.read32(this.hdr + 8); g !== NIL; g = this.port.read32(this.r1(g) + 8)) {
      const pfn = this.pfn2(g * 512);
      if (!fits(pfn, ORDER_1G, c, this.colours)) continue;
      this.unlinkRec(this.hdr + 8, 1, 8, g);
      this.port.write32(this.r1(g), S1.ALLOC);
      return pfn;
    }
    return -1;
  }

  allocFrames(n: number, out: number[], c?: AllocConstraints): number {
    return allocFramesVia(this, n, out, c);
  }

  free(pfn: number, order: number): void {
    checkFreeArgs(this.name, pfn, order, ORDER_1G);
    const i = this.idx2(pfn);
    if (i < 0) badFree("BAD_FREE", this.name, pfn, order, "not in usable RAM");
    const s2 = this.port.read32(this.r2(i));
    const s1 = this.port.read32(this.r1(i >>> 9));
    if (order < ORDER_2M && s2 === S2.BUDDY) {
      this.buddy.free(pfn, order);
      this.reclaim();
      return;
    }
    if (order === ORDER_2M && s2 === S2.ALLOC) {
      this.pool2M(i);
      return;
    }
    if (order === ORDER_1G && s1 === S1.ALLOC) {
      this.port.write32(this.r1(i >>> 9), S1.POOL);
      this.link(this.hdr + 8, 1, 8, i >>> 9);
      return;
    }
    this.diagnose(pfn, order, s2, s1);
  }

  private diagnose(pfn: number, order: number, s2: number, s1: number): never {
    if (order > ORDER_2M && order !== ORDER_1G)
      badFree("WRONG_ORDER", this.name, pfn, order, "only 4 KiB-1 MiB, 2 MiB and 1 GiB blocks exist here");
    if (s2 === S2.POOL || (s2 === S2.IN1G && s1 === S1.POOL))
      badFree("DOUBLE_FREE", this.name, pfn, order, "already free (in the pool)");
    const head2 = pfn % 512 === 0;
    if (s2 === S2.ALLOC)
      badFree(
        head2 ? "WRONG_ORDER" : "BAD_FREE",
        this.name,
        pfn,
        order,
        "inside a 2 MiB frame allocated whole",
      );
    if (s2 === S2.IN1G)
      badFree(
        pfn % GIG === 0 ? "WRONG_ORDER" : "BAD_FREE",
        this.name,
        pfn,
        order,
        "inside a 1 GiB frame allocated whole",
      );
    const w = this.buddy.recordWord(pfn);
    if (w >= 0 && (w & Rec.STATE_MASK) === Rec.ALLOC)
      badFree("WRONG_ORDER", this.name, pfn, order, "the block was allocated as a small block");
    if (w >= 0 && (w & Rec.STATE_MASK) === Rec.BUDDY)
      badFree("DOUBLE_FREE", this.name, pfn, order, "already free");
    return badFree(
      "BAD_FREE",
      this.name,
      pfn,
      order,
      `never allocated with this order (2 MiB frame is ${STATES2[s2]})`,
    );
  }

  forEachFree(fn: (pfn: number, count: number) => void): void {
    this.buddy.forEachFree(fn);
    for (let i = this.port.read32(this.hdr); i !== NIL; i = this.port.read32(this.r2(i) + 4))
      fn(this.pfn2(i), 512);
    for (let g = this.port.read32(this.hdr + 8); g !== NIL; g = this.port.read32(this.r1(g) + 8))
      fn(this.pfn2(g * 512), GIG);
  }

  forEachMetaFrame(_fn: (pfn: number) => void): void {}

  stats(): PmmStats {
    return statsFromFree(this, this.layout, this.buddy.stats().managedFrames, this.bytes, 0);
  }

  check(): void {
    this.buddy.check();
    const port = this.port;
    if (this.buddy.freeBlocksAtLeast(ORDER_2M) > 0)
      invariant(this.name, "the buddy holds a whole 2 MiB block that belongs in the pool");
    const n2 = this.regions.frames / 512;
    const pooled = new Array<number>(n2 / 512 + 1).fill(0);
    let inPool = 0;
    for (let i = 0; i < n2; i++) {
      const s = port.read32(this.r2(i));
      if (s > S2.IN1G) invariant(this.name, `2 MiB record ${i} has state ${s}`);
      if (s === S2.BUDDY) continue;
      const w = this.buddy.recordWord(this.pfn2(i));
      if (w !== (Rec.ALLOC | (ORDER_2M << Rec.ORDER_SHIFT)))
        invariant(this.name, `2 MiB frame ${i} (${STATES2[s]}) is not an order-9 block of the buddy`);
      if (s === S2.POOL) {
        pooled[i >>> 9]++;
        inPool++;
      }
      if (s === S2.IN1G && port.read32(this.r1(i >>> 9)) === S1.SPLIT)
        invariant(this.name, `2 MiB frame ${i} says IN1G in a split 1 GiB frame`);
    }
    let listed = 0;
    for (let i = port.read32(this.hdr); i !== NIL; i = port.read32(this.r2(i) + 4)) {
      if (port.read32(this.r2(i)) !== S2.POOL)
        invariant(this.name, `2 MiB frame ${i} on the pool list is not POOL`);
      if (++listed > inPool) invariant(this.name, "2 MiB pool list longer than the POOL records (or loops)");
    }
    if (listed !== inPool || listed !== port.read32(this.hdr + 4))
      invariant(
        this.name,
        `2 MiB pool: ${listed} listed, ${inPool} records, count ${port.read32(this.hdr + 4)}`,
      );
    for (let g = 0; g < pooled.length - 1; g++) {
      const s = port.read32(this.r1(g));
      const n = port.read32(this.r1(g) + 4);
      if (s === S1.SPLIT && n !== pooled[g])
        invariant(this.name, `1 GiB frame ${g}: count ${n}, ${pooled[g]} of its 2 MiB frames are pooled`);
      if (n >= 512) invariant(this.name, `1 GiB frame ${g} has all 2 MiB frames pooled but was not merged`);
    }
    let g1 = 0;
    for (let g = port.read32(this.hdr + 8); g !== NIL; g = port.read32(this.r1(g) + 8)) {
      if (port.read32(this.r1(g)) !== S1.POOL)
        invariant(this.name, `1 GiB frame ${g} on the pool list is not POOL`);
      if (++g1 > pooled.length) invariant(this.name, "1 GiB pool list loops");
    }
    if (g1 !== port.read32(this.hdr + 12))
      invariant(this.name, `1 GiB pool: ${g1} listed, count ${port.read32(this.hdr + 12)}`);
  }

  buddyinfo(): string[] {
    return this.buddy.buddyinfo();
  }

  dump(): string {
    const port = this.port;
    return `${this.buddy.dump()}\nhuge-pool: 2M ${port.read32(this.hdr)}/${port.read32(this.hdr + 4)} 1G ${port.read32(this.hdr + 8)}/${port.read32(this.hdr + 12)}`;
  }
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(HugePool);
