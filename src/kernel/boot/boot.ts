/**
 * `pagelab boot`: from a firmware map to a running physical memory manager, inside the simulated
 * machine, told step by step. One function per step, in this order:
 *
 *   1. `firmwareMap`: firmware map -> memblock.memory (Linux's sanitizer and early edits); the machine
 *   2. `loadImage`: kernel image loaded; boot page tables in its .bss map 2 MiB at -2 GiB (+ the
 *      fixmap page table); CR3 loaded
 *   3. `earlyAllocator`: the early allocator (memblock, arrays in .bss) learns RAM and the reservations
 *   4. `placeMetadata`: the kernel-mapping strategy makes page-table editing possible; the PMM's
 *      metadata is sized from the map, placed by memblock, and mapped with page tables from memblock
 *   5. `handOver`: the PMM is created and given every free frame; memblock retires (checked: nothing lost)
 *   6. `finalSpace`: the final address space: a root from the PMM, the kernel half shared, CR3
 *      switched, the PMM's port re-bound to the final mappings
 *   7. `summarize`: summary and checks
 *
 * Each step records what it allocated, where and why, and the counters it cost. Every command that
 * needs a kernel (boot, pmm, pt, demo, audit, compare, serve, the benches) gets it from `bootKernel`.
 */
import { fail, hex } from "../../errors.ts";
import { framesIn } from "../../firmware/frames.ts";
import { e820TypeName, isUsable, type MemoryMap } from "../../firmware/index.ts";
import { stateless } from "../../machine/clone.ts";
import { Machine } from "../../machine/machine.ts";
import { InspectPort } from "../../machine/phys-mem.ts";
import { Mapper } from "../../machine/x86/mapper.ts";
import type { Levels } from "../../machine/x86/vaddr.ts";
import { Memblock, MEMBLOCK_BYTES } from "../early/memblock.ts";
import { PlacementAllocator } from "../early/placement.ts";
import { IMAGE_BYTES, placeKernel, writeBootTables } from "../image.ts";
import { type KernelLayout, kernelLayout } from "../kmap/layout.ts";
import { LinearPort, SwitchPort } from "../kmap/ports.ts";
import { MappedRegion } from "../kmap/region.ts";
import { makeStrategy } from "../kmap/strategies.ts";
import type { KmapName, KmapStrategy } from "../kmap/strategy.ts";
import type { OwnedRange } from "../owner.ts";
import { Current } from "../percpu.ts";
import { getDesign } from "../pmm/designs.ts";
import { PmmFrames } from "../pmm/frame-source.ts";
import type { FrameAllocator, FrameRange, PmmCounts, PmmDesign, PmmLayout } from "../pmm/interface.ts";
import { checkHostBudget } from "./budget.ts";
import { checkBoot, tableFrames } from "./check.ts";
import { type BootStep, Narrator } from "./narrator.ts";
import { type BootOptions, checkBootOptions, checkLayout } from "./options.ts";
import { bootRam, kaslrSlot, physBitsFor } from "./ram.ts";

export interface BootResult {
  map: string;
  pmm: string;
  kmap: KmapName;
  levels: Levels;
  ramBytes: number;
  usablePages: number;
  freePagesAfterBoot: number;
  metadataBytes: number;
  metadataStandingBytes: number;
  metadataTransientBytes: number;
  pageTableBytes: number;
  pageTablePages: number;
  kernelPhys: string;
  bootSteps: BootStep[];
  counters: Record<string, number>;
  hostMs: number;
  checks: string[];
  machine: Machine;
  /** The CPU the kernel is executing on (switch it to run kernel code on another CPU). */
  current: Current;
  /** The PMM's port (through the final mappings) and its regions (for SMP flushers). */
  pmmPort: SwitchPort;
  regions: MappedRegion[];
  /** The kernel layout (region bases as VPNs). */
  layout: KernelLayout;
  /** memblock.memory as frame ranges (the RAM the kernel uses). */
  ram: FrameRange[];
  /** The sanitized firmware map the boot read. */
  firmware: MemoryMap;
  /**
   * Who owns each frame the PMM was not given, by kind and step: memblock's reservations and
   * allocations, then the page tables the PMM gave (step 6). The checks, the audit and the explorer's
   * strip read these.
   */
  owned: OwnedRange[];
  pmmAllocator: FrameAllocator;
  /** The PMM's design (its traits: hostBytes, metadataBytes). */
  design: PmmDesign;
  /** The PMM's layout: the RAM it was sized for. */
  pmmLayout: PmmLayout;
  /** Where the PMM's standing metadata sits: [metaPa, metaPa + metaBytes), 0 bytes if none. */
  metaPa: number;
  mapper: Mapper;
  strategy: KmapStrategy;
  recursiveSlots: number[];
}

