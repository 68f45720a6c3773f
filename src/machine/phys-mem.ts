/**
 * Simulated physical memory: byte-addressable, up to MAXPHYADDR bits (52 at most), sparse.
 *
 * Storage is a two-level directory: a Map from the GiB number of an address to an array of 512 slots,
 * each slot a 2 MiB `Uint32Array` chunk allocated on the first write of a non-zero value. Reads of
 * untouched memory return zero. Host memory is therefore proportional to what the simulated machine
 * touches, never to the span of its address space: 64 TiB of address space costs nothing until written.
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

export class PhysMem implements PhysPort {
  readonly maxPhysAddrBits: number;
  /** One past the highest physical address: 2^MAXPHYADDR. */
  readonly limit: number;
  readonly counters: Counters;

  private readonly dirs = new Map<number, (Uint32Array | null)[]>();
  private lastGiB = -1;
  private lastDir: (Uint32Array | null)[] | null = null;
  /**
   * One-entry cache of the last backed chunk touched: its base address and words. The fast path takes
   * an offset that is an integer, 4-byte aligned and inside the chunk (`(off | 0) === off` and no bit
   * outside 0x001ffffc); anything else goes the checked slow way.
   */
  private lastBase = -1;
  private lastChunk: Uint32Array = new Uint32Array(0);
  private chunkCount = 0;

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
    return this.chunkCount * CHUNK_BYTES;
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

  private dirFor(g: number, create: boolean): (Uint32Array | null)[] | null {
    if (g === this.lastGiB) return this.lastDir;
    let dir = this.dirs.get(g) ?? null;
    if (dir === null) {
      if (!create) return null;
      dir = new Array<Uint32Array | null>(SLOTS_PER_GIB).fill(null);
      this.dirs.set(g, dir);
    }
    this.lastGiB = g;
    this.lastDir = dir;
    return dir;
  }

  private chunkFor(pa: number, create: boolean): Uint32Array | null {
    const g = Math.floor(pa / GIB);
    const dir = this.dirFor(g, create);
    if (dir === null) return null;
    const slot = (pa - g * GIB) >>> 21;
    let c = dir[slot];
    if (c === null && create) {
      c = new Uint32Array(CHUNK_WORDS);
      dir[slot] = c;
      this.chunkCount++;
    }
    return c;
  }

  read32(pa: number): number {
    this.counters.memReads++;
    const off = pa - this.lastBase;
    if ((off | 0) === off && (off & 0xffe00003) === 0) return this.lastChunk[off >>> 2];
    return this.slowPeek(pa);
  }

  /** Load through the directory (and refresh the chunk cache); checks range and alignment. */
  private slowPeek(pa: number): number {
    if (pa % 4 !== 0 || pa >= this.limit || pa < 0) this.badAccess(pa, 4);
    const g = Math.floor(pa / GIB);
    const dir = g === this.lastGiB ? this.lastDir : this.dirFor(g, false);
    if (dir === null) return 0;
    const lo = pa - g * GIB;
    const c = dir[lo >>> 21];
    if (c === null) return 0;
    this.lastBase = pa - (lo & 0x1fffff);
    this.lastChunk = c;
    return c[(lo & 0x1fffff) >>> 2];
  }

  write32(pa: number, value: number): void {
    const off = pa - this.lastBase;
    if ((off | 0) === off && (off & 0xffe00003) === 0) {
      this.counters.memWrites++;
      this.lastChunk[off >>> 2] = value;
      return;
    }
    this.slowWrite(pa, value);
  }

  private slowWrite(pa: number, value: number): void {
    if (pa % 4 !== 0 || pa >= this.limit || pa < 0) this.badAccess(pa, 4);
    this.counters.memWrites++;
    const g = Math.floor(pa / GIB);
    let dir = g === this.lastGiB ? this.lastDir : this.dirFor(g, false);
    if (dir === null) {
      if (value === 0) return;
      dir = this.dirFor(g, true)!;
    }
    const lo = pa - g * GIB;
    const slot = lo >>> 21;
    let c = dir[slot];
    if (c === null) {
      if (value === 0) return;
      c = new Uint32Array(CHUNK_WORDS);
      dir[slot] = c;
      this.chunkCount++;
    }
    this.lastBase = pa - (lo & 0x1fffff);
    this.lastChunk = c;
    c[(lo & 0x1fffff) >>> 2] = value;
  }

  /**
   * Uncounted 32-bit load, for the MMU's own page walks (counted by it as `walkReads`) and for
   * inspection tools (dumps, checkers) that are not part of the simulated kernel.
   */
  peek32(pa: number): number {
    const off = pa - this.lastBase;
    if ((off | 0) === off && (off & 0xffe00003) === 0) return this.lastChunk[off >>> 2];
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

  zeroFrame(pfn: number): void {
    const pa = pfn * PAGE_SIZE;
    this.checkRange(pa, PAGE_SIZE);
    this.counters.memBulkBytes += PAGE_SIZE;
    const c = this.chunkFor(pa, false);
    if (c !== null) {
      const w = (pa % CHUNK_BYTES) >>> 2;
      c.fill(0, w, w + 1024);
    }
  }

  /** Fill [pa, pa+len) with a byte value; pa and len must be 4-byte aligned. */
  fill(pa: number, len: number, byte: number): void {
    this.checkRange(pa, len);
    if ((pa & 3) !== 0 || (len & 3) !== 0)
      fail("MISALIGNED", `fill ${hex(pa)}+${hex(len)} is not 4-byte aligned`);
    const word = ((byte & 0xff) * 0x01010101) >>> 0;
    this.counters.memBulkBytes += len;
    let p = pa;
    const end = pa + len;
    while (p < end) {
      const chunkEnd = Math.min(end, (Math.floor(p / CHUNK_BYTES) + 1) * CHUNK_BYTES);
      const c = this.chunkFor(p, word !== 0);
      if (c !== null) c.fill(word, (p % CHUNK_BYTES) >>> 2, (((chunkEnd - 1) % CHUNK_BYTES) >>> 2) + 1);
      p = chunkEnd;
    }
  }

  /** True when every byte of [pa, pa+len) equals `byte` (4-byte aligned); counted as bulk bytes. */
  isFilled(pa: number, len: number, byte: number): boolean {
    this.checkRange(pa, len);
    if ((pa & 3) !== 0 || (len & 3) !== 0)
      fail("MISALIGNED", `isFilled ${hex(pa)}+${hex(len)} is not 4-byte aligned`);
    const word = ((byte & 0xff) * 0x01010101) >>> 0;
    this.counters.memBulkBytes += len;
    let p = pa;
    const end = pa + len;
    while (p < end) {
      const chunkEnd = Math.min(end, (Math.floor(p / CHUNK_BYTES) + 1) * CHUNK_BYTES);
      const c = this.chunkFor(p, false);
      if (c === null) {
        if (word !== 0) return false;
      } else {
        const last = ((chunkEnd - 1) % CHUNK_BYTES) >>> 2;
        for (let i = (p % CHUNK_BYTES) >>> 2; i <= last; i++) if (c[i] !== word) return false;
      }
      p = chunkEnd;
    }
    return true;
  }

  /** Copy len bytes (multiple of 4, both addresses 4-byte aligned), as memmove. */
  copy(dst: number, src: number, len: number): void {
    this.checkRange(dst, len);
    this.checkRange(src, len);
    if (((dst | src | len) & 3) !== 0) fail("MISALIGNED", "copy needs 4-byte aligned addresses and length");
    const tmp = this.readBytes(src, len);
    this.writeBytes(dst, tmp);
  }

  /** Bulk read into a new byte array (counted as bulk bytes, not accesses). */
  readBytes(pa: number, len: number): Uint8Array {
    this.checkRange(pa, len);
    const out = new Uint8Array(len);
    this.counters.memBulkBytes += len;
    for (let i = 0; i < len; ) {
      const p = pa + i;
      const inChunk = Math.min(len - i, CHUNK_BYTES - (p % CHUNK_BYTES));
      const c = this.chunkFor(p, false);
      if (c !== null) {
        const bytes = new Uint8Array(c.buffer, c.byteOffset, CHUNK_BYTES);
        out.set(bytes.subarray(p % CHUNK_BYTES, (p % CHUNK_BYTES) + inChunk), i);
      }
      i += inChunk;
    }
    return out;
  }

  /** Bulk write from a byte array (counted as bulk bytes). */
  writeBytes(pa: number, data: Uint8Array): void {
    this.checkRange(pa, data.length);
    this.counters.memBulkBytes += data.length;
    for (let i = 0; i < data.length; ) {
      const p = pa + i;
      const inChunk = Math.min(data.length - i, CHUNK_BYTES - (p % CHUNK_BYTES));
      const part = data.subarray(i, i + inChunk);
      const c = this.chunkFor(
        p,
        part.some((b) => b !== 0),
      );
      if (c !== null) new Uint8Array(c.buffer, c.byteOffset, CHUNK_BYTES).set(part, p % CHUNK_BYTES);
      i += inChunk;
    }
  }

  /** Physical addresses of every backed 2 MiB chunk, ascending (for exporters and tests). */
  backedChunks(): number[] {
    const out: number[] = [];
    for (const [g, dir] of this.dirs) {
      for (let s = 0; s < SLOTS_PER_GIB; s++) if (dir[s] !== null) out.push(g * GIB + s * CHUNK_BYTES);
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
