/**
 * Which heap allocation owns a page: the kernel heap's stand-in for Linux's struct page / folio
 * (virt_to_slab, folio_test_large_kmalloc, find_vmap_area). An open-addressing hash table in simulated
 * RAM, keyed by a pointer's page number (`floor(ptr / 4096)`, below 2^41), 16 bytes per entry:
 *
 *   +0 key + 1 (u64; 0 = empty)    +8 value (u64): owner pointer or size, tagged in the low 3 bits
 *
 * Tags: SLAB (value = slab header pointer + 1; every page of the slab has an entry), LARGE (value =
 * pages * 8 + 2; the first page only), VMALLOC (pages * 8 + 3; the first page only).
 *
 * Linear probing with Fibonacci hashing; deletion by backward shift (no tombstones). Grows (doubling,
 * rehash through the kernel's mappings) when more than half full. Cost: one or two probes (4 word
 * reads each) per lookup at load <= 1/2. Its pages come straight from `KernelPages` and are not
 * themselves registered.
 */
import { bare, blank, cloneable } from "../../machine/clone.ts";
import { fail } from "../../errors.ts";
import type { KPtr } from "../api.ts";
import type { KernelMem, KernelPages } from "./kmem.ts";

export const TAG_SLAB = 1;
export const TAG_LARGE = 2;
export const TAG_VMALLOC = 3;

const INITIAL_LOG2 = 10;

export class OwnerTable {
  /** Registers: the table's pointer, log2 of its capacity, live entries. */
  private table: KPtr = 0;
  private log2 = INITIAL_LOG2;
  count = 0;

  constructor(
    private readonly kmem: KernelMem,
    private readonly pages: KernelPages,
  ) {
    if (blank()) bare(this); // a bare instance for a copy of the machine (machine/clone.ts)
    this.table = this.newTable(INITIAL_LOG2);
  }

  get capacity(): number {
    return 2 ** this.log2;
  }

  /** Bytes of the table (metadata). */
  get bytes(): number {
    return this.capacity * 16;
  }

  private newTable(log2: number): KPtr {
    const t = this.pages.alloc((2 ** log2 * 16) / 4096, true);
    if (t === 0) fail("OUT_OF_MEMORY", "no pages for the heap's owner table");
    return t;
  }

  private slot(key: number): number {
    return slotIn(key, this.log2);
  }

  /** Value for page `key`, or 0. */
  get(key: number): number {
    const k = this.kmem;
    const mask = this.capacity - 1;
    let i = this.slot(key);
    const want = key + 1;
    for (;;) {
      const e = this.table + i * 16;
      const stored = k.read64(e);
      if (stored === 0) return 0;
      if (stored === want) return k.read64(e + 8);
      i = (i + 1) & mask;
    }
  }

  /** Insert or replace. May grow the table (throws OUT_OF_MEMORY if it cannot). */
  set(key: number, value: number): void {
    if ((this.count + 1) * 2 > this.capacity) this.grow();
    if (this.put(this.table, this.log2, key, value)) this.count++;
  }

  private put(table: KPtr, log2: number, key: number, value: number): boolean {
    const k = this.kmem;
    const mask = 2 ** log2 - 1;
    let i = slotIn(key, log2);
    const want = key + 1;
    for (;;) {
      const e = table + i * 16;
      const stored = k.read64(e);
      if (stored === 0 || stored === want) {
        k.write64(e, want);
        k.write64(e + 8, value);
        return stored === 0;
      }
      i = (i + 1) & mask;
    }
  }

  private grow(): void {
    const old = this.table;
    const oldCap = this.capacity;
    const log2 = this.log2 + 1;
    const t = this.newTable(log2);
    const k = this.kmem;
    for (let i = 0; i < oldCap; i++) {
      const e = old + i * 16;
      const stored = k.read64(e);
      if (stored !== 0) this.put(t, log2, stored - 1, k.read64(e + 8));
    }
    this.table = t;
    this.log2 = log2;
    this.pages.free(old, (oldCap * 16) / 4096);
  }

  /** Remove page `key` (backward-shift deletion). Returns false if absent. */
  delete(key: number): boolean {
    const k = this.kmem;
    const mask = this.capacity - 1;
    let i = this.slot(key);
    const want = key + 1;
    for (;;) {
      const stored = k.read64(this.table + i * 16);
      if (stored === 0) return false;
      if (stored === want) break;
      i = (i + 1) & mask;
    }
    // Shift later entries of the cluster back into the hole when their home slot allows it.
    let hole = i;
    let j = (i + 1) & mask;
    for (;;) {
      const e = this.table + j * 16;
      const stored = k.read64(e);
      if (stored === 0) break;
      const home = this.slot(stored - 1);
      const dist = (j - home) & mask;
      const holeDist = (j - hole) & mask;
      if (dist >= holeDist) {
        k.write64(this.table + hole * 16, stored);
        k.write64(this.table + hole * 16 + 8, k.read64(e + 8));
        hole = j;
      }
      j = (j + 1) & mask;
    }
    k.write64(this.table + hole * 16, 0);
    k.write64(this.table + hole * 16 + 8, 0);
    this.count--;
    return true;
  }

  /** Checker: every entry, uncounted. */
  peekAll(fn: (key: number, value: number) => void): void {
    for (let i = 0; i < this.capacity; i++) {
      const stored = this.kmem.peek64(this.table + i * 16);
      if (stored !== 0) fn(stored - 1, this.kmem.peek64(this.table + i * 16 + 8));
    }
  }

  /** Checker: every entry is reachable from its home slot (no hole before it). */
  peekProbeCheck(): string | null {
    const mask = this.capacity - 1;
    for (let i = 0; i < this.capacity; i++) {
      const stored = this.kmem.peek64(this.table + i * 16);
      if (stored === 0) continue;
      for (let j = this.slot(stored - 1); j !== i; j = (j + 1) & mask) {
        if (this.kmem.peek64(this.table + j * 16) === 0)
          return `owner table: entry for page ${stored - 1} at slot ${i} is cut off from its home slot`;
      }
    }
    return null;
  }
}

/** Fibonacci hash of a page number below 2^41 into 2^log2 slots. */
function slotIn(key: number, log2: number): number {
  const lo = key >>> 0;
  const hi = Math.floor(key / 4294967296);
  const h = Math.imul(lo ^ Math.imul(hi, 0x85ebca6b), 0x9e3779b1) >>> 0;
  return h >>> (32 - log2);
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(OwnerTable);
