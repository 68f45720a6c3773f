/**
 * Design 4: bitmaps, one per usable region, with a summary level and a next-fit hint.
 *
 * Each usable range, widened to 1024-frame (4 MiB) boundaries, gets its own bitmaps in the standing
 * metadata, so a map of 0-4 GiB plus 128-130 TiB pays for 6 GiB of bitmap, not 130 TiB:
 *
 *     per region:  used[]     1 bit per frame: 1 = not free (allocated, reserved, padding)
 *                  head[]     1 bit per frame: first frame of an allocated block
 *                  managed[]  1 bit per frame: given by addFree (0 = reserved / padding / metadata)
 *                  any[]      1 bit per used[] word: the word has a free frame      (summary level)
 *                  full[]     1 bit per used[] word: the word is entirely free      (summary level)
 *
 * Search for order k (naturally aligned 2^k frames), from the next-fit hint, wrapping once:
 *   k <= 5:  words flagged in any[] are read and tested for an aligned zero group of 2^k bits;
 *   k 6-10:  an aligned group of 2^(k-5) bits set in one full[] word;
 *   k > 10:  2^(k-10) consecutive full[] words all ones, at an aligned position (up to 1 GiB, k = 18).
 * The head and managed bitmaps make every bad free detectable (double, reserved, inside a block, wrong
 * order: a block ends where the next frame is free, reserved, or another head). 3 bits per frame plus
 * 2 per 32 frames: 0.0099 % of RAM (104 KiB per GiB).
 *
 * Guarantees: any order up to 18, any address limit, found by scanning summaries (1 read per 1024
 * frames of a full zone). Costs: search time grows with fragmentation and RAM; frees are O(2^k / 32).
 */
import { bare, blank, cloneable } from "../../machine/clone.ts";
import { bulkFill, bulkIsFilled, type PhysPort } from "../../machine/phys-mem.ts";
import {
  allocFramesVia,
  badFree,
  checkFreeArgs as checkFreeArgs_,
  checkLayout,
  effectiveOrder,
  fits as fits_,
  invariant,
  ORDER_1G as ORDER_1G_,
  PAGE as PAGE_,
  pageRound,
  popcount32,
  RegionTable,
  statsFromCounts,
} from "./common.ts";
import type {
  AllocConstraints,
  FrameAllocator,
  PmmDesign,
  PmmEnv,
  PmmLayout,
  PmmCounts,
  PmmStats,
} from "./interface.ts";

// Module-local copies: the loader compiles imports to getter calls, too slow for hot paths.
const PAGE = PAGE_;
const ORDER_1G = ORDER_1G_;
const checkFreeArgs = checkFreeArgs_;
const fits = fits_;

const ALL = 0xffffffff;
/** Groups (1024 frames each) the check compares at once when they are wholly free: 4 GiB of RAM. */
const CHECK_BATCH = 1024;
const REGION_ALIGN = 1024;

/** Bitmap.check's running totals, and the allocated block it is following (head -1: none). */
interface CheckTally {
  free: number;
  managed: number;
  allocated: number;
  head: number;
  len: number;
}

function ctz(x: number): number {
  return 31 - Math.clz32(x & -x);
}

/** Bytes of the five arrays of one region of `span` frames. */
function regionBytes(span: number): number {
  return (3 * (span / 32) + 2 * (span / 1024)) * 4;
}

export function bitmapDesign(): PmmDesign {
  return {
    name: "bitmap",
    summary:
      "One bitmap per usable region (sized from the map) with a summary level (any-free / all-free per " +
      "32 frames) and a next-fit hint: any order up to 1 GiB, 3 bits per frame.",
    metadataBytes: (layout) => {
      const t = new RegionTable(layout.usable, REGION_ALIGN);
      let b = 0;
      for (let r = 0; r < t.count; r++) b += regionBytes(t.end[r] - t.start[r]);
      return pageRound(b);
    },
    create: (env, layout, metadataPa) => new BitmapAllocator(env, layout, metadataPa),
  };
}

