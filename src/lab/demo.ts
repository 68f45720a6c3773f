/**
 * `pagelab demo`: a guided tour of the address space of a booted kernel, with the counters of each
 * step. The kernel is the one `pagelab boot` brings up with the same options (its PMM, its kernel
 * mapping, its page tables); the tour then maps a small user program with frames from that PMM, flushes
 * the TLB (CR4.PGE toggled, as a kernel does to drop global entries), and makes accesses that miss,
 * hit, fault, and unmap with a flush.
 */
import { hex } from "../errors.ts";
import { type BootOptions, type BootResult, bootKernel, tableFrames } from "../kernel/boot/index.ts";
import { SECTIONS } from "../kernel/image.ts";
import { Counters } from "../machine/counters.ts";
import type { Machine } from "../machine/machine.ts";
import type { Marker } from "../machine/x86/dump.ts";
import type { Mapper } from "../machine/x86/mapper.ts";
import { Access } from "../machine/x86/mmu.ts";
import { PAGE_4K } from "../machine/x86/pte.ts";
import { formatVa, type Levels, vaToVpn } from "../machine/x86/vaddr.ts";

export const USER_CODE = 0x400000n;
export const USER_DATA = 0x600000n;

export interface DemoStep {
  title: string;
  detail: string[];
  counters: Record<string, number>;
}

export interface DemoResult {
  map: string;
  levels: Levels;
  usableBytes: number;
  steps: DemoStep[];
  pageTablePages: number;
  counters: Record<string, number>;
  machine: Machine;
  mapper: Mapper;
  markers: Marker[];
  boot: BootResult;
}

/** The regions of the booted kernel's layout, as ptdump's markers (ascending). */
export function layoutMarkers(boot: BootResult): Marker[] {
  const l = boot.layout;
  const m: Marker[] = [
    { vpn: l.vmalloc, name: "vmalloc() Area" },
    { vpn: l.regions, name: "PMM Regions" },
    { vpn: l.metadata, name: "PMM Metadata" },
    { vpn: l.kernelImage, name: "High Kernel Mapping" },
  ];
  if (boot.strategy.hasDirectMap) m.push({ vpn: l.directMap, name: "Low Kernel Mapping" });
  return m.sort((a, b) => a.vpn - b.vpn);
}

/** Boot with `opts` (as `pagelab boot` does), then the tour; `steps` narrate it. */
export function runDemo(opts: BootOptions = {}): DemoResult {
  return tour(bootKernel(opts));
}

/** The tour's steps so far; each records the counters that moved since the previous one. */
interface Narration {
  c: Counters;
  steps: DemoStep[];
  before: Record<string, number>;
}

function narrate(n: Narration, title: string, detail: string[]): void {
  const now = n.c.snapshot();
  n.steps.push({ title, detail, counters: Counters.diff(n.before, now) });
  n.before = now;
}

/** The first step: what the boot brought up, with the boot's own counters. */
function bootedStep(boot: BootResult): DemoStep {
  const cpu = boot.machine.cpu0;
  return {
    title: `Kernel booted: ${boot.pmm} PMM, ${boot.kmap} kernel mapping, ${boot.levels}-level paging`,
    detail: [
      `map ${boot.map}: ${boot.ram.length} RAM range(s), ${(boot.ramBytes / 2 ** 20).toFixed(1)} MiB; kernel image at ${boot.kernelPhys}, running at -2 GiB`,
      `${boot.pageTablePages} page-table pages; CR3 = ${hex(cpu.cr3Pfn * 4096)}; ${boot.freePagesAfterBoot} frames free in the PMM`,
      ...boot.bootSteps[0].log.filter((l) => /ignored/.test(l)),
      `${boot.checks.length} after-boot checks passed (\`pagelab boot --log\` tells each of the 7 steps)`,
    ],
    counters: Object.fromEntries(Object.entries(boot.counters).filter(([, v]) => v !== 0)),
  };
}