// The state each step hands to the next (each step adds its own part).

interface Start {
  opts: BootOptions;
  design: PmmDesign;
  strategy: KmapStrategy;
  levels: Levels;
  mapName: string;
}
interface AfterFirmware extends Start {
  map: MemoryMap;
  ram: FrameRange[];
  ramBytes: number;
  holes: { start: number; end: number; type: string }[];
  machine: Machine;
  cur: Current;
  n: Narrator;
}
interface AfterImage extends AfterFirmware {
  layout: KernelLayout;
  kernelPhys: number;
  bootRoot: number;
  bootTables: number[];
  fixmapPtPa: number;
  memblockPa: number;
}
interface AfterEarly extends AfterImage {
  memblock: Memblock;
  imagePort: LinearPort;
}
interface AfterMetadata extends AfterEarly {
  pmmLayout: PmmLayout;
  metaPa: number;
  metaBytes: number;
}
interface AfterHandover extends AfterMetadata {
  pmm: FrameAllocator;
  port: SwitchPort;
  regions: MappedRegion[];
  freed: number;
}
interface AfterFinal extends AfterHandover {
  root: number;
  mapper: Mapper;
}

export function bootKernel(opts: BootOptions = {}): BootResult {
  const t0 = performance.now();
  checkBootOptions(opts);
  const start: Start = {
    opts,
    design: typeof opts.pmm === "object" ? opts.pmm : getDesign(opts.pmm ?? "buddy"),
    strategy: makeStrategy(opts.kmap ?? "direct"),
    levels: opts.levels ?? 4,
    mapName: opts.map ?? "qemu:4G",
  };
  const fin = finalSpace(handOver(placeMetadata(earlyAllocator(loadImage(firmwareMap(start))))));
  return summarize(fin, t0);
}

/** Step 1: the firmware map and what Linux would keep of it; the machine that has that RAM. */
function firmwareMap(s: Start): AfterFirmware {
  const { opts, design, strategy, levels, mapName } = s;
  const { map, changes, ram, ramBytes, early } = bootRam(mapName, strategy, levels, opts.mem, opts);
  const ncpus = opts.cpus ?? 1;
  const host = checkHostBudget(design, { usable: ram, cpus: ncpus, colours: opts.colours }, opts.hostBudget);
  opts.onHostEstimate?.(host.bytes);
  const holes = map.entries
    .filter((e) => !isUsable(e.type) && e.start < 1n << 52n)
    .map((e) => ({ start: Number(e.start), end: Number(e.end + 1n), type: e820TypeName(e.type) }));
  const machine = new Machine({
    levels,
    cpus: ncpus,
    maxPhysAddrBits: physBitsFor(ram),
    checkStale: opts.checkStale ?? false,
  });
  const n = new Narrator(machine.counters);
  for (const l of early) n.log(l);
  n.log(
    `${mapName}: ${map.entries.length} entries after sanitizing; memblock.memory: ${ram.length} range(s), ${framesIn(ram)} pages (${(ramBytes / 2 ** 20).toFixed(1)} MiB)`,
  );
  for (const ch of changes.slice(0, 8)) n.log(`  ${ch.message}`);
  n.log(`MAXPHYADDR ${machine.mem.maxPhysAddrBits} bits, ${levels}-level paging`);
  n.end("Firmware map");
  return { ...s, map, ram, ramBytes, holes, machine, cur: new Current(machine), n };
}

