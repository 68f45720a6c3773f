/**
 * Slab caches for kmalloc's size classes (8 B .. 8 KiB), after Linux's SLUB (mm/slub.c), with every
 * byte of state in simulated RAM:
 *
 *   cache descriptor (64 bytes, in the kernel's data page):
 *     +0 partial list head u64   +8 full list head u64   +16 slabs u32   +20 empty slabs u32
 *     +24 active objects u32
 *
 *   slab header (at the start of the slab's first page; a slab is 2^order pages):
 *     +0 magic u32 (0x51ab0000 | cache index)   +4 inuse u32   +8 free list head u32 (object index,
 *     0xffffffff = none)   +12 on full list u32   +16 next u64   +24 prev u64   +32 self u64
 *     +40 pages u32        +64 bitmap of allocated objects (1 bit per object)
 *   then the objects, each in a slot: [red zone 8 B][object][red zone 8 B] (red zones optional).
 *
 * A free object holds the index of the next free object in its first word (SLUB's free pointer).
 * The bitmap makes double frees an O(1) check. With red zones on (SLUB debugging): red zones are 0xcc
 * while the object is allocated and 0xbb while free, and a free object's other bytes are 0x6b; kfree
 * checks the red zones and kmalloc checks the poison, so overflows and writes after free are caught
 * (HEAP_CORRUPTION, state unchanged); the checker verifies both for every object.
 *
 * Slabs with free objects sit on the partial list (front = most recently freed into); full slabs on
 * the full list (Linux keeps no full list without debugging: here it serves the checker). A cache
 * keeps `minPartial` empty slabs and returns further empty slabs' pages at once.
 *
 * Costs: kmalloc from a partial slab is about 8 word reads and 6 writes (no page-table work); a new
 * slab costs its pages, one owner-table insert per page and one write per object (the free chain).
 * With red zones, two 8-byte fills per operation and a poison check/fill of the object (bulk bytes).
 */
import { bare, blank, cloneable } from "../../machine/clone.ts";
import { fail, hex } from "../../errors.ts";
import type { Counters } from "../../machine/counters.ts";
import type { KPtr } from "../api.ts";
import type { KernelMem, KernelPages } from "./kmem.ts";
import { type OwnerTable, TAG_SLAB } from "./owners.ts";

export const SIZE_CLASSES = [8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192] as const;
export const CACHE_DESC_BYTES = 64;

const D_PARTIAL = 0;
const D_FULL = 8;
const D_SLABS = 16;
const D_EMPTY = 20;
const D_ACTIVE = 24;

const H_MAGIC = 0;
const H_INUSE = 4;
const H_FREE = 8;
const H_ONFULL = 12;
const H_NEXT = 16;
const H_PREV = 24;
const H_SELF = 32;
const H_PAGES = 40;
const H_BITMAP = 64;
const MAGIC = 0x51ab0000;
const NONE = 0xffffffff;

export const RED_ACTIVE = 0xcc;
export const RED_INACTIVE = 0xbb;
export const POISON_FREE = 0x6b;
const RZ = 8;

export class SlabCache {
  readonly name: string;
  readonly slot: number;
  readonly order: number;
  readonly pages: number;
  readonly objs: number;
  readonly objOffset: number;
  /** Left red zone (0 without red zones). */
  readonly rz: number;

  constructor(
    readonly index: number,
    readonly size: number,
    readonly desc: KPtr,
    private readonly kmem: KernelMem,
    private readonly kpages: KernelPages,
    private readonly owners: OwnerTable,
    private readonly counters: Counters,
    readonly redZones: boolean,
    private readonly minPartial: number,
  ) {
    if (blank()) bare(this); // a bare instance for a copy of the machine (machine/clone.ts)
    this.name = `kmalloc-${size >= 1024 ? `${size / 1024}k` : size}`;
    this.rz = redZones ? RZ : 0;
    this.slot = size + 2 * this.rz;
    let order = 0;
    let objs = 0;
    let off = 0;
    for (; order <= 3; order++) {
      const bytes = 4096 << order;
      objs = Math.floor((bytes - H_BITMAP) / this.slot);
      off = H_BITMAP + Math.ceil(objs / 32) * 4;
      off = Math.ceil(off / 16) * 16;
      objs = Math.floor((bytes - off) / this.slot);
      const waste = bytes - off - objs * this.slot;
      if (objs >= 4 && waste * 8 <= bytes) break;
      if (order === 3) break;
    }
    this.order = order;
    this.pages = 1 << order;
    this.objs = objs;
    this.objOffset = off;
  }

