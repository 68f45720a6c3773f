/**
 * `pagelab audit`: the security cost of a kernel address space, read from its page tables.
 *
 *  - W+X: kernel mappings that are both writable and executable (Linux's boot-time
 *    "x86/mm: Checked W+X mappings" check fails on any);
 *  - user-accessible kernel mappings: kernel-half leaves whose effective U/S is 1;
 *  - executable data: executable kernel mappings outside the kernel's .text;
 *  - MMIO or holes in the direct map: direct-map leaves whose frames are not RAM (cacheable aliases of
 *    device memory);
 *  - RAM readable through kernel mappings: how much of physical RAM any kernel pointer can read right
 *    now (all of it under `direct`, the metadata and a few windows under `quickmap`);
 *  - the entropy the direct-map base would have under Linux's memory KASLR
 *    (arch/x86/mm/kaslr.c, kernel_randomize_memory()): three regions (direct map, vmalloc, vmemmap)
 *    share the free space between 0xffff888000000000 and the CPU entry area, each placed at a random
 *    1 GiB (5-level: 512 GiB) boundary; the first gets 1/3 of the slack.
 *
 * The audit reads the tables with uncounted peeks: it is a tool, not kernel code.
 */
import { framesIn, mergeRanges } from "../firmware/frames.ts";
import type { BootResult } from "../kernel/boot/index.ts";
import { SECTIONS } from "../kernel/image.ts";
import { makeStrategy } from "../kernel/kmap/strategies.ts";
import type { OwnedRange, OwnerKind } from "../kernel/owner.ts";
import { hex } from "../errors.ts";
import type { Machine } from "../machine/machine.ts";
import { forEachLeaf } from "../machine/x86/inspect.ts";
import { TlbPerm } from "../machine/x86/tlb.ts";
import { type Levels, formatVa, vpnLimit } from "../machine/x86/vaddr.ts";
import type { KernelLayout } from "../kernel/kmap/layout.ts";
import type { FrameRange } from "../kernel/pmm/interface.ts";

export interface AuditRange {
  start: string;
  end: string;
  bytes: number;
  /** Physical address of the first frame mapped (for direct-map findings). */
  pa?: string;
}

export interface KaslrEstimate {
  region: string;
  positions: number;
  entropyBits: number;
  note: string;
}

export interface AuditResult {
  kmap: string;
  levels: Levels;
  ok: boolean;
  wx: AuditRange[];
  userKernel: AuditRange[];
  executableData: AuditRange[];
  nonRamInDirectMap: AuditRange[];
  ramReadable: {
    bytes: number;
    ramBytes: number;
    fraction: number;
    /**
     * The readable RAM by owner (the boot's ownership records): how much of it is page tables, PMM
     * metadata, the kernel image, memblock's other reservations, and the rest (free or allocated).
     */
    byOwner: Record<OwnerKind | "other", number>;
  };
  kaslr: KaslrEstimate;
}

export interface AuditInput {
  machine: Machine;
  root: number;
  levels: Levels;
  layout: KernelLayout;
  kmap: string;
  ram: FrameRange[];
  /** Kernel .text in pages from the image base. */
  textPages: number;
  /** Recursive slots: their self-mapping is reported separately, not as data. */
  recursiveSlots: number[];
  /** Who owns the frames the PMM was not given (BootResult.owned). */
  owned: OwnedRange[];
}

/** The audit of a booted kernel's current address space. */
export function auditBoot(b: BootResult): AuditResult {
  return auditAddressSpace({
    machine: b.machine,
    root: b.mapper.root,
    levels: b.levels,
    layout: b.layout,
    kmap: b.kmap,
    ram: b.ram,
    textPages: SECTIONS[0].pages,
    recursiveSlots: b.recursiveSlots,
    owned: b.owned,
  });
}

/** Collects VPN runs, merging adjacent leaves. */
class Runs {
  readonly list: { vpn: number; end: number; pfn: number }[] = [];
  add(vpn: number, pages: number, pfn: number): void {
    const last = this.list[this.list.length - 1];
    if (last && last.end === vpn) last.end = vpn + pages;
    else this.list.push({ vpn, end: vpn + pages, pfn });
  }
  out(levels: Levels, withPa = false): AuditRange[] {
    return this.list.map((r) => ({
      start: formatVa(r.vpn, levels),
      end: formatVa(r.end - 1, levels, 4095),
      bytes: (r.end - r.vpn) * 4096,
      ...(withPa ? { pa: hex(r.pfn * 4096) } : {}),
    }));
  }
}

function inRam(ram: FrameRange[], pfn: number): boolean {
  for (const r of ram) if (pfn >= r.start && pfn < r.end) return true;
  return false;
}

/** Frames of `ranges` inside the disjoint intervals `mapped`. */
function overlap(mapped: readonly FrameRange[], ranges: readonly FrameRange[]): number {
  let total = 0;
  for (const { start: s, end: e } of mapped)
    for (const r of ranges) total += Math.max(0, Math.min(e, r.end) - Math.max(s, r.start));
  return total;
}

