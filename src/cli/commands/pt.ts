import { SUMMARY } from "./index.ts";
import { type Command, Option } from "@commander-js/extra-typings";
import { fail } from "../../errors.ts";
import { layoutMarkers } from "../../lab/demo.ts";
import { tableFrames } from "../../kernel/boot/index.ts";
import { infoMem, infoTlb, ptdump } from "../../machine/x86/dump.ts";
import { explainWalk } from "../../machine/x86/explain.ts";
import { forEachLeaf } from "../../machine/x86/inspect.ts";
import { Access } from "../../machine/x86/mmu.ts";
import { flagString, pageShiftName } from "../../machine/x86/pte.ts";
import { formatVa, parseVpn } from "../../machine/x86/vaddr.ts";
import { mapFormatOption } from "../map-input.ts";
import { mapOption, withBootOptions, withKernelOptions } from "../options.ts";
import { printJson, colour as pc } from "../output.ts";
import { bootFromOptions } from "./boot.ts";

const ACCESS: Record<string, number> = { read: Access.READ, write: Access.WRITE, fetch: Access.FETCH };

export function registerPt(program: Command): void {
  const pt = program
    .command("pt")
    .description(SUMMARY.pt)
    .addHelpText(
      "after",
      `
The tables are those of the kernel \`pagelab boot\` brings up with the same options (--map, --pmm,
--kmap, --levels, ...; default: the default boot). Addresses are canonical hex: 0xffff888000001000.`,
    );
  registerTranslate(pt);
  registerDump(pt);
}

function registerTranslate(pt: Command): void {
  withBootOptions(
    pt
      .command("translate")
      .description("walk the page tables for a virtual address, as the MMU does, and explain each entry")
      .argument("<address>", "canonical virtual address, e.g. 0xffff888000001234"),
  )
    .addOption(
      new Option("--access <kind>", "kind of access")
        .choices(["read", "write", "fetch"] as const)
        .default("read" as const),
    )
    .option("--user", "make the access at CPL 3 (user mode)")
    .option("--json", "print the walk as JSON")
    .addHelpText(
      "after",
      `
Examples:
  pagelab pt translate 0xffff888040001234          # direct map, PA 0x40001234: a 1 GiB page
  pagelab pt translate 0xffff888000001234          # PA 0x1234: 4 KiB (the first 2 MiB, round the 1st MiB)
  pagelab pt translate 0xffffffff80000000 --access fetch
  pagelab pt translate 0xffffffff80100000 --user   # a #PF with error code P|U
  pagelab pt translate 0xffff888000001000 --kmap recursive --levels 5   # no direct map: a #PF
  pagelab pt translate 0x0000800000000000          # not canonical: an error`,
    )
    .action(async (address, o, cmd) => {
      const { vpn, offset } = parseVpn(address, o.levels);
      const boot = await bootFromOptions(cmd, o, o.json === true, o.format);
      const access = ACCESS[o.access] | (o.user ? Access.USER : 0);
      const ex = explainWalk(boot.machine.cpu0, vpn, offset, access);
      if (o.json) return printJson(ex);
      console.log(
        `${pc.bold("walk")} ${ex.va} (${o.access}${o.user ? ", user" : ", supervisor"}), CR3=${ex.cr3}, ${ex.levels}-level`,
      );
      for (const s of ex.steps) {
        console.log(
          `  ${s.entry.padEnd(6)} [${String(s.index).padStart(3)}] @ ${s.entryPa.padEnd(12)} = ${s.raw}  ${pc.dim(s.flags)}`,
        );
        console.log(`         ${s.meaning}`);
      }
      if (ex.pa !== null) console.log(pc.green(`  => physical ${ex.pa} (${ex.pageSize} page)`));
      else
        console.log(
          pc.red(
            `  => #PF error code 0x${ex.fault!.errorCode.toString(16)}: ${ex.fault!.bits.join(", ")}; CR2=${ex.fault!.cr2}`,
          ),
        );
    });
}

function registerDump(pt: Command): void {
  withKernelOptions(
    pt
      .command("dump")
      .description("print the page tables as Linux's ptdump, QEMU's `info tlb` or `info mem`")
      .addOption(mapOption())
      .addOption(mapFormatOption("--map-format")),
  )
    .addOption(
      new Option("--format <f>", "output format")
        .choices(["ptdump", "tlb", "mem"] as const)
        .default("ptdump" as const),
    )
    .option("--json", "print every leaf mapping as JSON")
    .addHelpText(
      "after",
      `
Formats:
  ptdump  runs of equal entries, like /sys/kernel/debug/page_tables/kernel
  tlb     one line per leaf: "vaddr: paddr XGPDACTUW", like QEMU's monitor \`info tlb\`
  mem     ranges with equal user/write rights, like QEMU's \`info mem\`

Examples:
  pagelab pt dump
  pagelab pt dump --format tlb | head
  pagelab pt dump --kmap recursive --format mem
  pagelab pt dump --json | jq '.leaves | length'`,
    )
    .action(async (o, cmd) => {
      const boot = await bootFromOptions(cmd, o, o.json === true, o.mapFormat);
      const { mem } = boot.machine;
      const root = boot.mapper.root;
      if (o.json) {
        const leaves: object[] = [];
        forEachLeaf(mem, root, o.levels, (l) => {
          leaves.push({
            va: formatVa(l.vpn, o.levels),
            pa: `0x${(l.base * 4096).toString(16)}`,
            size: pageShiftName(l.shift),
            level: l.level,
            flags: flagString(l.lo, l.hi, l.level),
          });
        });
        return printJson({
          cr3: `0x${(root * 4096).toString(16)}`,
          levels: o.levels,
          pageTablePages: new Set(tableFrames(boot.machine, root, o.levels, boot.recursiveSlots)).size,
          leaves,
        });
      }
      if (o.format === "ptdump") process.stdout.write(ptdump(mem, root, o.levels, layoutMarkers(boot)));
      else if (o.format === "tlb") process.stdout.write(infoTlb(mem, root, o.levels));
      else if (o.format === "mem") process.stdout.write(infoMem(mem, root, o.levels));
      else fail("BAD_OPTION", `unknown format ${o.format}`);
    });
}