/** Step 2: the kernel image and its boot page tables; CR3 loaded. */
function loadImage(s: AfterFirmware): AfterImage {
  const { opts, n, ram, levels } = s;
  const layout = kernelLayout(levels, {
    recursiveSlot: opts.recursiveSlot,
    directMapBase: opts.directMapBase,
  });
  checkLayout(layout, opts, ram);
  let want = opts.kernelPhys;
  if (opts.kaslr) {
    const k = kaslrSlot(ram, opts.seed ?? 0);
    want = k.pa;
    n.log(
      `KASLR (seed ${opts.seed ?? 0}): slot ${k.index} of ${k.slots} 2 MiB-aligned RAM slots above 16 MiB`,
    );
  } else if (opts.kernelPhys !== undefined)
    n.log(`--kernel-phys asks for the image at ${hex(opts.kernelPhys)}`);
  const kernelPhys = placeKernel(ram, want, (line) => n.log(line));
  const boot = writeBootTables(s.machine.mem, kernelPhys, layout);
  s.machine.cpu0.writeCr3(boot.root);
  n.log(
    `kernel image at ${hex(kernelPhys)}-${hex(kernelPhys + IMAGE_BYTES - 1)}, running at 0xffffffff80000000`,
  );
  n.log(
    `boot page tables: ${boot.tables.length} pages in .bss at ${hex(boot.tables[0] * 4096)} (root, ${levels === 5 ? "PML4, " : ""}PDPT, PD, image PT, fixmap PT): they map the 2 MiB image and the fixmap, nothing else`,
  );
  n.log("CR3 loaded with the boot root; from here on the kernel touches memory only through its mappings");
  n.end("Kernel image and boot page tables");
  return {
    ...s,
    layout,
    kernelPhys,
    bootRoot: boot.root,
    bootTables: boot.tables,
    fixmapPtPa: boot.fixmapPtPa,
    memblockPa: boot.memblockPa,
  };
}

/** Step 3: the early allocator learns RAM and the reservations. */
function earlyAllocator(s: AfterImage): AfterEarly {
  const { opts, n, ram, kernelPhys } = s;
  const imagePort = new LinearPort(s.cur, s.layout.kernelImage, kernelPhys, IMAGE_BYTES, "kernel image");
  let memblock: Memblock;
  if (opts.early === "placement") {
    const home = ram.find((r) => r.start * 4096 <= kernelPhys && kernelPhys + IMAGE_BYTES <= r.end * 4096)!;
    memblock = new PlacementAllocator(imagePort, s.memblockPa, kernelPhys + IMAGE_BYTES, home.end * 4096);
    n.log(
      `placement allocator: the end-of-kernel pointer starts at ${hex(kernelPhys + IMAGE_BYTES)} and may grow to ${hex(home.end * 4096)}, where the first hole is`,
    );
  } else memblock = new Memblock(imagePort, s.memblockPa, { bottomUp: opts.bottomUp });
  n.memblock = memblock;
  for (const r of ram) memblock.add("memory", r.start * 4096, (r.end - r.start) * 4096, r.node);
  memblock.reserve(
    kernelPhys,
    IMAGE_BYTES,
    "kernel image (.text .rodata .data .bss with boot tables and memblock arrays)",
    "kernel-image",
  );
  memblock.reserve(
    0,
    0x100000,
    "first 1 MiB: BIOS data, real-mode trampoline (Linux >= 5.13 always reserves it)",
  );
  n.log(
    `memblock arrays in .bss at ${hex(s.memblockPa)} (${MEMBLOCK_BYTES} bytes: ${128} regions each for memory and reserved), ${opts.bottomUp ? "bottom-up" : "top-down"}`,
  );
  n.end("Early allocator (memblock)");
  return { ...s, memblock, imagePort };
}

/** The strategy context's `log`: a line to the boot's narrator (a method, so a copied machine carries it). */
const narratorLog = stateless(function (this: { narrator?: { log(line: string): void } }, line: string) {
  this.narrator?.log(line);
});

/** The PMM environment's `region` once the PMM exists: memblock has retired, nothing is left to pre-wire tables from. */
const noRegionAfterHandover = stateless((name: string): never =>
  fail(
    "REGION_AFTER_BOOT",
    `region '${name}': regions are created with the PMM, while memblock can still pre-wire their tables`,
  ),
);

