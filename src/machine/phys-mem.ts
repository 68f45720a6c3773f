/**
 * Simulated physical memory: byte-addressable, up to MAXPHYADDR bits (52 at most), sparse.
 *
 * Storage is a two-level directory: a Map from the GiB number of an address to an array of 512 slots,
 * each slot a 2 MiB `Uint32Array` chunk allocated on the first write of a non-zero value. Reads of
 * untouched memory return zero. Host memory is therefore proportional to what the simulated machine
 * touches, never to the span of its address space: 64 TiB of address space costs nothing until written.
 * A memset that covers whole 2 MiB chunks (a bitmap set to all ones at boot) stores each chunk as its
 * one repeated word, and a chunk memset to zero is dropped: a chunk is backed again only when a store
 * makes it differ from that word.
 *
 * Addresses and frame numbers are plain numbers (a 52-bit address is below 2^53, exactly representable).
 * 64-bit values are read and written as two 32-bit halves; `read64`/`write64` below accept values below
 * 2^53 for software data structures (frame numbers, pointers), and page-table entries use the halves.
 *
 * Every access is counted in `Counters.memReads` / `memWrites` (bulk operations in `memBulkBytes`).
 */
import { bare, blank, cloneable, trackLiveBytes } from "./clone.ts";
import { fail, hex } from "../errors.ts";
import { Counters } from "./counters.ts";

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 4096;
const GIB = 0x40000000;
const CHUNK_BYTES = 0x200000; // 2 MiB
const CHUNK_WORDS = CHUNK_BYTES >>> 2;
const SLOTS_PER_GIB = GIB / CHUNK_BYTES; // 512

/**
 * The narrow door to physical memory that kernel code is given. `PhysMem` implements it directly
 * (raw physical access); a kernel-mapping strategy implements it by going through its own mappings,
 * so that each access is translated, counted, and may cost a temporary mapping.
 */
export interface PhysPort {
  read32(pa: number): number;
  write32(pa: number, value: number): void;
  /** Zero the 4 KiB frame `pfn` (a kernel's memset of a page through its mapping). */
  zeroFrame(pfn: number): void;
  /** memset: fill [pa, pa+bytes) with `byte` (4-byte aligned). Optional: callers fall back to write32. */
  fill?(pa: number, bytes: number, byte: number): void;
  /** Linux's !memchr_inv: are all bytes of [pa, pa+bytes) equal to `byte`? (4-byte aligned). Optional. */
  isFilled?(pa: number, bytes: number, byte: number): boolean;
  /** copy_page: copy frame `from` to frame `to`. Optional: callers fall back to word copies. */
  copyFrame?(from: number, to: number): void;
  /**
   * `n` 32-bit loads of consecutive words from `pa` (all in one 4 KiB page) into `dst[from..]`, counted
   * exactly as `n` calls of `read32` would be (a loop over one page, done in bulk). Optional.
   */
  readWords?(pa: number, dst: Uint32Array, from: number, n: number): void;
  /** `n` 32-bit stores of `src[from..]` at consecutive words from `pa` (one page), counted as `n` `write32`. Optional. */
  writeWords?(pa: number, src: Uint32Array, from: number, n: number): void;
}

/** `port.readWords`, or `n` word loads where the port has no bulk operation (same count either way). */
export function readWords(port: PhysPort, pa: number, dst: Uint32Array, from: number, n: number): void {
  if (port.readWords) port.readWords(pa, dst, from, n);
  else for (let i = 0; i < n; i++) dst[from + i] = port.read32(pa + 4 * i);
}

/** `port.writeWords`, or `n` word stores where the port has no bulk operation (same count either way). */
export function writeWords(port: PhysPort, pa: number, src: Uint32Array, from: number, n: number): void {
  if (port.writeWords) port.writeWords(pa, src, from, n);
  else for (let i = 0; i < n; i++) port.write32(pa + 4 * i, src[from + i]);
}

/**
 * Read a little-endian u64 below 2^53 as a number (for software data: frame numbers, pointers); all
 * ones (a list terminator, written by `write64(-1)`) reads as -1.
 */
export function read64(port: PhysPort, pa: number): number {
  const lo = port.read32(pa);
  const hi = port.read32(pa + 4);
  if (hi > 0x1fffff) {
    if (hi === 0xffffffff && lo === 0xffffffff) return -1;
    fail("VALUE_TOO_LARGE", `u64 at ${hex(pa)} is not below 2^53 (high word ${hex(hi)})`);
  }
  return hi * 0x100000000 + lo;
}

/** Write a u64 value below 2^53 (or -1, stored as all ones) little-endian. */
export function write64(port: PhysPort, pa: number, value: number): void {
  if (value === -1) {
    port.write32(pa, 0xffffffff);
    port.write32(pa + 4, 0xffffffff);
    return;
  }
  port.write32(pa, value >>> 0);
  port.write32(pa + 4, Math.floor(value / 0x100000000));
}

/** `port.fill`, or word stores where the port has no bulk operation. */
export function bulkFill(port: PhysPort, pa: number, bytes: number, byte: number): void {
  if (port.fill) {
    port.fill(pa, bytes, byte);
    return;
  }
  const w = ((byte & 0xff) * 0x01010101) >>> 0;
  for (let o = 0; o < bytes; o += 4) port.write32(pa + o, w);
}

/** `port.copyFrame`, or a word-by-word copy where the port has no bulk operation. */
export function bulkCopyFrame(port: PhysPort, from: number, to: number): void {
  if (port.copyFrame) {
    port.copyFrame(from, to);
    return;
  }
  for (let o = 0; o < 4096; o += 4) port.write32(to * 4096 + o, port.read32(from * 4096 + o));
}

/** `port.isFilled`, or word loads where the port has no bulk operation. */
export function bulkIsFilled(port: PhysPort, pa: number, bytes: number, byte: number): boolean {
  if (port.isFilled) return port.isFilled(pa, bytes, byte);
  const w = ((byte & 0xff) * 0x01010101) >>> 0;
  for (let o = 0; o < bytes; o += 4) if (port.read32(pa + o) !== w) return false;
  return true;
}

