/**
 * `pagelab boot`: from a firmware map to a running physical memory manager, inside the simulated
 * machine, told step by step.
 *
 *   1. firmware map -> memblock.memory (Linux's sanitizer and early edits)
 *   2. kernel image loaded; boot page tables in its .bss map 2 MiB at -2 GiB (+ the fixmap page table)
 *   3. the early allocator (memblock, arrays in .bss) learns RAM and the reservations
 *   4. the kernel-mapping strategy makes page-table editing possible; the PMM's metadata is sized from
 *      the map, placed by memblock, and mapped with page tables that also come from memblock
 *   5. the PMM is created and given every free frame; memblock retires (checked: nothing lost)
 *   6. the final address space: a root from the PMM, the kernel half shared, CR3 switched, the PMM's
 *      port re-bound to the final mappings
 *   7. summary and checks
 *
 * Each step records what it allocated, where and why, and the counters it cost.
 */
import { DEFAULT_DENSE_BUDGET } from "../machine/phys-mem.ts";
import { fail, hex } from "../errors.ts";
import { e820TypeName, isUsable, loadMap, type MemoryMap, memblockMemory } from "../firmware/index.ts";
import { Counters } from "../machine/counters.ts";
import { Machine } from "../machine/machine.ts";
import { Rng } from "../machine/rng.ts";
import type { FrameSource } from "../machine/x86/mapper.ts";
import { Mapper } from "../machine/x86/mapper.ts";
import type { Levels } from "../machine/x86/vaddr.ts";
import { Memblock, MEMBLOCK_BYTES, type MemblockRange } from "../kernel/early/memblock.ts";
import { PlacementAllocator } from "../kernel/early/placement.ts";
import { IMAGE_BYTES, placeKernel, writeBootTables } from "../kernel/image.ts";
import { DirectStrategy } from "../kernel/kmap/direct.ts";
import { HybridStrategy } from "../kernel/kmap/hybrid.ts";
import { type KernelLayout, kernelLayout } from "../kernel/kmap/layout.ts";
import { PoolStrategy } from "../kernel/kmap/pool.ts";
import { LinearPort, SwitchPort } from "../kernel/kmap/ports.ts";
import { QuickmapStrategy } from "../kernel/kmap/quickmap.ts";
import { RecursiveStrategy } from "../kernel/kmap/recursive.ts";
import { MappedRegion } from "../kernel/kmap/region.ts";
import { Current } from "../kernel/percpu.ts";
import type { KmapName, KmapOptions, KmapStrategy } from "../kernel/kmap/strategy.ts";
import { getDesign } from "../kernel/pmm/designs.ts";
import type { FrameAllocator, FrameRange, PmmDesign, PmmLayout } from "../kernel/pmm/interface.ts";
import { checkBoot, tableFrames } from "./boot-check.ts";

export const KMAP_NAMES: KmapName[] = ["direct", "recursive", "quickmap", "hybrid", "pool"];

export function makeStrategy(name: string): KmapStrategy {
  switch (name) {
    case "direct":
      return new DirectStrategy();
    case "recursive":
      return new RecursiveStrategy();
    case "quickmap":
      return new QuickmapStrategy();
    case "hybrid":
      return new HybridStrategy();
    case "pool":
      return new PoolStrategy();
    default:
      return fail("BAD_OPTION", `no kernel-mapping strategy '${name}' (choose ${KMAP_NAMES.join(", ")})`);
  }
}

export interface BootOptions extends KmapOptions {
  map?: string;
  /** Format of a map file (`pagelab map --help` lists them); undefined: detected from its content. */
  mapFormat?: string;
  /** A map already parsed (e.g. pasted into the explorer); `map` is then only its label in messages. */
  loadedMap?: MemoryMap;
  /** A built-in design name, or a design object (bring your own allocator, see kernel/pmm/load.ts). */
  pmm?: string | PmmDesign;
  kmap?: string;
  levels?: Levels;
  seed?: number;
  /** Physical load address of the kernel image (2 MiB aligned). */
  kernelPhys?: number;
  /** Choose the kernel's physical address at random among aligned RAM slots (KASLR), from `seed`. */
  kaslr?: boolean;
  /** memblock allocates bottom-up instead of top-down. */
  bottomUp?: boolean;
  /** The early allocator: memblock (default) or the tutorials' placement allocator. */
  early?: "memblock" | "placement";
  recursiveSlot?: number;
  directMapBase?: bigint;
  /** Compare every TLB hit with the page tables (slower; on in tests). */
  checkStale?: boolean;
  /** Run the after-boot checks (default true). */
  check?: boolean;
  /** Number of CPUs (default 1); the application processors load the final CR3 once it exists. */
  cpus?: number;
  /** Linux's mem=: ignore RAM at and above this physical address. */
  mem?: number;
  /** Refuse up front when the estimated host memory exceeds this many bytes (default 8 GiB). */
  hostBudget?: number;
}

