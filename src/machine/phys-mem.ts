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
}

/** Read a little-endian u64 below 2^53 as a number (for software data: frame numbers, pointers). */
export function read64(port: PhysPort, pa: number): number {
  const lo = port.read32(pa);
  const hi = port.read32(pa + 4);
  if (hi > 0x1fffff) fail("VALUE_TOO_LARGE", `u64 at ${hex(pa)} is not below 2^53 (high word ${hex(hi)})`);
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
}

/**
 * A 2 MiB chunk that is still sparse: its 4 KiB pages are allocated one by one on first write. When
 * `PROMOTE_PAGES` of them exist it becomes one dense 2 MiB `Uint32Array` (page tables and metadata
 * cluster, and a dense chunk is one array for the fast path). Scattered touches - one stack page per
 * 2 MiB of RAM - stay at 4 KiB each.
 */
const PROMOTE_PAGES = 64;

class SparseChunk {
  /** Page indices (0..511) of the pages allocated so far, and the pages, in allocation order. */
  readonly keys = new Uint16Array(PROMOTE_PAGES);
  readonly pages: Uint32Array[] = [];
  count = 0;

  find(p: number): Uint32Array | null {
    for (let i = 0; i < this.count; i++) if (this.keys[i] === p) return this.pages[i];
    return null;
  }

  add(p: number, page: Uint32Array): void {
    this.keys[this.count++] = p;
    this.pages.push(page);
  }
}

/** A slot: a dense chunk, a sparse chunk, untouched (zero), or a number: every word of the chunk holds it. */
type Slot = Uint32Array | SparseChunk | null | number;

const DENSE_MASK = 0xffe00003; // an offset inside a 2 MiB chunk, 4-byte aligned
const PAGE_MASK = 0xfffff003; // an offset inside a 4 KiB page, 4-byte aligned

export class PhysMem implements PhysPort {
  readonly maxPhysAddrBits: number;
  /** One past the highest physical address: 2^MAXPHYADDR. */
  readonly limit: number;
  readonly counters: Counters;

  private readonly dirs = new Map<number, Slot[]>();
  /**
   * One-entry cache of the last backed memory touched: `lastBase` is the address of `lastChunk[0]`
   * (a dense 2 MiB chunk or one 4 KiB page) and `lastMask` the offset bits outside it. The fast path
   * takes an offset that is an integer (`(off | 0) === off`) with no bit in the mask: inside, aligned.
   */
  private lastBase = -1;
  private lastMask = DENSE_MASK;
  private lastChunk: Uint32Array = new Uint32Array(0);
  private denseChunks = 0;
  private sparsePages = 0;
  /** Read-only 4 KiB pages of one repeated word, handed to readers of a uniform chunk (never cached). */
  private readonly uniformPages = new Map<number, Uint32Array>();

  constructor(opts: PhysMemOptions = {}) {
    const bits = opts.maxPhysAddrBits ?? 46;
    if (!Number.isInteger(bits) || bits < 32 || bits > 52) {
      fail("BAD_MAXPHYADDR", `MAXPHYADDR must be an integer from 32 to 52 bits, got ${bits}`);
    }
    this.maxPhysAddrBits = bits;
    this.limit = 2 ** bits;
    this.counters = opts.counters ?? new Counters();
  }