export class BitmapAllocator implements FrameAllocator {
  readonly name = "bitmap";
  readonly maxOrder = ORDER_1G;
  /** Event counter: summary and bitmap words examined by searches. */
  wordsScanned = 0;
  /**
   * The used word `searchSmall` read where it found the block (its address and value), handed to
   * `take` as C code would keep it in a register: the word is read once an allocation, not twice.
   */
  private seenUsedPa = -1;
  private seenUsed = 0;
  private readonly port: PhysPort;
  private readonly regions: RegionTable;
  private readonly colours: number;
  /** Registers: per-region array bases. */
  private readonly usedPa: number[] = [];
  private readonly headPa: number[] = [];
  private readonly mgdPa: number[] = [];
  private readonly anyPa: number[] = [];
  private readonly fullPa: number[] = [];
  private readonly bytes: number;
  /** Registers: next-fit hint (region, summary word), free and managed frames. */
  private hintR = 0;
  private hintQ = 0;
  private nfree = 0;
  private managed = 0;

  constructor(
    env: PmmEnv,
    private readonly layout: PmmLayout,
    metadataPa: number,
  ) {
    if (blank()) bare(this); // a bare instance for a copy of the machine (machine/clone.ts)
    checkLayout(layout);
    this.port = env.port;
    this.colours = layout.colours ?? 1;
    this.regions = new RegionTable(layout.usable, REGION_ALIGN);
    let pa = metadataPa;
    for (let r = 0; r < this.regions.count; r++) {
      const span = this.regions.end[r] - this.regions.start[r];
      this.usedPa.push(pa);
      this.headPa.push(pa + span / 8);
      this.mgdPa.push(pa + span / 4);
      this.anyPa.push(pa + (3 * span) / 8);
      this.fullPa.push(pa + (3 * span) / 8 + span / 256);
      pa += regionBytes(span);
    }
    this.bytes = pageRound(pa - metadataPa);
    for (let off = 0; off < this.bytes; off += PAGE) this.port.zeroFrame((metadataPa + off) / PAGE);
    for (let r = 0; r < this.regions.count; r++) {
      // memset(used, 0xff): every frame starts used (reserved) until addFree says otherwise.
      bulkFill(this.port, this.usedPa[r], (this.regions.end[r] - this.regions.start[r]) / 8, 0xff);
    }
  }

  /** Store used word w of region r and keep the summary bits in step. */
  private writeUsed(r: number, w: number, old: number, val: number): void {
    const port = this.port;
    port.write32(this.usedPa[r] + w * 4, val);
    const q = Math.floor(w / 32) * 4;
    const bit = 1 << (w & 31);
    if ((old === ALL) !== (val === ALL)) {
      const a = port.read32(this.anyPa[r] + q);
      port.write32(this.anyPa[r] + q, (val === ALL ? a & ~bit : a | bit) >>> 0);
    }
    if ((old === 0) !== (val === 0)) {
      const f = port.read32(this.fullPa[r] + q);
      port.write32(this.fullPa[r] + q, (val === 0 ? f | bit : f & ~bit) >>> 0);
    }
  }

  addFree(startPfn: number, count: number): void {
    const end = startPfn + count;
    for (let pass = 0; pass < 2; pass++) {
      for (let p = startPfn; p < end; ) {
        const r = this.regions.indexOf(p);
        if (r < 0) badFree("BAD_FREE", this.name, p, 0, "addFree outside the usable RAM of the layout");
        const s = p - this.regions.start[r];
        const q = (s & 1023) === 0 ? Math.floor((Math.min(end, this.regions.end[r]) - p) / 1024) : 0;
        if (q > 0) {
          this.addFreeWhole(r, s / 1024, q, pass);
          p += q * 1024;
          continue;
        }
        const w = Math.floor(s / 32);
        const n = Math.min(32 - (s & 31), end - p);
        const m = (n === 32 ? ALL : ((1 << n) - 1) << (s & 31)) >>> 0;
        const u = this.port.read32(this.usedPa[r] + w * 4);
        const g = this.port.read32(this.mgdPa[r] + w * 4);
        if (pass === 0 && ((u & m) >>> 0 !== m || (g & m) !== 0)) {
          badFree("BAD_FREE", this.name, p, 0, "addFree of a frame the allocator already manages");
        }
        if (pass === 1) {
          this.port.write32(this.mgdPa[r] + w * 4, (g | m) >>> 0);
          this.writeUsed(r, w, u, (u & ~m) >>> 0);
        }
        p += n;
      }
    }
    this.managed += count;
    this.nfree += count;
  }