  /** Object pointer of index i in slab s. */
  objPtr(s: KPtr, i: number): KPtr {
    return s + this.objOffset + i * this.slot + this.rz;
  }

  /** Index of `ptr` in slab `s`, or -1 when it is not the start of an object. */
  indexOf(s: KPtr, ptr: KPtr): number {
    const rel = ptr - s - this.objOffset - this.rz;
    if (rel < 0 || rel % this.slot !== 0) return -1;
    const i = rel / this.slot;
    return i < this.objs ? i : -1;
  }

  alloc(): KPtr {
    const k = this.kmem;
    const d = this.desc;
    let s = k.read64(d + D_PARTIAL);
    if (s === 0) {
      s = this.newSlab();
      if (s === 0) return 0;
    }
    const idx = k.read32(s + H_FREE);
    const obj = this.objPtr(s, idx);
    if (this.redZones) this.checkFreeObject(s, idx, obj, "kmalloc");
    const next = k.read32(obj);
    k.write32(s + H_FREE, next);
    const bw = s + H_BITMAP + (idx >>> 5) * 4;
    k.write32(bw, (k.read32(bw) | (1 << (idx & 31))) >>> 0);
    const inuse = k.read32(s + H_INUSE) + 1;
    k.write32(s + H_INUSE, inuse);
    if (inuse === 1) k.write32(d + D_EMPTY, k.read32(d + D_EMPTY) - 1);
    if (inuse === this.objs) {
      this.unlink(s, D_PARTIAL);
      this.push(s, D_FULL);
      k.write32(s + H_ONFULL, 1);
    }
    k.write32(d + D_ACTIVE, k.read32(d + D_ACTIVE) + 1);
    if (this.redZones) {
      k.fill(obj - RZ, RZ, RED_ACTIVE);
      k.fill(obj + this.size, RZ, RED_ACTIVE);
    }
    this.counters.slabAllocs++;
    return obj;
  }

  /** Free object `idx` of slab `s` (the caller found them from the pointer). Checks first, then acts. */
  free(s: KPtr, idx: number, ptr: KPtr): void {
    const k = this.kmem;
    const d = this.desc;
    const bw = s + H_BITMAP + (idx >>> 5) * 4;
    const bits = k.read32(bw);
    if (((bits >>> (idx & 31)) & 1) === 0)
      fail("HEAP_BAD_FREE", `kfree(${hex(ptr)}): double free of object ${idx} of a ${this.name} slab`, {
        ptr,
      });
    if (this.redZones) {
      if (!k.isFilled(ptr - RZ, RZ, RED_ACTIVE) || !k.isFilled(ptr + this.size, RZ, RED_ACTIVE))
        fail(
          "HEAP_CORRUPTION",
          `kfree(${hex(ptr)}): red zone of a ${this.name} object overwritten (an overflow); not freed`,
          { ptr },
        );
    }
    k.write32(bw, (bits & ~(1 << (idx & 31))) >>> 0);
    k.write32(ptr, k.read32(s + H_FREE));
    k.write32(s + H_FREE, idx);
    if (this.redZones) {
      k.fill(ptr + 4, this.size - 4, POISON_FREE);
      k.fill(ptr - RZ, RZ, RED_INACTIVE);
      k.fill(ptr + this.size, RZ, RED_INACTIVE);
    }
    const inuse = k.read32(s + H_INUSE) - 1;
    k.write32(s + H_INUSE, inuse);
    k.write32(d + D_ACTIVE, k.read32(d + D_ACTIVE) - 1);
    if (k.read32(s + H_ONFULL) === 1) {
      this.unlink(s, D_FULL);
      this.push(s, D_PARTIAL);
      k.write32(s + H_ONFULL, 0);
    }
    this.counters.slabFrees++;
    if (inuse === 0) {
      const empty = k.read32(d + D_EMPTY) + 1;
      if (empty > this.minPartial) this.discard(s);
      else k.write32(d + D_EMPTY, empty);
    }
  }