  /** Host bytes actually allocated for simulated RAM. */
  get backedBytes(): number {
    return this.denseChunks * CHUNK_BYTES + this.sparsePages * PAGE_SIZE;
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
   * The array holding the page of `pa` and the word index of `pa` in it (valid to the end of that
   * page), creating the page when `create`; null for untouched memory. Refreshes the fast-path cache.
   * A uniform chunk is materialized when `write` (the caller will store into the array); otherwise a
   * shared read-only page of its word is returned.
   */
  private locate(pa: number, create: boolean, write = create): Uint32Array | null {
    const d = this.dir(pa, create);
    if (d === null) return null;
    const inGiB = pa % GIB;
    const idx = inGiB >>> 21;
    let slot = d[idx];
    const chunkBase = pa - (inGiB & 0x1fffff);
    if (typeof slot === "number") {
      if (!write) return this.uniformPage(slot);
      const dense = new Uint32Array(CHUNK_WORDS).fill(slot);
      this.denseChunks++;
      d[idx] = dense;
      this.cache(chunkBase, DENSE_MASK, dense);
      return dense;
    }
    if (slot instanceof Uint32Array) {
      this.cache(chunkBase, DENSE_MASK, slot);
      return slot;
    }
    if (slot === null) {
      if (!create) return null;
      slot = new SparseChunk();
      d[idx] = slot;
    }
    const p = (inGiB >>> 12) & 511;
    let page = slot.find(p);
    if (page === null) {
      if (!create) return null;
      if (slot.count + 1 >= PROMOTE_PAGES) {
        const dense = this.promote(slot);
        d[idx] = dense;
        this.cache(chunkBase, DENSE_MASK, dense);
        return dense;
      }
      page = new Uint32Array(1024);
      slot.add(p, page);
      this.sparsePages++;
    }
    this.cache(pa - (pa % PAGE_SIZE), PAGE_MASK, page);
    return page;
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
    const d = this.dir(chunkBase, word !== 0);
    if (d === null) return;
    const idx = (chunkBase % GIB) >>> 21;
    const old = d[idx];
    if (old instanceof Uint32Array) this.denseChunks--;
    else if (old instanceof SparseChunk) this.sparsePages -= old.count;
    d[idx] = word === 0 ? null : word;
    if (this.lastBase >= chunkBase && this.lastBase < chunkBase + CHUNK_BYTES) {
      this.lastBase = -1;
      this.lastChunk = new Uint32Array(0);
    }
  }

  private promote(sc: SparseChunk): Uint32Array {
    const dense = new Uint32Array(CHUNK_WORDS);
    for (let i = 0; i < sc.count; i++) dense.set(sc.pages[i], sc.keys[i] * 1024);
    this.sparsePages -= sc.count;
    this.denseChunks++;
    return dense;
  }

  private cache(base: number, mask: number, arr: Uint32Array): void {
    this.lastBase = base;
    this.lastMask = mask;
    this.lastChunk = arr;
  }

  /** Word index of `pa` in the array `locate` returned for it. */
  private wordIn(arr: Uint32Array, pa: number): number {
    return arr.length === CHUNK_WORDS ? (pa % CHUNK_BYTES) >>> 2 : (pa % PAGE_SIZE) >>> 2;
  }

  read32(pa: number): number {
    this.counters.memReads++;
    const off = pa - this.lastBase;
    if ((off | 0) === off && (off & this.lastMask) === 0) return this.lastChunk[off >>> 2];
    return this.slowPeek(pa);
  }

  /** Load through the directory (and refresh the cache); checks range and alignment. */
  private slowPeek(pa: number): number {
    if (pa % 4 !== 0 || pa >= this.limit || pa < 0) this.badAccess(pa, 4);
    const arr = this.locate(pa, false);
    return arr === null ? 0 : arr[this.wordIn(arr, pa)];
  }

  write32(pa: number, value: number): void {
    const off = pa - this.lastBase;
    if ((off | 0) === off && (off & this.lastMask) === 0) {
      this.counters.memWrites++;
      this.lastChunk[off >>> 2] = value;
      return;
    }
    this.slowWrite(pa, value);
  }

  private slowWrite(pa: number, value: number): void {
    if (pa % 4 !== 0 || pa >= this.limit || pa < 0) this.badAccess(pa, 4);
    this.counters.memWrites++;
    const arr = this.locate(pa, value !== 0, true);
    if (arr !== null) arr[this.wordIn(arr, pa)] = value;
  }

  /**
   * Uncounted 32-bit load, for the MMU's own page walks (counted by it as `walkReads`) and for
   * inspection tools (dumps, checkers) that are not part of the simulated kernel.
   */
  peek32(pa: number): number {
    const off = pa - this.lastBase;
    if ((off | 0) === off && (off & this.lastMask) === 0) return this.lastChunk[off >>> 2];
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
  ): boolean {
    this.checkRange(pa, len);
    if ((pa & 3) !== 0 || (len & 3) !== 0)
      fail("MISALIGNED", `bulk access ${hex(pa)}+${hex(len)} is not 4-byte aligned`);
    for (let at = 0; at < len; ) {
      const p = pa + at;
      const n = Math.min(len - at, PAGE_SIZE - (p % PAGE_SIZE));
      const arr = this.locate(p, create, write);
      if (fn(arr, arr === null ? 0 : this.wordIn(arr, p), n >>> 2, at) === false) return false;
      at += n;
    }
    return true;
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

  /** True when every byte of [pa, pa+len) equals `byte` (4-byte aligned); counted as bulk bytes. */
  isFilled(pa: number, len: number, byte: number): boolean {
    const word = ((byte & 0xff) * 0x01010101) >>> 0;
    this.counters.memBulkBytes += len;
    this.checkRange(pa, len);
    if ((pa & 3) !== 0 || (len & 3) !== 0)
      fail("MISALIGNED", `bulk access ${hex(pa)}+${hex(len)} is not 4-byte aligned`);
    for (let p = pa; p < pa + len; ) {
      const next = Math.min(pa + len, (Math.floor(p / CHUNK_BYTES) + 1) * CHUNK_BYTES);
      const u = this.uniformWord(p);
      if (u !== undefined) {
        if (u !== word) return false;
      } else {
        const ok = this.pieces(p, next - p, false, (arr, w, n) => {
          if (arr === null) return word === 0;
          for (let i = w; i < w + n; i++) if (arr[i] !== word) return false;
          return true;
        });
        if (!ok) return false;
      }
      p = next;
    }
    return true;
  }

  /** The word every byte quad of the 2 MiB chunk of `pa` holds when it is uniform or untouched, else undefined. */
  private uniformWord(pa: number): number | undefined {
    const d = this.dir(pa, false);
    if (d === null) return 0;
    const slot = d[(pa % GIB) >>> 21];
    return slot === null ? 0 : typeof slot === "number" ? slot : undefined;
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
    const copy = new Uint8Array(data);
    const words = new Uint32Array(copy.buffer, 0, data.length >>> 2);
    this.pieces(pa, data.length, false, (_arr, _w, n, at) => {
      const part = words.subarray(at >>> 2, (at >>> 2) + n);
      const p = pa + at;
      const target = this.locate(
        p,
        part.some((x) => x !== 0),
        true,
      );
      if (target !== null) target.set(part, this.wordIn(target, p));
    });
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