/** Step 4: page-table editing made possible; the PMM's metadata sized, placed and mapped. */
function placeMetadata(s: AfterEarly): AfterMetadata {
  const { n, design, strategy, memblock } = s;
  strategy.prepare({
    cur: s.cur,
    layout: s.layout,
    memblock,
    imagePort: s.imagePort,
    fixmapPtPa: s.fixmapPtPa,
    bootRoot: s.bootRoot,
    ram: s.ram,
    holes: s.holes,
    opts: s.opts,
    narrator: n,
    log: narratorLog,
  });
  const pmmLayout: PmmLayout = { usable: s.ram, cpus: s.opts.cpus ?? 1 };
  if (s.opts.colours !== undefined) pmmLayout.colours = s.opts.colours;
  const metaBytes = design.metadataBytes(pmmLayout);
  let metaPa = 0;
  if (metaBytes > 0) {
    const size = Math.ceil(metaBytes / 4096) * 4096;
    metaPa = memblock.alloc(
      size,
      strategy.metadataAlign(size),
      `${design.name} PMM metadata`,
      strategy.metadataLimit(),
      "pmm-metadata",
    );
    if (metaPa < 0) {
      const free = Memblock.bytes(memblock.freeRanges());
      fail(
        "OUT_OF_MEMORY",
        `${design.name} PMM metadata needs ${hex(size)} bytes but memblock has ${hex(free)} free bytes and no fitting block: short by ${hex(Math.max(0, size - free))}`,
      );
    }
    n.log(
      `${design.name} metadata sized from the map: ${metaBytes} bytes for ${(s.ramBytes / 2 ** 30).toFixed(2)} GiB of RAM (${((metaBytes / s.ramBytes) * 100).toFixed(3)}%), placed by memblock at ${hex(metaPa)}`,
    );
    memblock.purpose = "metadata page table";
    strategy.mapMetadata(metaPa, size);
  } else
    n.log(`${design.name} keeps no standing metadata: its structures live in the free frames themselves`);
  n.end("PMM metadata: sized, placed, mapped");
  return { ...s, pmmLayout, metaPa, metaBytes };
}

/** Step 5: the PMM is created and takes every free frame; memblock retires. */
function handOver(s: AfterMetadata): AfterHandover {
  const { n, design, strategy, memblock, layout } = s;
  const port = new SwitchPort(strategy.pmmPort(s.metaPa, Math.ceil(s.metaBytes / 4096) * 4096));
  const regions: MappedRegion[] = [];
  const env = {
    port,
    counters: s.machine.counters,
    region: (name: string, maxBytes: number) => {
      memblock.purpose = `page table pre-wired for region ${name}`;
      const base = layout.regions + regions.length * 134217728;
      const r = new MappedRegion(s.cur, strategy.bootMapper, name, base, maxBytes);
      regions.push(r);
      n.log(
        `region '${name}' for up to ${hex(maxBytes)} bytes at its own 512 GiB slot; ${r.tables} page tables pre-wired from memblock so growing it never allocates`,
      );
      return r;
    },
  };
  const pmm = design.create(env, s.pmmLayout, s.metaPa);
  env.region = noRegionAfterHandover;
  const free = memblock.retire();
  for (const r of free) {
    const first = Math.ceil(r.base / 4096);
    const end = Math.floor((r.base + r.size) / 4096);
    if (end > first) pmm.addFree(first, end - first);
  }
  const freed = Memblock.bytes(free) / 4096;
  n.log(
    `memblock_free_all: ${free.length} free range(s), ${freed} frames given to the ${design.name} PMM; memblock retired`,
  );
  n.end("PMM takes over; memblock retires");
  return { ...s, pmm, port, regions, freed };
}

/** Step 6: the final address space, built from the PMM; CR3 switched on every CPU. */
function finalSpace(s: AfterHandover): AfterFinal {
  const { n, strategy, machine, levels } = s;
  const frames = new PmmFrames(s.pmm);
  const fin = strategy.finalize(frames, s.metaPa, Math.ceil(s.metaBytes / 4096) * 4096);
  s.port.target = fin.port;
  for (let i = 1; i < machine.cpus.length; i++) machine.cpus[i].writeCr3(fin.root);
  const mapper = new Mapper(fin.access, frames, {
    levels,
    maxPhysAddrBits: machine.mem.maxPhysAddrBits,
    counters: machine.counters,
    root: fin.root,
  });
  for (const r of s.regions) r.mapper = mapper;
  n.log(`the PMM's port is re-bound to the final mappings (${strategy.name})`);
  n.end(`Final address space (${strategy.name}), CR3 switched`);
  return { ...s, root: fin.root, mapper };
}