export interface PhysMemOptions {
  /** MAXPHYADDR in bits, 36..52 (default 46, a common client CPU; 52 is the architectural maximum). */
  maxPhysAddrBits?: number;
  counters?: Counters;
  /**
   * Host bytes of dense 2 MiB chunks below which a chunk with 64 touched pages is made dense (default 0:
   * none); beyond it a chunk becomes dense only when 256 KiB of it is backed.
   */
  denseBudget?: number;
}

/**
 * A 2 MiB chunk that is still sparse. Its memory is backed at two grains: a 4 KiB page touched in a few
 * places holds only the 64-byte lines written (a free list's link in each free frame costs 64 bytes,
 * not 4 KiB), and becomes a whole 4 KiB page when more than `LINES_PER_PAGE` of its lines exist. When
 * the chunk's backing reaches `PROMOTE_BYTES` it becomes one dense 2 MiB `Uint32Array` (page tables and
 * metadata cluster, and a dense chunk is one array for the fast path). Scattered touches - one stack
 * page per 2 MiB of RAM, one link per free frame - stay small.
 */
const PROMOTE_BYTES = 64 * 4096;
/**
 * With a dense budget (`PhysMemOptions.denseBudget`), a chunk with this many touched pages also becomes
 * dense while dense chunks hold less than the budget. The default budget is 0: making a chunk of
 * scattered lines dense costs 2 MiB of host memory and a page fault for each of its pages first written
 * (about 5 us each on this VM class), which measured slower than the lines (the default compare 35.8 s /
 * 0.96 GB -> 29.9 s / 0.44 GB; the default boot 0.63 -> 0.44 s).
 */
const PROMOTE_PAGES = 64;
export const DEFAULT_DENSE_BUDGET = 0;
const LINE_BYTES = 64;
const LINE_WORDS = LINE_BYTES >>> 2;
const LINES_PER_PAGE = 8;
/**
 * Directory lookups of a line page's lines after which the page is made whole (`SparseChunk.hot`). 16,
 * not 64: a free list cycling through 8-16 thousand frames frees each about 60 times in the PMM
 * benchmark's trace, so at 64 most of them never became whole (0.216 -> 0.052 directory lookups a
 * pair, the same host memory to within 2 %).
 */
export const HOT_LINE_LOOKUPS = 16;
/** Lines are kept in blocks of this many (4 KiB), so that the block cached for the fast path stays valid as the pool grows. */
const LINES_PER_BLOCK = 64;

/**
 * The 4 KiB pages and line blocks of sparse chunks, carved from slabs (one host allocation per 256
 * pages at first, doubling up to 64 MiB: allocating each page alone cost ~17 us with many alive, and a
 * big slab can be backed by 2 MiB host pages) and recycled, zeroed, when their chunk is made dense or
 * uniform. A page is a number, `id` (slab << 14 | page in slab): no object per page for the garbage
 * collector to trace (a 1 TiB stack has half a million pages); `arr(id)` and `word(id)` locate it.
 */
class PagePool {
  private readonly slabs: Uint32Array[] = [];
  private slabPages = 0;
  private next = 0;
  private readonly free: number[] = [];

  take(): number {
    const f = this.free.pop();
    if (f !== undefined) {
      const w = this.word(f);
      this.arr(f).fill(0, w, w + 1024);
      return f;
    }
    if (this.next === this.slabPages) {
      this.slabPages = Math.min(MAX_SLAB_PAGES, Math.max(SLAB_PAGES, this.slabPages * 2));
      const slab = new Uint32Array(this.slabPages * 1024);
      trackLiveBytes(slab.buffer, this); // a copy of the machine copies the pages handed out, not the slab
      this.slabs.push(slab);
      this.next = 0;
    }
    return (this.slabs.length - 1) * MAX_SLAB_PAGES + this.next++;
  }

  /** Bytes of a slab in use: the last slab's pages handed out so far, every other slab whole. */
  liveBytes(buffer: ArrayBufferLike): number {
    const last = this.slabs[this.slabs.length - 1];
    return buffer === last.buffer ? this.next * 4096 : buffer.byteLength;
  }

  /** The slab holding page `id`. */
  arr(id: number): Uint32Array {
    return this.slabs[Math.floor(id / MAX_SLAB_PAGES)];
  }

  /** The word of `arr(id)` where page `id` starts. */
  word(id: number): number {
    return (id & (MAX_SLAB_PAGES - 1)) * 1024;
  }

  give(ids: readonly number[]): void {
    for (const id of ids) this.free.push(id);
  }
}
const SLAB_PAGES = 256;
const MAX_SLAB_PAGES = 16384;
/** The shared empty id list of chunks without lines or without a second page (never pushed to). */
const NO_IDS = Object.freeze([]) as unknown as number[]; // frozen: a copied machine (clone.ts) keeps it shared

/** Are the `n` words of `arr` from `at` all equal to `word`? */
function allWords(arr: Uint32Array, at: number, n: number, word: number): boolean {
  for (let i = at; i < at + n; i++) if (arr[i] !== word) return false;
  return true;
}

class SparseChunk {
  /**
   * Per page: 0 untouched, k > 0 whole page number k (`idOf`), k < 0 line page number -k - 1. Null
   * while at most one page is touched (`soloPage`, `soloSlot`): a chunk holding one stack page or one
   * table costs that page, not a 512-entry index beside it.
   */
  private pageSlot: Int16Array | null = null;
  private soloPage = -1;
  private soloSlot = 0;
  /**
   * Pool ids of the whole pages: the first in `firstId` (-1: none), the others in `moreIds` (a chunk
   * with one stack page, the common case, keeps no list).
   */
  private firstId = -1;
  private moreIds: number[] = NO_IDS;
  /**
   * Per line page, up to LINES_PER_PAGE entries (a page with more is made whole): the line's number in
   * its page + 1 (`lineIds`) and its slot in the pool (`lineSlots`); `lineCount` entries in use. 24
   * bytes a line page, not a 64-entry map (allocated with the first line).
   */
  private lineIds: Uint8Array | null = null;
  private lineSlots: Uint16Array | null = null;
  private lineCount: Uint8Array | null = null;
  /** Per line page: lookups of its lines through the directory (see `hot`). */
  private lineHits: Uint8Array | null = null;
  private linePages = 0;
  /** Blocks of lines (none until the first line: a chunk of whole pages keeps no list). */
  private blocks: number[] = NO_IDS;
  /** Lines handed out (including those of pages made whole since). */
  private lines = 0;
  /** Host bytes backing this chunk (whole pages and lines, including the lines of promoted pages). */
  bytes = 0;
  /** Pages with any backing (whole or lines). */
  touched = 0;

