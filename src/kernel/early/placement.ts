/**
 * The placement allocator of the classic osdev tutorials: a pointer to the "end of the kernel" that
 * is bumped past every allocation (the PMM bitmap first, then page tables), never freed, and never
 * able to skip a hole: everything must fit between the end of the kernel image and the end of the RAM
 * range that holds it. Kernel and allocations are marked used (reserved) as they go, so the handover
 * to the PMM works as with memblock.
 *
 * It is a mode of the early allocator (`pagelab boot --early placement`): same arrays in .bss, same
 * handover, but allocation is a bump from the kernel's end instead of a search of free memory, which is
 * all the tutorials need - until the metadata outgrows the first range. Then it fails and says by how
 * much (memblock would have found room above the hole).
 */
import type { OwnerKind } from "../owner.ts";
import { fail, hex } from "../../errors.ts";
import type { PhysPort } from "../../machine/phys-mem.ts";
import { Memblock } from "./memblock.ts";

export class PlacementAllocator extends Memblock {
  /** The placement pointer: the next free byte after the kernel and everything placed so far. */
  private next: number;

  constructor(
    port: PhysPort,
    base: number,
    kernelEnd: number,
    /** Exclusive end of the RAM range holding the kernel: the first hole above it. */
    readonly rangeEnd: number,
  ) {
    super(port, base, { bottomUp: true });
    this.next = kernelEnd;
  }

  override alloc(
    size: number,
    align: number,
    why: string,
    limit = this.limit,
    kind: OwnerKind = "allocated",
  ): number {
    const start = Math.ceil(this.next / align) * align;
    const end = Math.min(this.rangeEnd, limit);
    if (start + size > end) {
      fail(
        "PLACEMENT_OVERFLOW",
        `placement allocator: ${why} needs ${hex(size)} bytes at ${hex(start)}, but the RAM holding the kernel ends at ${hex(end)} ` +
          `(a hole follows): short by ${hex(start + size - end)}. A bump allocator cannot skip holes; use --early memblock.`,
      );
    }
    this.add("reserved", start, size);
    this.allocations.push({
      base: start,
      size,
      why: `${why} (placement: end of kernel bumped to ${hex(start + size)})`,
      kind,
    });
    this.next = start + size;
    return start;
  }

  override allocFrame(): number {
    return this.alloc(4096, 4096, this.purpose, this.limit, "page-table") / 4096;
  }

  get placementPointer(): number {
    return this.next;
  }
}
