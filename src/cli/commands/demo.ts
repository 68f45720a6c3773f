import type { Command } from "@commander-js/extra-typings";
import { runDemo } from "../../lab/demo.ts";
import { mapFormatOption } from "../map-input.ts";
import { levelsOption, mapOption } from "../options.ts";
import { printJson, colour as pc } from "../output.ts";

export function registerDemo(program: Command): void {
  program
    .command("demo")
    .description(
      "build a kernel address space on a firmware map, step by step, with the counters of each step",
    )
    .addOption(mapOption())
    .addOption(mapFormatOption())
    .addOption(levelsOption("paging levels: 4 (48-bit) or 5 (LA57, 57-bit)"))
    .option("--json", "print the steps and counters as JSON")
    .addHelpText(
      "after",
      `
What it does:
  1. allocates a root page table from the map's usable RAM;
  2. maps a 2 MiB kernel image at 0xffffffff80000000 (text read-only+exec, data RW+NX, global);
  3. maps all usable RAM in a direct map at 0xffff888000000000 with 1G/2M/4K pages;
  4. maps a user program, loads CR3, and makes accesses that miss, hit, fault and unmap.

Examples:
  pagelab demo
  pagelab demo --levels 5 --json
  pagelab demo --map sparse --levels 5   # RAM at 128 TiB: beyond a 4-level direct map (64 TiB)`,
    )
    .action((o) => {
      const r = runDemo({ map: o.map, mapFormat: o.format, levels: o.levels });
      if (o.json) {
        printJson({
          map: r.map,
          levels: r.levels,
          usableBytes: r.usableBytes,
          pageTablePages: r.pageTablePages,
          steps: r.steps,
          counters: r.counters,
        });
        return;
      }
      console.log(pc.bold(`pagelab demo: ${r.levels}-level paging on ${r.map}`));
      r.steps.forEach((s, i) => {
        console.log(`\n${pc.cyan(`[${i + 1}]`)} ${pc.bold(s.title)}`);
        for (const d of s.detail) console.log(`    ${d}`);
        const cs = Object.entries(s.counters)
          .map(([k, v]) => `${k}=${v}`)
          .join(" ");
        if (cs) console.log(pc.dim(`    counters: ${cs}`));
      });
      console.log(`\n${pc.bold("Totals")}`);
      const c = r.counters;
      console.log(
        `    page-table pages: ${r.pageTablePages} (${r.pageTablePages * 4} KiB) for ${(r.usableBytes / 2 ** 30).toFixed(2)} GiB of RAM`,
      );
      console.log(
        `    memory references: ${c.memReads} reads + ${c.memWrites} writes by the kernel, ${c.walkReads} by page walks`,
      );
      console.log(
        `    TLB: ${c.tlbL1Hits} L1 hits, ${c.tlbL2Hits} STLB hits, ${c.tlbMisses} misses; ${c.invlpg} INVLPG, ${c.cr3Writes} CR3 writes`,
      );
      console.log(
        pc.dim(
          "\nNext: `pagelab pt dump` shows these tables, `pagelab pt translate 0xffff888000001000` walks one address.",
        ),
      );
    });
}
