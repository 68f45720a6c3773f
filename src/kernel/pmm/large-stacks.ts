/**
 * Design 7 (issue 8): large-page stacks. Three linked stacks, one per x86 page size (4 KiB, 2 MiB,
 * 1 GiB), each made of stack pages as in `stack-pages`: a u64 link and 511 u64 entries per 4 KiB page.
 * An entry is a physical address with the page-size tag in its low 12 bits, so the checker can tell
 * which stack an entry belongs on and whether it is aligned for its size:
 *
 *      63                                   12 11          2 1 0
 *     +---------------------------------------+-------------+----+
 *     | physical address of the block (>> 12)  |   0 (MBZ)   |tag |   tag: 0 = 4 KiB, 1 = 2 MiB, 2 = 1 GiB
 *     +---------------------------------------+-------------+----+
 *
 *     4 KiB stack: head ─> [link|511 entries] ─> ...   the pages are free frames of this stack (when a
 *                                                      page empties, it is handed out; a frame being
 *                                                      freed onto a full page becomes the new page)
 *     2 MiB stack: head ─> [link|511 entries] ─> ...   the pages are 4 KiB frames taken from the 4 KiB
 *     1 GiB stack: head ─> [link|511 entries] ─> ...   stack, and given back to it when they empty
 *
 * Standing metadata (placed at creation, `metadataBytes`):
 *
 *     amap:   1 bit per usable frame, set = handed out as a 4 KiB frame (catches double/foreign frees)
 *     rec2[]: u16 per 2 MiB of the 1 GiB-aligned regions:  | 15 14 | 13 12 | 11 10 | 9 ......... 0 |
 *                                                          |   0   | state |   0   | free count     |
 *             state SMALL (frames on their own; count = frames on the 4 KiB stack, as entries or as its
 *             pages), FREE (an entry on the 2 MiB stack), ALLOC (handed out whole), REFORM (during a pass)
 *     rec1[]: u16 per 1 GiB, same layout: state SPLIT (its 2 MiB blocks on their own; count = those
 *             that are wholly free: FREE, or SMALL with count 512), FREE, ALLOC, REFORM.
 *             The rec2 words of a 1 GiB block that is not SPLIT are stale and ignored.
 *
 * Registers (JS): the three stacks' head/top/pages/entries, `full2M` (SMALL blocks with count 512) and
 * `full1G` (SPLIT blocks with count 512), the managed count, and event counters.
 *
 * addFree carves a range into 1 GiB-aligned blocks, then 2 MiB-aligned blocks, then 4 KiB frames.
 * alloc serves exactly the three x86 page sizes: order 0 (4 KiB), order 9 (2 MiB; also order 0 with
 * pageSize 2 MiB) and order 18 (1 GiB); every other order returns -1. An empty 4 KiB stack splits a
 * 2 MiB block (511 frames pushed, the first handed out); an empty 2 MiB stack splits a 1 GiB block
 * (511 blocks pushed). maxAddr and colour are honoured by searching a stack from the top for a fitting
 * entry (the hole is filled with the top entry), then by splitting a larger block that holds a fitting
 * frame; a 2 MiB or 1 GiB block has colour 0 when the colour count divides 512.
 *
 * Re-forming large pages (compaction): a free never merges anything (it stays O(1): a push and a u16
 * update). When a 2 MiB request finds its stack empty and `full2M > 0`, one pass pops the whole 4 KiB
 * stack and pushes back every frame whose block is not complete, dropping the 512 frames of each
 * complete block (entries or stack pages alike) and pushing that block on the 2 MiB stack: O(F) for F
 * free 4 KiB frames, about 7 memory references per frame, and it re-forms every complete block at once
 * so the cost is shared. A 1 GiB request with `full1G > 0` first runs that pass (if any block is
 * complete), marks the complete 1 GiB blocks (one u16 read per GiB), then passes over the 2 MiB stack
 * the same way: O(F + E2 + RAM/1 GiB). The cost of every pass is counted in `compactRefs`.
 *
 * Guarantees: O(1) alloc and free of every page size while its stack is non-empty; large pages come back
 * after fragmentation as soon as all their frames are free. Costs: 1 bit per frame + 2 B per 2 MiB
 * standing; one u16 read-modify-write per 4 KiB alloc/free on top of the stack traffic; compaction passes
 * linear in the free frames. Corner: when a 2 MiB/1 GiB stack needs a new page and no 4 KiB frame is
 * free, the block being pushed pays for it (a 2 MiB block gives its first frame as the page, its other
 * 511 frames go on the 4 KiB stack; a 1 GiB block is split into 2 MiB blocks). The pages of the
 * 2 MiB and 1 GiB stacks are ordinary 4 KiB frames taken from the top of the 4 KiB stack, so each one
 * pins the 2 MiB block (and the 1 GiB block) it lies in until it is given back: on the 4 GiB
 * large-page bench one 2 MiB-stack page inside a GiB kept that GiB from re-forming. The 4 KiB stack's
 * own pages do not pin anything (they count as free in their block and a pass drops them).
 */
