import { SUMMARY } from "./index.ts";
import type { Command } from "@commander-js/extra-typings";
import { tour } from "../../lab/demo.ts";
import { withBootOptions } from "../options.ts";
import { printJson, colour as pc } from "../output.ts";
import { bootFromOptions } from "./boot.ts";

export function registerDemo(program: Command): void {
  withBootOptions(program.command("demo").description(SUMMARY.demo))
    .option("--json", "print the steps and counters as JSON")
    .addHelpText(
      "after",
      `
What it does:
  1. boots the kernel as \`pagelab boot\` does with the same options (PMM, kernel mapping, levels);
  2. maps a user program at 0x400000 with frames and page tables from that kernel's PMM;
  3. flushes the TLB, global entries too, and makes accesses that miss, hit, fault and unmap.

Examples:
  pagelab demo
  pagelab demo --levels 5 --json
  pagelab demo --kmap recursive --pmm bitmap
  pagelab demo --map sparse --levels 5   # RAM at 128 TiB: beyond a 4-level direct map (64 TiB)`,
    )
    .action(async (o, cmd) => {
      const r = tour(await bootFromOptions(cmd, o, o.json === true, o.format));
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