  constructor(private readonly pool: PagePool) {}

  /** Give every page and line block back to the pool (the chunk is being replaced). */
  release(): void {
    if (this.firstId >= 0) this.pool.give([this.firstId]);
    this.pool.give(this.moreIds);
    this.pool.give(this.blocks);
  }

  private slotOf(p: number): number {
    const ps = this.pageSlot;
    if (ps !== null) return ps[p];
    return p === this.soloPage ? this.soloSlot : 0;
  }

  private setSlot(p: number, k: number): void {
    if (this.pageSlot === null) {
      if (this.soloPage < 0 || this.soloPage === p) {
        this.soloPage = p;
        this.soloSlot = k;
        return;
      }
      this.pageSlot = new Int16Array(512);
      this.pageSlot[this.soloPage] = this.soloSlot;
    }
    this.pageSlot[p] = k;
  }

  /** The pool id of the whole page `p` (0..511), or -1. */
  pageId(p: number): number {
    return this.idOf(this.slotOf(p));
  }

  /** The pool id of whole page number `k` (a slot > 0), or -1 for any other slot. */
  private idOf(k: number): number {
    return k === 1 ? this.firstId : k > 1 ? this.moreIds[k - 2] : -1;
  }

  /** The pool slot of line `l` (0..63) of page `p` when `p` is kept as lines and the line exists, else -1. */
  line(p: number, l: number): number {
    const k = this.slotOf(p);
    if (k >= 0) return -1;
    return this.lineSlot(-k - 1, l) - 1;
  }

  /** The block holding pool slot `s`; the line is its words [lineWord(s), lineWord(s) + 16). */
  lineBlock(s: number): Uint32Array {
    return this.pool.arr(this.blocks[Math.floor(s / LINES_PER_BLOCK)]);
  }

  lineWord(s: number): number {
    return (
      this.pool.word(this.blocks[Math.floor(s / LINES_PER_BLOCK)]) + (s & (LINES_PER_BLOCK - 1)) * LINE_WORDS
    );
  }

  isLinePage(p: number): boolean {
    return this.slotOf(p) < 0;
  }

  /**
   * Back line `l` of page `p` (the page untouched or kept as lines); returns its pool slot, or -1 when
   * the page outgrew its lines and is now whole (`page(p)`).
   */
  addLine(p: number, l: number): number {
    let k = this.slotOf(p);
    if (k === 0) {
      if (this.lineCount === null || this.linePages + 1 > this.lineCount.length) {
        const pages = this.lineCount === null ? 8 : this.lineCount.length * 2;
        const ids = new Uint8Array(pages * LINES_PER_PAGE);
        const slots = new Uint16Array(pages * LINES_PER_PAGE);
        const count = new Uint8Array(pages);
        const hits = new Uint8Array(pages);
        if (this.lineCount !== null) {
          ids.set(this.lineIds!);
          slots.set(this.lineSlots!);
          count.set(this.lineCount);
          hits.set(this.lineHits!);
        }
        this.lineIds = ids;
        this.lineSlots = slots;
        this.lineCount = count;
        this.lineHits = hits;
      }
      k = -++this.linePages;
      this.setSlot(p, k);
      this.touched++;
    }
    const lp = -k - 1;
    if (this.lineCount![lp] >= LINES_PER_PAGE) {
      this.wholePage(p);
      return -1;
    }
    const s = this.lines++;
    if (s % LINES_PER_BLOCK === 0) {
      if (this.blocks === NO_IDS) this.blocks = [];
      this.blocks.push(this.pool.take()); // LINES_PER_BLOCK lines: 4 KiB
    }
    const e = lp * LINES_PER_PAGE + this.lineCount![lp]++;
    this.lineIds![e] = l + 1;
    this.lineSlots![e] = s;
    this.bytes += LINE_BYTES;
    return s;
  }

  /** Make page `p` a whole 4 KiB page (copying the lines it had); returns its pool id. */
  wholePage(p: number): number {
    const k = this.slotOf(p);
    if (k > 0) return this.idOf(k);
    const id = this.pool.take();
    if (k === 0) this.touched++;
    if (k < 0) {
      this.copyLines(-k - 1, this.pool.arr(id), this.pool.word(id));
      if (this.lineCount![-k - 1] === this.lines) this.dropLines(); // they were this page's only lines
    }
    if (this.firstId < 0) {
      this.firstId = id;
      this.setSlot(p, 1);
    } else {
      if (this.moreIds === NO_IDS) this.moreIds = [];
      this.moreIds.push(id);
      this.setSlot(p, this.moreIds.length + 1);
    }
    this.bytes += 4096;
    return id;
  }

  /** Copy `n` words of this chunk from byte `off` into `dst[at..]` (zero where nothing is backed). */
  readInto(off: number, dst: Uint32Array, at: number, n: number): void {
    for (let o = off; o < off + 4 * n; ) {
      const p = o >>> 12;
      const inPage = o & 4095;
      const len = Math.min(off + 4 * n - o, 4096 - inPage);
      const d = at + ((o - off) >>> 2);
      const k = this.slotOf(p);
      if (k === 0) dst.fill(0, d, d + (len >>> 2));
      else if (k > 0) {
        const id = this.idOf(k);
        const w = this.pool.word(id) + (inPage >>> 2);
        dst.set(this.pool.arr(id).subarray(w, w + (len >>> 2)), d);
      } else {
        const lp = -k - 1;
        for (let l = inPage >>> 6; l <= (inPage + len - 1) >>> 6; l++) {
          const from = Math.max(inPage, l * LINE_BYTES);
          const to = Math.min(inPage + len, (l + 1) * LINE_BYTES);
          const dd = d + ((from - inPage) >>> 2);
          const s = this.lineSlot(lp, l);
          if (s === 0) dst.fill(0, dd, dd + ((to - from) >>> 2));
          else {
            const w = this.lineWord(s - 1) + ((from - l * LINE_BYTES) >>> 2);
            dst.set(this.lineBlock(s - 1).subarray(w, w + ((to - from) >>> 2)), dd);
          }
        }
      }
      o += len;
    }
  }

