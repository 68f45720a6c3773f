/**
 * The kernel heap (`KernelHeap`): kmalloc/kfree over the slab caches (8 B .. 8 KiB), larger kmalloc
 * straight from the page allocator (2^order pages, Linux's kmalloc_large), vmalloc/vfree, and the
 * heap's invariant checker.
 *
 * kfree finds the owner of a pointer through the owner table (owners.ts): a slab (then the object
 * index must be exact: a pointer inside an object, a double free, or a free of a non-heap pointer is
 * HEAP_BAD_FREE, checked before anything is written), a large allocation (its first byte only), or a
 * vmalloc area (HEAP_BAD_FREE: use vfree). Every call runs on `current`'s CPU, through its TLB.
 *
 * The checker (`check`) reads everything uncounted: each cache's slabs (headers, lists, bitmaps,
 * free chains, red zones, poison), the owner table (every entry reachable; slab pages exactly those
 * of live slabs), no two allocations overlapping in address space or in frames, no heap frame on the
 * PMM's free lists, vmalloc areas mapped with their guard page unmapped, and the arenas' bitmaps
 * accounting for every page in use.
 */
import { bare, blank, cloneable } from "../../machine/clone.ts";
import { fail, hex } from "../../errors.ts";
import type { Counters } from "../../machine/counters.ts";
import type { Mapper } from "../../machine/x86/mapper.ts";
import type { HeapStats, KernelHeap, KPtr } from "../api.ts";
import type { FrameAllocator } from "../pmm/interface.ts";
import type { KernelFlusher, KernelMem, KernelPages, VaArena } from "./kmem.ts";
import { OwnerTable, TAG_LARGE, TAG_SLAB, TAG_VMALLOC } from "./owners.ts";
import { CACHE_DESC_BYTES, SIZE_CLASSES, SlabCache } from "./slab.ts";
import { Vmalloc } from "./vmalloc.ts";

export interface HeapDeps {
  kmem: KernelMem;
  kpages: KernelPages;
  mapper: Mapper;
  pmm: FrameAllocator;
  vmArena: VaArena;
  counters: Counters;
  flusher: KernelFlusher;
  /** Room for the cache descriptors (SIZE_CLASSES.length * 64 bytes, zeroed). */
  descs: KPtr;
}

export interface HeapConfig {
  redZones: boolean;
  minPartial: number;
  lazyPurge: boolean;
  lazyMaxPages: number;
}

export const KMALLOC_MAX_CACHE = 8192;

export class Heap implements KernelHeap {
  readonly caches: SlabCache[] = [];
  readonly owners: OwnerTable;
  readonly vm: Vmalloc;
  /** Size class index for sizes 1..192 by (size - 1) >> 3. */
  private readonly small = new Uint8Array(24);
  largeAllocs = 0;
  largePages = 0;

  constructor(
    private readonly d: HeapDeps,
    readonly cfg: HeapConfig,
  ) {
    if (blank()) bare(this); // a bare instance for a copy of the machine (machine/clone.ts)
    this.owners = new OwnerTable(d.kmem, d.kpages);
    SIZE_CLASSES.forEach((size, i) => {
      this.caches.push(
        new SlabCache(
          i,
          size,
          d.descs + i * CACHE_DESC_BYTES,
          d.kmem,
          d.kpages,
          this.owners,
          d.counters,
          cfg.redZones,
          cfg.minPartial,
        ),
      );
    });
    for (let b = 0; b < 24; b++) {
      const size = (b + 1) * 8;
      this.small[b] = SIZE_CLASSES.findIndex((s) => s >= size);
    }
    this.vm = new Vmalloc(
      {
        kmem: d.kmem,
        mapper: d.mapper,
        pmm: d.pmm,
        arena: d.vmArena,
        owners: this.owners,
        counters: d.counters,
        flusher: d.flusher,
        heap: this,
      },
      cfg.lazyPurge,
      cfg.lazyMaxPages,
    );
  }

  /** The cache serving `size` bytes (size <= 8192). */
  cacheFor(size: number): SlabCache {
    if (size <= 192) return this.caches[this.small[(size - 1) >>> 3]];
    let i = 7; // 256
    while (SIZE_CLASSES[i] < size) i++;
    return this.caches[i];
  }

  kmalloc(size: number): KPtr {
    if (!Number.isInteger(size) || size < 1)
      fail("BAD_SIZE", `kmalloc(${size}): the size must be a whole number of bytes, at least 1`);
    if (size <= KMALLOC_MAX_CACHE) return this.cacheFor(size).alloc();
    const pages = 2 ** Math.ceil(Math.log2(Math.ceil(size / 4096)));
    const ptr = this.d.kpages.alloc(pages);
    if (ptr === 0) return 0;
    try {
      this.owners.set(Math.floor(ptr / 4096), pages * 8 + TAG_LARGE);
    } catch (e) {
      this.d.kpages.free(ptr, pages);
      throw e;
    }
    this.largeAllocs++;
    this.largePages += pages;
    this.d.counters.largeAllocs++;
    return ptr;
  }

