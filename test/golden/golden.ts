/**
 * The golden file of counters: what the simulated kernel costs, in the product's own measure, for the
 * default boot, the boot matrix and the default compare's workload and sweep runs. Any change to a count
 * (a restructure, an optimisation, a fix) shows up as a named difference in `counters.test.ts`, and is
 * either a bug or explained in the commit that regenerates the file (`npm run golden`).
 *
 * Host time, host memory and wording are left out: only the simulated machine's figures are kept.
 */
import { DESIGN_NAMES } from "../../src/kernel/pmm/designs.ts";
import { type BootOptions, type BootResult, bootKernel, KMAP_NAMES } from "../../src/kernel/boot/index.ts";
import { type CompareOptions, planMatrix, type ResultRow, runSpecs } from "../../src/lab/compare.ts";

export type Figures = Record<string, number | string | null>;

/** The numbers a boot reports, flattened to `field` and `counter.name` / `stepN.name` keys. */
export function bootFigures(r: BootResult): Figures {
  const f: Figures = {
    ramBytes: r.ramBytes,
    usablePages: r.usablePages,
    freePagesAfterBoot: r.freePagesAfterBoot,
    metadataBytes: r.metadataBytes,
    metadataStandingBytes: r.metadataStandingBytes,
    metadataTransientBytes: r.metadataTransientBytes,
    pageTableBytes: r.pageTableBytes,
    pageTablePages: r.pageTablePages,
    kernelPhys: r.kernelPhys,
  };
  for (const [k, v] of Object.entries(r.counters)) f[`counters.${k}`] = v;
  for (const s of r.bootSteps) for (const [k, v] of Object.entries(s.counters)) f[`step${s.step}.${k}`] = v;
  return f;
}

/** The numbers of one compare row (host time, commands and notes left out). */
export function rowFigures(r: ResultRow): Figures {
  const f: Figures = {
    error: r.error?.code ?? null,
    ramBytes: r.ramBytes,
    usablePages: r.usablePages,
    freePagesAfterBoot: r.freePagesAfterBoot,
    metadataBytes: r.metadataBytes,
    pageTableBytes: r.pageTableBytes,
    pageTablePages: r.pageTablePages,
    opsTotal: r.opsTotal,
    ipisPerKfree: r.ipisPerKfree,
    ipisPerVfree: r.ipisPerVfree,
  };
  for (const [k, v] of Object.entries(r.bootCounters)) f[`boot.${k}`] = v;
  for (const [k, v] of Object.entries(r.counters)) f[`counters.${k}`] = v;
  for (const [k, v] of Object.entries(r.opCounts)) f[`ops.${k}`] = v;
  for (const [k, v] of Object.entries(r.failed)) f[`failed.${k}`] = v;
  for (const [k, v] of Object.entries(r.info)) f[`info.${k}`] = v;
  if (r.perOp) for (const [k, v] of Object.entries(r.perOp)) f[`perOp.${k}`] = v;
  if (r.audit)
    for (const [k, v] of Object.entries(r.audit)) f[`audit.${k}`] = typeof v === "boolean" ? String(v) : v;
  f.series = r.series.map((p) => Object.values(p).join(":")).join(" ");
  return f;
}

/** The boots of the golden file: the default, then every design x strategy on small and 4 GiB maps. */
export function goldenBoots(): { key: string; opts: BootOptions }[] {
  const boots: { key: string; opts: BootOptions }[] = [{ key: "boot default", opts: {} }];
  for (const levels of [4, 5] as const)
    for (const pmm of DESIGN_NAMES)
      for (const kmap of KMAP_NAMES)
        boots.push({
          key: `boot qemu:256M ${pmm} ${kmap} L${levels}`,
          opts: { map: "qemu:256M", pmm, kmap, levels },
        });
  for (const pmm of ["stack", "stack-pages", "bitmap", "buddy", "large-stacks"])
    for (const kmap of KMAP_NAMES)
      boots.push({ key: `boot qemu:4G ${pmm} ${kmap}`, opts: { map: "qemu:4G", pmm, kmap } });
  boots.push({
    key: "boot sparse bitmap direct L5",
    opts: { map: "sparse", pmm: "bitmap", kmap: "direct", levels: 5 },
  });
  boots.push({
    key: "boot numa:2x2G numa-buddy direct",
    opts: { map: "numa:2x2G", pmm: "numa-buddy", kmap: "direct" },
  });
  return boots;
}

/** The default compare as it stood when the golden file was made, spelled out so it stays fixed. */
export const GOLDEN_COMPARE: CompareOptions = {
  maps: ["qemu:4G"],
  kmaps: ["direct", "recursive", "quickmap"],
  workloads: ["page-churn", "heap-churn", "file-cache", "ipc", "fork-exit"],
  cpus: [4],
  seed: 1,
  sweep: ["qemu:256M", "qemu:1G", "qemu:4G", "qemu:16G", "sparse@5"],
};

export async function makeGolden(jobs: number): Promise<Record<string, Figures>> {
  const out: Record<string, Figures> = {};
  for (const { key, opts } of goldenBoots()) {
    try {
      out[key] = bootFigures(bootKernel({ hostBudget: 512 * 2 ** 20, ...opts }));
    } catch (e) {
      out[key] = { error: (e as { code?: string }).code ?? String(e) };
    }
  }
  const specs = planMatrix(GOLDEN_COMPARE);
  await runSpecs(specs, jobs, (row) => {
    const name = row.kind === "sweep" ? `sweep ${row.map}@${row.levels}` : `${row.map} ${row.workload}`;
    out[`compare ${name} ${row.pmm} ${row.kmap}`] = rowFigures(row);
  });
  return out;
}