/**
 * Host bytes a boot will back, roughly: the PMM's standing metadata, plus what it writes into free
 * frames (the xv6 free list writes a pointer into every one; the stacks keep 8 bytes per frame).
 */
export function hostBytesEstimate(
  designName: string,
  metadataBytes: number,
  ramBytes: number,
): { bytes: number; why: string } {
  const frames = ramBytes / 4096;
  if (designName === "freelist")
    return {
      // Simulated RAM backs a 64-byte line per touched frame (plus its index), after the dense
      // chunks of DEFAULT_DENSE_BUDGET (src/machine/phys-mem.ts): about 240 host bytes per free frame.
      bytes: metadataBytes + Math.min(ramBytes, DEFAULT_DENSE_BUDGET) + frames * 240,
      why: "it writes a next pointer into every free frame: a 64-byte line of host memory each",
    };
  if (designName === "stack" || designName === "stack-pages" || designName === "colour-stacks") {
    return { bytes: metadataBytes + frames * 8, why: "its stack holds 8 bytes per free frame" };
  }
  return { bytes: metadataBytes, why: "its standing metadata is this large" };
}

/**
 * Refuse up front (HOST_MEMORY, exit 2) when a design on `ramBytes` of RAM would back more host memory
 * than `budget` (default 8 GiB): every command that brings a PMM up (boot, audit, pmm, demo, pt,
 * compare, the server's boots) goes through here.
 */
export function checkHostBudget(
  designName: string,
  metadataBytes: number,
  ramBytes: number,
  budget = 8 * 2 ** 30,
): void {
  const est = hostBytesEstimate(designName, metadataBytes, ramBytes);
  if (est.bytes > budget) {
    fail(
      "HOST_MEMORY",
      `the ${designName} PMM on ${(ramBytes / 2 ** 30).toFixed(1)} GiB of RAM would back about ${(est.bytes / 2 ** 30).toFixed(1)} GiB of host memory (${est.why}); ` +
        `the budget is ${(budget / 2 ** 30).toFixed(1)} GiB. Boot a part of the map with --mem (Linux's mem=), raise --host-budget, or pick a design with smaller metadata (bitmap).`,
    );
  }
}

/** Apply mem=: keep RAM below `limit` only. */
function applyMem(ram: FrameRange[], limit: number | undefined, log: (s: string) => void): FrameRange[] {
  if (limit === undefined) return ram;
  const top = Math.floor(limit / 4096);
  const out = ram.filter((r) => r.start < top).map((r) => ({ ...r, end: Math.min(r.end, top) }));
  log(
    `mem=${hex(limit)}: RAM at and above it is ignored (${ram.length - out.length} range(s) dropped, others clipped)`,
  );
  return out;
}

export interface BootStep {
  step: number;
  title: string;
  log: string[];
  allocated: { what: string; pa: string; bytes: number }[];
  counters: Record<string, number>;
}

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
  pmmAllocator: FrameAllocator;
  mapper: Mapper;
  strategy: KmapStrategy;
  recursiveSlots: number[];
}

/** PMM frames as a FrameSource (page tables after memblock retires). */
export class PmmFrames implements FrameSource {
  constructor(readonly pmm: FrameAllocator) {}
  allocFrame(): number {
    return this.pmm.alloc(0);
  }
  freeFrame(pfn: number): void {
    this.pmm.free(pfn, 0);
  }
}

class Narrator {
  readonly steps: BootStep[] = [];
  private before: Record<string, number>;
  private lines: string[] = [];
  private allocMark = 0;

  constructor(
    private readonly counters: Counters,
    private readonly memblock: () => Memblock | null,
  ) {
    this.before = counters.snapshot();
  }

  log = (line: string): void => {
    this.lines.push(line);
  };

