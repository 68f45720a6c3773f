/**
 * A simulated `GrowableRegion`: a kernel virtual region grown and shrunk one page at a time, backed by
 * the frames the design hands it, read and written through the `PhysPort`.
 *
 * The small JS array of backing frames STANDS IN FOR PAGE TABLES: a real kernel maps each new page of
 * the region with a PTE (and unmaps it with an INVLPG), so the translation of a region offset is a page
 * walk or a TLB hit. Until the boot sequence provides a region built on the kernel's page tables, this
 * one translates for free; only the data accesses go through the port (and are counted there).
 */
import { fail, hex } from "../../errors.ts";
import { type PhysPort, readWords, writeWords } from "../../machine/phys-mem.ts";
import type { GrowableRegion } from "./interface.ts";

export class SimRegion implements GrowableRegion {
  mappedBytes = 0;
  private readonly frames: number[] = [];

  constructor(
    private readonly port: PhysPort,
    readonly name: string,
    readonly maxBytes: number,
  ) {}

  read32(offset: number): number {
    if (offset >= this.mappedBytes) this.unmapped(offset);
    return this.port.read32(this.frames[offset >>> 12] * 4096 + (offset & 4095));
  }

  write32(offset: number, value: number): void {
    if (offset >= this.mappedBytes) this.unmapped(offset);
    this.port.write32(this.frames[offset >>> 12] * 4096 + (offset & 4095), value);
  }

  readWords(offset: number, dst: Uint32Array, from: number, n: number): void {
    if (offset + 4 * n > this.mappedBytes) this.unmapped(offset + 4 * n - 4);
    readWords(this.port, this.frames[offset >>> 12] * 4096 + (offset & 4095), dst, from, n);
  }

  writeWords(offset: number, src: Uint32Array, from: number, n: number): void {
    if (offset + 4 * n > this.mappedBytes) this.unmapped(offset + 4 * n - 4);
    writeWords(this.port, this.frames[offset >>> 12] * 4096 + (offset & 4095), src, from, n);
  }

  grow(pfn: number): void {
    if (this.mappedBytes + 4096 > this.maxBytes) {
      fail("REGION_FULL", `region ${this.name} cannot grow beyond ${hex(this.maxBytes)} bytes`);
    }
    this.frames.push(pfn);
    this.mappedBytes += 4096;
  }

  shrink(): number {
    if (this.mappedBytes === 0) fail("REGION_EMPTY", `region ${this.name} has no page to unmap`);
    this.mappedBytes -= 4096;
    return this.frames.pop()!;
  }

  pageFrame(i: number): number {
    return this.frames[i];
  }

  private unmapped(offset: number): never {
    return fail(
      "REGION_FAULT",
      `region ${this.name}: offset ${hex(offset)} is beyond the mapped ${hex(this.mappedBytes)}`,
    );
  }
}

/** A region factory for `PmmEnv.region`. */
export function simRegions(port: PhysPort): (name: string, maxBytes: number) => GrowableRegion {
  return (name, maxBytes) => new SimRegion(port, name, maxBytes);
}
