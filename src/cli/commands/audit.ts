import { SUMMARY } from "./index.ts";
import type { Command } from "@commander-js/extra-typings";
import { type AuditRange, auditBoot } from "../../lab/audit.ts";
import { printJson, colour as pc } from "../output.ts";
import { bootFromOptions, withBootOptions } from "./boot.ts";

function show(title: string, list: AuditRange[], bad: boolean): void {
  const mark =
    list.length === 0
      ? pc.green("none")
      : bad
        ? pc.red(`${list.length} range(s)`)
        : pc.yellow(`${list.length} range(s)`);
  console.log(`${title}: ${mark}`);
  for (const r of list.slice(0, 8))
    console.log(`    ${r.start}-${r.end}  ${(r.bytes / 1024).toFixed(0)} KiB${r.pa ? ` -> ${r.pa}` : ""}`);
  if (list.length > 8) console.log(`    ... ${list.length - 8} more (--json for all)`);
}

export function registerAudit(program: Command): void {
  withBootOptions(program.command("audit").description(SUMMARY.audit))
    .option("--json", "print the audit as JSON")
    .addHelpText(
      "after",
      `
Boots exactly as \`pagelab boot\` does (same options), then reads the final page tables:
  W+X mappings                      writable and executable kernel pages (exit status 1, like Linux's W+X check)
  user-accessible kernel mappings   kernel-half pages with U/S set (exit status 1)
  executable data                   executable kernel pages outside .text
  non-RAM in the direct map         holes and MMIO mapped cacheable (see --map-holes)
  RAM readable by the kernel        how much of physical RAM kernel mappings expose right now
  direct-map KASLR entropy          as Linux's kernel_randomize_memory() would randomize it

Examples:
  pagelab audit
  pagelab audit --kmap quickmap --json | jq .ramReadable
  pagelab audit --exec-direct-map     # fails: every direct-mapped page is W+X`,
    )
    .action(async (o, cmd) => {
      const r = await bootFromOptions(cmd, o, o.json === true, o.format);
      const a = auditBoot(r);
      if (o.json) printJson(a);
      else {
        console.log(
          pc.bold(`pagelab audit: ${r.pmm} PMM, ${r.kmap} kernel mapping, ${r.levels}-level, on ${r.map}`),
        );
        show("W+X mappings", a.wx, true);
        show("user-accessible kernel mappings", a.userKernel, true);
        show("executable data (outside .text)", a.executableData, false);
        show("non-RAM mapped in the direct map", a.nonRamInDirectMap, false);
        const rr = a.ramReadable;
        console.log(
          `RAM readable through kernel mappings: ${(rr.bytes / 2 ** 20).toFixed(1)} MiB of ${(rr.ramBytes / 2 ** 20).toFixed(1)} MiB (${(rr.fraction * 100).toFixed(2)}%)`,
        );
        const owners = Object.entries(rr.byOwner)
          .filter(([, b]) => b > 0)
          .map(([k, b]) => `${k} ${b >= 2 ** 20 ? `${(b / 2 ** 20).toFixed(1)} MiB` : `${b / 1024} KiB`}`);
        console.log(`  of which: ${owners.join(", ")}`);
        console.log(
          `direct-map KASLR: ${a.kaslr.entropyBits} bits (${a.kaslr.positions} positions); ${a.kaslr.note}`,
        );
        console.log(
          a.ok
            ? pc.green("x86/mm: Checked W+X mappings: passed")
            : pc.red("x86/mm: Checked W+X mappings: FAILED"),
        );
      }
      if (!a.ok) process.exitCode = 1;
    });
}
