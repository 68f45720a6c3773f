/**
 * The early allocator, after Linux's memblock (mm/memblock.c): two sorted arrays of physical ranges,
 * `memory` (RAM the firmware says exists) and `reserved` (what is in use: kernel image, boot tables,
 * firmware data, and every allocation memblock made). Free memory is `memory` minus `reserved`;
 * allocation picks the highest (top-down, the default) or lowest (bottom-up) free block below the
 * current limit that fits, and reserves it.
 *
 * Like Linux's static `memblock_memory_init_regions[]`, the arrays live in the kernel image's .bss, in
 * simulated RAM, reached through the port the kernel uses for its image; only the array base, the
 * direction and the limit are JS registers. Layout at `base`:
 *
 *   +0      u64 memory.cnt    +8 u64 reserved.cnt
 *   +16     memory.regions[MAX]    { u64 base; u64 size; u32 nid; u32 flags }  (24 bytes each)
 *   +16+24*MAX  reserved.regions[MAX]
 *
 * When the PMM takes over, `freeRanges()` is what memblock_free_all() hands it: memory minus reserved.
 */
import { bare, blank, cloneable } from "../../machine/clone.ts";
import type { OwnerKind } from "../owner.ts";
import { fail, hex } from "../../errors.ts";
import { type PhysPort, read64, write64 } from "../../machine/phys-mem.ts";
import type { FrameSource } from "../../machine/x86/mapper.ts";

export const MEMBLOCK_MAX_REGIONS = 128;
const REGION_BYTES = 24;
export const MEMBLOCK_BYTES = 16 + 2 * MEMBLOCK_MAX_REGIONS * REGION_BYTES;

export type MemblockType = "memory" | "reserved";

export interface MemblockRange {
  base: number;
  size: number;
  nid: number;
}

export interface MemblockAllocation {
  base: number;
  size: number;
  why: string;
  /** What the block is for (typed, for checks and pictures). */
  kind: OwnerKind;
}

export class Memblock implements FrameSource {
  /** Allocate from the top (Linux's default) or from the bottom (memblock_set_bottom_up). */
  bottomUp: boolean;
  /** Exclusive physical limit for allocations (memblock.current_limit). */
  limit: number;
  /** A log of every allocation, for the boot narrative. */
  readonly allocations: MemblockAllocation[] = [];
  /** Reason attached to the next allocFrame() calls (set by the caller around a phase): page tables. */
  purpose = "page table";
  retired = false;

  constructor(
    readonly port: PhysPort,
    readonly base: number,
    opts: { bottomUp?: boolean; limit?: number } = {},
  ) {
    if (blank()) bare(this); // a bare instance for a copy of the machine (machine/clone.ts)
    this.bottomUp = opts.bottomUp ?? false;
    this.limit = opts.limit ?? 2 ** 52;
    write64(port, base, 0);
    write64(port, base + 8, 0);
  }

  private arrayBase(t: MemblockType): number {
    return this.base + 16 + (t === "memory" ? 0 : MEMBLOCK_MAX_REGIONS * REGION_BYTES);
  }

  private count(t: MemblockType): number {
    return read64(this.port, this.base + (t === "memory" ? 0 : 8));
  }

  private setCount(t: MemblockType, n: number): void {
    write64(this.port, this.base + (t === "memory" ? 0 : 8), n);
  }

  /** The ranges of one type, read from simulated RAM. */
  ranges(t: MemblockType): MemblockRange[] {
    const n = this.count(t);
    const a = this.arrayBase(t);
    const out: MemblockRange[] = [];
    for (let i = 0; i < n; i++) {
      const p = a + i * REGION_BYTES;
      out.push({ base: read64(this.port, p), size: read64(this.port, p + 8), nid: this.port.read32(p + 16) });
    }
    return out;
  }

  private store(t: MemblockType, list: MemblockRange[]): void {
    if (list.length > MEMBLOCK_MAX_REGIONS) {
      fail(
        "MEMBLOCK_FULL",
        `memblock.${t} needs ${list.length} regions, the static array holds ${MEMBLOCK_MAX_REGIONS}`,
      );
    }
    const a = this.arrayBase(t);
    list.forEach((r, i) => {
      const p = a + i * REGION_BYTES;
      write64(this.port, p, r.base);
      write64(this.port, p + 8, r.size);
      this.port.write32(p + 16, r.nid);
      this.port.write32(p + 20, 0);
    });
    this.setCount(t, list.length);
  }