  /**
   * addFree of `q` whole summary words (1024 frames each) from summary word `qi` of region r, with
   * memsets instead of word stores, as a kernel frees RAM at boot. Pass 0 checks (all used, none
   * managed: any[] words zero and managed words zero), pass 1 writes.
   */
  private addFreeWhole(r: number, qi: number, q: number, pass: number): void {
    const port = this.port;
    if (pass === 0) {
      if (
        !bulkIsFilled(port, this.anyPa[r] + qi * 4, q * 4, 0) ||
        !bulkIsFilled(port, this.mgdPa[r] + qi * 128, q * 128, 0)
      ) {
        badFree(
          "BAD_FREE",
          this.name,
          this.regions.start[r] + qi * 1024,
          0,
          "addFree of a frame the allocator already manages",
        );
      }
      return;
    }
    bulkFill(port, this.mgdPa[r] + qi * 128, q * 128, 0xff);
    bulkFill(port, this.usedPa[r] + qi * 128, q * 128, 0);
    bulkFill(port, this.anyPa[r] + qi * 4, q * 4, 0xff);
    bulkFill(port, this.fullPa[r] + qi * 4, q * 4, 0xff);
  }

  alloc(order: number, c?: AllocConstraints): number {
    const k = order === 0 && c === undefined ? 0 : effectiveOrder(order, c);
    if (k > ORDER_1G) return -1;
    const R = this.regions.count;
    this.seenUsedPa = -1;
    for (let t = 0; t <= R; t++) {
      const r = (this.hintR + t) % R;
      const q0 = t === 0 ? this.hintQ : 0;
      const qn = (this.regions.end[r] - this.regions.start[r]) / 1024;
      const q1 = t === R ? Math.min(this.hintQ + 1, qn) : qn;
      const pfn =
        k <= 5
          ? this.searchSmall(r, k, q0, q1, c)
          : k <= 10
            ? this.searchMid(r, k, q0, q1, c)
            : this.searchBig(r, k, q0, q1, c);
      if (pfn >= 0) {
        this.hintR = r;
        this.hintQ = Math.floor((pfn - this.regions.start[r]) / 1024);
        this.take(r, pfn, k);
        return pfn;
      }
    }
    return -1;
  }

  /** Orders 0..5: an aligned zero group inside one used word. */
  private searchSmall(r: number, k: number, q0: number, q1: number, c: AllocConstraints | undefined): number {
    const port = this.port;
    const base = this.regions.start[r];
    const limit = c?.maxAddr !== undefined ? c.maxAddr / PAGE : Infinity;
    const g = 1 << k;
    const mask = (g === 32 ? ALL : (1 << g) - 1) >>> 0;
    for (let q = q0; q < q1; q++) {
      if (base + q * 1024 >= limit) return -1;
      let s = port.read32(this.anyPa[r] + q * 4);
      this.wordsScanned++;
      while (s !== 0) {
        const j = ctz(s);
        s = (s & (s - 1)) >>> 0;
        const w = q * 32 + j;
        const used = port.read32(this.usedPa[r] + w * 4);
        const free = ~used >>> 0;
        this.wordsScanned++;
        this.seenUsedPa = this.usedPa[r] + w * 4;
        this.seenUsed = used;
        const pb = base + w * 32;
        if (k === 0 && c === undefined) return pb + ctz(free);
        for (let off = 0; off < 32; off += g) {
          if (((free >>> off) & mask) >>> 0 === mask && fits(pb + off, k, c, this.colours)) return pb + off;
        }
      }
    }
    return -1;
  }

