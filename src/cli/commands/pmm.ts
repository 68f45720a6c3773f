/**
 * `pagelab pmm`: bring up one or every physical-memory-manager design on a firmware map and print the
 * measures of src/kernel/pmm/measure.ts (metadata, references per operation, contiguity and
 * fragmentation after churn), plus `/proc/buddyinfo` lines for the buddies.
 */
import { SUMMARY } from "./index.ts";
import { type Command, Option } from "@commander-js/extra-typings";
import { framesIn, usableFrameRanges } from "../../firmware/frames.ts";
import { bootAuditor, bootKernel, bootRam, checkHostBudget } from "../../kernel/boot/index.ts";
import { KMAP_NAMES, makeStrategy } from "../../kernel/kmap/strategies.ts";
import { DESIGN_NAMES, DESIGNS, getDesign } from "../../kernel/pmm/designs.ts";
import type { PmmDesign } from "../../kernel/pmm/interface.ts";
import { isDesignPath, loadDesign } from "../../kernel/pmm/load.ts";
import { measureAllocator, type PmmMeasures } from "../../kernel/pmm/measure.ts";
import { BYO_VALIDATION, validateDesign } from "../../kernel/pmm/validate.ts";
import { relaunchWithHugePages } from "../huge-pages.ts";
import { mapFormatOption } from "../map-input.ts";
import {
  cpusOption,
  hostBudgetOption,
  intParser,
  levelsOption,
  mapOption,
  memOption,
  seedOption,
} from "../options.ts";
import { table } from "../output.ts";

function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[u]}`;
}

const HELP = `
Designs (one module each under src/kernel/pmm/):
${DESIGN_NAMES.map((n) => `  ${n.padEnd(14)} ${DESIGNS[n]().summary}`).join("\n")}

Each design is measured on the kernel that \`pagelab boot\` brings up with the same options: the same
RAM (memblock.memory after Linux's early edits, cut at --mem), the same 2 MiB kernel image and
reservations, its metadata placed by memblock and reached through the --kmap mappings. All allocator
state lives in simulated RAM; references are 32-bit reads and writes through the kernel's mappings.

Columns:
  free            frames free right after boot (as \`pagelab boot --json\` reports freePagesAfterBoot)
  meta            standing metadata for the booted RAM (and per GiB); "full map" sizes it for the
                  whole map, before --mem
  transient       frames holding the allocator's own structures (stack pages), after boot / at peak
  refs a/f        memory references per order-0 alloc / free, right after boot
  largest         largest order that succeeds after boot / after churn (4 KiB x 2^order)
  unusable        Linux's unusable free space index (debugfs extfrag) at orders 4 and 9 after churn
  o4 / o9 ok      success of 64 order-4 (64 KiB) / order-9 (2 MiB) requests after churn

Examples:
  pagelab pmm                                # every design on the default 4 GiB QEMU map
  pagelab pmm --design buddy --map numa:2x8G # one design; buddyinfo per node and zone for numa-buddy
  pagelab pmm --map sparse --mem 8G          # RAM below 8 GiB only (Linux's mem=); "full map" covers 2 TiB
  pagelab pmm --design bitmap --kmap recursive --levels 5
  pagelab pmm --design bitmap --json | jq '.[0].unusableIndex'`;

/** The command's options and help: a declarative table (the action follows). */
function pmmCommand(program: Command) {
  return program
    .command("pmm")
    .description(SUMMARY.pmm)
    .addOption(
      new Option(
        "--design <name|file>",
        `a design, 'all' (${DESIGN_NAMES.join(", ")}), or a file (./my_pmm.c, .rs, .wasm, .ts)`,
      )
        .default("all")
        // an unknown name fails here, before any work (UNKNOWN_DESIGN, listing the names)
        .argParser((s) => (s === "all" || isDesignPath(s) ? s : getDesign(s).name)),
    )
    .addOption(
      mapOption("firmware map: preset (qemu:4G, sparse, numa:2x8G, ...) or file ('-': standard input)"),
    )
    .addOption(mapFormatOption())
    .addOption(
      new Option("--kmap <strategy>", "how the kernel reaches physical memory (as in boot)")
        .choices(KMAP_NAMES)
        .default("direct" as const),
    )
    .addOption(levelsOption())
    .addOption(memOption("Linux's mem=: ignore RAM at and above this physical address (as in boot)"))
    .addOption(cpusOption("CPUs (per-CPU page lists)", 1))
    .addOption(
      new Option("--colours <n>", "cache colours (colour-stacks), 1..1024")
        .default(16)
        .argParser(intParser("--colours", 1, 1024)),
    )
    .addOption(seedOption("seed of the churn workload", 42))
    .addOption(
      hostBudgetOption(
        "refuse up front when a design's simulation would back more host memory than this (default 8G)",
      ),
    )
    .option("--no-check", "skip the after-boot checks (as in boot)")
    .option(
      "--paranoid",
      "also run the PMM auditor after boot (free + held + metadata = managed; nothing overlaps)",
    )
    .option("--json", "print JSON instead of a table")
    .addHelpText("after", HELP);
}

export function registerPmm(program: Command): void {
  pmmCommand(program).action(pmmAction);
}

