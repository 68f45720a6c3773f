/**
 * `pool`: no direct map, and a kernel heap that owns its memory in bulk (the Windows non-paged pool
 * argument). At boot it is exactly `quickmap`: page tables and free frames are reached through the
 * per-CPU fixmap windows, the PMM's metadata through the metadata region. The difference shows once the
 * kernel runs (src/kernel/kernel.ts): the heap's pages come from the kernel pool
 * (src/kernel/heap/pool.ts), a virtual region whose backing grows 2 MiB at a time (one 2 MiB leaf when
 * the PMM has an aligned order-9 block, else 512 frames mapped one by one) and stays mapped. kfree
 * never unmaps, so it never costs a shootdown; the pool gives fully free 2 MiB chunks back to the PMM
 * only when another subsystem starves (`kernel.pmmAlloc` / `kernel.reclaim`), all of them at once,
 * with one shootdown for the whole batch.
 */
import { cloneable } from "../../machine/clone.ts";
import type { PhysPort } from "../../machine/phys-mem.ts";
import type { FrameSource, TableAccess } from "../../machine/x86/mapper.ts";
import { QuickmapStrategy } from "./quickmap.ts";
import { type Finalized, type KmapName, KmapStrategy } from "./strategy.ts";

export class PoolStrategy extends KmapStrategy {
  readonly name: KmapName = "pool";
  readonly summary =
    "no direct map (windows, as quickmap); the kernel heap grows a mapped pool 2 MiB at a time and gives it back in bulk";
  override readonly kernelPool = true;
  /** Boot is quickmap's, step for step (its windows, its metadata region, its port). */
  private readonly boot = new QuickmapStrategy();

  override prepare(ctx: Parameters<KmapStrategy["prepare"]>[0]): void {
    this.boot.prepare(ctx);
    this.ctx = ctx;
    this.bootMapper = this.boot.bootMapper;
  }

  protected bootAccess(): TableAccess {
    return this.boot.bootMapper.access;
  }

  override mapMetadata(pa: number, bytes: number): void {
    this.boot.mapMetadata(pa, bytes);
  }

  pmmPort(metaPa: number, bytes: number): PhysPort {
    return this.boot.pmmPort(metaPa, bytes);
  }

  finalize(frames: FrameSource, metaPa: number, metaBytes: number): Finalized {
    return this.boot.finalize(frames, metaPa, metaBytes);
  }
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(PoolStrategy);