  /** Orders 6..10: an aligned group of 2^(k-5) all-free words, seen as bits of one full[] word. */
  private searchMid(r: number, k: number, q0: number, q1: number, c: AllocConstraints | undefined): number {
    const base = this.regions.start[r];
    const g = 1 << (k - 5);
    const mask = (g === 32 ? ALL : (1 << g) - 1) >>> 0;
    for (let q = q0; q < q1; q++) {
      const s = this.port.read32(this.fullPa[r] + q * 4);
      this.wordsScanned++;
      if (s === 0) continue;
      for (let off = 0; off < 32; off += g) {
        const pfn = base + (q * 32 + off) * 32;
        if (((s >>> off) & mask) >>> 0 === mask && fits(pfn, k, c, this.colours)) return pfn;
      }
    }
    return -1;
  }

  /** Orders 11..18: 2^(k-10) consecutive all-ones full[] words at an aligned position. */
  private searchBig(r: number, k: number, q0: number, q1: number, c: AllocConstraints | undefined): number {
    const base = this.regions.start[r];
    const qn = (this.regions.end[r] - base) / 1024;
    const n = 1 << (k - 10);
    let q = q0 + ((n - ((base / 1024 + q0) % n)) % n);
    for (; q < q1 && q + n <= qn; q += n) {
      let ok = true;
      for (let i = 0; i < n && ok; i++) {
        ok = this.port.read32(this.fullPa[r] + (q + i) * 4) === ALL;
        this.wordsScanned++;
      }
      if (ok && fits(base + q * 1024, k, c, this.colours)) return base + q * 1024;
    }
    return -1;
  }

  /** Mark [pfn, pfn + 2^k) allocated, with its head bit. */
  private take(r: number, pfn: number, k: number): void {
    const port = this.port;
    const s = pfn - this.regions.start[r];
    const w = Math.floor(s / 32);
    if (k <= 5) {
      const m = ((k === 5 ? ALL : (1 << (1 << k)) - 1) << (s & 31)) >>> 0;
      const upa = this.usedPa[r] + w * 4;
      const u = upa === this.seenUsedPa ? this.seenUsed : port.read32(upa);
      this.writeUsed(r, w, u, (u | m) >>> 0);
    } else {
      this.fillWords(r, w, 1 << (k - 5), ALL);
    }
    const h = this.headPa[r] + w * 4;
    port.write32(h, (port.read32(h) | (1 << (s & 31))) >>> 0);
    this.nfree -= 1 << k;
    this.seenUsedPa = -1;
  }

  /** Set n whole used words (n >= 2, aligned) to val (ALL or 0), updating summaries word-wise in bulk. */
  private fillWords(r: number, w: number, n: number, val: number): void {
    const port = this.port;
    for (let i = 0; i < n; i++) port.write32(this.usedPa[r] + (w + i) * 4, val);
    for (let q = Math.floor(w / 32); q <= Math.floor((w + n - 1) / 32); q++) {
      const lo = Math.max(w, q * 32) - q * 32;
      const hi = Math.min(w + n, q * 32 + 32) - q * 32;
      const m = (hi - lo === 32 ? ALL : ((1 << (hi - lo)) - 1) << lo) >>> 0;
      const a = port.read32(this.anyPa[r] + q * 4);
      const f = port.read32(this.fullPa[r] + q * 4);
      port.write32(this.anyPa[r] + q * 4, (val === ALL ? a & ~m : a | m) >>> 0);
      port.write32(this.fullPa[r] + q * 4, (val === ALL ? f & ~m : f | m) >>> 0);
    }
  }

  allocFrames(n: number, out: number[], c?: AllocConstraints): number {
    return allocFramesVia(this, n, out, c);
  }