  /** The owner entry of a pointer being freed, or a clear error. */
  private owner(ptr: KPtr, what: string): number {
    if (!Number.isInteger(ptr) || ptr < 0 || ptr >= 2 ** 53)
      fail("HEAP_BAD_FREE", `${what}(${ptr}): not a kernel pointer`, { ptr });
    const v = this.owners.get(Math.floor(ptr / 4096));
    if (v === 0)
      fail(
        "HEAP_BAD_FREE",
        `${what}(${hex(ptr)}): not a heap pointer (no slab, large allocation or vmalloc area starts in its page)`,
        { ptr },
      );
    return v;
  }

  kfree(ptr: KPtr): void {
    if (ptr === 0) return;
    const v = this.owner(ptr, "kfree");
    const tag = v % 8;
    if (tag === TAG_SLAB) {
      const s = v - TAG_SLAB;
      const cache = this.caches[this.d.kmem.read32(s) & 0xffff];
      const idx = cache.indexOf(s, ptr);
      if (idx < 0) {
        const rel = ptr - s - cache.objOffset;
        const i = Math.floor(rel / cache.slot);
        fail(
          "HEAP_BAD_FREE",
          rel < 0 || i >= cache.objs
            ? `kfree(${hex(ptr)}): points into the header or tail of a ${cache.name} slab`
            : `kfree(${hex(ptr)}): points ${rel - i * cache.slot - cache.rz} bytes into object ${i} of a ${cache.name} slab, not at its start`,
          { ptr },
        );
      }
      cache.free(s, idx, ptr);
      return;
    }
    if (tag === TAG_VMALLOC)
      fail("HEAP_BAD_FREE", `kfree(${hex(ptr)}): this is a vmalloc area; free it with vfree`, { ptr });
    if (ptr % 4096 !== 0)
      fail("HEAP_BAD_FREE", `kfree(${hex(ptr)}): points inside a large kmalloc allocation`, { ptr });
    const pages = Math.floor(v / 8);
    this.owners.delete(Math.floor(ptr / 4096));
    this.largeAllocs--;
    this.largePages -= pages;
    this.d.counters.largeFrees++;
    this.d.kpages.free(ptr, pages);
  }

  ksize(ptr: KPtr): number {
    const v = this.owner(ptr, "ksize");
    const tag = v % 8;
    if (tag === TAG_SLAB) {
      const s = v - TAG_SLAB;
      const cache = this.caches[this.d.kmem.read32(s) & 0xffff];
      if (cache.indexOf(s, ptr) < 0) fail("HEAP_BAD_FREE", `ksize(${hex(ptr)}): not the start of an object`);
      return cache.size;
    }
    return Math.floor(v / 8) * 4096;
  }

  vmalloc(bytes: number): KPtr {
    return this.vm.alloc(bytes);
  }

  vfree(ptr: KPtr): void {
    if (ptr === 0) return;
    const v = this.owner(ptr, "vfree");
    if (v % 8 !== TAG_VMALLOC)
      fail("HEAP_BAD_FREE", `vfree(${hex(ptr)}): this is a kmalloc allocation; free it with kfree`, { ptr });
    this.vm.free(ptr, Math.floor(v / 8));
  }

  purgeLazy(): void {
    this.vm.purge();
  }

  read32(ptr: KPtr, off: number): number {
    return this.d.kmem.read32(ptr + off);
  }

  write32(ptr: KPtr, off: number, value: number): void {
    this.d.kmem.write32(ptr + off, value >>> 0);
  }

  check(): void {
    const k = this.d.kmem;
    k.beginPeek();
    try {
      const err = this.checkAll();
      if (err !== null) fail("HEAP_INVARIANT", err);
    } finally {
      k.endPeek();
    }
  }

