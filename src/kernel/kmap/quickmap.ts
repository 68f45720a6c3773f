/**
 * `quickmap`: no direct map at all. To touch a page table or a free frame the kernel points one of its
 * per-CPU fixmap windows at it (two stores into the fixmap page table, which lives in the kernel's
 * .bss) and INVLPGs the window; slot 0 is for data, slot 1 for page tables, so the two uses do not evict
 * each other. Only the PMM's metadata gets a mapping of its own (the metadata region). Little of RAM is
 * readable through kernel mappings at any moment; every touch of a new frame costs a remap.
 */
import { cloneable } from "../../machine/clone.ts";
import type { PhysPort } from "../../machine/phys-mem.ts";
import { type FrameSource, PortTableAccess, type TableAccess } from "../../machine/x86/mapper.ts";
import { LinearPort, RoutedPort } from "./ports.ts";
import { type Finalized, type KmapName, KmapStrategy } from "./strategy.ts";

export class QuickmapStrategy extends KmapStrategy {
  readonly name: KmapName = "quickmap";
  readonly summary = "no direct map: per-CPU temporary windows (fixmap) with an INVLPG per remap";
  private port: PhysPort | null = null;

  protected bootAccess(): TableAccess {
    return new PortTableAccess(this.window(1));
  }

  pmmPort(metaPa: number, bytes: number): PhysPort {
    if (this.port === null) {
      const meta = new LinearPort(this.ctx.cur, this.ctx.layout.metadata, metaPa, bytes, "PMM metadata");
      this.port = new RoutedPort(bytes > 0 ? [meta] : [], this.window(0));
    }
    return this.port;
  }

  finalize(frames: FrameSource, metaPa: number, metaBytes: number): Finalized {
    const root = this.newRootWithKernelHalf(frames, this.window(1));
    this.ctx.cur.cpu.writeCr3(root);
    return { root, access: new PortTableAccess(this.window(1)), port: this.pmmPort(metaPa, metaBytes) };
  }
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(QuickmapStrategy);