type PmmCliOptions = ReturnType<ReturnType<typeof pmmCommand>["opts"]>;

async function pmmAction(o: PmmCliOptions) {
  const names = o.design === "all" ? DESIGN_NAMES : [o.design];
  // A design file (TypeScript, C, Rust, .wasm): loaded, its validation reported, then measured.
  const file = isDesignPath(o.design) ? await loadDesign(o.design) : null;
  if (file !== null) reportValidation(file, o.json === true);
  // The map is read and parsed once; every design boots on it (and `--map -` reads standard input once).
  const firstRam = bootRam(o.map, makeStrategy(o.kmap), o.levels, o.mem, { mapFormat: o.format });
  const boot = (d: PmmDesign) =>
    bootKernel({
      map: o.map,
      loadedMap: firstRam.map,
      pmm: d,
      kmap: o.kmap,
      levels: o.levels,
      cpus: o.cpus,
      colours: o.colours,
      mem: o.mem,
      hostBudget: o.hostBudget,
      check: o.check,
    });
  // Every budget is checked before the first design is booted (no half-printed table).
  const layout = { usable: firstRam.ram, cpus: o.cpus, colours: o.colours };
  let host = 0;
  for (const n of names)
    host = Math.max(host, checkHostBudget(file ?? getDesign(n), layout, o.hostBudget).bytes);
  // A big one relaunches the command with 2 MiB host pages (huge-pages.ts); not after a design
  // file's validation was printed, which the relaunched process would print again.
  if (file === null) relaunchWithHugePages(host);
  const full = { usable: usableFrameRanges(firstRam.map), cpus: o.cpus, colours: o.colours };
  const results: (PmmMeasures & { fullMapMetadataBytes: number })[] = [];
  for (const n of names) {
    const d = file ?? getDesign(n);
    const r = boot(d);
    if (o.paranoid) bootAuditor(r).full();
    const m = measureAllocator(d, r.pmmAllocator, r.machine.counters, { seed: o.seed });
    results.push({ ...m, fullMapMetadataBytes: d.metadataBytes(full) });
  }
  if (o.json) {
    process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
    return;
  }
  const fullBytes = framesIn(full.usable) * 4096;
  process.stdout.write(
    `map ${o.map}: ${bytes(fullBytes)} usable; booted ${bytes(firstRam.ramBytes)} of RAM${o.mem !== undefined ? ` (mem=${bytes(o.mem)})` : ""}, ` +
      `${o.kmap} kernel mapping, ${o.levels}-level paging; ${o.cpus} CPU(s), ${o.colours} colours, seed ${o.seed}\n`,
  );
  printMeasures(results);
}

/** The measures as a table, then the buddies' `/proc/buddyinfo` lines. */
function printMeasures(results: (PmmMeasures & { fullMapMetadataBytes: number })[]): void {
  const t = table({
    head: [
      "design",
      "max order",
      "free",
      "meta",
      "meta/GiB",
      "full map",
      "transient",
      "refs a/f",
      "largest",
      "unusable 4/9",
      "o4 / o9 ok",
    ],
  });
  for (const m of results) {
    const [h4, h9] = m.highOrder;
    t.push([
      m.design,
      String(m.maxOrder),
      String(m.freeFramesAfterBoot),
      `${bytes(m.metadataBytes)} (${m.metadataPercent.toFixed(3)}%)`,
      bytes(Math.round(m.metadataPerGiB)),
      bytes(m.fullMapMetadataBytes),
      `${bytes(m.transientBytesBoot)} / ${bytes(m.transientBytesPeak)}`,
      `${m.refsPerAlloc.toFixed(1)} / ${m.refsPerFree.toFixed(1)}`,
      `${m.largestOrderBoot} / ${m.largestOrderChurn}`,
      `${m.unusableIndex[4].toFixed(3)} / ${m.unusableIndex[9].toFixed(3)}`,
      `${pct(h4.rate)} / ${pct(h9.rate)}`,
    ]);
  }
  process.stdout.write(`${t.toString()}\n`);
  for (const m of results) {
    if (m.buddyinfo.length === 0) continue;
    process.stdout.write(`\n${m.design}: /proc/buddyinfo after churn\n${m.buddyinfo.join("\n")}\n`);
  }
}

/** The validation report of a design file: what boot runs before booting it; exit 3 on a violation. */
function reportValidation(d: PmmDesign, json: boolean): void {
  const v = validateDesign(d, BYO_VALIDATION);
  const out = json ? process.stderr : process.stdout;
  if (v.ok) {
    out.write(
      `validated ${d.name}: ${v.runs} random sequences, the auditor after every step (seed ${v.seed})\n`,
    );
    return;
  }
  process.stderr.write(`pagelab: ${d.name} violates an invariant (seed ${v.seed}): ${v.failure!.message}\n`);
  process.stderr.write(
    `shortest failing sequence found (${v.failure!.steps.length} steps, shrunk by fast-check):\n`,
  );
  for (const s of v.failure!.steps) process.stderr.write(`  ${s}\n`);
  process.exit(3);
}

function pct(x: number): string {
  return `${Math.round(x * 100)}%`;
}