  /** Does every word of [off, off + len) of this chunk (4-byte aligned) equal `word`? */
  isFilled(off: number, len: number, word: number): boolean {
    for (let o = off; o < off + len; ) {
      const p = o >>> 12;
      const inPage = o & 4095;
      const n = Math.min(off + len - o, 4096 - inPage);
      const k = this.slotOf(p);
      if (k === 0) {
        if (word !== 0) return false;
      } else if (k > 0) {
        const id = this.idOf(k);
        if (!allWords(this.pool.arr(id), this.pool.word(id) + (inPage >>> 2), n >>> 2, word)) return false;
      } else {
        const lp = -k - 1;
        for (let l = inPage >>> 6; l <= (inPage + n - 1) >>> 6; l++) {
          const s = this.lineSlot(lp, l);
          if (s === 0) {
            if (word !== 0) return false;
            continue;
          }
          const from = Math.max(inPage, l * LINE_BYTES);
          const to = Math.min(inPage + n, (l + 1) * LINE_BYTES);
          const at = this.lineWord(s - 1) + ((from - l * LINE_BYTES) >>> 2);
          if (!allWords(this.lineBlock(s - 1), at, (to - from) >>> 2, word)) return false;
        }
      }
      o += n;
    }
    return true;
  }

  /** Forget every line (none is in use any more): blocks back to the pool, no line map. */
  private dropLines(): void {
    this.pool.give(this.blocks);
    this.blocks = NO_IDS;
    this.bytes -= this.lines * LINE_BYTES;
    this.lines = 0;
    this.linePages = 0;
    this.lineIds = null;
    this.lineSlots = null;
    this.lineCount = null;
    this.lineHits = null;
  }

  /**
   * A line of page `p` (kept as lines) was looked up through the directory: is the page hot enough to
   * be made whole? A page whose lines are looked up `HOT_LINE_LOOKUPS` times is one the program keeps
   * coming back to (a list head beside records elsewhere, a summary word): whole, it is served by the
   * page cache without the directory.
   */
  hot(p: number): boolean {
    const lp = -this.slotOf(p) - 1;
    const h = this.lineHits![lp] + 1;
    this.lineHits![lp] = h;
    return h >= HOT_LINE_LOOKUPS;
  }

  /** Pool slot + 1 of line `l` of line page `lp`, or 0 when that line was never written. */
  private lineSlot(lp: number, l: number): number {
    const n = this.lineCount![lp];
    const e = lp * LINES_PER_PAGE;
    for (let i = 0; i < n; i++) if (this.lineIds![e + i] === l + 1) return this.lineSlots![e + i] + 1;
    return 0;
  }

  /** Copy the lines of line page `lp` into `to` from word `at`. */
  private copyLines(lp: number, to: Uint32Array, at: number): void {
    const e = lp * LINES_PER_PAGE;
    for (let i = 0; i < this.lineCount![lp]; i++) {
      // A loop, not set(subarray): a line and its page often share a slab, and a set between views of
      // one buffer copies through a temporary (2.5 us a line, measured, against 16 word moves).
      const s = this.lineSlots![e + i];
      const from = this.lineBlock(s);
      const w = this.lineWord(s);
      const d = at + (this.lineIds![e + i] - 1) * LINE_WORDS;
      for (let j = 0; j < LINE_WORDS; j++) to[d + j] = from[w + j];
    }
  }

  /** Copy everything backed into a dense 2 MiB chunk. */
  toDense(): Uint32Array {
    const dense = new Uint32Array(CHUNK_WORDS);
    for (let p = 0; p < 512; p++) {
      const k = this.slotOf(p);
      if (k > 0) {
        const id = this.idOf(k);
        const w = this.pool.word(id);
        dense.set(this.pool.arr(id).subarray(w, w + 1024), p * 1024);
      } else if (k < 0) this.copyLines(-k - 1, dense, p * 1024);
    }
    return dense;
  }
}

/** A slot: a dense chunk, a sparse chunk, untouched (zero), or a number: every word of the chunk holds it. */
type Slot = Uint32Array | SparseChunk | null | number;

/** Entries of the page cache (a power of two). */
const PAGE_CACHE = 16384;
const NO_WORDS = new Uint32Array(0);

const DENSE_MASK = 0xffe00003; // an offset inside a 2 MiB chunk, 4-byte aligned
const PAGE_MASK = 0xfffff003; // an offset inside a 4 KiB page, 4-byte aligned
const LINE_MASK = 0xffffffc3; // an offset inside a 64-byte line, 4-byte aligned

export class PhysMem implements PhysPort {
  readonly maxPhysAddrBits: number;
  /** One past the highest physical address: 2^MAXPHYADDR. */
  readonly limit: number;
  readonly counters: Counters;