  /** Close a step; `now` (default: the counters now) lets a step leave out work done after it. */
  end(title: string, now: Record<string, number> = this.counters.snapshot()): void {
    const mb = this.memblock();
    const allocs = mb ? mb.allocations.slice(this.allocMark) : [];
    if (mb) this.allocMark = mb.allocations.length;
    this.steps.push({
      step: this.steps.length + 1,
      title,
      log: this.lines,
      allocated: allocs.map((a) => ({ what: a.why, pa: hex(a.base), bytes: a.size })),
      counters: Counters.diff(this.before, now),
    });
    this.before = now;
    this.lines = [];
  }
}

/** MAXPHYADDR that covers the map: at least 46 bits, at most 52. */
function physBitsFor(ram: FrameRange[]): number {
  const top = Math.max(1, ...ram.map((r) => r.end)) * 4096;
  return Math.min(52, Math.max(46, Math.ceil(Math.log2(top))));
}

/** The kernel mappings that build a direct map (the options shaping it mean nothing to the others). */
const DIRECT_MAP_KMAPS = ["direct", "hybrid"];

/**
 * Refuse options that contradict each other or that the chosen design would silently ignore, with
 * the reason, before any work. (Each option that is accepted shows in the boot log.)
 */
export function checkBootOptions(opts: BootOptions): void {
  const kmap = opts.kmap ?? "direct";
  const refuse = (why: string) => fail("BAD_OPTION_COMBINATION", why);
  if (opts.kaslr && opts.kernelPhys !== undefined)
    refuse(
      "--kaslr picks the kernel's physical address at random and --kernel-phys fixes it: give one or the other",
    );
  if (opts.early === "placement" && opts.bottomUp)
    refuse(
      "--bottom-up is a memblock direction; the placement allocator always bumps upward past the kernel: drop one",
    );
  if (!DIRECT_MAP_KMAPS.includes(kmap)) {
    const noDirect = (flag: string) =>
      refuse(`${flag} shapes the direct map, and --kmap ${kmap} builds none (use --kmap direct or hybrid)`);
    if (opts.mapHoles) noDirect("--map-holes");
    if (opts.execDirectMap) noDirect("--exec-direct-map");
    if (opts.gbPages === false) noDirect("--no-gbpages");
    if (opts.directMapBase !== undefined) noDirect("--direct-base");
  }
  if (opts.hybridLimit !== undefined && kmap !== "hybrid")
    refuse(
      `--hybrid-limit is the end of hybrid's direct map; --kmap ${kmap} has no such limit (use --kmap hybrid)`,
    );
  if (opts.recursiveSlot !== undefined && kmap !== "recursive")
    refuse(`--recursive-slot names the root slot of --kmap recursive; --kmap ${kmap} has no recursive slot`);
  if (opts.hybridLimit !== undefined && (opts.hybridLimit < 2 ** 21 || opts.hybridLimit % 2 ** 21 !== 0))
    refuse(`--hybrid-limit must be a multiple of 2 MiB, at least 2 MiB (got ${hex(opts.hybridLimit)})`);
  if (opts.kernelPhys !== undefined && opts.kernelPhys % IMAGE_BYTES !== 0)
    refuse(`--kernel-phys ${hex(opts.kernelPhys)} is not 2 MiB aligned`);
}

/**
 * The RAM a boot would hand to the PMM: the map's usable ranges as memblock keeps them, cut at mem=
 * and at what the kernel mapping reaches with `levels`. `early` is what the boot log says of the cuts.
 * Throws NO_RAM when nothing is left.
 */
export function bootRam(
  mapName: string,
  strategy: KmapStrategy,
  levels: Levels,
  mem: number | undefined,
  source: Pick<BootOptions, "mapFormat" | "loadedMap"> = {},
): {
  map: ReturnType<typeof loadMap>;
  changes: ReturnType<typeof memblockMemory>["changes"];
  ram: FrameRange[];
  ramBytes: number;
  early: string[];
} {
  const map = source.loadedMap ?? loadMap(mapName, { format: source.mapFormat });
  const mb = memblockMemory(map);
  const early: string[] = [];
  let ram: FrameRange[] = applyMem(
    mb.ranges
      .map((r) => ({
        start: Number((r.start + 4095n) / 4096n),
        end: Number((r.end + 1n) / 4096n),
        node: r.node,
      }))
      .filter((r) => r.end > r.start),
    mem,
    (l) => early.push(l),
  );
  const reach = strategy.physLimit(levels);
  if (ram.some((r) => r.end * 4096 > reach)) {
    const lost = ram.reduce((s, r) => s + Math.max(0, r.end - Math.max(r.start, reach / 4096)), 0);
    ram = ram
      .filter((r) => r.start * 4096 < reach)
      .map((r) => ({ ...r, end: Math.min(r.end, reach / 4096) }));
    early.push(
      `a ${levels}-level direct map holds ${hex(reach)} bytes of physical memory: ${lost} frames of RAM above it are ignored, as Linux does (MAX_PHYSMEM_BITS); --levels 5 or --kmap recursive/quickmap/hybrid reach them`,
    );
  }
  if (ram.length === 0)
    fail(
      "NO_RAM",
      `${mapName}: the map has no usable RAM${mem !== undefined ? ` below mem=${hex(mem)}` : ""}`,
    );
  const ramBytes = ram.reduce((s, r) => s + (r.end - r.start) * 4096, 0);
  return { map, changes: mb.changes, ram, ramBytes, early };
}

