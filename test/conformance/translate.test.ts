/**
 * Conformance with a real MMU, part 1: translations. The tables pagelab builds (hand trees with every
 * leaf size, a recursive slot and attribute bits; the demo address space with its direct map) are
 * exported, loaded into a stopped QEMU, and QEMU's monitor (`info tlb`, `gva2gpa`, `info mem`) is
 * compared with pagelab's view, for 4- and 5-level paging.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeWithTool } from "../tools.ts";
import { tableFrames } from "../../src/kernel/boot/index.ts";
import { runDemo } from "../../src/lab/demo.ts";
import { exportPageTables, importPageTables } from "../../src/lab/export.ts";
import { deviation } from "../../src/lab/qemu/deviations.ts";
import { checkQemu } from "../../src/lab/qemu/tools.ts";
import { compareTranslations, type TranslationReport } from "../../src/lab/qemu/translate.ts";
import type { Levels } from "../../src/machine/x86/vaddr.ts";
import { HAND_SAMPLES, handTree, RECURSIVE_SLOT, recursiveRootVa } from "./trees.ts";

const qemu = checkQemu();

let tmp = "";

function summary(r: TranslationReport): string {
  const g = r.gva2gpa.filter((x) => x.equal).length;
  const mem =
    "skipped" in r.infoMem ? `info mem skipped (${r.infoMem.skipped})` : `info mem ${r.infoMem.lines} lines`;
  return `${r.levels}-level: info tlb ${r.infoTlb.lines} lines equal=${r.infoTlb.equal}; gva2gpa ${g}/${r.gva2gpa.length}; ${mem}`;
}

function expectEqual(r: TranslationReport): void {
  console.log(summary(r));
  for (const d of r.deviations) console.log(`  known deviation ${d.id}: ${d.note}`);
  expect(r.infoTlb.diffs).toEqual([]);
  expect(r.gva2gpa.filter((x) => !x.equal)).toEqual([]);
  // `info mem` is left out under LA57 only (it hangs there: a known deviation), and compared otherwise.
  if (r.levels === 5) {
    expect(r.infoMem).toEqual({ skipped: deviation("info-mem-la57-hangs").title });
    expect(r.deviations.map((d) => d.id)).toEqual(["info-mem-la57-hangs"]);
  } else {
    expect(r.deviations).toEqual([]);
    if ("skipped" in r.infoMem) throw new Error(`info mem skipped under ${r.levels}-level paging`);
    expect(r.infoMem.lines).toBeGreaterThan(0);
    expect(r.infoMem.diffs).toEqual([]);
  }
}

describeWithTool(
  qemu.ok ? "" : qemu.reason,
  `QEMU${qemu.ok ? ` ${qemu.version}` : ""} agrees with pagelab's translations`,
  () => {
    beforeAll(() => {
      tmp = mkdtempSync(join(tmpdir(), "pagelab-conf-"));
    });
    afterAll(() => rmSync(tmp, { recursive: true, force: true }));

    for (const levels of [4, 5] as const) {
      it(`${levels}-level hand tree: 4K/2M/1G leaves, NX G PCD PWT PAT US RW A D, recursive slot, upper-level RO`, async () => {
        const { m, mapper } = handTree(levels);
        // Go through the exporter, as an external walker would.
        const dir = join(tmp, `hand${levels}`);
        const ex = exportPageTables(m.mem, mapper.root, levels, dir);
        const imp = importPageTables(dir, { maxPhysAddrBits: 46 });
        const text = readFileSync(join(dir, "info-tlb.txt"), "utf8");
        expect(text.split("\n").length - 1).toBe(ex.leaves);
        const rootVa = recursiveRootVa(levels);
        const r = await compareTranslations({
          infoTlb: text, // QEMU's `info tlb` must equal the export's own list, line for line
          mem: imp.mem,
          root: imp.root,
          levels,
          tables: imp.tables,
          samples: [...HAND_SAMPLES, rootVa, rootVa + 0x8n * BigInt(RECURSIVE_SLOT)],
        });
        expectEqual(r);
        expect(r.gva2gpa.find((x) => BigInt(x.va) === rootVa)?.qemu).toBe(
          `gpa: 0x${(mapper.root * 4096).toString(16)}`,
        );
      });

      it(`${levels}-level demo address space (qemu:4G, tables above 4 GiB): kernel image, direct map (1G/2M/4K), user pages`, async () => {
        const demo = runDemo({ levels });
        // The booted kernel's direct-map tables come from memblock, top-down: above 4 GiB.
        const frames = tableFrames(demo.machine, demo.mapper.root, levels, demo.boot.recursiveSlots);
        expect(Math.max(...frames) * 4096).toBeGreaterThan(2 ** 32);
        const dir = join(tmp, `demo${levels}`);
        exportPageTables(demo.machine.mem, demo.mapper.root, levels, dir);
        const imp = importPageTables(dir, { maxPhysAddrBits: 46 });
        const base = levels === 5 ? 0xff11000000000000n : 0xffff888000000000n;
        const samples = [
          base,
          base + 0x1000n,
          base + 0x9e000n,
          base + 0x9f000n, // the legacy hole: unmapped
          base + 0x200000n,
          base + 0x40000000n,
          base + 0x7fffffffn,
          base + 0xbffdf000n,
          base + 0xbffe0000n, // SeaBIOS's reserved top of low RAM: unmapped
          base + 0x100000000n,
          base + 0x13fffffffn,
          base + 0x140000000n,
          0xffffffff80000000n,
          0xffffffff80123456n,
          0x400000n,
          0x600000n,
        ];
        const infoTlb = readFileSync(join(dir, "info-tlb.txt"), "utf8");
        const r = await compareTranslations(
          { infoTlb, mem: imp.mem, root: imp.root, levels: levels as Levels, tables: imp.tables, samples },
          { memory: "4G" },
        );
        expectEqual(r);
      });
    }
  },
);