  private checkAll(): string | null {
    const k = this.d.kmem;
    const slabOf = new Map<number, KPtr>();
    for (const c of this.caches) {
      const e = c.check((s) => {
        for (let p = 0; p < c.pages; p++) slabOf.set(Math.floor(s / 4096) + p, s);
      });
      if (e !== null) return e;
    }
    const probe = this.owners.peekProbeCheck();
    if (probe !== null) return probe;
    // Every allocation as an interval of pointer pages: [key, key + pages (+ guard)).
    const iv: [number, number, string][] = [];
    let slabEntries = 0;
    let large = 0;
    let largePages = 0;
    let areas = 0;
    let vmPages = 0;
    let bad: string | null = null;
    this.owners.peekAll((key, v) => {
      if (bad !== null) return;
      const tag = v % 8;
      if (tag === TAG_SLAB) {
        if (slabOf.get(key) !== v - TAG_SLAB)
          bad = `owner table: page ${hex(key * 4096)} names slab ${hex(v - 1)}, which is not live there`;
        slabEntries++;
        iv.push([key, key + 1, "slab"]);
      } else if (tag === TAG_LARGE) {
        const n = Math.floor(v / 8);
        large++;
        largePages += n;
        iv.push([key, key + n, "large kmalloc"]);
      } else if (tag === TAG_VMALLOC) {
        const n = Math.floor(v / 8);
        areas++;
        vmPages += n;
        iv.push([key, key + n + 1, "vmalloc area"]);
        for (let i = 0; i < n; i++)
          if (k.peekFrame((key + i) * 4096) < 0)
            bad = `vmalloc area ${hex(key * 4096)}: page ${i} is not mapped`;
        if (k.peekFrame((key + n) * 4096) >= 0)
          bad = `vmalloc area ${hex(key * 4096)}: its guard page is mapped`;
      } else bad = `owner table: bad tag in value ${v} for page ${hex(key * 4096)}`;
    });
    if (bad !== null) return bad;
    if (slabEntries !== slabOf.size)
      return `owner table has ${slabEntries} slab pages, the caches hold ${slabOf.size}`;
    if (large !== this.largeAllocs || largePages !== this.largePages)
      return `large kmalloc: ${large} allocations of ${largePages} pages in the owner table, registers say ${this.largeAllocs}/${this.largePages}`;
    if (areas !== this.vm.areas || vmPages !== this.vm.pages)
      return `vmalloc: ${areas} areas of ${vmPages} pages in the owner table, registers say ${this.vm.areas}/${this.vm.pages}`;
    iv.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < iv.length; i++)
      if (iv[i][0] < iv[i - 1][1])
        return `${iv[i - 1][2]} at ${hex(iv[i - 1][0] * 4096)} overlaps ${iv[i][2]} at ${hex(iv[i][0] * 4096)}`;
    return this.checkFrames(iv) ?? this.checkArenas();
  }

  /** No frame backs two allocations; no heap frame is free in the PMM. */
  private checkFrames(iv: [number, number, string][]): string | null {
    const k = this.d.kmem;
    const frames: number[] = [];
    for (const [a, b, what] of iv) {
      const end = what === "vmalloc area" ? b - 1 : b;
      for (let p = a; p < end; p++) {
        const f = k.peekFrame(p * 4096);
        if (f < 0) return `${what} at ${hex(a * 4096)}: page ${p - a} is not mapped`;
        frames.push(f);
      }
    }
    frames.sort((x, y) => x - y);
    for (let i = 1; i < frames.length; i++)
      if (frames[i] === frames[i - 1]) return `frame ${hex(frames[i] * 4096)} backs two heap allocations`;
    let bad: string | null = null;
    this.d.pmm.forEachFree?.((pfn, count) => {
      if (bad !== null) return;
      let lo = 0;
      let hi = frames.length;
      while (lo < hi) {
        const m = (lo + hi) >>> 1;
        if (frames[m] < pfn) lo = m + 1;
        else hi = m;
      }
      if (lo < frames.length && frames[lo] < pfn + count)
        bad = `heap frame ${hex(frames[lo] * 4096)} is on the PMM's free lists`;
    });
    return bad;
  }

  private checkArenas(): string | null {
    const a = this.d.vmArena;
    let lazy = 0;
    this.vm.peekLazy((first, n) => {
      lazy += n;
      void first;
    });
    const expectVm = a.bitmapPages + this.vm.pages + this.vm.areas + lazy;
    if (a.usedPages !== expectVm)
      return `vmalloc arena: ${a.usedPages} pages in use, areas + guards + pending purges + bitmap make ${expectVm}`;
    const h = this.d.kpages.arena;
    if (h.usedPages !== h.bitmapPages + this.d.kpages.regionPages)
      return `kernel heap region: ${h.usedPages} pages in use, ${this.d.kpages.regionPages} mapped + ${h.bitmapPages} bitmap`;
    const used = a.peekCountUsed();
    if (used !== a.usedPages)
      return `vmalloc arena bitmap has ${used} pages set, register says ${a.usedPages}`;
    return null;
  }

  stats(): HeapStats {
    const k = this.d.kmem;
    k.beginPeek();
    try {
      let slabPages = 0;
      let headerBytes = 0;
      const caches = this.caches.map((c) => {
        const slabs = k.peek32(c.desc + 16);
        slabPages += slabs * c.pages;
        headerBytes += slabs * c.objOffset;
        return {
          name: c.name,
          objSize: c.size,
          slotSize: c.slot,
          order: c.order,
          objsPerSlab: c.objs,
          slabs,
          activeObjs: k.peek32(c.desc + 24),
        };
      });
      return {
        caches,
        slabPages,
        largeAllocs: this.largeAllocs,
        largePages: this.largePages,
        vmallocAreas: this.vm.areas,
        vmallocPages: this.vm.pages,
        lazyPages: this.vm.lazyPages,
        kheapPages: this.d.kpages.regionPages,
        metadataBytes:
          headerBytes +
          this.owners.bytes +
          (this.d.vmArena.bitmapPages + this.d.kpages.arena.bitmapPages) * 4096 +
          this.caches.length * CACHE_DESC_BYTES,
      };
    } finally {
      k.endPeek();
    }
  }
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(Heap);
