/**
 * `pagelab demo`: build a kernel address space on a firmware map and tell what each step did.
 *
 * The demo is the foundation's tour, not a kernel boot: page-table frames come from a bump allocator
 * over the map's usable RAM (the real early allocator and PMMs come with `pagelab boot`). It maps the
 * kernel image in the top 2 GiB (as -mcmodel=kernel needs), all usable RAM in a Linux-style direct map
 * with the largest pages alignment allows, and a small user program; loads CR3; then makes accesses that
 * hit and miss the TLB, fault, and unmap with a flush, reporting the counters of every step.
 */
import { fail, hex } from "../errors.ts";
import { DEFAULT_PRESET, loadMap, usableFrameRanges } from "../firmware/index.ts";
import type { FrameRange } from "../firmware/frames.ts";
import { Counters } from "../machine/counters.ts";
import { Machine } from "../machine/machine.ts";
import type { Marker } from "../machine/x86/dump.ts";
import { type FrameSource, Mapper } from "../machine/x86/mapper.ts";
import { Access } from "../machine/x86/mmu.ts";
import { PAGE_4K } from "../machine/x86/pte.ts";
import { type Levels, vaToVpn } from "../machine/x86/vaddr.ts";

export const DIRECT_MAP_BASE = { 4: 0xffff888000000000n, 5: 0xff11000000000000n } as const;
export const KERNEL_BASE = 0xffffffff80000000n;
export const USER_CODE = 0x400000n;
export const USER_DATA = 0x600000n;
/** Physical load address of the demo kernel image (16 MiB, as Linux's default CONFIG_PHYSICAL_START). */
export const KERNEL_PHYS = 0x1000000;
export const KERNEL_PAGES = 512; // 2 MiB

/** Hands out usable frames top-down (above the kernel image), never takes any back. */
export class BumpFrames implements FrameSource {
  private ri: number;
  private next: number;
  used = 0;

  constructor(
    private readonly ranges: FrameRange[],
    private readonly floor: number,
  ) {
    this.ri = ranges.length - 1;
    this.next = this.ri >= 0 ? ranges[this.ri].end : 0;
  }

  allocFrame(): number {
    while (this.ri >= 0) {
      const r = this.ranges[this.ri];
      const lo = Math.max(r.start, this.floor);
      if (this.next > lo) {
        this.used++;
        return --this.next;
      }
      this.ri--;
      if (this.ri >= 0) this.next = this.ranges[this.ri].end;
    }
    return -1;
  }

  freeFrame(): void {
    // A bump allocator cannot take frames back; the demo never unmaps tables it needs.
  }
}

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
}

export interface DemoOptions {
  map?: string;
  /** Format of a map file; undefined: detected from its content. */
  mapFormat?: string;
  levels?: Levels;
}

