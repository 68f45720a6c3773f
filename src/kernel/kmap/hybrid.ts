/**
 * `hybrid`: a direct map of the low part of physical memory only (below 4 GiB by default, like a
 * 32-bit kernel's lowmem), and per-CPU temporary windows for every frame above it (highmem's kmap).
 * The PMM metadata is placed below the limit so that it is always reachable through the direct map.
 */
import { cloneable } from "../../machine/clone.ts";
import type { PhysPort } from "../../machine/phys-mem.ts";
import { type FrameSource, PortTableAccess } from "../../machine/x86/mapper.ts";
import { DirectStrategy } from "./direct.ts";
import { RoutedPort } from "./ports.ts";
import type { Finalized, KmapName } from "./strategy.ts";

export class HybridStrategy extends DirectStrategy {
  override readonly name: KmapName = "hybrid";
  override readonly summary =
    "a direct map below a limit (4 GiB), temporary windows above it (lowmem/highmem)";
  override readonly ownOptions = ["hybridLimit"] as const;

  /** The metadata gets its own mapping (as before the direct map existed), 2 MiB aligned when large. */
  override metadataAlign(bytes: number): number {
    return bytes >= 0x200000 ? 0x200000 : 4096;
  }

  override physLimit(): number {
    return 2 ** 52;
  }

  protected override directLimitPfn(): number {
    return Math.floor((this.ctx.opts.hybridLimit ?? 2 ** 32) / 4096);
  }

  override metadataLimit(): number {
    return this.directLimitPfn() * 4096;
  }

  override pmmPort(_metaPa: number, _bytes: number): PhysPort {
    return new RoutedPort([this.direct], this.window(0));
  }

  override finalize(frames: FrameSource): Finalized {
    const tables = new RoutedPort([this.direct], this.window(1));
    const root = this.newRootWithKernelHalf(frames, tables);
    this.ctx.cur.cpu.writeCr3(root);
    return { root, access: new PortTableAccess(tables), port: this.pmmPort(0, 0) };
  }
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(HybridStrategy);
