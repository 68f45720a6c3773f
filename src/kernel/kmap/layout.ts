/**
 * The simulated kernel's virtual address layout (modelled on Linux's Documentation/arch/x86/x86_64/mm.rst).
 *
 *   4-level (48-bit)                          5-level (57-bit)
 *   ffff888000000000  direct map (64 TiB)     ff11000000000000  direct map (32 PiB)
 *   ffffc90000000000  vmalloc                 ffa0000000000000  vmalloc
 *   ffffe90000000000  PMM growable regions    ffd2000000000000  PMM growable regions
 *   ffffea0000000000  PMM metadata (vmemmap)  ffd4000000000000  PMM metadata (vmemmap)
 *   ffffff0000000000  recursive slot 510      fffe000000000000  recursive slot 510 (PML5)
 *   ffffffff80000000  kernel image (-2 GiB, the top PML4 slot, as -mcmodel=kernel needs)
 *   ffffffffbfe00000  fixmap: per-CPU temporary windows (the last 2 MiB of the kernel's 1 GiB)
 *
 * Everything is given as VPNs (see vaddr.ts) for the hot paths.
 */
import { type Levels, vaToVpn } from "../../machine/x86/vaddr.ts";

export interface KernelLayout {
  levels: Levels;
  directMap: number;
  vmalloc: number;
  regions: number;
  metadata: number;
  kernelImage: number;
  fixmap: number;
  /** Root-table slot used by the recursive strategy. */
  recursiveSlot: number;
}

export const KERNEL_IMAGE_VA = 0xffffffff80000000n;
export const FIXMAP_VA = 0xffffffffbfe00000n;

const VA = {
  4: {
    directMap: 0xffff888000000000n,
    vmalloc: 0xffffc90000000000n,
    regions: 0xffffe90000000000n,
    metadata: 0xffffea0000000000n,
  },
  5: {
    directMap: 0xff11000000000000n,
    vmalloc: 0xffa0000000000000n,
    regions: 0xffd2000000000000n,
    metadata: 0xffd4000000000000n,
  },
} as const;

export function kernelLayout(
  levels: Levels,
  opts: { directMapBase?: bigint; recursiveSlot?: number } = {},
): KernelLayout {
  const v = VA[levels];
  const vpn = (a: bigint) => vaToVpn(a, levels).vpn;
  return {
    levels,
    directMap: vpn(opts.directMapBase ?? v.directMap),
    vmalloc: vpn(v.vmalloc),
    regions: vpn(v.regions),
    metadata: vpn(v.metadata),
    kernelImage: vpn(KERNEL_IMAGE_VA),
    fixmap: vpn(FIXMAP_VA),
    recursiveSlot: opts.recursiveSlot ?? 510,
  };
}