/** Build the demo address space; `steps` narrate it. */
export function runDemo(opts: DemoOptions = {}): DemoResult {
  const levels = opts.levels ?? 4;
  const mapName = opts.map ?? DEFAULT_PRESET;
  const map = loadMap(mapName, { format: opts.mapFormat });
  // A direct map holds 2^46 bytes with 4 levels (64 TiB), 2^52 with 5: RAM above is left out, said so.
  const reach = (levels === 5 ? 2 ** 52 : 2 ** 46) / 4096;
  const all = usableFrameRanges(map);
  const ranges = all.filter((r) => r.start < reach).map((r) => ({ ...r, end: Math.min(r.end, reach) }));
  const dropped =
    all.reduce((s, r) => s + (r.end - r.start), 0) - ranges.reduce((s, r) => s + (r.end - r.start), 0);
  if (ranges.length === 0)
    fail(
      "NO_RAM",
      `${mapName}: no usable RAM below ${hex(reach * 4096)}, the reach of a ${levels}-level direct map (try --levels 5)`,
    );
  const usableBytes = ranges.reduce((s, r) => s + (r.end - r.start) * 4096, 0);
  const top = Math.max(...ranges.map((r) => r.end)) * 4096;
  const machine = new Machine({
    levels,
    checkStale: true,
    maxPhysAddrBits: Math.min(52, Math.max(46, Math.ceil(Math.log2(top)))),
  });
  const c = machine.counters;
  const steps: DemoStep[] = [];
  let before = c.snapshot();
  const step = (title: string, detail: string[]) => {
    const now = c.snapshot();
    steps.push({ title, detail, counters: Counters.diff(before, now) });
    before = now;
  };
  const kernelEndPfn = KERNEL_PHYS / 4096 + KERNEL_PAGES;
  const frames = new BumpFrames(ranges, kernelEndPfn);
  const mapper = new Mapper(machine.mem, frames, {
    levels,
    maxPhysAddrBits: machine.mem.maxPhysAddrBits,
    counters: c,
  });
  step(`Root table (${levels === 5 ? "PML5" : "PML4"}) allocated`, [
    `map ${mapName}: ${ranges.length} usable ranges, ${(usableBytes / 2 ** 20).toFixed(1)} MiB`,
    ...(dropped > 0
      ? [
          `${dropped} frames of RAM above ${hex(reach * 4096)} left out: a ${levels}-level direct map cannot reach them (--levels 5 can)`,
        ]
      : []),
    `root table at ${hex(mapper.root * 4096)} (page-table frames are taken top-down from usable RAM)`,
  ]);

  const kvpn = vaToVpn(KERNEL_BASE, levels).vpn;
  const kpfn = KERNEL_PHYS / 4096;
  const text = mapper.mapRange(kvpn, kpfn, KERNEL_PAGES / 2, { global: true });
  const data = mapper.mapRange(kvpn + KERNEL_PAGES / 2, kpfn + KERNEL_PAGES / 2, KERNEL_PAGES / 2, {
    write: true,
    nx: true,
    global: true,
  });
  step("Kernel image mapped at -2 GiB", [
    `text ${hex(KERNEL_BASE)} -> ${hex(KERNEL_PHYS)}: ${text.leaves4k} x 4K, read-only, executable, global`,
    `data ${hex(KERNEL_BASE + 0x100000n)}: ${data.leaves4k} x 4K, writable, no-execute, global`,
    `page-table pages so far: ${mapper.tables}`,
  ]);

  const dbase = vaToVpn(DIRECT_MAP_BASE[levels], levels).vpn;
  let l1g = 0;
  let l2m = 0;
  let l4k = 0;
  for (const r of ranges) {
    const res = mapper.mapRange(dbase + r.start, r.start, r.end - r.start, {
      write: true,
      nx: true,
      global: true,
    });
    l1g += res.leaves1g;
    l2m += res.leaves2m;
    l4k += res.leaves4k;
  }
  step(`Direct map of all usable RAM at ${hex(DIRECT_MAP_BASE[levels])}`, [
    `${l1g} x 1G + ${l2m} x 2M + ${l4k} x 4K leaves (largest pages where aligned; holes left unmapped)`,
    `page-table pages so far: ${mapper.tables} (${mapper.tables * 4} KiB)`,
  ]);

  const ucode = vaToVpn(USER_CODE, levels).vpn;
  const udata = vaToVpn(USER_DATA, levels).vpn;
  const f1 = frames.allocFrame();
  const f2 = frames.allocFrame();
  mapper.map(ucode, f1, PAGE_4K, { user: true }).ignore();
  mapper.map(udata, f2, PAGE_4K, { user: true, write: true, nx: true }).ignore();
  step("User program mapped", [
    `code ${hex(USER_CODE)} -> ${hex(f1 * 4096)} (user, read-only, executable)`,
    `data ${hex(USER_DATA)} -> ${hex(f2 * 4096)} (user, writable, no-execute)`,
  ]);

  const cpu = machine.cpu0;
  cpu.writeCr3(mapper.root);
  step("CR3 loaded on CPU 0", [`CR3 = ${hex(mapper.root * 4096)}; TLB empty`]);

  cpu.translate(kvpn, Access.FETCH);
  cpu.translate(kvpn + 300, Access.WRITE);
  cpu.translate(dbase + 0x100, Access.READ);
  step("First accesses: every one misses the TLB and walks", [
    `fetch kernel text, write kernel data, read the direct map: ${c.walks} walks so far, ${levels} references each (fewer for large pages)`,
  ]);

  for (let i = 0; i < 1000; i++) cpu.translate(dbase + 0x100, Access.READ);
  step("1000 more reads of the same page", [
    "all served from the L1 dTLB: no walk, no memory reference for translation",
  ]);

  const pf = cpu.translate(kvpn + 300, Access.READ | Access.USER);
  step("User mode touches kernel data", [
    pf < 0 ? `#PF, error code ${hex(cpu.faultCode)} (P|U: present but supervisor-only)` : "no fault?!",
  ]);

  cpu.translate(udata, Access.WRITE | Access.USER);
  const u = mapper.unmap(udata);
  u.flush.apply(cpu);
  const after = cpu.translate(udata, Access.WRITE | Access.USER);
  step("Unmap user data, INVLPG, touch it again", [
    `unmap freed ${u.flush.tablesFreed} tables; flush: ${u.flush.tablesFreed > 0 ? "full" : `${u.flush.invlpgCount} INVLPG`}`,
    after < 0
      ? `#PF, error code ${hex(cpu.faultCode)} (not present), no stale TLB entry used`
      : "still mapped?!",
  ]);

  const markers: Marker[] = [
    { vpn: dbase, name: "Low Kernel Mapping" },
    { vpn: vaToVpn(0xffffc90000000000n, levels).vpn, name: "vmalloc() Area" },
    { vpn: kvpn, name: "High Kernel Mapping" },
  ];
  return {
    map: mapName,
    levels,
    usableBytes,
    steps,
    pageTablePages: mapper.tables,
    counters: c.snapshot(),
    machine,
    mapper,
    markers,
  };
}