/**
 * The lab observing the PMM (the summary's free frames): the PMM's port is re-bound to an
 * `InspectPort` for the call, so a design that reads through its port reads RAM directly, uncounted,
 * without remapping a window or filling a TLB entry (a free list walked through quickmap windows cost
 * a remap a frame). What a design reads another way (the stack's mapped region) still goes through the
 * CPU: its counts are given back, as the checkers' are. A kernel keeps these figures in registers; the
 * walk is not the boot's cost.
 */
function observe<T>(s: AfterFinal, fn: () => T): T {
  const c = s.machine.counters;
  const saved = c.snapshot();
  const was = s.port.target;
  s.port.target = new InspectPort(s.machine.mem);
  try {
    return fn();
  } finally {
    s.port.target = was;
    Object.assign(c, saved);
  }
}

/** Step 7: the summary, then the checks (whose own memory references are not the boot's cost). */
function summarize(s: AfterFinal, t0: number): BootResult {
  const { n, machine, pmm, levels } = s;
  const c = machine.counters;
  const bootCounters = c.snapshot();
  // The counts a design keeps in registers when it has them; else its stats, observed for free.
  const st: PmmCounts = pmm.counts?.() ?? observe(s, () => pmm.stats());
  const recursiveSlots = s.strategy.recursiveSlots();
  // The final tree's tables, walked once (uncounted peeks): for the checks, the summary and `owned`.
  const tables = tableFrames(machine, s.root, levels, recursiveSlots);
  const checks =
    s.opts.check === false
      ? []
      : checkBoot({
          machine,
          pmm,
          root: s.root,
          levels,
          recursiveSlots,
          tables,
          owned: n.owned,
          ram: s.ram,
          kernelPhys: s.kernelPhys,
          freedFrames: s.freed,
          metaPa: s.metaPa,
          metaBytes: s.metaBytes,
          stats: st,
        });
  const tree = new Set(tables).size;
  n.log(
    `free frames after boot: ${st.freeFrames}; page-table pages: ${tree}; PMM metadata ${st.metadataBytes} B standing + ${st.transientBytes} B transient`,
  );
  for (const ch of checks) n.log(`check passed: ${ch}`);
  const after = c.snapshot();
  if (checks.length > 0)
    n.log(
      `the checks read ${after.memReads - bootCounters.memReads} words and walked ${after.walks - bootCounters.walks} times; not the boot's cost, so counted neither here nor in the summary`,
    );
  n.end("Summary and checks", bootCounters);
  return {
    map: s.mapName,
    pmm: s.design.name,
    kmap: s.strategy.name,
    levels,
    ramBytes: s.ramBytes,
    usablePages: framesIn(s.ram),
    freePagesAfterBoot: st.freeFrames,
    metadataBytes: st.metadataBytes + st.transientBytes,
    metadataStandingBytes: st.metadataBytes,
    metadataTransientBytes: st.transientBytes,
    pageTableBytes: tree * 4096,
    pageTablePages: tree,
    kernelPhys: hex(s.kernelPhys),
    bootSteps: n.steps,
    counters: bootCounters,
    hostMs: Math.round(performance.now() - t0),
    checks,
    machine,
    current: s.cur,
    pmmPort: s.port,
    regions: s.regions,
    layout: s.layout,
    ram: s.ram,
    firmware: s.map,
    owned: ownedAfterBoot(n.owned, tables, s.kernelPhys),
    pmmAllocator: pmm,
    design: s.design,
    pmmLayout: s.pmmLayout,
    metaPa: s.metaPa,
    mapper: s.mapper,
    strategy: s.strategy,
    recursiveSlots,
  };
}

/** memblock's records, plus the final tree's tables that came from the PMM (neither memblock nor .bss). */
function ownedAfterBoot(fromMemblock: OwnedRange[], tables: number[], kernelPhys: number): OwnedRange[] {
  const known = new Set<number>();
  for (const o of fromMemblock)
    if (o.kind === "page-table") for (let f = o.start; f < o.end; f++) known.add(f);
  const image = kernelPhys / 4096;
  const fromPmm = tables
    .filter((t) => !known.has(t) && (t < image || t >= image + IMAGE_BYTES / 4096))
    .sort((a, b) => a - b);
  const out = [...fromMemblock];
  for (const t of fromPmm) {
    const last = out[out.length - 1];
    if (last.step === 6 && last.kind === "page-table" && last.end === t) last.end++;
    else out.push({ kind: "page-table", start: t, end: t + 1, step: 6, why: "page table from the PMM" });
  }
  return out;
}