  private checkFreeObject(s: KPtr, idx: number, obj: KPtr, what: string): void {
    const k = this.kmem;
    if (
      !k.isFilled(obj + 4, this.size - 4, POISON_FREE) ||
      !k.isFilled(obj - RZ, RZ, RED_INACTIVE) ||
      !k.isFilled(obj + this.size, RZ, RED_INACTIVE)
    ) {
      fail(
        "HEAP_CORRUPTION",
        `${what}: free object ${idx} of the ${this.name} slab at ${hex(s)} was written after it was freed`,
        { slab: s, idx },
      );
    }
  }

  private newSlab(): KPtr {
    const k = this.kmem;
    const s = this.kpages.alloc(this.pages);
    if (s === 0) return 0;
    const firstKey = Math.floor(s / 4096);
    try {
      for (let p = 0; p < this.pages; p++) this.owners.set(firstKey + p, s + TAG_SLAB);
    } catch (e) {
      for (let p = 0; p < this.pages; p++) this.owners.delete(firstKey + p);
      this.kpages.free(s, this.pages);
      throw e;
    }
    k.write32(s + H_MAGIC, (MAGIC | this.index) >>> 0);
    k.write32(s + H_INUSE, 0);
    k.write32(s + H_FREE, 0);
    k.write32(s + H_ONFULL, 0);
    k.write64(s + H_SELF, s);
    k.write32(s + H_PAGES, this.pages);
    k.fill(s + H_BITMAP, this.objOffset - H_BITMAP, 0);
    if (this.redZones) {
      k.fill(s + this.objOffset, this.objs * this.slot, POISON_FREE);
      for (let i = 0; i < this.objs; i++) {
        const o = this.objPtr(s, i);
        k.fill(o - RZ, RZ, RED_INACTIVE);
        k.fill(o + this.size, RZ, RED_INACTIVE);
      }
    }
    for (let i = 0; i < this.objs; i++) k.write32(this.objPtr(s, i), i + 1 < this.objs ? i + 1 : NONE);
    this.push(s, D_PARTIAL);
    const d = this.desc;
    k.write32(d + D_SLABS, k.read32(d + D_SLABS) + 1);
    k.write32(d + D_EMPTY, k.read32(d + D_EMPTY) + 1);
    this.counters.slabPagesAllocated += this.pages;
    return s;
  }

  /** Give an empty slab's pages back (its state is unlinked first: the free may start a shootdown). */
  private discard(s: KPtr): void {
    const k = this.kmem;
    const d = this.desc;
    this.unlink(s, D_PARTIAL);
    k.write32(d + D_SLABS, k.read32(d + D_SLABS) - 1);
    k.write32(s + H_MAGIC, 0);
    const firstKey = Math.floor(s / 4096);
    for (let p = 0; p < this.pages; p++) this.owners.delete(firstKey + p);
    this.counters.slabPagesFreed += this.pages;
    this.kpages.free(s, this.pages);
  }

  private push(s: KPtr, list: number): void {
    const k = this.kmem;
    const head = k.read64(this.desc + list);
    k.write64(s + H_NEXT, head);
    k.write64(s + H_PREV, 0);
    if (head !== 0) k.write64(head + H_PREV, s);
    k.write64(this.desc + list, s);
  }

  private unlink(s: KPtr, list: number): void {
    const k = this.kmem;
    const next = k.read64(s + H_NEXT);
    const prev = k.read64(s + H_PREV);
    if (prev === 0) k.write64(this.desc + list, next);
    else k.write64(prev + H_NEXT, next);
    if (next !== 0) k.write64(next + H_PREV, prev);
  }

  /** Descriptor counters (counted reads). */
  counts(): { slabs: number; empty: number; active: number } {
    const k = this.kmem;
    return {
      slabs: k.read32(this.desc + D_SLABS),
      empty: k.read32(this.desc + D_EMPTY),
      active: k.read32(this.desc + D_ACTIVE),
    };
  }

