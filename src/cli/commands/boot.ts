import { SUMMARY } from "./index.ts";
import type { Command, OptionValues } from "@commander-js/extra-typings";
import { fail } from "../../errors.ts";
import { type BootResult, bootKernel, checkBootOptions } from "../../kernel/boot/index.ts";
import { exportPageTables } from "../../lab/export.ts";
import { getDesign } from "../../kernel/pmm/designs.ts";
import type { PmmDesign } from "../../kernel/pmm/interface.ts";
import { isDesignPath, loadDesign } from "../../kernel/pmm/load.ts";
import { BYO_VALIDATION, validateDesign } from "../../kernel/pmm/validate.ts";
import {
  bootOptionsFrom,
  bytesParser,
  MAX_PHYS,
  type KernelCliOptions,
  withBootOptions,
} from "../options.ts";
import { relaunchWithHugePages } from "../huge-pages.ts";
import { printJson, colour as pc, table } from "../output.ts";

export { withBootOptions };

const MiB = 2 ** 20;

/** "8G", "512M", "0x200000000" or a decimal number of bytes (see options.ts for ranged parsers). */
export function parseBytes(s: string, what: string): number {
  return bytesParser(what, 0, MAX_PHYS)(s);
}

function kib(bytes: number): string {
  return bytes >= 10 * MiB ? `${(bytes / MiB).toFixed(1)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`;
}

/** The `--json` shape of the contract, plus extra fields (never renamed). */
export function bootJson(r: BootResult) {
  return {
    ramBytes: r.ramBytes,
    usablePages: r.usablePages,
    freePagesAfterBoot: r.freePagesAfterBoot,
    metadataBytes: r.metadataBytes,
    pageTableBytes: r.pageTableBytes,
    pageTablePages: r.pageTablePages,
    bootSteps: r.bootSteps,
    counters: r.counters,
    map: r.map,
    pmm: r.pmm,
    kmap: r.kmap,
    levels: r.levels,
    kernelPhys: r.kernelPhys,
    metadataStandingBytes: r.metadataStandingBytes,
    metadataTransientBytes: r.metadataTransientBytes,
    checks: r.checks,
    hostMs: r.hostMs,
  };
}

function printSummary(r: BootResult, log: boolean): void {
  console.log(
    pc.bold(`pagelab boot: ${r.pmm} PMM, ${r.kmap} kernel mapping, ${r.levels}-level paging, on ${r.map}`),
  );
  for (const s of r.bootSteps) {
    console.log(`\n${pc.cyan(`[${s.step}]`)} ${pc.bold(s.title)}`);
    const lines = log ? s.log : s.log.slice(0, 2);
    for (const l of lines) console.log(`    ${l}`);
    if (!log && s.log.length > 2) console.log(pc.dim(`    ... ${s.log.length - 2} more line(s) with --log`));
    if (log)
      for (const a of s.allocated) console.log(pc.dim(`    memblock: ${a.pa} ${kib(a.bytes)} ${a.what}`));
    if (log) {
      const cs = Object.entries(s.counters).map(([k, v]) => `${k}=${v}`);
      if (cs.length) console.log(pc.dim(`    counters: ${cs.join(" ")}`));
    }
  }
  const c = r.counters;
  const t = table({ head: ["measure", "value"], style: { head: [], border: [] } });
  t.push(
    ["RAM", `${kib(r.ramBytes)} (${r.usablePages} pages)`],
    ["free pages after boot", String(r.freePagesAfterBoot)],
    [
      "PMM metadata",
      `${kib(r.metadataBytes)} (${kib(r.metadataStandingBytes)} standing + ${kib(r.metadataTransientBytes)} transient)`,
    ],
    ["page tables", `${r.pageTablePages} pages (${kib(r.pageTableBytes)})`],
    ["kernel memory references", `${c.memReads} reads + ${c.memWrites} writes`],
    ["page walks", `${c.walks} (${c.walkReads} entry reads)`],
    ["TLB", `${c.tlbL1Hits} L1 + ${c.tlbL2Hits} STLB hits, ${c.tlbMisses} misses`],
    ["INVLPG / CR3 writes / window remaps", `${c.invlpg} / ${c.cr3Writes} / ${c.windowRemaps}`],
    ["host time", `${r.hostMs} ms`],
  );
  console.log(`\n${t.toString()}`);
  for (const ch of r.checks) console.log(pc.green(`  ok: ${ch}`));
}

