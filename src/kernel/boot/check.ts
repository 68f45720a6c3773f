/**
 * The checks run after `pagelab boot`: the PMM's own invariant checker, the page-table checker, the
 * conservation of frames across the memblock-to-PMM handover, that nothing the kernel owns (image,
 * boot tables, metadata, page tables, the first MiB) is ever on a free list, and that the kernel image
 * is mapped with the rights of its sections. Each passed check is returned as a sentence; the first
 * failed one throws BOOT_CHECK.
 */
import { fail, hex } from "../../errors.ts";
import { framesIn, mergeRanges } from "../../firmware/frames.ts";
import type { Machine } from "../../machine/machine.ts";
import { checkTree, forEachEntry } from "../../machine/x86/inspect.ts";
import { peekWalk } from "../../machine/x86/mmu.ts";
import { Pte } from "../../machine/x86/pte.ts";
import { TlbPerm } from "../../machine/x86/tlb.ts";
import type { Levels } from "../../machine/x86/vaddr.ts";
import { SECTIONS } from "../image.ts";
import { kernelLayout } from "../kmap/layout.ts";
import type { OwnedRange } from "../owner.ts";
import { PmmAuditor } from "../pmm/check.ts";
import type { FrameAllocator, FrameRange, PmmCounts } from "../pmm/interface.ts";
import type { BootResult } from "./boot.ts";

export interface BootCheckInput {
  machine: Machine;
  pmm: FrameAllocator;
  root: number;
  levels: Levels;
  recursiveSlots: number[];
  /** Frames of every table of the final tree (`tableFrames`, walked once by the caller). */
  tables: number[];
  /** memblock's reservations and allocations (the boot's ownership records of steps 1 to 5). */
  owned: OwnedRange[];
  ram: FrameRange[];
  kernelPhys: number;
  freedFrames: number;
  metaPa: number;
  metaBytes: number;
  /** The PMM's counts (its registers, or its stats when it keeps none), computed once by the caller. */
  stats: PmmCounts;
}

/** Frames of every page table reachable from the root (recursive slots skipped). */
export function tableFrames(
  machine: Machine,
  root: number,
  levels: Levels,
  recursiveSlots: number[],
): number[] {
  const out = [root];
  forEachEntry(machine.mem, root, levels, (e) => {
    if ((e.lo & Pte.P) === 0 || e.leaf) return undefined;
    if (e.level === levels && recursiveSlots.includes((e.entryPa % 4096) / 8)) return false;
    out.push((e.hi & 0xfffff) * 2 ** 20 + (e.lo >>> 12));
    return true;
  });
  return out;
}

function overlapsAny(
  sorted: { start: number; end: number }[],
  start: number,
  end: number,
): { start: number; end: number } | null {
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const r = sorted[mid];
    if (r.end <= start) lo = mid + 1;
    else if (r.start >= end) hi = mid - 1;
    else return r;
  }
  return null;
}

export function checkBoot(b: BootCheckInput): string[] {
  const passed: string[] = [];
  b.pmm.check();
  passed.push(`${b.pmm.name} invariant checker passed`);
  passed.push(checkPageTables(b));
  passed.push(checkHandover(b));
  const owned = checkOwnedNotFree(b);
  if (owned !== null) passed.push(owned);
  passed.push(checkImageMapping(b));
  const stale = checkNoStaleTlb(b);
  if (stale !== null) passed.push(stale);
  return passed;
}

/** The page-table checker on the kernel's tree. */
function checkPageTables(b: BootCheckInput): string {
  const tree = checkTree(b.machine.mem, b.root, b.levels, {
    maxPhysAddrBits: b.machine.mem.maxPhysAddrBits,
    recursiveSlots: b.recursiveSlots,
  });
  if (tree.violations.length > 0) fail("BOOT_CHECK", `page tables: ${tree.violations[0]}`);
  return `page tables consistent (${tree.stats.tables} tables, ${tree.stats.leaves1g} x 1G + ${tree.stats.leaves2m} x 2M + ${tree.stats.leaves4k} x 4K leaves)`;
}