  private readonly dirs = new Map<number, Slot[]>();
  /**
   * A direct-mapped cache of pages backed whole (in a dense chunk or as a whole page), behind the
   * one-entry cache: page number (NaN: empty) and the granule that backs it (array, base, mask), which
   * a hit makes the one-entry cache's again.
   * Designs that alternate between a few metadata pages (a buddy's records and list heads) stay off
   * the directory. Entries of a chunk are forgotten when its backing is replaced.
   */
  private readonly pcPage = new Float64Array(PAGE_CACHE).fill(Number.NaN);
  private readonly pcArr: Uint32Array[] = new Array<Uint32Array>(PAGE_CACHE).fill(NO_WORDS);
  private readonly pcWord = new Int32Array(PAGE_CACHE);
  private readonly pool = new PagePool();
  private readonly denseBudget: number;
  /**
   * One-entry cache of the last backed memory touched: `lastBase` is the address of
   * `lastChunk[lastDelta]` (a dense 2 MiB chunk, one 4 KiB page, or one 64-byte line in a block of
   * lines) and `lastMask` the offset bits outside it. The fast path
   * takes an offset that is an integer (`(off | 0) === off`) with no bit in the mask: inside, aligned.
   */
  private lastBase = -1;
  private lastMask = DENSE_MASK;
  private lastChunk: Uint32Array = new Uint32Array(0);
  /** Word index in `lastChunk` of the word at `lastBase` (non-zero for a line kept in a block of lines). */
  private lastDelta = 0;
  /** Set by `locate` for the address it resolved: its word index in the returned array, and the bytes from it to the end of its backing (or of the untouched span). */
  private locWord = 0;
  private locSpan = 0;
  private denseChunks = 0;
  /** Host bytes held by sparse chunks (their pages and lines). */
  private sparseBytes = 0;
  /** Read-only 4 KiB pages of one repeated word, handed to readers of a uniform chunk (never cached). */
  private readonly uniformPages = new Map<number, Uint32Array>();

  constructor(opts: PhysMemOptions = {}) {
    if (blank()) bare(this); // a bare instance for a copy of the machine (machine/clone.ts)
    const bits = opts.maxPhysAddrBits ?? 46;
    if (!Number.isInteger(bits) || bits < 32 || bits > 52) {
      fail("BAD_MAXPHYADDR", `MAXPHYADDR must be an integer from 32 to 52 bits, got ${bits}`);
    }
    this.maxPhysAddrBits = bits;
    this.limit = 2 ** bits;
    this.counters = opts.counters ?? new Counters();
    this.denseBudget = opts.denseBudget ?? DEFAULT_DENSE_BUDGET;
  }

  /** Host bytes actually allocated for simulated RAM. */
  get backedBytes(): number {
    return this.denseChunks * CHUNK_BYTES + this.sparseBytes;
  }

  /** Throws unless [pa, pa+len) lies inside the physical address space. */
  checkRange(pa: number, len: number): void {
    if (!Number.isInteger(pa) || pa < 0 || !Number.isInteger(len) || len < 0 || pa + len > this.limit) {
      fail(
        "PA_OUT_OF_RANGE",
        `physical range ${hex(pa)}+${hex(len)} is beyond MAXPHYADDR (${this.maxPhysAddrBits} bits, limit ${hex(this.limit)})`,
        { pa, len },
      );
    }
  }

  private dir(pa: number, create: boolean): Slot[] | null {
    const g = Math.floor(pa / GIB);
    let d = this.dirs.get(g) ?? null;
    if (d === null && create) {
      d = new Array<Slot>(SLOTS_PER_GIB).fill(null);
      this.dirs.set(g, d);
    }
    return d;
  }

  /**
   * The array holding `pa` (its word index in `locWord`, the bytes to the end of its backing in
   * `locSpan`), creating backing when `create`; null for untouched memory (`locSpan`: the untouched
   * span). Refreshes the fast-path cache.
   * A uniform chunk is materialized when `write` (the caller will store into the array); otherwise a
   * shared read-only page of its word is returned. New backing is one 64-byte line, or the whole 4 KiB
   * page when `wholePage` (the caller is about to write all of it).
   */
  private locate(pa: number, create: boolean, write = create, wholePage = false): Uint32Array | null {
    const d = this.dir(pa, create);
    if (d === null) return this.untouched(pa, CHUNK_BYTES);
    const inGiB = pa & (GIB - 1); // pa: a checked integer; & keeps its low 32 bits (no fmod)
    const idx = inGiB >>> 21;
    let slot = d[idx];
    if (typeof slot === "number") {
      if (!write) return this.found(pa, PAGE_SIZE, this.uniformPage(slot), 0, false);
      const dense = new Uint32Array(CHUNK_WORDS).fill(slot);
      this.denseChunks++;
      d[idx] = dense;
      return this.found(pa, CHUNK_BYTES, dense, 0, true);
    }
    if (slot instanceof Uint32Array) return this.found(pa, CHUNK_BYTES, slot, 0, true);
    if (slot === null) {
      if (!create) return this.untouched(pa, CHUNK_BYTES);
      slot = new SparseChunk(this.pool);
      d[idx] = slot;
    }
    const p = (inGiB >>> 12) & 511;
    const pool = this.pool;
    const id = slot.pageId(p);
    if (id >= 0) return this.found(pa, PAGE_SIZE, pool.arr(id), pool.word(id), true);
    const l = (inGiB >>> 6) & 63;
    let s = create && wholePage ? -1 : slot.line(p, l);
    if (s < 0) {
      if (!create) return this.untouched(pa, slot.isLinePage(p) ? LINE_BYTES : PAGE_SIZE);
      const before = slot.bytes;
      s = wholePage ? -1 : slot.addLine(p, l);
      if (s < 0) slot.wholePage(p);
      this.sparseBytes += slot.bytes - before;
      if (
        slot.bytes >= PROMOTE_BYTES ||
        (slot.touched >= PROMOTE_PAGES && this.denseChunks * CHUNK_BYTES < this.denseBudget)
      ) {
        this.forgetChunk(pa - (pa & (CHUNK_BYTES - 1)));
        const dense = this.promote(slot);
        d[idx] = dense;
        return this.found(pa, CHUNK_BYTES, dense, 0, true);
      }
      if (s < 0) {
        const whole = slot.pageId(p);
        return this.found(pa, PAGE_SIZE, pool.arr(whole), pool.word(whole), true);
      }
    }
    if (slot.hot(p)) {
      const before = slot.bytes;
      const whole = slot.wholePage(p);
      this.sparseBytes += slot.bytes - before;
      return this.found(pa, PAGE_SIZE, pool.arr(whole), pool.word(whole), true);
    }
    return this.found(pa, LINE_BYTES, slot.lineBlock(s), slot.lineWord(s), true);
  }

