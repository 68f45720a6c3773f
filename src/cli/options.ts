/**
 * The option parsers and ranges every command shares. A number, size, address or name given on the
 * command line is checked here, when commander parses it, so a bad value is refused (exit 2, one line
 * naming the option, the range and what was given) before any work starts. Every command that takes
 * `--map`, `--levels`, `--cpus`, `--seed`, `--mem` or `--host-budget` builds it with the functions
 * below, so `boot`, `audit`, `pmm`, `pt`, `demo` and `compare` agree on what each accepts.
 */
import { type Command, Option, type OptionValues } from "@commander-js/extra-typings";
import { fail } from "../errors.ts";
import { DEFAULT_PRESET } from "../firmware/index.ts";
import { DESIGN_NAMES } from "../kernel/pmm/designs.ts";
import { type BootOptions, KMAP_NAMES } from "../kernel/boot/index.ts";
import type { Levels } from "../machine/x86/vaddr.ts";
import { mapFormatOption } from "./map-input.ts";

/** Most CPUs a simulated machine has (the fixmap has two window slots per CPU). */
export const MAX_CPUS = 256;
/** Largest physical address x86-64 can have (MAXPHYADDR 52). */
export const MAX_PHYS = 2 ** 52;

const INT = /^(0x[0-9a-f]+|[0-9]+)$/i;

/** An integer from `min` to `max` (decimal or 0x hex; nothing else: no "1e3", no "", no "1.5"). */
export function intParser(name: string, min: number, max: number) {
  return (s: string): number => {
    const t = s.trim().replace(/_/g, "");
    const v = INT.test(t) ? Number(t) : Number.NaN;
    if (!Number.isSafeInteger(v) || v < min || v > max)
      fail("BAD_OPTION", `${name} must be an integer from ${min} to ${max} (got "${s}")`);
    return v;
  };
}

/**
 * A size or physical address: "8G", "512M", "1.5G", "0x200000000" or a decimal number of bytes,
 * from `min` to `max` bytes.
 */
export function bytesParser(name: string, min: number, max: number) {
  return (s: string): number => {
    const t = s.trim().replace(/_/g, "");
    const m = /^(\d{1,16}(?:\.\d{1,6})?)([KMGTP])i?B?$/i.exec(t);
    let v = Number.NaN;
    if (m) v = Math.round(Number(m[1]) * 1024 ** ("KMGTP".indexOf(m[2].toUpperCase()) + 1));
    else if (INT.test(t)) v = Number(t);
    if (!Number.isFinite(v))
      fail("BAD_OPTION", `${name} must be a size like 512M, 8G or 0x200000000 (got "${s}")`);
    if (!Number.isSafeInteger(v) || v < min || v > max)
      fail("BAD_OPTION", `${name} must be from ${sizeName(min)} to ${sizeName(max)} (got "${s}")`);
    return v;
  };
}

/** A physical address aligned to `align` bytes, below `MAX_PHYS`. */
export function physAddrParser(name: string, align: number) {
  const bytes = bytesParser(name, 0, MAX_PHYS - 1);
  return (s: string): number => {
    const v = bytes(s);
    if (v % align !== 0) fail("BAD_OPTION", `${name} must be ${sizeName(align)} aligned (got "${s}")`);
    return v;
  };
}

/** A canonical kernel-half virtual address (bigint), aligned to `align` bytes. */
export function kernelVaParser(name: string, align: bigint) {
  return (s: string): bigint => {
    const t = s.trim().replace(/_/g, "");
    if (!INT.test(t))
      fail("BAD_OPTION", `${name} must be a hex address like 0xffff888000000000 (got "${s}")`);
    const v = BigInt(t);
    if (v >= 1n << 64n || v < 0xffff800000000000n)
      fail("BAD_OPTION", `${name} must be a kernel-half address from 0xffff800000000000 (got "${s}")`);
    if (v % align !== 0n)
      fail("BAD_OPTION", `${name} must be ${sizeName(Number(align))} aligned (got "${s}")`);
    return v;
  };
}

export function parseLevels(s: string): Levels {
  if (s.trim() !== "4" && s.trim() !== "5") fail("BAD_OPTION", `--levels must be 4 or 5 (got "${s}")`);
  return Number(s) as Levels;
}

/** One of `names`, or a clear refusal listing them. */
export function choiceParser<T extends string>(name: string, names: readonly T[]) {
  return (s: string): T => {
    if (!(names as readonly string[]).includes(s))
      fail("BAD_OPTION", `${name} must be one of ${names.join(", ")} (got "${s}")`);
    return s as T;
  };
}

export function sizeName(n: number): string {
  for (const [u, b] of [
    ["P", 2 ** 50],
    ["T", 2 ** 40],
    ["G", 2 ** 30],
    ["M", 2 ** 20],
    ["K", 2 ** 10],
  ] as const)
    if (n >= b && n % b === 0) return `${n / b}${u}`;
  return String(n);
}

// The options themselves, one definition each.

export const mapOption = (
  what = "firmware map file ('-': standard input), preset, or corpus:ID / a corpus selector naming one real machine (see `pagelab map --help`)",
) => new Option("--map <file|preset>", what).default(DEFAULT_PRESET);

export const levelsOption = (what = "paging levels: 4 or 5 (LA57)") =>
  new Option("--levels <n>", what).default(4 as Levels).argParser(parseLevels);

export const cpusOption = (what: string, dflt: number) =>
  new Option("--cpus <n>", `${what} (1..${MAX_CPUS})`)
    .default(dflt)
    .argParser(intParser("--cpus", 1, MAX_CPUS));

export const seedOption = (what: string, dflt: number) =>
  new Option("--seed <n>", what).default(dflt).argParser(intParser("--seed", 0, 2 ** 32 - 1));