export function bootKernel(opts: BootOptions = {}): BootResult {
  const t0 = performance.now();
  checkBootOptions(opts);
  const levels = opts.levels ?? 4;
  const mapName = opts.map ?? "qemu:4G";
  const design = typeof opts.pmm === "object" ? opts.pmm : getDesign(opts.pmm ?? "buddy");
  const strategy = makeStrategy(opts.kmap ?? "direct");

  // Step 1: the firmware map and what Linux would keep of it.
  const { map, changes, ram, ramBytes, early } = bootRam(mapName, strategy, levels, opts.mem, opts);
  checkHostBudget(design.name, design.metadataBytes({ usable: ram, cpus: 1 }), ramBytes, opts.hostBudget);
  const holes = map.entries
    .filter((e) => !isUsable(e.type) && e.start < 1n << 52n)
    .map((e) => ({ start: Number(e.start), end: Number(e.end + 1n), type: e820TypeName(e.type) }));
  const ncpus = opts.cpus ?? 1;
  if (!Number.isInteger(ncpus) || ncpus < 1 || ncpus > 256)
    fail("BAD_OPTION", `--cpus must be 1..256 (got ${ncpus})`);
  const machine = new Machine({
    levels,
    cpus: ncpus,
    maxPhysAddrBits: physBitsFor(ram),
    checkStale: opts.checkStale ?? false,
  });
  const c = machine.counters;
  const cur = new Current(machine);
  const cpu = machine.cpu0;
  let memblock: Memblock | null = null;
  const n = new Narrator(c, () => memblock);
  for (const l of early) n.log(l);
  n.log(
    `${mapName}: ${map.entries.length} entries after sanitizing; memblock.memory: ${ram.length} range(s), ${ram.reduce((s, r) => s + r.end - r.start, 0)} pages (${(ramBytes / 2 ** 20).toFixed(1)} MiB)`,
  );
  for (const ch of changes.slice(0, 8)) n.log(`  ${ch.message}`);
  n.log(`MAXPHYADDR ${machine.mem.maxPhysAddrBits} bits, ${levels}-level paging`);
  n.end("Firmware map");

  // Step 2: kernel image and boot page tables.
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
  const kernelPhys = placeKernel(ram, want, n.log);
  const boot = writeBootTables(machine.mem, kernelPhys, layout);
  cpu.writeCr3(boot.root);
  n.log(
    `kernel image at ${hex(kernelPhys)}-${hex(kernelPhys + IMAGE_BYTES - 1)}, running at 0xffffffff80000000`,
  );
  n.log(
    `boot page tables: ${boot.tables.length} pages in .bss at ${hex(boot.tables[0] * 4096)} (root, ${levels === 5 ? "PML4, " : ""}PDPT, PD, image PT, fixmap PT): they map the 2 MiB image and the fixmap, nothing else`,
  );
  n.log("CR3 loaded with the boot root; from here on the kernel touches memory only through its mappings");
  n.end("Kernel image and boot page tables");

  // Step 3: the early allocator.
  const imagePort = new LinearPort(cur, layout.kernelImage, kernelPhys, IMAGE_BYTES, "kernel image");
  if (opts.early === "placement") {
    const home = ram.find((r) => r.start * 4096 <= kernelPhys && kernelPhys + IMAGE_BYTES <= r.end * 4096)!;
    memblock = new PlacementAllocator(imagePort, boot.memblockPa, kernelPhys + IMAGE_BYTES, home.end * 4096);
    n.log(
      `placement allocator: the end-of-kernel pointer starts at ${hex(kernelPhys + IMAGE_BYTES)} and may grow to ${hex(home.end * 4096)}, where the first hole is`,
    );
  } else memblock = new Memblock(imagePort, boot.memblockPa, { bottomUp: opts.bottomUp });
  for (const r of ram) memblock.add("memory", r.start * 4096, (r.end - r.start) * 4096, r.node);
  memblock.reserve(
    kernelPhys,
    IMAGE_BYTES,
    "kernel image (.text .rodata .data .bss with boot tables and memblock arrays)",
  );
  memblock.reserve(
    0,
    0x100000,
    "first 1 MiB: BIOS data, real-mode trampoline (Linux >= 5.13 always reserves it)",
  );
  n.log(
    `memblock arrays in .bss at ${hex(boot.memblockPa)} (${MEMBLOCK_BYTES} bytes: ${128} regions each for memory and reserved), ${opts.bottomUp ? "bottom-up" : "top-down"}`,
  );
  n.end("Early allocator (memblock)");

  // Step 4: page-table editing, PMM metadata sized, placed and mapped.
  strategy.prepare({
    cur,
    layout,
    memblock,
    imagePort,
    fixmapPtPa: boot.fixmapPtPa,
    bootRoot: boot.root,
    ram,
    holes,
    opts,
    log: n.log,
  });
  const pmmLayout: PmmLayout = { usable: ram, cpus: ncpus };
  const metaBytes = design.metadataBytes(pmmLayout);
  let metaPa = 0;
  if (metaBytes > 0) {
    const size = Math.ceil(metaBytes / 4096) * 4096;
    const align = size >= 0x200000 && strategy.name !== "direct" ? 0x200000 : 4096;
    metaPa = memblock.alloc(size, align, `${design.name} PMM metadata`, strategy.metadataLimit());
    if (metaPa < 0) {
      const free = Memblock.bytes(memblock.freeRanges());
      fail(
        "OUT_OF_MEMORY",
        `${design.name} PMM metadata needs ${hex(size)} bytes but memblock has ${hex(free)} free bytes and no fitting block: short by ${hex(Math.max(0, size - free))}`,
      );
    }
    n.log(
      `${design.name} metadata sized from the map: ${metaBytes} bytes for ${(ramBytes / 2 ** 30).toFixed(2)} GiB of RAM (${((metaBytes / ramBytes) * 100).toFixed(3)}%), placed by memblock at ${hex(metaPa)}`,
    );
    memblock.purpose = "metadata page table";
    strategy.mapMetadata(metaPa, size);
  } else
    n.log(`${design.name} keeps no standing metadata: its structures live in the free frames themselves`);
  n.end("PMM metadata: sized, placed, mapped");

  // Step 5: the PMM takes over.
  const port = new SwitchPort(strategy.pmmPort(metaPa, Math.ceil(metaBytes / 4096) * 4096));
  const regions: MappedRegion[] = [];
  const env = {
    port,
    counters: c,
    region: (name: string, maxBytes: number) => {
      memblock!.purpose = `page table pre-wired for region ${name}`;
      const r = new MappedRegion(
        cur,
        strategy.bootMapper,
        name,
        layout.regions + regions.length * 134217728,
        maxBytes,
      );
      regions.push(r);
      n.log(
        `region '${name}' for up to ${hex(maxBytes)} bytes at its own 512 GiB slot; ${r.tables} page tables pre-wired from memblock so growing it never allocates`,
      );
      return r;
    },
  };
  const pmm = design.create(env, pmmLayout, metaPa);
  const reservedBefore = memblock.ranges("reserved");
  const free = memblock.retire();
  handOver(pmm, free);
  const freed = Memblock.bytes(free) / 4096;
  n.log(
    `memblock_free_all: ${free.length} free range(s), ${freed} frames given to the ${design.name} PMM; memblock retired`,
  );
  n.end("PMM takes over; memblock retires");

  // Step 6: final address space.
  const frames = new PmmFrames(pmm);
  const fin = strategy.finalize(frames, metaPa, Math.ceil(metaBytes / 4096) * 4096);
  port.target = fin.port;
  for (let i = 1; i < ncpus; i++) machine.cpus[i].writeCr3(fin.root);
  const mapper = new Mapper(fin.access, frames, {
    levels,
    maxPhysAddrBits: machine.mem.maxPhysAddrBits,
    counters: c,
    root: fin.root,
  });
  for (const r of regions) r.mapper = mapper;
  n.log(`the PMM's port is re-bound to the final mappings (${strategy.name})`);
  n.end(`Final address space (${strategy.name}), CR3 switched`);

  // Step 7: summary, then the checks (whose own memory references are not the boot's cost).
  const st = pmm.stats();
  const recursiveSlots = strategy.name === "recursive" ? [layout.recursiveSlot] : [];
  const bootCounters = c.snapshot();
  const checks =
    opts.check === false
      ? []
      : checkBoot({
          machine,
          pmm,
          root: fin.root,
          levels,
          recursiveSlots,
          reserved: reservedBefore,
          ram,
          kernelPhys,
          freedFrames: freed,
          metaPa,
          metaBytes,
          stats: st,
        });
  const tree = new Set(tableFrames(machine, fin.root, levels, recursiveSlots)).size;
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
    map: mapName,
    pmm: design.name,
    kmap: strategy.name,
    levels,
    ramBytes,
    usablePages: ram.reduce((s, r) => s + r.end - r.start, 0),
    freePagesAfterBoot: st.freeFrames,
    metadataBytes: st.metadataBytes + st.transientBytes,
    metadataStandingBytes: st.metadataBytes,
    metadataTransientBytes: st.transientBytes,
    pageTableBytes: tree * 4096,
    pageTablePages: tree,
    kernelPhys: hex(kernelPhys),
    bootSteps: n.steps,
    counters: bootCounters,
    hostMs: Math.round(performance.now() - t0),
    checks,
    machine,
    current: cur,
    pmmPort: port,
    regions,
    layout,
    ram,
    pmmAllocator: pmm,
    mapper,
    strategy,
    recursiveSlots,
  };
}

