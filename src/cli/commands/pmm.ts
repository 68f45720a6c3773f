/**
 * `pagelab pmm`: bring up one or every physical-memory-manager design on a firmware map and print the
 * measures of src/kernel/pmm/measure.ts (metadata, references per operation, contiguity and
 * fragmentation after churn), plus `/proc/buddyinfo` lines for the buddies.
 */
import { table } from "../output.ts";
import { type Command, Option } from "@commander-js/extra-typings";
import { PmmAuditor } from "../../kernel/pmm/check.ts";
import { DESIGN_NAMES, DESIGNS, getDesign } from "../../kernel/pmm/designs.ts";
import { layoutFromMap } from "../../kernel/pmm/layout.ts";
import type { PmmDesign } from "../../kernel/pmm/interface.ts";
import { isDesignPath, loadDesign } from "../../kernel/pmm/load.ts";
import { measure, type PmmMeasures } from "../../kernel/pmm/measure.ts";
import { checkHostBudget } from "../../lab/boot.ts";
import { BYO_VALIDATION, validateDesign } from "../../kernel/pmm/validate.ts";
import { bringUp } from "../../kernel/pmm/setup.ts";
import { loadMap } from "../../firmware/load.ts";
import { mapFormatOption } from "../map-input.ts";
import { cpusOption, hostBudgetOption, intParser, mapOption, memOption, seedOption } from "../options.ts";

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

Each design is initialised as a kernel does it: its standing metadata is placed top-down in usable RAM,
then every usable range is "freed" into it, except page 0 and the kernel image (16 MiB at 16 MiB).
All allocator state lives in simulated RAM; references are 32-bit reads and writes through the port.

Columns:
  meta            standing metadata for the measured RAM (and per GiB); "full map" sizes it for the
                  whole map, before --mem
  transient       frames holding the allocator's own structures (stack pages), after boot / at peak
  refs a/f        memory references per order-0 alloc / free, right after boot
  largest         largest order that succeeds after boot / after churn (4 KiB x 2^order)
  unusable        Linux's unusable free space index (debugfs extfrag) at orders 4 and 9 after churn
  o4 / o9 ok      success of 64 order-4 (64 KiB) / order-9 (2 MiB) requests after churn

Examples:
  pagelab pmm                                # every design on the default 4 GiB QEMU map
  pagelab pmm --design buddy --map numa:2x8G # one design; buddyinfo per node and zone for numa-buddy
  pagelab pmm --map sparse --mem 8G          # 4 GiB low + 4 GiB at 128 TiB; "full map" covers 2 TiB
  pagelab pmm --design bitmap --json | jq '.[0].unusableIndex'`;

export function registerPmm(program: Command): void {
  program
    .command("pmm")
    .description(
      "measure the physical memory managers (stack, stack pages, free list, bitmap, buddy, compositions)",
    )
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
      memOption(
        "use at most SIZE of usable RAM, lowest first, like Linux's mem= (host memory: designs that write into free frames back every simulated MiB)",
      ).default(4 * 2 ** 30, "4G"),
    )
    .addOption(cpusOption("CPUs (per-CPU page lists)", 2))
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
    .option("--paranoid", "run the full invariant checker after boot and after the measures")
    .option("--json", "print JSON instead of a table")
    .addHelpText("after", HELP)
    .action(async (o) => {
      const names = o.design === "all" ? DESIGN_NAMES : [o.design];
      // A design file (TypeScript, C, Rust, .wasm): loaded, its validation reported, then measured.
      const file = isDesignPath(o.design) ? await loadDesign(o.design) : null;
      if (file !== null) reportValidation(file, o.json === true);
      const map = loadMap(o.map, { format: o.format });
      const mem = o.mem;
      const ml = layoutFromMap(map, { memLimit: mem, cpus: o.cpus, colours: o.colours });
      const results: (PmmMeasures & { fullMapMetadataBytes: number })[] = [];
      const budget = o.hostBudget;
      const ramBytes = ml.layout.usable.reduce((a, r) => a + r.end - r.start, 0) * 4096;
      for (const n of names) {
        const d = file ?? getDesign(n);
        checkHostBudget(d.name, d.metadataBytes(ml.layout), ramBytes, budget);
      }
      for (const n of names) {
        const d = file ?? getDesign(n);
        if (o.paranoid) new PmmAuditor(bringUp(d, ml.layout, { reserved: ml.reserved })).full();
        const m = measure(d, ml.layout, { seed: o.seed, reserved: ml.reserved });
        results.push({ ...m, fullMapMetadataBytes: d.metadataBytes(ml.full) });
      }
      if (o.json) {
        process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
        return;
      }
      const ram = ml.layout.usable.reduce((a, r) => a + r.end - r.start, 0) * 4096;
      const full = ml.full.usable.reduce((a, r) => a + r.end - r.start, 0) * 4096;
      process.stdout.write(
        `map ${o.map}: ${bytes(full)} usable${ml.clipped ? `, measured on the lowest ${bytes(ram)} (--mem ${bytes(o.mem)})` : ""}; ` +
          `${o.cpus} CPUs, ${o.colours} colours, seed ${o.seed}\n`,
      );
      const t = table({
        head: [
          "design",
          "max order",
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
    });
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