  free(pfn: number, order: number): void {
    checkFreeArgs(this.name, pfn, order, ORDER_1G);
    const r = this.regions.indexOf(pfn);
    if (r < 0) badFree("BAD_FREE", this.name, pfn, order, "not in usable RAM");
    const port = this.port;
    const s = pfn - this.regions.start[r];
    const w = Math.floor(s / 32);
    const bit = 1 << (s & 31);
    // The three words of the frame, read once and kept (as C keeps them in registers) for the checks
    // and the update.
    const g = port.read32(this.mgdPa[r] + w * 4);
    if ((g & bit) === 0) {
      badFree("BAD_FREE", this.name, pfn, order, "never given to the allocator (reserved or metadata)");
    }
    const u = port.read32(this.usedPa[r] + w * 4);
    if ((u & bit) === 0) badFree("DOUBLE_FREE", this.name, pfn, order, "already free");
    const h = port.read32(this.headPa[r] + w * 4);
    if ((h & bit) === 0) {
      badFree("BAD_FREE", this.name, pfn, order, "inside an allocated block, not its first frame");
    }
    this.checkExtent(r, s, order, pfn, w, u, g, h);
    if (order <= 5) {
      const m = ((order === 5 ? ALL : (1 << (1 << order)) - 1) << (s & 31)) >>> 0;
      this.writeUsed(r, w, u, (u & ~m) >>> 0);
    } else {
      this.fillWords(r, w, 1 << (order - 5), 0); // the head word is not among them
    }
    port.write32(this.headPa[r] + w * 4, (h & ~bit) >>> 0);
    this.nfree += 1 << order;
  }

  /**
   * The block at pfn must be exactly 2^order frames: all allocated tails, then a non-tail. The words
   * of the head's word `w0` were read by the caller (`u0`, `g0`, `h0`); others are read here.
   */
  private checkExtent(
    r: number,
    s: number,
    order: number,
    pfn: number,
    w0: number,
    u0: number,
    g0: number,
    h0: number,
  ): void {
    const n = 1 << order;
    const span = this.regions.end[r] - this.regions.start[r];
    if (s + n > span) badFree("WRONG_ORDER", this.name, pfn, order, "the block would run past its region");
    const port = this.port;
    for (let p = s; p < s + n; p += 32) {
      const w = Math.floor(p / 32);
      const cnt = Math.min(n, 32);
      const m = ((cnt === 32 ? ALL : (1 << cnt) - 1) << (p & 31)) >>> 0;
      const known = w === w0;
      const u = known ? u0 : port.read32(this.usedPa[r] + w * 4);
      const g = known ? g0 : port.read32(this.mgdPa[r] + w * 4);
      const h = known ? h0 : port.read32(this.headPa[r] + w * 4);
      const wantHead = p === s ? (1 << (s & 31)) >>> 0 : 0;
      if ((u & m) >>> 0 !== m || (g & m) >>> 0 !== m || (h & m) >>> 0 !== wantHead) {
        badFree("WRONG_ORDER", this.name, pfn, order, "the allocated block at this frame is smaller");
      }
    }
    const e = s + n;
    if (e < span) {
      const w = Math.floor(e / 32);
      const bit = 1 << (e & 31);
      const tail =
        w === w0
          ? (u0 & bit) !== 0 && (g0 & bit) !== 0 && (h0 & bit) === 0
          : (port.read32(this.usedPa[r] + w * 4) & bit) !== 0 &&
            (port.read32(this.mgdPa[r] + w * 4) & bit) !== 0 &&
            (port.read32(this.headPa[r] + w * 4) & bit) === 0;
      if (tail) badFree("WRONG_ORDER", this.name, pfn, order, "the allocated block at this frame is larger");
    }
  }