/** Give the PMM every free range, in 2^k-aligned chunks it can take whole. */
function handOver(pmm: FrameAllocator, free: MemblockRange[]): void {
  for (const r of free) {
    const start = Math.ceil(r.base / 4096);
    const end = Math.floor((r.base + r.size) / 4096);
    if (end > start) pmm.addFree(start, end - start);
  }
}

/** The root slot of a virtual address in the layout. */
function rootSlot(layout: KernelLayout, vpn: number): number {
  return Math.floor(vpn / 2 ** (9 * (layout.levels - 1))) % 512;
}

/** Refuse a recursive slot or direct-map base that collides with another region of the layout. */
function checkLayout(layout: KernelLayout, opts: BootOptions, ram: FrameRange[]): void {
  const taken: [string, number][] = [
    ["vmalloc", layout.vmalloc],
    ["the PMM regions", layout.regions],
    ["the PMM metadata", layout.metadata],
    ["the kernel image and fixmap", layout.kernelImage],
  ];
  if (opts.recursiveSlot !== undefined) {
    const s = opts.recursiveSlot;
    if (s < 256)
      fail(
        "BAD_OPTION",
        `--recursive-slot ${s} is in the user half (0..255): the page tables would be reachable from user space; choose 256..511`,
      );
    for (const [what, vpn] of taken)
      if (rootSlot(layout, vpn) === s)
        fail("BAD_OPTION", `--recursive-slot: slot ${s} is taken by ${what}; choose another (default 510)`);
  }
  if (opts.directMapBase !== undefined) {
    const top = Math.max(...ram.map((r) => r.end));
    const end = layout.directMap + top;
    for (const [what, vpn] of taken)
      if (layout.directMap <= vpn + 511 && vpn < end)
        fail(
          "BAD_OPTION",
          `--direct-base 0x${opts.directMapBase.toString(16)}: a direct map of ${hex(top * 4096)} bytes there overlaps ${what}`,
        );
  }
}

function kaslrSlot(ram: FrameRange[], seed: number): { pa: number; index: number; slots: number } {
  const slots: number[] = [];
  for (const r of ram) {
    for (
      let pa = Math.ceil((r.start * 4096) / IMAGE_BYTES) * IMAGE_BYTES;
      pa + IMAGE_BYTES <= r.end * 4096 && slots.length < 65536;
      pa += IMAGE_BYTES
    ) {
      if (pa >= 0x1000000) slots.push(pa);
    }
  }
  if (slots.length === 0) return { pa: 0x1000000, index: 0, slots: 0 };
  const index = new Rng(seed).below(slots.length);
  return { pa: slots[index], index, slots: slots.length };
}