/** Readable RAM frames by owner kind (the rest, free or allocated, as "other"). */
function readableByOwner(mapped: readonly FrameRange[], ram: FrameRange[], owned: OwnedRange[]) {
  const by = { "kernel-image": 0, "page-table": 0, "pmm-metadata": 0, reserved: 0, allocated: 0, other: 0 };
  let ownedTotal = 0;
  for (const o of owned) {
    const inRamPart = ram
      .map((r) => ({ start: Math.max(r.start, o.start), end: Math.min(r.end, o.end) }))
      .filter((r) => r.end > r.start);
    const n = overlap(mapped, inRamPart);
    by[o.kind] += n * 4096;
    ownedTotal += n;
  }
  by.other = (overlap(mapped, ram) - ownedTotal) * 4096;
  return by;
}

export function kaslrEstimate(kmap: string, levels: Levels, ram: FrameRange[]): KaslrEstimate {
  if (!makeStrategy(kmap).hasDirectMap) {
    return {
      region: "none",
      positions: 1,
      entropyBits: 0,
      note: `${kmap} has no direct map: there is no physmap base to randomize (and no physmap to find)`,
    };
  }
  const TB = 2 ** 40;
  const start = levels === 5 ? 0xff11000000000000n : 0xffff888000000000n;
  const end = 0xfffffe0000000000n; // CPU_ENTRY_AREA_BASE
  const span = Number(end - start);
  const maxPfn = Math.max(...ram.map((r) => r.end));
  const physTb = Math.min(2 ** ((levels === 5 ? 52 : 46) - 40), Math.ceil((maxPfn * 4096) / TB) + 10);
  const vmallocTb = levels === 5 ? 12800 : 32;
  const vmemmapTb = Math.ceil((((physTb * TB) / 4096) * 64) / TB);
  const remain = span - (physTb + vmallocTb + vmemmapTb) * TB;
  const align = levels === 5 ? 2 ** 39 : 2 ** 30;
  const positions = Math.floor(remain / 3 / align) + 1;
  return {
    region: "direct map",
    positions,
    entropyBits: Math.round(Math.log2(positions) * 10) / 10,
    note: `Linux's memory KASLR: ${physTb} TB direct map + ${vmallocTb} TB vmalloc + ${vmemmapTb} TB vmemmap in ${(span / TB).toFixed(1)} TB, ${levels === 5 ? "512 GiB" : "1 GiB"} steps`,
  };
}

export function auditAddressSpace(a: AuditInput): AuditResult {
  const half = vpnLimit(a.levels) / 2;
  const textStart = a.layout.kernelImage;
  const textEnd = textStart + a.textPages;
  const dm = a.layout.directMap;
  const dmEnd = dm + 2 ** (a.levels === 5 ? 40 : 34); // 4 PiB / 64 TiB of direct map
  const recursive = new Set(a.recursiveSlots);
  const wx = new Runs();
  const user = new Runs();
  const exec = new Runs();
  const nonRam = new Runs();
  const mapped: FrameRange[] = [];
  const topShift = (a.levels - 1) * 9;
  forEachLeaf(a.machine.mem, a.root, a.levels, (l) => {
    if (l.vpn < half) return;
    const pages = 2 ** l.shift;
    const viaRecursive = recursive.has(Math.floor(l.vpn / 2 ** topShift) % 512);
    mapped.push({ start: l.base, end: l.base + pages });
    const w = (l.perm & TlbPerm.RW) !== 0;
    const x = (l.perm & TlbPerm.XD) === 0;
    if (w && x) wx.add(l.vpn, pages, l.base);
    if ((l.perm & TlbPerm.US) !== 0) user.add(l.vpn, pages, l.base);
    if (x && !viaRecursive && (l.vpn < textStart || l.vpn >= textEnd)) exec.add(l.vpn, pages, l.base);
    if (l.vpn >= dm && l.vpn < dmEnd && !inRam(a.ram, l.base)) nonRam.add(l.vpn, pages, l.base);
  });
  const ramFrames = framesIn(a.ram);
  const merged = mergeRanges(mapped);
  const readable = overlap(merged, a.ram);
  return {
    kmap: a.kmap,
    levels: a.levels,
    ok: wx.list.length === 0 && user.list.length === 0,
    wx: wx.out(a.levels),
    userKernel: user.out(a.levels),
    executableData: exec.out(a.levels),
    nonRamInDirectMap: nonRam.out(a.levels, true),
    ramReadable: {
      bytes: readable * 4096,
      ramBytes: ramFrames * 4096,
      fraction: ramFrames === 0 ? 0 : readable / ramFrames,
      byOwner: readableByOwner(merged, a.ram, a.owned),
    },
    kaslr: kaslrEstimate(a.kmap, a.levels, a.ram),
  };
}
