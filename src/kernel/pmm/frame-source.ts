/**
 * The PMM as a `FrameSource`: where page tables come from once memblock has retired (the boot's final
 * address space, process page tables, the heap's regions).
 */
import { cloneable } from "../../machine/clone.ts";
import type { FrameSource } from "../../machine/x86/mapper.ts";
import type { FrameAllocator } from "./interface.ts";

export class PmmFrames implements FrameSource {
  constructor(readonly pmm: FrameAllocator) {}
  allocFrame(): number {
    return this.pmm.alloc(0);
  }
  freeFrame(pfn: number): void {
    this.pmm.free(pfn, 0);
  }
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(PmmFrames);
