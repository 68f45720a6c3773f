/**
 * The options of a boot, and the refusals that come before any work: options that contradict each
 * other, options the chosen strategy would silently ignore, and layout collisions.
 */
import { fail, hex } from "../../errors.ts";
import type { MemoryMap } from "../../firmware/index.ts";
import type { Levels } from "../../machine/x86/vaddr.ts";
import { IMAGE_BYTES } from "../image.ts";
import type { KernelLayout } from "../kmap/layout.ts";
import { makeStrategy } from "../kmap/strategies.ts";
import type { KmapOptions } from "../kmap/strategy.ts";
import type { FrameRange, PmmDesign } from "../pmm/interface.ts";

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
  /** Cache colours the PMM is told of (colour-stacks); default: the design's own (1). */
  colours?: number;
  /** Linux's mem=: ignore RAM at and above this physical address. */
  mem?: number;
  /** Refuse up front when the estimated host memory exceeds this many bytes (default 8 GiB). */
  hostBudget?: number;
  /**
   * Called with the boot's host-memory estimate (bytes) once it is within the budget, before anything
   * is backed: the CLI relaunches itself with 2 MiB host pages for a big one (cli/huge-pages.ts).
   */
  onHostEstimate?: (bytes: number) => void;
}

/** The option flags of the strategy-specific options, for the refusals. */
const OWN_OPTION_FLAGS = { hybridLimit: "--hybrid-limit", recursiveSlot: "--recursive-slot" } as const;

/**
 * Refuse options that contradict each other or that the chosen design would silently ignore, with
 * the reason, before any work. (Each option that is accepted shows in the boot log.)
 */
export function checkBootOptions(opts: BootOptions): void {
  const strategy = makeStrategy(opts.kmap ?? "direct");
  const kmap = strategy.name;
  const refuse = (why: string) => fail("BAD_OPTION_COMBINATION", why);
  if (opts.kaslr && opts.kernelPhys !== undefined)
    refuse(
      "--kaslr picks the kernel's physical address at random and --kernel-phys fixes it: give one or the other",
    );
  if (opts.early === "placement" && opts.bottomUp)
    refuse(
      "--bottom-up is a memblock direction; the placement allocator always bumps upward past the kernel: drop one",
    );
  if (!strategy.hasDirectMap) {
    const noDirect = (flag: string) =>
      refuse(`${flag} shapes the direct map, and --kmap ${kmap} builds none (use --kmap direct or hybrid)`);
    if (opts.mapHoles) noDirect("--map-holes");
    if (opts.execDirectMap) noDirect("--exec-direct-map");
    if (opts.gbPages === false) noDirect("--no-gbpages");
    if (opts.directMapBase !== undefined) noDirect("--direct-base");
  }
  if (opts.hybridLimit !== undefined && !strategy.ownOptions.includes("hybridLimit"))
    refuse(
      `${OWN_OPTION_FLAGS.hybridLimit} is the end of hybrid's direct map; --kmap ${kmap} has no such limit (use --kmap hybrid)`,
    );
  if (opts.recursiveSlot !== undefined && !strategy.ownOptions.includes("recursiveSlot"))
    refuse(
      `${OWN_OPTION_FLAGS.recursiveSlot} names the root slot of --kmap recursive; --kmap ${kmap} has no recursive slot`,
    );
  if (opts.hybridLimit !== undefined && (opts.hybridLimit < 2 ** 21 || opts.hybridLimit % 2 ** 21 !== 0))
    refuse(`--hybrid-limit must be a multiple of 2 MiB, at least 2 MiB (got ${hex(opts.hybridLimit)})`);
  if (opts.kernelPhys !== undefined && opts.kernelPhys % IMAGE_BYTES !== 0)
    refuse(`--kernel-phys ${hex(opts.kernelPhys)} is not 2 MiB aligned`);
  const ncpus = opts.cpus ?? 1;
  if (!Number.isInteger(ncpus) || ncpus < 1 || ncpus > 256)
    fail("BAD_OPTION", `--cpus must be 1..256 (got ${ncpus})`);
}

/** The root slot of a virtual address in the layout. */
function rootSlot(layout: KernelLayout, vpn: number): number {
  return Math.floor(vpn / 2 ** (9 * (layout.levels - 1))) % 512;
}

/** Refuse a recursive slot or direct-map base that collides with another region of the layout. */
export function checkLayout(layout: KernelLayout, opts: BootOptions, ram: FrameRange[]): void {
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