import { bare, blank, cloneable } from "../../machine/clone.ts";
import { read64, write64 } from "../../machine/phys-mem.ts";
import type { PhysPort } from "../../machine/phys-mem.ts";
import {
  AllocMap,
  allocFramesVia,
  badFree,
  checkFreeArgs as checkFreeArgs_,
  checkLayout,
  effectiveOrder,
  fits as fits_,
  invariant,
  isHard,
  ORDER_1G,
  ORDER_2M,
  PAGE,
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
const checkFreeArgs = checkFreeArgs_;
const fits = fits_;

/** Entries per stack page (the first u64 is the link). */
export const PER_PAGE = 511;
const GIG = 262144; // frames in 1 GiB
const TWO20 = 1048576;

/** The u16 record fields (rec2 and rec1 share the layout). */
const enum R {
  COUNT = 0x3ff,
  /** 2 MiB: frames on their own; 1 GiB: 2 MiB blocks on their own. */
  SMALL = 0,
  FREE = 0x1000,
  ALLOC = 0x2000,
  /** Being re-formed by a compaction pass; the count counts down the pieces still to remove. */
  REFORM = 0x3000,
}

/** The state bits of a record (R.SMALL..R.REFORM). */
const STATE = 0x3000;

/** Entry tags (low 12 bits of an entry). */
export const enum Tag {
  P4K = 0,
  P2M = 1,
  P1G = 2,
}

const STATE_NAMES = ["small", "free", "allocated whole", "being re-formed"];

/** Standing bytes: the allocation bitmap, then the u16 records (2 MiB, then 1 GiB). */
function layoutBytes(layout: PmmLayout): { amap: number; rec2: number; total: number } {
  const frames = new RegionTable(layout.usable, GIG).frames;
  const amap = AllocMap.bytes(layout);
  const rec2 = (frames / 512) * 2;
  return { amap, rec2, total: pageRound(amap + rec2 + (frames / GIG) * 2) };
}

export function largeStacksDesign(): PmmDesign {
  return {
    name: "large-stacks",
    summary:
      "Three linked stacks (4 KiB, 2 MiB, 1 GiB) of page-size-tagged entries with a u16 free count per 2 MiB " +
      "and per 1 GiB: O(1) pages of each x86 size, splitting on demand, large pages re-formed by compaction passes.",
    metadataBytes: (layout) => layoutBytes(layout).total,
    create: (env, layout, metadataPa) => new LargeStacks(env, layout, metadataPa),
  };
}

/** One linked stack of tagged entries: registers and raw page operations (no policy, no counts). */
export class TaggedStack {
  /** Frame of the top page (-1: none), entries in it, pages, entries in all. */
  head = -1;
  top = 0;
  pages = 0;
  entries = 0;

  constructor(
    private readonly port: PhysPort,
    readonly tag: number,
  ) {}

  reset(): void {
    this.head = -1;
    this.top = 0;
    this.pages = 0;
    this.entries = 0;
  }

  needsPage(): boolean {
    return this.head < 0 || this.top === PER_PAGE;
  }

  addPage(pfn: number): void {
    write64(this.port, pfn * PAGE, this.head);
    this.head = pfn;
    this.top = 0;
    this.pages++;
  }

  /** Unlink the (empty) top page and return its frame. */
  removePage(): number {
    const h = this.head;
    this.head = read64(this.port, h * PAGE);
    this.top = this.head < 0 ? 0 : PER_PAGE;
    this.pages--;
    return h;
  }

  next(page: number): number {
    return read64(this.port, page * PAGE);
  }

  pushEntry(pfn: number): void {
    this.writeAt(this.head, this.top, pfn);
    this.top++;
    this.entries++;
  }

  popEntry(): number {
    this.top--;
    this.entries--;
    return this.entryAt(this.head, this.top);
  }

  entryAt(page: number, i: number): number {
    const pa = page * PAGE + 8 + i * 8;
    return this.port.read32(pa + 4) * TWO20 + (this.port.read32(pa) >>> 12);
  }

  /** The raw low word of an entry (tag and must-be-zero bits), for the checker. */
  lowBitsAt(page: number, i: number): number {
    return this.port.read32(page * PAGE + 8 + i * 8) & 0xfff;
  }

  writeAt(page: number, i: number, pfn: number): void {
    const pa = page * PAGE + 8 + i * 8;
    this.port.write32(pa, (((pfn & 0xfffff) << 12) | this.tag) >>> 0);
    this.port.write32(pa + 4, (pfn / TWO20) >>> 0);
  }

  /** fn(pfn) for every entry, top first. */
  forEachEntry(fn: (pfn: number, page: number, i: number) => void): void {
    let n = this.top;
    for (let page = this.head; page >= 0; page = this.next(page)) {
      for (let i = n - 1; i >= 0; i--) fn(this.entryAt(page, i), page, i);
      n = PER_PAGE;
    }
  }

  forEachPage(fn: (pfn: number) => void): void {
    for (let page = this.head; page >= 0; page = this.next(page)) fn(page);
  }

  registers(): string {
    return `head=${this.head} top=${this.top} pages=${this.pages} entries=${this.entries}`;
  }
}

export class LargeStacks implements FrameAllocator {
  readonly name = "large-stacks";
  readonly maxOrder = ORDER_1G;
  /** Event counters (not state). */
  splits2M = 0;
  splits1G = 0;
  compactions4K = 0;
  compactions2M = 0;
  reformed2M = 0;
  reformed1G = 0;
  /** Memory references (reads + writes) spent inside compaction passes. */
  compactRefs = 0;

  readonly s4: TaggedStack;
  readonly s2: TaggedStack;
  readonly s1: TaggedStack;
  private readonly port: PhysPort;
  private readonly env: PmmEnv;
  private readonly amap: AllocMap;
  /** Usable ranges exactly (for bad-free checks), and widened to 1 GiB (record indices). */
  private readonly usable: RegionTable;
  private readonly regions: RegionTable;
  private readonly colours: number;
  private readonly rec2: number;
  private readonly rec1: number;
  private readonly n1: number;
  private readonly standing: number;
  /** Registers: SMALL 2 MiB blocks with all 512 frames on the 4 KiB stack; SPLIT 1 GiB blocks wholly free. */
  private full2M = 0;
  private full1G = 0;
  private managed = 0;

  constructor(
    env: PmmEnv,
    private readonly layout: PmmLayout,
    metadataPa: number,
  ) {
    if (blank()) bare(this); // a bare instance for a copy of the machine (machine/clone.ts)
    checkLayout(layout);
    this.env = env;
    this.port = env.port;
    this.colours = layout.colours ?? 1;
    this.usable = new RegionTable(layout.usable);
    this.regions = new RegionTable(layout.usable, GIG);
    this.n1 = this.regions.frames / GIG;
    const lb = layoutBytes(layout);
    this.standing = lb.total;
    this.amap = new AllocMap(env.port, layout, metadataPa);
    this.rec2 = metadataPa + lb.amap;
    this.rec1 = this.rec2 + lb.rec2;
    for (let off = lb.amap; off < lb.total; off += PAGE) this.port.zeroFrame((metadataPa + off) / PAGE);
    this.s4 = new TaggedStack(env.port, Tag.P4K);
    this.s2 = new TaggedStack(env.port, Tag.P2M);
    this.s1 = new TaggedStack(env.port, Tag.P1G);
  }

  // ---- records ------------------------------------------------------------------------------------

  /** Index of the 2 MiB block holding pfn (-1 outside the 1 GiB-aligned regions). */
  private blk(pfn: number): number {
    const s = this.regions.slot(pfn);
    return s < 0 ? -1 : Math.floor(s / 512);
  }

  private blockPfn(b: number): number {
    return this.regions.pfnOf(b * 512);
  }

  private rd16(base: number, i: number): number {
    const w = this.port.read32(base + (i >>> 1) * 4);
    return (i & 1) === 0 ? w & 0xffff : w >>> 16;
  }

  private wr16(base: number, i: number, v: number): void {
    const pa = base + (i >>> 1) * 4;
    const w = this.port.read32(pa);
    this.port.write32(pa, ((i & 1) === 0 ? (w & 0xffff0000) | v : (w & 0xffff) | (v << 16)) >>> 0);
  }

  /** Add d to the u16 record i (one read, one write); returns the old value. */
  private add16(base: number, i: number, d: number): number {
    const pa = base + (i >>> 1) * 4;
    const w = this.port.read32(pa);
    const old = (i & 1) === 0 ? w & 0xffff : w >>> 16;
    this.port.write32(pa, (w + ((i & 1) === 0 ? d : d * 65536)) >>> 0);
    return old;
  }

  /** 2 MiB block b became wholly free (FREE, or SMALL with 512 frames on the 4 KiB stack). */
  private gain2(b: number): void {
    if ((this.add16(this.rec1, Math.floor(b / 512), 1) & R.COUNT) === 511) this.full1G++;
  }

  private lose2(b: number): void {
    if ((this.add16(this.rec1, Math.floor(b / 512), -1) & R.COUNT) === 512) this.full1G--;
  }

  // ---- the 4 KiB stack (self-hosted: its pages are its own free frames) ---------------------------

  private push4Raw(pfn: number): void {
    const s = this.s4;
    if (s.head < 0 || s.top === PER_PAGE) s.addPage(pfn);
    else s.pushEntry(pfn);
  }

  private pop4Raw(): number {
    const s = this.s4;
    if (s.head < 0) return -1;
    if (s.top === 0) return s.removePage(); // hand out the empty stack page itself
    return s.popEntry();
  }

  /** Push a frame and count it in its block (a block reaching 512 becomes re-formable). */
  private push4K(pfn: number): void {
    this.push4Raw(pfn);
    const b = this.blk(pfn);
    if ((this.add16(this.rec2, b, 1) & R.COUNT) === 511) {
      this.full2M++;
      this.gain2(b);
    }
  }

  /** A frame left the 4 KiB stack: uncount it. */
  private left4K(pfn: number): void {
    const b = this.blk(pfn);
    if ((this.add16(this.rec2, b, -1) & R.COUNT) === 512) {
      this.full2M--;
      this.lose2(b);
    }
  }

  private pop4K(): number {
    const pfn = this.pop4Raw();
    if (pfn >= 0) this.left4K(pfn);
    return pfn;
  }

  // ---- the 2 MiB and 1 GiB stacks (their pages are 4 KiB frames) ----------------------------------

  /** Push onto s2/s1; false when a new page is needed and no 4 KiB frame is free. */
  private pushExt(s: TaggedStack, pfn: number): boolean {
    if (s.needsPage()) {
      const p = this.pop4K();
      if (p < 0) return false;
      s.addPage(p);
    }
    s.pushEntry(pfn);
    return true;
  }

  /** Pop from s2/s1 (-1 when empty); an emptied top page goes back to the 4 KiB stack first. */
  private popExt(s: TaggedStack): number {
    if (s.entries === 0) return -1;
    if (s.top === 0) this.push4K(s.removePage());
    return s.popEntry();
  }

  /**
   * Remove the topmost entry of s2/s1 whose block fits (the block itself when `anyFrame` is false, some
   * 4 KiB frame inside it otherwise); the hole is filled with the top entry. -1 if none.
   */
  private takeMatching(s: TaggedStack, c: AllocConstraints, order: number, anyFrame: boolean): number {
    let n = s.top;
    for (let page = s.head; page >= 0; page = s.next(page)) {
      for (let i = n - 1; i >= 0; i--) {
        const e = s.entryAt(page, i);
        if (anyFrame ? this.firstFit(e, 1 << order, c) < 0 : !fits(e, order, c, this.colours)) continue;
        const filler = this.popExt(s); // an emptied top page is released; the hole is not in it
        if (filler !== e) s.writeAt(page, i, filler);
        return e;
      }
      n = PER_PAGE;
    }
    return -1;
  }

  /** The lowest frame of [base, base+n) meeting the constraints, or -1. */
  private firstFit(base: number, n: number, c: AllocConstraints): number {
    let f = base;
    if (c.colour !== undefined)
      f += (((c.colour - (base % this.colours)) % this.colours) + this.colours) % this.colours;
    return f < base + n && fits(f, 0, c, this.colours) ? f : -1;
  }

  /** Put a (not counted) 2 MiB block on its stack, or, with no frame for a page, make it pay for one. */
  private push2M(b: number, pfn: number): void {
    if (this.pushExt(this.s2, pfn)) {
      this.wr16(this.rec2, b, R.FREE);
      this.gain2(b);
      return;
    }
    this.push2MFallback(pfn);
  }

  private push1G(g: number, pfn: number): void {
    if (this.pushExt(this.s1, pfn)) this.wr16(this.rec1, g, R.FREE);
    else this.split1G(g, pfn, -1);
  }

  /** Split a 2 MiB block b (taken off its stack): push all its frames but `keep` (returned). */
  private split2M(b: number, pfn: number, keep: number): number {
    for (let f = pfn + 511; f >= pfn; f--) if (f !== keep) this.push4Raw(f);
    this.wr16(this.rec2, b, R.SMALL | 511);
    this.splits2M++;
    return keep;
  }

  /** Split a 1 GiB block (taken off its stack) into 2 MiB blocks, keeping block `keepB` (returned). */
  private split1G(g: number, pfn: number, keepB: number): number {
    this.wr16(this.rec1, g, R.SMALL);
    for (let j = 511; j >= 0; j--) if (g * 512 + j !== keepB) this.push2M(g * 512 + j, pfn + j * 512);
    this.splits1G++;
    return keepB;
  }

  // ---- allocation ---------------------------------------------------------------------------------

  addFree(startPfn: number, count: number): void {
    const end = startPfn + count;
    for (let p = startPfn; p < end; ) {
      const r = this.usable.indexOf(p);
      if (r < 0) badFree("BAD_FREE", this.name, p, 0, "addFree outside the usable RAM of the layout");
      p = this.usable.end[r];
    }
    for (let p = startPfn; p < end; ) {
      if (p % GIG === 0 && p + GIG <= end) {
        this.push1G(Math.floor(this.blk(p) / 512), p);
        p += GIG;
      } else if (p % 512 === 0 && p + 512 <= end) {
        this.push2M(this.blk(p), p);
        p += 512;
      } else this.push4K(p++);
    }
    this.managed += count;
  }

  alloc(order: number, c?: AllocConstraints): number {
    if (order === 0 && c === undefined) {
      const pfn = this.pop4K();
      if (pfn >= 0) {
        this.amap.set(pfn);
        return pfn;
      }
      return this.alloc4K(undefined);
    }
    const k = effectiveOrder(order, c);
    if (k === 0) return this.alloc4K(c);
    if (k === ORDER_2M) return this.alloc2M(c);
    if (k === ORDER_1G) return this.alloc1G(c);
    return -1; // the stacks serve exactly the three x86 page sizes
  }

  private alloc4K(c: AllocConstraints | undefined): number {
    let pfn: number;
    if (!isHard(c)) {
      pfn = this.pop4K();
      if (pfn < 0) pfn = this.refill4K(undefined);
    } else {
      pfn = this.popMatching4K(c!);
      if (pfn < 0) pfn = this.refill4K(c!);
    }
    if (pfn >= 0) this.amap.set(pfn);
    return pfn;
  }

  /** Split a 2 MiB block (or a 1 GiB block, then a 2 MiB block) holding a fitting frame; -1 if none. */
  private refill4K(c: AllocConstraints | undefined): number {
    let pfn = c === undefined ? this.popExt(this.s2) : this.takeMatching(this.s2, c, ORDER_2M, true);
    if (pfn >= 0) this.lose2(this.blk(pfn));
    else {
      const g = c === undefined ? this.popExt(this.s1) : this.takeMatching(this.s1, c, ORDER_1G, true);
      if (g < 0) return -1;
      const f = c === undefined ? g : this.firstFit(g, GIG, c);
      pfn = f - (f % 512);
      this.split1G(Math.floor(this.blk(g) / 512), g, this.blk(pfn));
    }
    return this.split2M(this.blk(pfn), pfn, c === undefined ? pfn : this.firstFit(pfn, 512, c));
  }

  /** The topmost fitting frame of the 4 KiB stack (the hole filled with the top entry); -1 if none. */
  private popMatching4K(c: AllocConstraints): number {
    const s = this.s4;
    if (s.head < 0) return -1;
    if (s.top === 0 && fits(s.head, 0, c, this.colours)) return this.pop4K();
    let n = s.top;
    for (let page = s.head; page >= 0; page = s.next(page)) {
      for (let i = n - 1; i >= 0; i--) {
        const pfn = s.entryAt(page, i);
        if (!fits(pfn, 0, c, this.colours)) continue;
        const filler = this.pop4Raw(); // the filler stays on the stack (maybe moving from page to entry)
        if (filler !== pfn) s.writeAt(page, i, filler);
        this.left4K(pfn);
        return pfn;
      }
      n = PER_PAGE; // full pages below the top are metadata, not candidates
    }
    return -1;
  }

  private alloc2M(c: AllocConstraints | undefined): number {
    let pfn = isHard(c) ? this.takeMatching(this.s2, c!, ORDER_2M, false) : this.popExt(this.s2);
    if (pfn >= 0) {
      const b = this.blk(pfn);
      this.wr16(this.rec2, b, R.ALLOC);
      this.lose2(b);
      return pfn;
    }
    if (this.full2M > 0) {
      pfn = this.compact4K(c, true);
      if (pfn >= 0) return pfn;
    }
    const g = isHard(c) ? this.takeMatching(this.s1, c!, ORDER_2M, false) : this.popExt(this.s1);
    if (g < 0) return -1;
    const b = this.blk(g);
    this.split1G(Math.floor(b / 512), g, b);
    this.wr16(this.rec2, b, R.ALLOC);
    return g;
  }

  private alloc1G(c: AllocConstraints | undefined): number {
    const pfn = isHard(c) ? this.takeMatching(this.s1, c!, ORDER_1G, false) : this.popExt(this.s1);
    if (pfn >= 0) {
      this.wr16(this.rec1, Math.floor(this.blk(pfn) / 512), R.ALLOC);
      return pfn;
    }
    return this.full1G > 0 ? this.compact2M(c) : -1;
  }

  allocFrames(n: number, out: number[], c?: AllocConstraints): number {
    return allocFramesVia(this, n, out, c);
  }

  // ---- compaction passes --------------------------------------------------------------------------

  private refs(): number {
    return this.env.counters.memReads + this.env.counters.memWrites;
  }

  /**
   * Re-form every complete 2 MiB block: pop the whole 4 KiB stack and push back the frames of
   * incomplete blocks; the 512 frames of a complete block are dropped and the block goes on the 2 MiB
   * stack, or (`keep`, the first fitting one) is handed out. Returns the block handed out, or -1.
   */
  private compact4K(c: AllocConstraints | undefined, keep: boolean): number {
    const r0 = this.refs();
    const s = this.s4;
    let page = s.head;
    let n = s.top;
    s.reset(); // the registers now describe the stack being rebuilt (from frames already read)
    let kept = -1;
    while (page >= 0) {
      const next = s.next(page);
      for (let i = n - 1; i >= 0; i--) kept = this.sift4(s.entryAt(page, i), c, keep, kept);
      kept = this.sift4(page, c, keep, kept);
      page = next;
      n = PER_PAGE;
    }
    this.compactions4K++;
    this.compactRefs += this.refs() - r0;
    return kept;
  }

  private sift4(pfn: number, c: AllocConstraints | undefined, keep: boolean, kept: number): number {
    const b = this.blk(pfn);
    const w = this.rd16(this.rec2, b);
    if (w === (R.SMALL | 512)) {
      this.wr16(this.rec2, b, R.REFORM | 511); // the first of its 512 frames: count down from here
      this.full2M--;
      return kept;
    }
    if ((w & STATE) !== R.REFORM) {
      this.push4Raw(pfn); // stays free: no count changes
      return kept;
    }
    this.wr16(this.rec2, b, w - 1);
    if ((w & R.COUNT) !== 1) return kept;
    const base = this.blockPfn(b); // the last frame: the 2 MiB block is whole again
    this.reformed2M++;
    this.lose2(b);
    if (keep && kept < 0 && (c === undefined || fits(base, ORDER_2M, c, this.colours))) {
      this.wr16(this.rec2, b, R.ALLOC);
      return base;
    }
    this.push2M(b, base);
    return kept;
  }

  /**
   * Re-form every wholly free 1 GiB block (after re-forming complete 2 MiB blocks): mark them, pop the
   * whole 2 MiB stack, push back the blocks of unmarked 1 GiB blocks; a marked 1 GiB block whose 512
   * blocks have all been dropped is handed out (the first fitting one) or pushed on the 1 GiB stack.
   */
  private compact2M(c: AllocConstraints | undefined): number {
    if (this.full2M > 0) this.compact4K(undefined, false);
    const r0 = this.refs();
    for (let g = 0; g < this.n1; g++) {
      if (this.rd16(this.rec1, g) !== (R.SMALL | 512)) continue;
      this.wr16(this.rec1, g, R.REFORM | 512);
      this.full1G--;
    }
    const s = this.s2;
    let page = s.head;
    let n = s.top;
    s.reset();
    let kept = -1;
    while (page >= 0) {
      const next = s.next(page);
      for (let i = n - 1; i >= 0; i--) {
        const pfn = s.entryAt(page, i);
        const g = Math.floor(this.blk(pfn) / 512);
        const w = this.rd16(this.rec1, g);
        if ((w & STATE) !== R.REFORM) {
          if (!this.pushExt(s, pfn)) {
            this.lose2(this.blk(pfn));
            this.push2MFallback(pfn);
          }
          continue;
        }
        this.wr16(this.rec1, g, w - 1);
        if ((w & R.COUNT) === 1) kept = this.reformed1GBlock(g, pfn - (pfn % GIG), c, kept);
      }
      this.push4K(page); // the old page is empty: back to the 4 KiB stack
      page = next;
      n = PER_PAGE;
    }
    this.compactions2M++;
    this.compactRefs += this.refs() - r0;
    return kept;
  }

  /** No 4 KiB frame for a new 2 MiB stack page: the block's first frame becomes the page. */
  private push2MFallback(pfn: number): void {
    this.s2.addPage(pfn);
    for (let f = pfn + 511; f > pfn; f--) this.push4Raw(f);
    this.wr16(this.rec2, this.blk(pfn), R.SMALL | 511);
  }

  private reformed1GBlock(g: number, base: number, c: AllocConstraints | undefined, kept: number): number {
    this.reformed1G++;
    if (kept < 0 && (c === undefined || fits(base, ORDER_1G, c, this.colours))) {
      this.wr16(this.rec1, g, R.ALLOC);
      return base;
    }
    this.push1G(g, base);
    return kept;
  }

  // ---- free ---------------------------------------------------------------------------------------

  free(pfn: number, order: number): void {
    checkFreeArgs(this.name, pfn, order, ORDER_1G);
    if (order !== 0 && order !== ORDER_2M && order !== ORDER_1G)
      badFree("WRONG_ORDER", this.name, pfn, order, "only 4 KiB, 2 MiB and 1 GiB pages are handed out");
    if (this.usable.indexOf(pfn) < 0) badFree("BAD_FREE", this.name, pfn, order, "not in usable RAM");
    const b = this.blk(pfn);
    const g = Math.floor(b / 512);
    const w1 = this.rd16(this.rec1, g);
    if ((w1 & STATE) !== R.SMALL) {
      if (order === ORDER_1G && w1 === R.ALLOC) {
        this.push1G(g, pfn);
        return;
      }
      this.diagnose(pfn, order, b, w1);
    }
    const w2 = this.rd16(this.rec2, b);
    if (order === ORDER_2M && w2 === R.ALLOC) {
      this.push2M(b, pfn);
      return;
    }
    if (order === 0 && (w2 & STATE) === R.SMALL && this.amap.isSet(pfn)) {
      this.amap.clear(pfn);
      this.push4K(pfn);
      return;
    }
    this.diagnose(pfn, order, b, w1);
  }

  /** Name what is wrong with a free (reads only; throws). */
  private diagnose(pfn: number, order: number, b: number, w1: number): never {
    const s1 = w1 & STATE;
    if (s1 === R.FREE) badFree("DOUBLE_FREE", this.name, pfn, order, "inside a free 1 GiB block");
    if (s1 === R.ALLOC)
      badFree(
        pfn % GIG === 0 ? "WRONG_ORDER" : "BAD_FREE",
        this.name,
        pfn,
        order,
        "inside a 1 GiB page allocated whole",
      );
    const w2 = this.rd16(this.rec2, b);
    const s2 = w2 & STATE;
    if (s2 === R.FREE) badFree("DOUBLE_FREE", this.name, pfn, order, "inside a free 2 MiB block");
    if (s2 === R.ALLOC)
      badFree(
        pfn % 512 === 0 ? "WRONG_ORDER" : "BAD_FREE",
        this.name,
        pfn,
        order,
        "inside a 2 MiB page allocated whole",
      );
    if (this.amap.isSet(pfn))
      badFree("WRONG_ORDER", this.name, pfn, order, "the frame was allocated as a 4 KiB page");
    let onStack = false;
    this.s4.forEachEntry((p) => {
      if (p === pfn) onStack = true;
    });
    if (onStack) badFree("DOUBLE_FREE", this.name, pfn, order, "already free");
    return badFree(
      "BAD_FREE",
      this.name,
      pfn,
      order,
      `never allocated (reserved, metadata or a stack page; 2 MiB block ${STATE_NAMES[s2 >>> 12]})`,
    );
  }

  // ---- inspection ---------------------------------------------------------------------------------

  forEachFree(fn: (pfn: number, count: number) => void): void {
    this.s4.forEachEntry((p) => fn(p, 1));
    this.s2.forEachEntry((p) => fn(p, 512));
    this.s1.forEachEntry((p) => fn(p, GIG));
  }

  forEachMetaFrame(fn: (pfn: number) => void): void {
    this.s4.forEachPage(fn);
    this.s2.forEachPage(fn);
    this.s1.forEachPage(fn);
  }

  get standingBytes(): number {
    return this.standing;
  }

  stats(): PmmStats {
    const pages = this.s4.pages + this.s2.pages + this.s1.pages;
    return statsFromFree(this, this.layout, this.managed, this.standing, pages * PAGE);
  }

  check(): void {
    const chk = new LargeStacksChecker(this, this.port, this.amap, this.usable, this.regions);
    chk.run(this.rec2, this.rec1, this.n1, [this.full2M, this.full1G, this.managed]);
  }

  dump(): string {
    return (
      `${this.name}: 4K ${this.s4.registers()} | 2M ${this.s2.registers()} | 1G ${this.s1.registers()} | ` +
      `full2M=${this.full2M} full1G=${this.full1G} managed=${this.managed}`
    );
  }
}

/** The invariant checker of `LargeStacks` (uncounted reads would be nicer; it reads through the port). */
class LargeStacksChecker {
  private readonly name: string;

  constructor(
    private readonly a: LargeStacks,
    private readonly port: PhysPort,
    private readonly amap: AllocMap,
    private readonly usable: RegionTable,
    private readonly regions: RegionTable,
  ) {
    this.name = a.name;
  }

  private r16(base: number, i: number): number {
    const w = this.port.read32(base + (i >>> 1) * 4);
    return (i & 1) === 0 ? w & 0xffff : w >>> 16;
  }

  private inUsable(pfn: number, n: number): boolean {
    const r = this.usable.indexOf(pfn);
    return r >= 0 && pfn + n <= this.usable.end[r];
  }

  run(rec2: number, rec1: number, n1: number, [full2M, full1G, managed]: number[]): void {
    const blk = (pfn: number) => Math.floor(this.regions.slot(pfn) / 512);
    const on4 = new Map<number, number>(); // 2 MiB block -> frames on the 4 KiB stack
    const on2 = new Set<number>(); // 2 MiB blocks on the 2 MiB stack
    const on1 = new Set<number>(); // 1 GiB blocks on the 1 GiB stack
    const iv: number[][] = [];
    let free = 0;
    let meta = 0;
    const stacks: [TaggedStack, number, string][] = [
      [this.a.s4, 1, "4 KiB"],
      [this.a.s2, 512, "2 MiB"],
      [this.a.s1, GIG, "1 GiB"],
    ];
    for (const [s, size, what] of stacks) {
      let pages = 0;
      let entries = 0;
      s.forEachPage((p) => {
        pages++;
        if (pages > s.pages) invariant(this.name, `the ${what} stack has more pages than its register`);
        meta++;
        iv.push([p, p + 1]);
        if (!this.inUsable(p, 1)) invariant(this.name, `${what} stack page ${p} is outside usable RAM`);
        if (this.amap.isSet(p)) invariant(this.name, `${what} stack page ${p} is marked allocated`);
        on4.set(blk(p), (on4.get(blk(p)) ?? 0) + (s === this.a.s4 ? 1 : 0));
        if (s !== this.a.s4 && (this.r16(rec2, blk(p)) & STATE) !== R.SMALL)
          invariant(this.name, `${what} stack page ${p} lies in a 2 MiB block that is not SMALL`);
      });
      if (pages !== s.pages) invariant(this.name, `${what} stack: ${pages} pages, register says ${s.pages}`);
      if (s.head >= 0 && (s.top < 0 || s.top > PER_PAGE)) invariant(this.name, `${what} top ${s.top}`);
      s.forEachEntry((pfn, page, i) => {
        entries++;
        const low = s.lowBitsAt(page, i);
        if (low !== s.tag) invariant(this.name, `${what} entry ${pfn} carries tag/low bits ${low}`);
        if (pfn % size !== 0) invariant(this.name, `${what} entry ${pfn} is not aligned to its size`);
        if (!this.inUsable(pfn, size)) invariant(this.name, `${what} entry ${pfn} is not inside usable RAM`);
        iv.push([pfn, pfn + size]);
        free += size;
        if (size === 1) {
          if (this.amap.isSet(pfn)) invariant(this.name, `free frame ${pfn} is marked allocated`);
          on4.set(blk(pfn), (on4.get(blk(pfn)) ?? 0) + 1);
        } else if (size === 512) on2.add(blk(pfn));
        else on1.add(Math.floor(blk(pfn) / 512));
      });
      if (entries !== s.entries)
        invariant(this.name, `${what} stack: ${entries} entries, register says ${s.entries}`);
    }
    iv.sort((x, y) => x[0] - y[0]);
    for (let i = 1; i < iv.length; i++)
      if (iv[i][0] < iv[i - 1][1]) invariant(this.name, `frame ${iv[i][0]} is on the stacks twice`);
    const allocated = this.records(rec2, rec1, n1, [on4, on2, on1], full2M, full1G);
    if (allocated + this.amap.popcount() + free + meta !== managed)
      invariant(
        this.name,
        `allocated ${allocated} + 4 KiB pages ${this.amap.popcount()} + free ${free} + stack pages ${meta} != managed ${managed}`,
      );
  }

  /** Records agree with the stacks; returns the frames held as whole 2 MiB and 1 GiB pages. */
  private records(
    rec2: number,
    rec1: number,
    n1: number,
    [on4, on2, on1]: [Map<number, number>, Set<number>, Set<number>],
    full2M: number,
    full1G: number,
  ): number {
    let allocated = 0;
    let f2 = 0;
    let f1 = 0;
    for (let g = 0; g < n1; g++) {
      const w1 = this.r16(rec1, g);
      const s1 = w1 & STATE;
      if (s1 === R.REFORM) invariant(this.name, `1 GiB block ${g} left half re-formed`);
      if (s1 !== R.SMALL) {
        if ((w1 & R.COUNT) !== 0) invariant(this.name, `1 GiB block ${g} (whole) has count ${w1 & R.COUNT}`);
        if ((s1 === R.FREE) !== on1.has(g)) invariant(this.name, `1 GiB block ${g} state vs 1 GiB stack`);
        if (s1 === R.ALLOC) allocated += GIG;
        for (let b = g * 512; b < g * 512 + 512; b++)
          if (on4.has(b) || on2.has(b))
            invariant(this.name, `a frame of whole 1 GiB block ${g} is on a stack`);
        continue;
      }
      if (on1.has(g)) invariant(this.name, `1 GiB block ${g} is on its stack but SPLIT`);
      let whole = 0;
      for (let b = g * 512; b < g * 512 + 512; b++) {
        const w2 = this.r16(rec2, b);
        const s2 = w2 & STATE;
        const n = w2 & R.COUNT;
        if (s2 !== R.SMALL && on4.has(b))
          invariant(this.name, `2 MiB block ${b} is not SMALL but has frames on a stack`);
        if (s2 === R.REFORM) invariant(this.name, `2 MiB block ${b} left half re-formed`);
        if ((s2 === R.FREE) !== on2.has(b)) invariant(this.name, `2 MiB block ${b} state vs 2 MiB stack`);
        if (s2 !== R.SMALL && n !== 0) invariant(this.name, `2 MiB block ${b} (whole) has count ${n}`);
        if (s2 === R.SMALL && n !== (on4.get(b) ?? 0))
          invariant(this.name, `2 MiB block ${b}: count ${n}, ${on4.get(b) ?? 0} frames on the 4 KiB stack`);
        if (s2 === R.ALLOC) allocated += 512;
        if (s2 === R.FREE || (s2 === R.SMALL && n === 512)) whole++;
        if (s2 === R.SMALL && n === 512) f2++;
      }
      if ((w1 & R.COUNT) !== whole)
        invariant(this.name, `1 GiB block ${g}: count ${w1 & R.COUNT}, ${whole} wholly free 2 MiB blocks`);
      if (whole === 512) f1++;
    }
    if (f2 !== full2M) invariant(this.name, `full2M register ${full2M}, ${f2} complete 2 MiB blocks`);
    if (f1 !== full1G) invariant(this.name, `full1G register ${full1G}, ${f1} wholly free 1 GiB blocks`);
    return allocated;
  }
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(LargeStacks, TaggedStack);