  forEachFree(fn: (pfn: number, count: number) => void): void {
    const port = this.port;
    for (let r = 0; r < this.regions.count; r++) {
      const base = this.regions.start[r];
      const words = (this.regions.end[r] - base) / 32;
      let run = -1;
      for (let w = 0; w < words; ) {
        if ((w & 31) === 0 && w + 32 <= words) {
          // The summaries answer for 1024 frames at once: all free (full[] word all ones) or all used (any[] word zero).
          if (port.read32(this.fullPa[r] + w / 8) === ALL) {
            if (run < 0) run = base + w * 32;
            w += 32;
            continue;
          }
          if (port.read32(this.anyPa[r] + w / 8) === 0) {
            if (run >= 0) fn(run, base + w * 32 - run);
            run = -1;
            w += 32;
            continue;
          }
        }
        const u = port.read32(this.usedPa[r] + w * 4);
        if (!(u === 0 && run >= 0) && !(u === ALL && run < 0)) {
          for (let b = 0; b < 32; b++) {
            const used = ((u >>> b) & 1) === 1;
            const p = base + w * 32 + b;
            if (!used && run < 0) run = p;
            else if (used && run >= 0) {
              fn(run, p - run);
              run = -1;
            }
          }
        }
        w++;
      }
      if (run >= 0) fn(run, this.regions.end[r] - run);
    }
  }

  forEachMetaFrame(_fn: (pfn: number) => void): void {}

  stats(): PmmStats {
    return statsFromCounts(this, this.layout, this.counts());
  }

  counts(): PmmCounts {
    return {
      managedFrames: this.managed,
      freeFrames: this.nfree,
      metadataBytes: this.bytes,
      transientBytes: 0,
    };
  }

  /**
   * The invariants, reading each metadata word once: summaries agree with the used words, free frames
   * are managed, head bits sit on allocated frames, every allocated block is a naturally aligned power
   * of two, and the counts match the registers. A group of 32 words (1024 frames) that its summaries
   * say is all free or all used is checked with memchr_inv-style bulk compares; other words are read
   * one by one and examined bit by bit only where a block starts or ends inside them.
   */
  check(): void {
    const t: CheckTally = { free: 0, managed: 0, allocated: 0, head: -1, len: 0 };
    for (let r = 0; r < this.regions.count; r++) this.checkRegion(r, t);
    if (t.free !== this.nfree)
      invariant(this.name, `bitmaps show ${t.free} free frames, register says ${this.nfree}`);
    if (t.managed !== this.managed)
      invariant(this.name, `${t.managed} managed bits, register says ${this.managed}`);
    if (t.free + t.allocated !== t.managed)
      invariant(this.name, `free ${t.free} + allocated ${t.allocated} != managed ${t.managed}`);
  }

  /** One region, group by group (32 used[] words, 1024 frames); no block continues past its end. */
  private checkRegion(r: number, t: CheckTally): void {
    const groups = (this.regions.end[r] - this.regions.start[r]) / 1024;
    for (let q = 0; q < groups; q++) {
      // A batch of wholly free groups (RAM nobody has touched since boot) is checked with five bulk
      // compares: the check of a free terabyte costs about one read of its bitmaps.
      const k = Math.min(CHECK_BATCH, groups - q);
      if (q % CHECK_BATCH === 0 && k > 1 && this.freeGroups(r, q, k)) {
        this.closeBlock(t);
        t.free += 1024 * k;
        t.managed += 1024 * k;
        q += k - 1;
        continue;
      }
      const any = this.port.read32(this.anyPa[r] + q * 4);
      const full = this.port.read32(this.fullPa[r] + q * 4);
      if (this.checkUniformGroup(r, q, any, full, t)) continue;
      for (let j = 0; j < 32; j++) this.checkWord(r, q * 32 + j, (any >>> j) & 1, (full >>> j) & 1, t);
    }
    this.closeBlock(t);
  }

  /** Groups q..q+k-1 of region r all free: summaries all ones, no frame used or a head, all managed. */
  private freeGroups(r: number, q: number, k: number): boolean {
    const port = this.port;
    return (
      bulkIsFilled(port, this.anyPa[r] + q * 4, k * 4, 0xff) &&
      bulkIsFilled(port, this.fullPa[r] + q * 4, k * 4, 0xff) &&
      bulkIsFilled(port, this.usedPa[r] + q * 128, k * 128, 0) &&
      bulkIsFilled(port, this.headPa[r] + q * 128, k * 128, 0) &&
      bulkIsFilled(port, this.mgdPa[r] + q * 128, k * 128, 0xff)
    );
  }