  /**
   * Checker (uncounted): list structure, headers, bitmaps against free chains, red zones and poison.
   * Calls `onSlab(s)` for every slab. Returns the first violation or null.
   */
  check(onSlab: (s: KPtr) => void): string | null {
    const k = this.kmem;
    const d = this.desc;
    let slabs = 0;
    let empty = 0;
    let active = 0;
    for (const list of [D_PARTIAL, D_FULL]) {
      let prev = 0;
      let steps = 0;
      for (let s = k.peek64(d + list); s !== 0; s = k.peek64(s + H_NEXT)) {
        if (++steps > 1 << 20) return `${this.name}: slab list does not end`;
        const where = `${this.name} slab ${hex(s)}`;
        if (k.peek32(s + H_MAGIC) !== (MAGIC | this.index) >>> 0) return `${where}: bad magic`;
        if (k.peek64(s + H_SELF) !== s) return `${where}: self pointer ${hex(k.peek64(s + H_SELF))}`;
        if (k.peek64(s + H_PREV) !== prev) return `${where}: prev link broken`;
        if (k.peek32(s + H_PAGES) !== this.pages) return `${where}: page count`;
        const r = this.checkSlab(s, list === D_FULL);
        if (r !== null) return `${where}: ${r}`;
        const inuse = k.peek32(s + H_INUSE);
        if (inuse === 0) empty++;
        active += inuse;
        slabs++;
        onSlab(s);
        prev = s;
      }
    }
    if (slabs !== k.peek32(d + D_SLABS))
      return `${this.name}: ${slabs} slabs on lists, descriptor says ${k.peek32(d + D_SLABS)}`;
    if (empty !== k.peek32(d + D_EMPTY))
      return `${this.name}: ${empty} empty slabs, descriptor says ${k.peek32(d + D_EMPTY)}`;
    if (active !== k.peek32(d + D_ACTIVE))
      return `${this.name}: ${active} objects in use, descriptor says ${k.peek32(d + D_ACTIVE)}`;
    if (empty > this.minPartial)
      return `${this.name}: ${empty} empty slabs kept (min_partial ${this.minPartial})`;
    return null;
  }

  private checkSlab(s: KPtr, onFull: boolean): string | null {
    const k = this.kmem;
    const inuse = k.peek32(s + H_INUSE);
    let set = 0;
    const allocated = new Uint8Array(this.objs);
    for (let i = 0; i < this.objs; i++) {
      if (((k.peek32(s + H_BITMAP + (i >>> 5) * 4) >>> (i & 31)) & 1) === 1) {
        allocated[i] = 1;
        set++;
      }
    }
    if (set !== inuse) return `bitmap has ${set} objects allocated, inuse says ${inuse}`;
    if ((k.peek32(s + H_ONFULL) === 1) !== onFull || onFull !== (inuse === this.objs))
      return `on the wrong list (inuse ${inuse} of ${this.objs})`;
    let free = 0;
    const seen = new Uint8Array(this.objs);
    for (let i = k.peek32(s + H_FREE); i !== NONE; ) {
      if (i >= this.objs) return `free chain points to object ${i} (of ${this.objs})`;
      if (seen[i] === 1) return `free chain loops at object ${i}`;
      if (allocated[i] === 1) return `object ${i} is both allocated and on the free chain`;
      seen[i] = 1;
      free++;
      i = k.peek32(this.objPtr(s, i));
    }
    if (free + inuse !== this.objs) return `${free} free + ${inuse} in use != ${this.objs} objects`;
    if (!this.redZones) return null;
    for (let i = 0; i < this.objs; i++) {
      const o = this.objPtr(s, i);
      const red = allocated[i] === 1 ? RED_ACTIVE : RED_INACTIVE;
      if (!peekFilled(k, o - RZ, RZ, red) || !peekFilled(k, o + this.size, RZ, red))
        return `red zone of object ${i} (${hex(o)}) overwritten`;
      if (allocated[i] === 0 && !peekFilled(k, o + 4, this.size - 4, POISON_FREE))
        return `free object ${i} (${hex(o)}) written after free`;
    }
    return null;
  }
}

function peekFilled(k: KernelMem, ptr: KPtr, bytes: number, byte: number): boolean {
  const w = ((byte & 0xff) * 0x01010101) >>> 0;
  for (let o = 0; o < bytes; o += 4) if (k.peek32(ptr + o) !== w) return false;
  return true;
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(SlabCache);
