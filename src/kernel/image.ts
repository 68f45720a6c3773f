/**
 * The simulated kernel image: 2 MiB, loaded at a 2 MiB-aligned physical address (16 MiB by default, as
 * Linux's CONFIG_PHYSICAL_START), run at 0xffffffff80000000 (-2 GiB, the top PML4 slot, as
 * -mcmodel=kernel needs). Its sections, in 4 KiB pages:
 *
 *   0..255   .text    read-only, executable
 *   256..319 .rodata  read-only, no-execute
 *   320..383 .data    read-write, no-execute
 *   384..511 .bss     read-write, no-execute: the boot page tables, the fixmap page table and the
 *                     early allocator's arrays live here
 *
 * The boot page tables are what the bootloader (or head.S) builds before paging is on: a root (PML5 and
 * PML4 with LA57), a PDPT, a PD, one page table mapping the 512 pages of the image, and one page table
 * for the fixmap (the last 2 MiB of the kernel's 1 GiB, 0xffffffffbfe00000), where the kernel keeps its
 * temporary windows. They cover 2 MiB of image and nothing else: everything beyond must be mapped by
 * the kernel itself, with tables it must first obtain - the bootstrap problem.
 */
import { fail, hex } from "../errors.ts";
import type { PhysMem } from "../machine/phys-mem.ts";
import { encodeLeaf, hiWithPfn, loWithPfn, PAGE_4K, type Prot, Pte } from "../machine/x86/pte.ts";
import { type Levels, tableIndex } from "../machine/x86/vaddr.ts";
import type { KernelLayout } from "./kmap/layout.ts";
import type { FrameRange } from "./pmm/interface.ts";

export const IMAGE_BYTES = 0x200000;
export const IMAGE_PAGES = 512;
export const DEFAULT_KERNEL_PHYS = 0x1000000;

export interface Section {
  name: string;
  firstPage: number;
  pages: number;
  prot: Prot;
}

export const SECTIONS: Section[] = [
  { name: ".text", firstPage: 0, pages: 256, prot: { global: true } },
  { name: ".rodata", firstPage: 256, pages: 64, prot: { nx: true, global: true } },
  { name: ".data", firstPage: 320, pages: 64, prot: { write: true, nx: true, global: true } },
  { name: ".bss", firstPage: 384, pages: 128, prot: { write: true, nx: true, global: true } },
];

export interface BootTables {
  root: number;
  /** Every boot page-table frame, root first. */
  tables: number[];
  fixmapPtPa: number;
  /** Physical address of the early allocator's arrays in .bss. */
  memblockPa: number;
}

/**
 * Where the image goes: `wanted` if it lies inside RAM, else the first 2 MiB-aligned slot at or above
 * 16 MiB (then 1 MiB) that does. Throws NO_ROOM_FOR_KERNEL naming the shortfall when none exists.
 */
export function placeKernel(
  ram: readonly FrameRange[],
  wanted: number | undefined,
  log: (s: string) => void,
): number {
  const fits = (pa: number) => ram.some((r) => r.start * 4096 <= pa && pa + IMAGE_BYTES <= r.end * 4096);
  const want = wanted ?? DEFAULT_KERNEL_PHYS;
  if (want % IMAGE_BYTES !== 0)
    fail("BAD_OPTION", `kernel physical address ${hex(want)} is not 2 MiB aligned`);
  if (fits(want)) return want;
  for (const floor of [DEFAULT_KERNEL_PHYS, 0x100000]) {
    for (const r of ram) {
      const pa = Math.max(
        Math.ceil((r.start * 4096) / IMAGE_BYTES) * IMAGE_BYTES,
        Math.ceil(floor / IMAGE_BYTES) * IMAGE_BYTES,
      );
      if (pa + IMAGE_BYTES <= r.end * 4096) {
        log(`kernel image cannot load at ${hex(want)} (not RAM): relocated to ${hex(pa)}`);
        return pa;
      }
    }
  }
  const largest = Math.max(0, ...ram.map((r) => (r.end - r.start) * 4096));
  fail(
    "NO_ROOM_FOR_KERNEL",
    `the map has no 2 MiB-aligned run of 2 MiB of RAM for the kernel image: the largest usable range is ${hex(largest)} bytes, short by ${hex(Math.max(0, IMAGE_BYTES - largest))}`,
  );
}

/** Write the boot page tables into the image's .bss, as the bootloader does (physical stores). */
export function writeBootTables(mem: PhysMem, kernelPhys: number, layout: KernelLayout): BootTables {
  const levels: Levels = layout.levels;
  const bssPfn = kernelPhys / 4096 + 384;
  let next = bssPfn;
  const root = next++;
  const chain: number[] = [root];
  for (let l = levels - 1; l >= 2; l--) chain.push(next++); // PML4 (LA57), PDPT, PD
  const ptImage = next++;
  const ptFixmap = next++;
  const memblockPa = next * 4096;
  const tables = [...chain, ptImage, ptFixmap];
  for (const t of tables) mem.zeroFrame(t);
  const link = (table: number, level: number, vpn: number, child: number) => {
    const pa = table * 4096 + tableIndex(vpn, level) * 8;
    mem.write32(pa + 4, hiWithPfn(child, 0));
    mem.write32(pa, loWithPfn(child, Pte.P | Pte.RW));
  };
  // Root ... PD along the path of the kernel image; PD entries 0 (image) and 511 (fixmap).
  for (let i = 0; i + 1 < chain.length; i++) link(chain[i], levels - i, layout.kernelImage, chain[i + 1]);
  const pd = chain[chain.length - 1];
  link(pd, 2, layout.kernelImage, ptImage);
  link(pd, 2, layout.fixmap, ptFixmap);
  for (const s of SECTIONS) {
    for (let p = s.firstPage; p < s.firstPage + s.pages; p++) {
      const e = encodeLeaf(kernelPhys / 4096 + p, PAGE_4K, s.prot);
      mem.write32(ptImage * 4096 + p * 8 + 4, e.hi);
      mem.write32(ptImage * 4096 + p * 8, e.lo);
    }
  }
  return { root, tables, fixmapPtPa: ptFixmap * 4096, memblockPa };
}