/**
 * Before booting a user's allocator: random alloc/free sequences (and deliberately bad frees) with the
 * auditor after every step. The first violated invariant is printed with the shrunk sequence; exit 3.
 */
function validateOrExit(design: PmmDesign, json: boolean): void {
  const v = validateDesign(design, BYO_VALIDATION);
  if (v.ok) {
    if (!json)
      console.log(
        pc.green(
          `validated ${design.name}: ${v.runs} random sequences, the auditor after every step (seed ${v.seed})`,
        ),
      );
    return;
  }
  const f = v.failure!;
  if (json)
    printJson({
      error: "PMM_VALIDATION",
      design: design.name,
      seed: v.seed,
      message: f.message,
      steps: f.steps,
    });
  else {
    console.error(pc.red(`pagelab: ${design.name} violates an invariant (seed ${v.seed}): ${f.message}`));
    console.error(`shortest failing sequence found (${f.steps.length} steps, shrunk by fast-check):`);
    for (const s of f.steps) console.error(`  ${s}`);
  }
  process.exit(3);
}

/** Load (and, for a file, validate) the PMM design, then boot with the shared options. */
export async function bootFromOptions(
  cmd: Command<unknown[], OptionValues, OptionValues>,
  o: KernelCliOptions & { map: string },
  json: boolean,
  mapFormat: string | undefined,
): Promise<BootResult> {
  const opts = bootOptionsFrom(cmd, o, mapFormat);
  checkBootOptions(opts); // contradictions are refused before a design file is loaded or validated
  if (!isDesignPath(o.pmm)) {
    if (cmd.getOptionValueSource("validate") === "cli")
      fail(
        "BAD_OPTION_COMBINATION",
        `--no-validate applies to a --pmm file; '${o.pmm}' is a built-in design`,
      );
    getDesign(o.pmm); // an unknown name fails before any work
  }
  const design = await loadDesign(o.pmm);
  if (isDesignPath(o.pmm) && o.validate) validateOrExit(design, json);
  // A big boot relaunches itself with 2 MiB host pages (huge-pages.ts); not after a design file's
  // validation was printed, which the relaunched process would print again.
  const onHostEstimate = isDesignPath(o.pmm) ? undefined : relaunchWithHugePages;
  return bootKernel({ ...opts, pmm: design, onHostEstimate });
}

export function registerBoot(program: Command): void {
  withBootOptions(program.command("boot").description(SUMMARY.boot))
    .option("--json", "print the result as JSON")
    .option("--log", "print every line of every step, with memblock allocations and counters")
    .option("--export <dir>", "write the final page tables as pages.bin, index.json and info-tlb.txt")
    .addHelpText(
      "after",
      `
The sequence (each step logs what it allocated, where and why):
  1. firmware map -> memblock.memory, as Linux computes it
  2. kernel image at 16 MiB, run at 0xffffffff80000000; boot page tables in .bss map 2 MiB
  3. early allocator (memblock, arrays in .bss): RAM and reservations
  4. strategy makes page-table edits possible; PMM metadata sized, placed by memblock, mapped
  5. the PMM is created and given every free frame; memblock retires (checked)
  6. final address space: root from the PMM, kernel half shared, CR3 switched, PMM re-bound
  7. summary and checks

Kernel-mapping strategies:
  direct     all RAM at a fixed offset with 1G/2M/4K pages (Linux)
  recursive  a root slot points to the root: tables edited through it; windows for free frames
  quickmap   no direct map: per-CPU temporary windows, an INVLPG per remap
  hybrid     a direct map below 4 GiB, windows above

Examples:
  pagelab boot
  pagelab boot --pmm bitmap --kmap recursive --log
  pagelab boot --map sparse --pmm bitmap --json | jq .metadataBytes
  pagelab boot --map dmesg.txt --levels 5 --export out/
  pagelab boot --pmm ./examples/first-fit.ts      # your own allocator: validated, then booted`,
    )
    .action(async (o, cmd) => {
      if (o.json && o.log)
        fail("BAD_OPTION_COMBINATION", "--json already holds every line of every step: drop --log or --json");
      const r = await bootFromOptions(cmd, o, o.json === true, o.format);
      if (o.export !== undefined) exportPageTables(r.machine.mem, r.mapper.root, r.levels, o.export);
      if (o.json) printJson(bootJson(r));
      else {
        printSummary(r, o.log === true);
        if (o.export !== undefined)
          console.log(pc.dim(`\npage tables exported to ${o.export}/ (pages.bin, index.json, info-tlb.txt)`));
      }
    });
}