  /**
   * Group q of region r, if its summaries say it is all free or all used and the bulk compares agree
   * (all free and managed; all used and unmanaged; all used tails of the block being followed): counted,
   * true. Otherwise false, and its words are checked one by one.
   */
  private checkUniformGroup(r: number, q: number, any: number, full: number, t: CheckTally): boolean {
    const port = this.port;
    const at = q * 128;
    const usedPa = this.usedPa[r] + at;
    const headPa = this.headPa[r] + at;
    const mgdPa = this.mgdPa[r] + at;
    if (
      any === ALL &&
      full === ALL &&
      bulkIsFilled(port, usedPa, 128, 0) &&
      bulkIsFilled(port, headPa, 128, 0) &&
      bulkIsFilled(port, mgdPa, 128, 0xff)
    ) {
      this.closeBlock(t);
      t.free += 1024;
      t.managed += 1024;
      return true;
    }
    if (
      any === 0 &&
      full === 0 &&
      bulkIsFilled(port, usedPa, 128, 0xff) &&
      bulkIsFilled(port, headPa, 128, 0)
    ) {
      if (bulkIsFilled(port, mgdPa, 128, 0)) {
        this.closeBlock(t);
        return true;
      }
      if (t.head >= 0 && bulkIsFilled(port, mgdPa, 128, 0xff)) {
        t.len += 1024;
        t.managed += 1024;
        return true;
      }
    }
    return false;
  }

  /**
   * Word w of region r (anyBit, fullBit: its summary bits): free frames managed, head bits on allocated
   * frames, summaries right; then the blocks it starts, continues or ends, bit by bit only if needed.
   */
  private checkWord(r: number, w: number, anyBit: number, fullBit: number, t: CheckTally): void {
    const port = this.port;
    const u = port.read32(this.usedPa[r] + w * 4);
    const h = port.read32(this.headPa[r] + w * 4);
    const g = port.read32(this.mgdPa[r] + w * 4);
    if ((~g & ~u) >>> 0 !== 0) invariant(this.name, `region ${r} word ${w}: unmanaged frames marked free`);
    if ((h & ~(u & g)) >>> 0 !== 0)
      invariant(this.name, `region ${r} word ${w}: head bit on a free or unmanaged frame`);
    t.free += popcount32(~u >>> 0);
    t.managed += popcount32(g);
    if (anyBit !== (u !== ALL ? 1 : 0)) invariant(this.name, `summary any[] wrong for region ${r} word ${w}`);
    if (fullBit !== (u === 0 ? 1 : 0)) invariant(this.name, `summary full[] wrong for region ${r} word ${w}`);
    const tails = (u & g) >>> 0;
    if (h === 0 && tails === 0) {
      this.closeBlock(t);
      return;
    }
    if (h === 0 && tails === ALL && t.head >= 0) {
      t.len += 32;
      return;
    }
    const first = this.regions.start[r] + w * 32;
    for (let b = 0; b < 32; b++) {
      const isHead = ((h >>> b) & 1) === 1;
      const isTail = !isHead && ((u >>> b) & 1) === 1 && ((g >>> b) & 1) === 1;
      if (isHead) {
        this.closeBlock(t);
        t.head = first + b;
        t.len = 1;
      } else if (isTail) {
        if (t.head < 0)
          invariant(
            this.name,
            `frame 0x${(first + b).toString(16)} is allocated but no block head precedes it`,
          );
        t.len++;
      } else this.closeBlock(t);
    }
  }

  /** The block being followed (if any) ends here: it must be a naturally aligned power of two. */
  private closeBlock(t: CheckTally): void {
    if (t.head < 0) return;
    if ((t.len & (t.len - 1)) !== 0 || t.head % t.len !== 0)
      invariant(this.name, `allocated block 0x${t.head.toString(16)} has ${t.len} frames`);
    t.allocated += t.len;
    t.head = -1;
  }

  dump(): string {
    return `bitmap: hint=${this.hintR}:${this.hintQ} free=${this.nfree} managed=${this.managed}`;
  }
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(BitmapAllocator);