  /** `locate`'s answer: `arr` holds the `span`-byte granule of `pa` from word `word` on; cached for the fast path when `cache`. */
  private found(pa: number, span: number, arr: Uint32Array, word: number, cache: boolean): Uint32Array {
    const inSpan = pa & (span - 1);
    this.locWord = word + (inSpan >>> 2);
    this.locSpan = span - inSpan;
    if (cache) {
      this.lastBase = pa - inSpan;
      this.lastMask = span === CHUNK_BYTES ? DENSE_MASK : span === PAGE_SIZE ? PAGE_MASK : LINE_MASK;
      this.lastChunk = arr;
      this.lastDelta = word;
      if (span !== LINE_BYTES) {
        // The page of pa is backed whole: remember the array and the word where the page starts.
        const inPage = pa & (PAGE_SIZE - 1);
        const i = (pa / PAGE_SIZE) & (PAGE_CACHE - 1);
        this.pcPage[i] = pa - inPage;
        this.pcArr[i] = arr;
        this.pcWord[i] = this.locWord - (inPage >>> 2);
      }
    }
    return arr;
  }

  /** Forget the page-cache entries of the 2 MiB chunk at `chunkBase` (its backing is being replaced). */
  private forgetChunk(chunkBase: number): void {
    // A page's entry can only be at its own index: the chunk's 512 pages have 512 (PAGE_CACHE >= 512).
    for (let k = 0; k < 512; k++) {
      const i = (chunkBase / PAGE_SIZE + k) & (PAGE_CACHE - 1);
      const t = this.pcPage[i];
      if (t >= chunkBase && t < chunkBase + CHUNK_BYTES) {
        this.pcPage[i] = Number.NaN;
        this.pcArr[i] = NO_WORDS;
      }
    }
  }

  private untouched(pa: number, span: number): null {
    this.locSpan = span - (pa & (span - 1));
    return null;
  }

  private uniformPage(word: number): Uint32Array {
    let page = this.uniformPages.get(word);
    if (page === undefined) {
      page = new Uint32Array(1024).fill(word);
      this.uniformPages.set(word, page);
    }
    return page;
  }

  /** Replace the whole chunk at `chunkBase` by a uniform word (0: untouched), freeing its backing. */
  private setUniform(chunkBase: number, word: number): void {
    this.forgetChunk(chunkBase);
    const d = this.dir(chunkBase, word !== 0);
    if (d === null) return;
    const idx = (chunkBase & (GIB - 1)) >>> 21;
    const old = d[idx];
    if (old instanceof Uint32Array) this.denseChunks--;
    else if (old instanceof SparseChunk) {
      this.sparseBytes -= old.bytes;
      old.release();
    }
    d[idx] = word === 0 ? null : word;
    if (this.lastBase >= chunkBase && this.lastBase < chunkBase + CHUNK_BYTES) {
      this.lastBase = -1;
      this.lastChunk = new Uint32Array(0);
      this.lastDelta = 0;
    }
  }

  private promote(sc: SparseChunk): Uint32Array {
    const dense = sc.toDense();
    sc.release();
    this.sparseBytes -= sc.bytes;
    this.denseChunks++;
    return dense;
  }

  /** Does a store of `len` bytes at `pa` write more of its page than its lines would hold? Then back the page whole. */
  private coversPage(pa: number, len: number): boolean {
    return Math.min(len, PAGE_SIZE - (pa & (PAGE_SIZE - 1))) > LINES_PER_PAGE * LINE_BYTES;
  }

  read32(pa: number): number {
    this.counters.memReads++;
    const off = pa - this.lastBase;
    if ((off | 0) === off && (off & this.lastMask) === 0) return this.lastChunk[(off >>> 2) + this.lastDelta];
    // The page cache (an integer offset with no bit of PAGE_MASK: inside the page, aligned; NaN: empty).
    const i = (pa / PAGE_SIZE) & (PAGE_CACHE - 1);
    const o = pa - this.pcPage[i];
    if ((o | 0) === o && (o & PAGE_MASK) === 0) return this.pcArr[i][(o >>> 2) + this.pcWord[i]];
    return this.slowPeek(pa);
  }

  /** Load through the directory (and refresh the caches); checks range and alignment. */
  private slowPeek(pa: number): number {
    if (!Number.isInteger(pa) || (pa & 3) !== 0 || pa >= this.limit || pa < 0) this.badAccess(pa, 4); // no fmod
    const arr = this.locate(pa, false);
    return arr === null ? 0 : arr[this.locWord];
  }

  write32(pa: number, value: number): void {
    const off = pa - this.lastBase;
    if ((off | 0) === off && (off & this.lastMask) === 0) {
      this.counters.memWrites++;
      this.lastChunk[(off >>> 2) + this.lastDelta] = value;
      return;
    }
    const i = (pa / PAGE_SIZE) & (PAGE_CACHE - 1);
    const o = pa - this.pcPage[i];
    if ((o | 0) === o && (o & PAGE_MASK) === 0) {
      this.counters.memWrites++;
      this.pcArr[i][(o >>> 2) + this.pcWord[i]] = value;
      return;
    }
    this.slowWrite(pa, value);
  }

  /** Store through the directory (backing memory as needed). */
  private slowWrite(pa: number, value: number): void {
    if (!Number.isInteger(pa) || (pa & 3) !== 0 || pa >= this.limit || pa < 0) this.badAccess(pa, 4); // no fmod
    this.counters.memWrites++;
    const arr = this.locate(pa, value !== 0, true);
    if (arr !== null) arr[this.locWord] = value;
  }

  /**
   * Uncounted 32-bit load, for the MMU's own page walks (counted by it as `walkReads`) and for
   * inspection tools (dumps, checkers) that are not part of the simulated kernel.
   */
  peek32(pa: number): number {
    const off = pa - this.lastBase;
    if ((off | 0) === off && (off & this.lastMask) === 0) return this.lastChunk[(off >>> 2) + this.lastDelta];
    const i = (pa / PAGE_SIZE) & (PAGE_CACHE - 1);
    const o = pa - this.pcPage[i];
    if ((o | 0) === o && (o & PAGE_MASK) === 0) return this.pcArr[i][(o >>> 2) + this.pcWord[i]];
    return this.slowPeek(pa);
  }