  /** memblock_add / memblock_reserve: insert [base, base+size), merging overlapping or adjacent ranges of the same node. */
  add(t: MemblockType, base: number, size: number, nid = 0): void {
    this.live();
    if (
      !Number.isInteger(base) ||
      !Number.isInteger(size) ||
      base < 0 ||
      size <= 0 ||
      base + size > 2 ** 52
    ) {
      fail(
        "BAD_RANGE",
        `memblock_${t === "memory" ? "add" : "reserve"}: bad range ${hex(base)}+${hex(size)}`,
      );
    }
    const list = this.ranges(t);
    list.push({ base, size, nid });
    list.sort((x, y) => x.base - y.base);
    const merged: MemblockRange[] = [];
    for (const r of list) {
      const last = merged[merged.length - 1];
      if (last && last.nid === r.nid && r.base <= last.base + last.size) {
        last.size = Math.max(last.size, r.base + r.size - last.base);
      } else merged.push({ ...r });
    }
    this.store(t, merged);
  }

  reserve(base: number, size: number, why: string, kind: OwnerKind = "reserved"): void {
    this.add("reserved", base, size);
    this.allocations.push({ base, size, why: `reserved: ${why}`, kind });
  }

  /** Free memory: memory minus reserved, ascending (for_each_free_mem_range). */
  freeRanges(): MemblockRange[] {
    const mem = this.ranges("memory");
    const res = this.ranges("reserved");
    const out: MemblockRange[] = [];
    for (const m of mem) {
      let s = m.base;
      const e = m.base + m.size;
      for (const r of res) {
        const re = r.base + r.size;
        if (re <= s || r.base >= e) continue;
        if (r.base > s) out.push({ base: s, size: r.base - s, nid: m.nid });
        s = Math.max(s, re);
      }
      if (s < e) out.push({ base: s, size: e - s, nid: m.nid });
    }
    return out;
  }

  /**
   * memblock_phys_alloc_range: the highest (or lowest, bottom-up) block of `size` bytes aligned to
   * `align` in free memory below the limit; reserved and returned. -1 when nothing fits.
   */
  alloc(size: number, align: number, why: string, limit = this.limit, kind: OwnerKind = "allocated"): number {
    this.live();
    if (size <= 0 || align <= 0 || (align & (align - 1)) !== 0)
      fail("BAD_RANGE", `memblock_alloc: size ${size}, align ${align}`);
    const free = this.freeRanges();
    if (this.bottomUp) {
      for (const f of free) {
        const start = Math.ceil(f.base / align) * align;
        if (start + size <= f.base + f.size && start + size <= limit)
          return this.take(start, size, why, kind);
      }
    } else {
      for (let i = free.length - 1; i >= 0; i--) {
        const f = free[i];
        const top = Math.min(f.base + f.size, limit);
        const start = Math.floor((top - size) / align) * align;
        if (start >= f.base && top - size >= 0) return this.take(start, size, why, kind);
      }
    }
    return -1;
  }

  private take(base: number, size: number, why: string, kind: OwnerKind): number {
    this.add("reserved", base, size);
    this.allocations.push({ base, size, why, kind });
    return base;
  }

  /** FrameSource: one 4 KiB frame (for page tables), or -1. */
  allocFrame(): number {
    const pa = this.alloc(4096, 4096, this.purpose, this.limit, "page-table");
    return pa < 0 ? -1 : pa / 4096;
  }

  freeFrame(pfn: number): void {
    fail(
      "MEMBLOCK_FREE",
      `memblock cannot take back frame ${hex(pfn)} during boot (memblock_free is not modelled)`,
    );
  }

  /** Total bytes in a list of ranges. */
  static bytes(list: MemblockRange[]): number {
    return list.reduce((s, r) => s + r.size, 0);
  }

  /** memblock_free_all(): from here on the PMM owns free memory; memblock refuses to allocate. */
  retire(): MemblockRange[] {
    const free = this.freeRanges();
    this.retired = true;
    return free;
  }

  private live(): void {
    if (this.retired) fail("MEMBLOCK_RETIRED", "memblock was retired: the PMM owns physical memory now");
  }
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(Memblock);
