/**
 * A growable kernel virtual region on real page tables: the `GrowableRegion` the free-page stack PMM
 * lives in. Its tables are pre-wired when it is created (at boot, from the early allocator: one page
 * table per 2 MiB of region), so growing it never needs a frame: `grow(pfn)` writes one PTE that maps
 * the frame being freed as the region's next page, and `shrink()` clears the last PTE, INVLPGs it and
 * gives the frame back. Reads and writes are CPU loads and stores at the region's virtual addresses.
 */
import { bare, blank, cloneable } from "../../machine/clone.ts";
import { fail, hex } from "../../errors.ts";
import type { Current } from "../percpu.ts";
import type { Flush, Mapper } from "../../machine/x86/mapper.ts";
import { peekWalk } from "../../machine/x86/mmu.ts";
import { PAGE_4K } from "../../machine/x86/pte.ts";
import type { GrowableRegion } from "../pmm/interface.ts";

export class MappedRegion implements GrowableRegion {
  mappedBytes = 0;
  /**
   * What to do with the flush of a page taken back by `shrink`: invalidate on the current CPU when
   * null (the default); an SMP kernel installs its shootdown here.
   */
  flusher: { flushKernelAtomic(f: Flush): void } | null = null;
  /** Page-table pages created to pre-wire the region. */
  readonly tables: number;

  constructor(
    readonly cur: Current,
    public mapper: Mapper,
    readonly name: string,
    readonly vpnBase: number,
    readonly maxBytes: number,
  ) {
    if (blank()) bare(this); // a bare instance for a copy of the machine (machine/clone.ts)
    this.tables = mapper.prewire(vpnBase, Math.ceil(maxBytes / 4096));
  }

  read32(offset: number): number {
    if (offset >= this.mappedBytes) this.unmapped(offset);
    return this.cur.cpu.load32(this.vpnBase + Math.floor(offset / 4096), offset % 4096);
  }

  write32(offset: number, value: number): void {
    if (offset >= this.mappedBytes) this.unmapped(offset);
    this.cur.cpu.store32(this.vpnBase + Math.floor(offset / 4096), offset % 4096, value);
  }

  /** Word loads within one page of the region, counted as `read32` each. */
  readWords(offset: number, dst: Uint32Array, from: number, n: number): void {
    if (offset + 4 * n > this.mappedBytes) this.unmapped(offset + 4 * n - 4);
    this.cur.cpu.load32Run(this.vpnBase + Math.floor(offset / 4096), offset % 4096, dst, from, n);
  }

  /** Word stores within one page of the region, counted as `write32` each. */
  writeWords(offset: number, src: Uint32Array, from: number, n: number): void {
    if (offset + 4 * n > this.mappedBytes) this.unmapped(offset + 4 * n - 4);
    this.cur.cpu.store32Run(this.vpnBase + Math.floor(offset / 4096), offset % 4096, src, from, n);
  }

  grow(pfn: number): void {
    if (this.mappedBytes + 4096 > this.maxBytes) {
      fail("REGION_FULL", `region ${this.name} cannot grow beyond ${hex(this.maxBytes)} bytes`);
    }
    // A fresh mapping of a never-present page: nothing stale can be cached, no flush needed.
    this.mapper
      .map(this.vpnBase + this.mappedBytes / 4096, pfn, PAGE_4K, { write: true, nx: true, global: true })
      .ignore();
    this.mappedBytes += 4096;
  }

  shrink(): number {
    if (this.mappedBytes === 0) fail("REGION_EMPTY", `region ${this.name} has no page to give back`);
    this.mappedBytes -= 4096;
    const u = this.mapper.unmap(this.vpnBase + this.mappedBytes / 4096, { keepTables: true });
    if (this.flusher !== null) this.flusher.flushKernelAtomic(u.flush);
    else u.flush.apply(this.cur.cpu);
    return u.base;
  }

  pageFrame(i: number): number {
    const r = peekWalk(this.cur.cpu, this.vpnBase + i);
    return r === null ? -1 : r.pfn;
  }

  private unmapped(offset: number): never {
    fail(
      "REGION_FAULT",
      `region ${this.name}: offset ${hex(offset)} is beyond the ${hex(this.mappedBytes)} bytes mapped`,
    );
  }
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(MappedRegion);