  /** Uncounted 32-bit store, for the MMU's Accessed/Dirty updates (counted by it as `walkWrites`). */
  poke32(pa: number, value: number): void {
    const r = this.counters.memWrites;
    this.write32(pa, value);
    this.counters.memWrites = r;
  }

  read8(pa: number): number {
    return (this.read32(pa - (pa & 3)) >>> ((pa & 3) * 8)) & 0xff;
  }

  write8(pa: number, value: number): void {
    const base = pa - (pa & 3);
    const sh = (pa & 3) * 8;
    const old = this.read32(base);
    this.counters.memReads--; // a byte store is one access, not a read plus a write
    this.write32(base, ((old & ~(0xff << sh)) | ((value & 0xff) << sh)) >>> 0);
  }

  read16(pa: number): number {
    if ((pa & 1) !== 0) this.badAccess(pa, 2);
    return (this.read32(pa - (pa & 3)) >>> ((pa & 2) * 8)) & 0xffff;
  }

  write16(pa: number, value: number): void {
    if ((pa & 1) !== 0) this.badAccess(pa, 2);
    const base = pa - (pa & 3);
    const sh = (pa & 2) * 8;
    const old = this.read32(base);
    this.counters.memReads--;
    this.write32(base, ((old & ~(0xffff << sh)) | ((value & 0xffff) << sh)) >>> 0);
  }

  /**
   * Visit [pa, pa+len) page piece by page piece: `fn(arr, firstWord, words, offsetInRange)` with the
   * backing array (null where untouched and `create` is false). 4-byte aligned ranges only.
   */
  private pieces(
    pa: number,
    len: number,
    create: boolean,
    fn: (arr: Uint32Array | null, w: number, n: number, at: number) => boolean | undefined,
    write = create,
    cover = len,
  ): boolean {
    this.checkRange(pa, len);
    if ((pa & 3) !== 0 || (len & 3) !== 0)
      fail("MISALIGNED", `bulk access ${hex(pa)}+${hex(len)} is not 4-byte aligned`);
    for (let at = 0; at < len; ) {
      const p = pa + at;
      const arr = this.locate(p, create, write, this.coversPage(p, cover - at));
      const n = Math.min(len - at, this.locSpan);
      if (fn(arr, this.locWord, n >>> 2, at) === false) return false;
      at += n;
    }
    return true;
  }

  /** `n` counted loads of consecutive words from `pa` into `dst[from..]` (as `n` read32: memReads += n). */
  readWords(pa: number, dst: Uint32Array, from: number, n: number): void {
    this.counters.memReads += n;
    this.peekWords(pa, dst, from, n);
  }

  /** `readWords` uncounted: for inspection (an observer's view of RAM, see `InspectPort`). */
  peekWords(pa: number, dst: Uint32Array, from: number, n: number): void {
    this.checkRange(pa, n * 4);
    if ((pa & 3) !== 0) this.badAccess(pa, 4);
    for (let at = 0; at < n; ) {
      const p = pa + at * 4;
      const inChunk = p & (CHUNK_BYTES - 1);
      const k = Math.min(n - at, (CHUNK_BYTES - inChunk) >>> 2);
      const d = this.dir(p, false);
      const slot = d === null ? null : d[(p & (GIB - 1)) >>> 21];
      if (slot === null) dst.fill(0, from + at, from + at + k);
      else if (typeof slot === "number") dst.fill(slot, from + at, from + at + k);
      else if (slot instanceof Uint32Array)
        dst.set(slot.subarray(inChunk >>> 2, (inChunk >>> 2) + k), from + at);
      else slot.readInto(inChunk, dst, from + at, k);
      at += k;
    }
  }

  /**
   * `n` counted stores of `src[from..]` at consecutive words from `pa` (as `n` write32: memWrites += n).
   * `cover`: the bytes from `pa` the caller is about to write in all (new backing is sized for them).
   */
  writeWords(pa: number, src: Uint32Array, from: number, n: number, cover = n * 4): void {
    this.counters.memWrites += n;
    const len = n * 4;
    this.checkRange(pa, len);
    if ((pa & 3) !== 0) fail("MISALIGNED", `bulk access ${hex(pa)}+${hex(len)} is not 4-byte aligned`);
    // `pieces`, written out: no closure a call (a 1 TiB stack's handover makes half a million).
    for (let at = 0; at < len; ) {
      const p = pa + at;
      const arr = this.locate(p, true, true, this.coversPage(p, cover - at))!;
      const k = Math.min(len - at, this.locSpan) >>> 2;
      const w = this.locWord;
      const s = from + (at >>> 2);
      if (s === 0 && k === src.length)
        arr.set(src, w); // a whole page of scratch: no view made
      else if (k > 16) arr.set(src.subarray(s, s + k), w);
      else for (let i = 0; i < k; i++) arr[w + i] = src[s + i];
      at += k * 4;
    }
  }

  zeroFrame(pfn: number): void {
    this.counters.memBulkBytes += PAGE_SIZE;
    this.pieces(pfn * PAGE_SIZE, PAGE_SIZE, false, (arr, w, n) => void arr?.fill(0, w, w + n), true);
  }

  /**
   * Fill [pa, pa+len) with a byte value; pa and len must be 4-byte aligned. Whole 2 MiB chunks become
   * uniform (no backing), the partial ones at the edges are filled in place.
   */
  fill(pa: number, len: number, byte: number): void {
    const word = ((byte & 0xff) * 0x01010101) >>> 0;
    this.counters.memBulkBytes += len;
    const part = (p: number, l: number) =>
      this.pieces(p, l, word !== 0, (arr, w, n) => void arr?.fill(word, w, w + n), true);
    const first = Math.ceil(pa / CHUNK_BYTES) * CHUNK_BYTES;
    const last = Math.floor((pa + len) / CHUNK_BYTES) * CHUNK_BYTES;
    if (last <= first) {
      part(pa, len);
      return;
    }
    this.checkRange(pa, len);
    if (first > pa) part(pa, first - pa);
    for (let c = first; c < last; c += CHUNK_BYTES) this.setUniform(c, word);
    if (pa + len > last) part(last, pa + len - last);
  }