/** Linux's mem=: a physical limit (boot) or an amount of usable RAM (pmm); 1 MiB up to 4 PiB. */
export const memOption = (what: string) =>
  new Option("--mem <bytes>", what).argParser(bytesParser("--mem", 2 ** 20, MAX_PHYS));

export const hostBudgetOption = (what: string) =>
  new Option("--host-budget <bytes>", what).argParser(bytesParser("--host-budget", 2 ** 20, 2 ** 50));

/**
 * The options of `boot` and of every command that boots first (`audit`, `demo`, `pt translate`):
 * the map (`--map`, `--format`) and the kernel's options. Options a design ignores are refused by
 * `checkBootOptions` (src/kernel/boot/options.ts) when given, with the reason.
 */
export function withBootOptions<A extends unknown[], O extends OptionValues, G extends OptionValues>(
  cmd: Command<A, O, G>,
) {
  return withKernelOptions(cmd.addOption(mapOption()).addOption(mapFormatOption()));
}

/** The kernel's boot options without the map's (`pt dump` names its map format `--map-format`). */
export function withKernelOptions<A extends unknown[], O extends OptionValues, G extends OptionValues>(
  cmd: Command<A, O, G>,
) {
  return cmd
    .option(
      "--pmm <design|file>",
      `physical memory manager: ${DESIGN_NAMES.join(", ")}, or ./your-allocator.ts`,
      "buddy",
    )
    .option("--no-validate", "skip the random-sequence validation of a --pmm file before booting")
    .addOption(
      new Option("--kmap <strategy>", "how the kernel reaches physical memory")
        .choices(KMAP_NAMES)
        .default("direct" as const),
    )
    .addOption(levelsOption())
    .addOption(seedOption("seed of the KASLR slot (with --kaslr)", 1))
    .addOption(cpusOption("number of CPUs (the others load the final CR3)", 1))
    .addOption(
      new Option(
        "--kernel-phys <addr>",
        "physical load address of the kernel image (2 MiB aligned)",
      ).argParser(physAddrParser("--kernel-phys", 2 ** 21)),
    )
    .option("--kaslr", "pick the kernel's physical address at random among RAM slots (from --seed)")
    .option("--bottom-up", "memblock allocates bottom-up instead of top-down")
    .addOption(
      new Option(
        "--early <allocator>",
        "early allocator: memblock, or the tutorials' placement (bump past the kernel)",
      )
        .choices(["memblock", "placement"] as const)
        .default("memblock" as const),
    )
    .addOption(
      new Option("--recursive-slot <n>", "root slot for --kmap recursive (256..511, default 510)").argParser(
        intParser("--recursive-slot", 0, 511),
      ),
    )
    .addOption(
      new Option(
        "--direct-base <addr>",
        "virtual base of the direct map, 1 GiB aligned (default 0xffff888000000000)",
      ).argParser(kernelVaParser("--direct-base", 1n << 30n)),
    )
    .addOption(
      new Option(
        "--hybrid-limit <bytes>",
        "physical limit of the direct map for --kmap hybrid (default 4G)",
      ).argParser(bytesParser("--hybrid-limit", 2 ** 21, MAX_PHYS)),
    )
    .option("--map-holes", "direct map: map holes and MMIO too (reports the hazard)")
    .option(
      "--exec-direct-map",
      "direct map without NX (a classic mistake: all RAM becomes W+X; for the audit)",
    )
    .option("--no-gbpages", "no 1 GiB pages in the direct map")
    .addOption(
      memOption("Linux's mem=: ignore RAM at and above this physical address (e.g. 0x200000000 or 8G)"),
    )
    .addOption(
      hostBudgetOption(
        "refuse up front when the simulation would back more host memory than this (default 8G)",
      ),
    )
    .option("--no-check", "skip the after-boot checks (faster on huge maps)")
    .option("--check-stale", "compare every TLB hit with the page tables (slow; catches missing flushes)");
}

// biome-ignore lint/complexity/noBannedTypes: commander's own default for "no options yet"
export type BootCliOptions = ReturnType<ReturnType<typeof withBootOptions<[], {}, {}>>["opts"]>;
/** The kernel's options as parsed (without the map's). */
export type KernelCliOptions = Omit<BootCliOptions, "map" | "format">;

/**
 * The boot options as `bootKernel` takes them: an option left at its default is left out, so that
 * `checkBootOptions` refuses only what the user asked for. `--seed` without `--kaslr` is refused here
 * (the seed chooses nothing else in a boot).
 */
export function bootOptionsFrom(
  cmd: Command<unknown[], OptionValues, OptionValues>,
  o: KernelCliOptions & { map: string },
  mapFormat: string | undefined,
): Omit<BootOptions, "pmm"> {
  const given = (name: string) => cmd.getOptionValueSource(name) === "cli";
  if (given("seed") && !o.kaslr)
    fail(
      "BAD_OPTION_COMBINATION",
      "--seed chooses the KASLR slot and nothing else in a boot: add --kaslr or drop --seed",
    );
  return {
    map: o.map,
    mapFormat,
    kmap: o.kmap,
    levels: o.levels,
    cpus: o.cpus,
    seed: o.seed,
    kernelPhys: o.kernelPhys,
    kaslr: o.kaslr,
    bottomUp: o.bottomUp,
    early: o.early,
    recursiveSlot: o.recursiveSlot,
    directMapBase: o.directBase,
    hybridLimit: o.hybridLimit,
    mapHoles: o.mapHoles,
    execDirectMap: o.execDirectMap,
    gbPages: o.gbpages === false ? false : undefined,
    check: o.check,
    checkStale: o.checkStale,
    mem: o.mem,
    hostBudget: o.hostBudget,
  };
}
