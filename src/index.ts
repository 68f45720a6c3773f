/**
 * pagelab's library API: the same floors the CLI uses.
 *
 *   import { bootKernel, Machine, loadMap, getDesign } from "pagelab";
 *
 * Mechanism (machine), formats (firmware), policies (PMM designs, kernel-mapping strategies, early
 * allocator) and experiments (boot, demo, export). Addresses are numbers inside (frame and virtual page
 * numbers), bigint or hex strings at the edges.
 */
export { fail, hex, hex64, PagelabError } from "./errors.ts";
export * from "./firmware/index.ts";
export { Memblock } from "./kernel/early/memblock.ts";
export { IMAGE_BYTES, SECTIONS } from "./kernel/image.ts";
export { kernelLayout, type KernelLayout } from "./kernel/kmap/layout.ts";
export { LinearPort, RoutedPort, SwitchPort, WindowPort } from "./kernel/kmap/ports.ts";
export { RecursiveTableAccess } from "./kernel/kmap/recursive-access.ts";
export { MappedRegion } from "./kernel/kmap/region.ts";
export type { KmapName, KmapStrategy } from "./kernel/kmap/strategy.ts";
export { Current } from "./kernel/percpu.ts";
export { statsFromFree } from "./kernel/pmm/common.ts";
export { DESIGN_NAMES, DESIGNS, getDesign } from "./kernel/pmm/designs.ts";
export { isDesignPath, loadDesign } from "./kernel/pmm/load.ts";
export { type Validation, validateDesign } from "./kernel/pmm/validate.ts";
export type {
  AllocConstraints,
  FrameAllocator,
  FrameRange as PmmFrameRange,
  GrowableRegion,
  Mobility,
  PageSize,
  PmmDesign,
  PmmEnv,
  PmmLayout,
  PmmStats,
  RegionStat,
} from "./kernel/pmm/interface.ts";
export {
  type BootOptions,
  type BootResult,
  bootKernel,
  KMAP_NAMES,
  makeStrategy,
} from "./kernel/boot/index.ts";
export { runDemo } from "./lab/demo.ts";
export { exportPageTables, importPageTables } from "./lab/export.ts";
export { Counters } from "./machine/counters.ts";
export { Machine, type MachineOptions } from "./machine/machine.ts";
export { type PhysPort, PhysMem, read64, write64 } from "./machine/phys-mem.ts";
export { Rng } from "./machine/rng.ts";
export { Cpu, type CpuOptions } from "./machine/x86/cpu.ts";
export { infoMem, infoTlb, ptdump } from "./machine/x86/dump.ts";
export { explainWalk } from "./machine/x86/explain.ts";
export { checkTree, forEachEntry, forEachLeaf } from "./machine/x86/inspect.ts";
export { Flush, type FrameSource, Mapper, PortTableAccess, type TableAccess } from "./machine/x86/mapper.ts";
export { Access, PfErr, peekWalk } from "./machine/x86/mmu.ts";
export { decodePte, encodeLeaf, type Prot, Pte, PteHi } from "./machine/x86/pte.ts";
export { GOLDEN_COVE, Tlb, ZEN4 } from "./machine/x86/tlb.ts";
export { formatVa, isCanonical, parseAddress, vaToVpn, vpnToVa } from "./machine/x86/vaddr.ts";