  /**
   * True when every byte of [pa, pa+len) equals `byte` (4-byte aligned); counted as bulk bytes. Walks
   * the backing directly: untouched and uniform chunks, untouched pages and missing lines are answered
   * without looking at words.
   */
  isFilled(pa: number, len: number, byte: number): boolean {
    const word = ((byte & 0xff) * 0x01010101) >>> 0;
    this.counters.memBulkBytes += len;
    this.checkRange(pa, len);
    if ((pa & 3) !== 0 || (len & 3) !== 0)
      fail("MISALIGNED", `bulk access ${hex(pa)}+${hex(len)} is not 4-byte aligned`);
    for (let p = pa; p < pa + len; ) {
      const inChunk = p & (CHUNK_BYTES - 1);
      const n = Math.min(pa + len - p, CHUNK_BYTES - inChunk);
      const d = this.dir(p, false);
      const slot = d === null ? null : d[(p & (GIB - 1)) >>> 21];
      if (slot === null) {
        if (word !== 0) return false;
      } else if (typeof slot === "number") {
        if (slot !== word) return false;
      } else if (slot instanceof Uint32Array) {
        if (!allWords(slot, inChunk >>> 2, n >>> 2, word)) return false;
      } else if (!slot.isFilled(inChunk, n, word)) return false;
      p += n;
    }
    return true;
  }

  copyFrame(from: number, to: number): void {
    this.copy(to * PAGE_SIZE, from * PAGE_SIZE, PAGE_SIZE);
  }

  /** Copy len bytes (multiple of 4, both addresses 4-byte aligned), as memmove. */
  copy(dst: number, src: number, len: number): void {
    this.checkRange(dst, len);
    this.checkRange(src, len);
    if (((dst | src | len) & 3) !== 0) fail("MISALIGNED", "copy needs 4-byte aligned addresses and length");
    const tmp = this.readBytes(src, len);
    this.writeBytes(dst, tmp);
  }

  /** Bulk read into a new byte array (counted as bulk bytes, not accesses). 4-byte aligned. */
  readBytes(pa: number, len: number): Uint8Array {
    if ((len & 3) !== 0) fail("MISALIGNED", `readBytes of ${len} bytes: the length must be a multiple of 4`);
    const out = new Uint8Array(len);
    const words = new Uint32Array(out.buffer);
    this.counters.memBulkBytes += len;
    this.pieces(pa, len, false, (arr, w, n, at) => {
      if (arr !== null) words.set(arr.subarray(w, w + n), at >>> 2);
    });
    return out;
  }

  /** Bulk write from a byte array (counted as bulk bytes). 4-byte aligned address and length. */
  writeBytes(pa: number, data: Uint8Array): void {
    if ((data.length & 3) !== 0)
      fail("MISALIGNED", `writeBytes of ${data.length} bytes: the length must be a multiple of 4`);
    this.counters.memBulkBytes += data.length;
    this.checkRange(pa, data.length);
    if ((pa & 3) !== 0) fail("MISALIGNED", `writeBytes at ${hex(pa)} is not 4-byte aligned`);
    const copy = new Uint8Array(data);
    const words = new Uint32Array(copy.buffer, 0, data.length >>> 2);
    for (let at = 0; at < data.length; ) {
      const p = pa + at;
      let arr = this.locate(p, false, true);
      let n = Math.min(data.length - at, this.locSpan);
      if (arr === null) {
        // Untouched: skip zeros; back memory from the line of the first non-zero word.
        const first = words.subarray(at >>> 2, (at + n) >>> 2).findIndex((x) => x !== 0);
        if (first < 0) {
          at += n;
          continue;
        }
        const skip = first * 4 - ((p + first * 4) & (LINE_BYTES - 1));
        if (skip > 0) {
          at += skip;
          continue;
        }
        arr = this.locate(p, true, true, this.coversPage(p, data.length - at))!;
        n = Math.min(data.length - at, this.locSpan);
      }
      arr.set(words.subarray(at >>> 2, (at + n) >>> 2), this.locWord);
      at += n;
    }
  }

  /** Physical addresses of every 2 MiB chunk with any backing, ascending (for exporters and digests). */
  backedChunks(): number[] {
    const out: number[] = [];
    for (const [g, d] of this.dirs) {
      for (let s = 0; s < SLOTS_PER_GIB; s++) if (d[s] !== null) out.push(g * GIB + s * CHUNK_BYTES);
    }
    return out.sort((a, b) => a - b);
  }

  private badAccess(pa: number, size: number): never {
    if (!Number.isInteger(pa)) fail("BAD_ADDRESS", `physical address ${pa} is not a whole number`, { pa });
    if (pa < 0 || pa >= this.limit) {
      fail(
        "PA_OUT_OF_RANGE",
        `physical address ${Number.isFinite(pa) ? hex(Math.max(0, Math.floor(pa))) : String(pa)} is beyond MAXPHYADDR (${this.maxPhysAddrBits} bits)`,
        { pa },
      );
    }
    fail("MISALIGNED", `${size * 8}-bit access at ${hex(pa)} is not ${size}-byte aligned`, { pa });
  }
}

/**
 * The lab's view of RAM when it observes a design (the boot's summary of free frames): the design's
 * own code reads its structures through this port instead of the kernel's mappings, so the reads are
 * uncounted and touch no TLB, window or page table: observing costs the simulated machine nothing and
 * leaves it as the boot left it. Writes are refused: an observer must not change what it observes.
 */
export class InspectPort implements PhysPort {
  constructor(private readonly mem: PhysMem) {}

  read32(pa: number): number {
    return this.mem.peek32(pa);
  }

  readWords(pa: number, dst: Uint32Array, from: number, n: number): void {
    this.mem.peekWords(pa, dst, from, n);
  }

  write32(pa: number): void {
    this.refuse(pa);
  }

  zeroFrame(pfn: number): void {
    this.refuse(pfn * PAGE_SIZE);
  }

  private refuse(pa: number): never {
    return fail("KERNEL_BUG", `an observer of the PMM tried to write ${hex(pa)}: stats() must only read`);
  }
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(PagePool, PhysMem, SparseChunk);