/** The handover conserved frames: RAM = frames freed to the PMM (all of them managed) + reserved. */
function checkHandover(b: BootCheckInput): string {
  const ramFrames = framesIn(b.ram);
  let reservedInRam = 0;
  for (const r of mergeRanges(b.owned)) {
    for (const m of b.ram) reservedInRam += Math.max(0, Math.min(r.end, m.end) - Math.max(r.start, m.start));
  }
  const managed = b.stats.managedFrames;
  if (managed !== b.freedFrames || b.freedFrames + reservedInRam !== ramFrames) {
    fail(
      "BOOT_CHECK",
      `handover lost frames: RAM ${ramFrames} = freed ${b.freedFrames} + reserved ${reservedInRam}? PMM manages ${managed}`,
    );
  }
  return `handover conserved every frame: ${ramFrames} RAM = ${b.freedFrames} given to the PMM + ${reservedInRam} reserved`;
}

/** The frames the kernel owns (memblock's reservations, the page tables), sorted and merged. */
function ownedFrames(b: BootCheckInput): { start: number; end: number }[] {
  return mergeRanges([...b.owned, ...b.tables.map((t) => ({ start: t, end: t + 1 }))]);
}

/** No free block overlaps an owned frame (null: the PMM cannot list its free blocks). */
function checkOwnedNotFree(b: BootCheckInput): string | null {
  const merged = ownedFrames(b);
  if (!b.pmm.forEachFree) return null;
  b.pmm.forEachFree((pfn, count) => {
    const hit = overlapsAny(merged, pfn, pfn + count);
    if (hit)
      fail(
        "BOOT_CHECK",
        `free block ${hex(pfn * 4096)}+${count} frames overlaps owned frames ${hex(hit.start * 4096)}-${hex(hit.end * 4096)}`,
      );
  });
  return "no owned frame (image, first MiB, metadata, page tables) is on a free list";
}

/** Each section of the kernel image is mapped at -2 GiB to its frames, with its rights, supervisor only. */
function checkImageMapping(b: BootCheckInput): string {
  const layout = kernelLayout(b.levels);
  const cpu = b.machine.cpu0;
  for (const s of SECTIONS) {
    const w = peekWalk(cpu, layout.kernelImage + s.firstPage);
    const want = (s.prot.write ? TlbPerm.RW : 0) | (s.prot.nx ? TlbPerm.XD : 0);
    if (
      w === null ||
      w.pfn !== b.kernelPhys / 4096 + s.firstPage ||
      (w.perm & (TlbPerm.RW | TlbPerm.XD)) !== want ||
      (w.perm & TlbPerm.US) !== 0
    ) {
      fail("BOOT_CHECK", `kernel ${s.name} is not mapped as it should be at -2 GiB`);
    }
  }
  return "kernel image mapped at -2 GiB with its sections' rights (text RX, rodata R, data/bss RW+NX), supervisor only";
}

/** No stale TLB entry was used (null: the CPU does not track them, so nothing to claim). */
function checkNoStaleTlb(b: BootCheckInput): string | null {
  const stale = b.machine.staleReports();
  if (stale.length > 0)
    fail("BOOT_CHECK", `stale TLB entry used: ${stale[0].reason} at page ${hex(stale[0].vpn)}`);
  return b.machine.cpu0.checkStale ? "no stale TLB entry was ever used" : null;
}

/**
 * The PMM auditor (pmm/check.ts) on a booted kernel: memblock's records are the reserved ranges, the
 * standing metadata is forbidden, and the page tables the PMM gave in step 6 are held by the kernel.
 */
export function bootAuditor(r: BootResult): PmmAuditor {
  const metaPages = Math.ceil(r.metadataStandingBytes / 4096);
  const a = new PmmAuditor({
    alloc: r.pmmAllocator,
    mem: r.machine.mem,
    layout: r.pmmLayout,
    metadata: { start: r.metaPa / 4096, end: r.metaPa / 4096 + metaPages, node: 0 },
    reserved: r.owned.filter((o) => o.step < 6).map((o) => ({ start: o.start, end: o.end, node: 0 })),
  });
  for (const o of r.owned) if (o.step >= 6) for (let f = o.start; f < o.end; f++) a.holdAlready(f, 0);
  return a;
}