/** Map the user program's code and data pages with frames from the PMM. Returns the data page's VPN. */
function mapUserProgram(boot: BootResult, n: Narration): number {
  const { mapper, levels } = boot;
  const ucode = vaToVpn(USER_CODE, levels).vpn;
  const udata = vaToVpn(USER_DATA, levels).vpn;
  const f1 = boot.pmmAllocator.alloc(0);
  const f2 = boot.pmmAllocator.alloc(0);
  const tablesBefore = mapper.tables;
  mapper.map(ucode, f1, PAGE_4K, { user: true }).ignore();
  mapper.map(udata, f2, PAGE_4K, { user: true, write: true, nx: true }).ignore();
  narrate(n, "User program mapped, its frames and page tables from the PMM", [
    `code ${hex(USER_CODE)} -> ${hex(f1 * 4096)} (user, read-only, executable)`,
    `data ${hex(USER_DATA)} -> ${hex(f2 * 4096)} (user, writable, no-execute)`,
    `${mapper.tables - tablesBefore} new page tables for the user half, through the ${boot.kmap} mapping`,
  ]);
  return udata;
}

/** After a full flush: kernel accesses that walk, then the same page again from the TLB, then a #PF. */
function kernelAccesses(boot: BootResult, n: Narration): void {
  const { layout, levels } = boot;
  const cpu = boot.machine.cpu0;
  const text = layout.kernelImage;
  const data = layout.kernelImage + SECTIONS[2].firstPage;
  const third = boot.strategy.hasDirectMap ? layout.directMap + 0x100 : layout.metadata;
  const thirdName = boot.strategy.hasDirectMap ? "read the direct map" : "read the PMM metadata";
  cpu.translate(text, Access.FETCH);
  cpu.translate(data, Access.WRITE);
  cpu.translate(third, Access.READ);
  const d = Counters.diff(n.before, n.c.snapshot());
  narrate(n, "First accesses: each misses the TLB and walks", [
    `fetch kernel text, write kernel .data, ${thirdName} (${formatVa(third, levels)}): ${d.walks} walks reading ${d.walkReads} entries (${levels} levels; a large page ends a walk early)`,
  ]);

  for (let i = 0; i < 1000; i++) cpu.translate(third, Access.READ);
  narrate(n, "1000 more reads of the same page", [
    "all served from the TLB: no walk, no memory reference for translation",
  ]);

  const pf = cpu.translate(data, Access.READ | Access.USER);
  narrate(n, "User mode touches kernel data", [
    pf < 0 ? `#PF, error code ${hex(cpu.faultCode)} (P|U: present but supervisor-only)` : "no fault?!",
  ]);
}

/** Touch the user data page, unmap it with its flush, and touch it again: a #PF, no stale entry. */
function unmapUserData(boot: BootResult, n: Narration, udata: number): void {
  const cpu = boot.machine.cpu0;
  cpu.translate(udata, Access.WRITE | Access.USER);
  const u = boot.mapper.unmap(udata);
  u.flush.apply(cpu);
  const after = cpu.translate(udata, Access.WRITE | Access.USER);
  narrate(n, "Unmap user data, INVLPG, touch it again", [
    `unmap freed ${u.flush.tablesFreed} tables; flush: ${u.flush.tablesFreed > 0 ? "full" : `${u.flush.invlpgCount} INVLPG`}`,
    after < 0
      ? `#PF, error code ${hex(cpu.faultCode)} (not present), no stale TLB entry used`
      : "still mapped?!",
  ]);
}

/** The tour of a booted kernel (it maps, touches and unmaps user pages in its address space). */
export function tour(boot: BootResult): DemoResult {
  const { machine, mapper, levels } = boot;
  const c = machine.counters;
  const cpu = machine.cpu0;
  const n: Narration = { c, steps: [], before: c.snapshot() };
  n.steps.push(bootedStep(boot));
  n.before = c.snapshot();

  const udata = mapUserProgram(boot, n);
  cpu.flushAllIncludingGlobal();
  narrate(n, "TLB flushed, global entries too (CR4.PGE toggled)", ["every translation must walk again"]);
  kernelAccesses(boot, n);
  unmapUserData(boot, n, udata);

  return {
    map: boot.map,
    levels,
    usableBytes: boot.ramBytes,
    steps: n.steps,
    pageTablePages: new Set(tableFrames(machine, mapper.root, levels, boot.recursiveSlots)).size,
    counters: c.snapshot(),
    machine,
    mapper,
    markers: layoutMarkers(boot),
    boot,
  };
}
