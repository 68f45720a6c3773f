/**
 * The report's figures: vega-lite specs built from result rows, rendered to SVG in Node by vega's
 * headless view (no canvas, no browser). Each figure says which rows it uses; a figure without data
 * (e.g. no sweep was run) is left out rather than drawn empty.
 */
import * as vega from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import type { ResultRow } from "../compare.ts";
import { isMultiMap, metadataShareSpec, pageTableSpec, referencePmm, refusalSpec } from "./corpus.ts";

export interface Figure {
  id: string;
  title: string;
  caption: string;
  /** The chart, or null when a sentence says more than a chart would (e.g. every value is 0). */
  svg: string | null;
  /** Said in place of the chart when `svg` is null. */
  sentence?: string;
}

/**
 * 20 distinct colours (Tableau 20): the 12 built-in designs plus design files each get their own,
 * where vega's default 10-colour scheme repeats.
 */
const PALETTE = { scheme: "tableau20" } as const;

/** Point shapes and dash patterns cycled per design, so lines of the same colour family stay apart. */
const SHAPES = [
  "circle",
  "square",
  "triangle-up",
  "diamond",
  "cross",
  "triangle-down",
  "triangle-right",
  "triangle-left",
];
const DASHES = [
  [1, 0],
  [6, 3],
  [2, 2],
  [8, 3, 2, 3],
  [12, 4],
  [4, 4],
];

/**
 * Designs whose series are identical (same points): drawn over each other, so the caption names
 * them ("buddy, huge-pool and large-stacks are identical here, drawn over each other").
 */
export function identicalSeries<T>(data: T[], key: (d: T) => string, point: (d: T) => string): string[][] {
  const series = new Map<string, string[]>();
  for (const d of data) series.set(key(d), [...(series.get(key(d)) ?? []), point(d)]);
  const same = new Map<string, string[]>();
  for (const [k, pts] of series) {
    const sig = pts.join(";");
    same.set(sig, [...(same.get(sig) ?? []), k]);
  }
  return [...same.values()].filter((g) => g.length > 1);
}

function identicalNote(groups: string[][]): string {
  if (groups.length === 0) return "";
  const list = (xs: string[]) =>
    xs.length <= 1 ? xs.join("") : `${xs.slice(0, -1).join(", ")} and ${xs[xs.length - 1]}`;
  return ` Identical series, drawn over each other: ${groups.map((g) => list(g)).join("; ")}.`;
}

const GiB = 2 ** 30;

async function render(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

const ok = (r: ResultRow) => r.error === null;

/** The first value of each distinct key, in row order. */
function firstOf<T>(rows: ResultRow[], key: (r: ResultRow) => T): T[] {
  const out: T[] = [];
  for (const r of rows) {
    const k = key(r);
    if (!out.includes(k)) out.push(k);
  }
  return out;
}

function metadataFigure(rows: ResultRow[]): TopLevelSpec | null {
  const data = rows
    .filter((r) => r.kind === "sweep" && ok(r) && r.ramBytes > 0)
    .map((r) => ({
      pmm: r.pmm,
      ramGiB: r.ramBytes / GiB,
      metadataKiB: Math.max(r.metadataBytes, 1) / 1024,
      map: `${r.map}${r.levels === 5 ? " (5-level)" : ""}`,
    }));
  if (data.length === 0) return null;
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    width: 520,
    height: 320,
    data: { values: data },
    mark: { type: "line", point: true },
    encoding: {
      x: { field: "ramGiB", type: "quantitative", scale: { type: "log" }, title: "usable RAM (GiB, log)" },
      y: {
        field: "metadataKiB",
        type: "quantitative",
        scale: { type: "log" },
        title: "PMM metadata after boot (KiB, log)",
      },
      color: { field: "pmm", type: "nominal", title: "PMM", scale: PALETTE },
      shape: { field: "pmm", type: "nominal", title: "PMM", scale: { range: SHAPES } },
      strokeDash: { field: "pmm", type: "nominal", title: "PMM", scale: { range: DASHES } },
      tooltip: [{ field: "map" }, { field: "pmm" }, { field: "metadataKiB" }],
    },
  };
}

function pageTableFigure(rows: ResultRow[]): TopLevelSpec | null {
  const seen = new Set<string>();
  const data: { kmap: string; pmm: string; kib: number }[] = [];
  for (const r of rows) {
    if (r.kind !== "workload" || !ok(r) || r.pageTableBytes === 0) continue;
    const key = `${r.map}|${r.pmm}|${r.kmap}`;
    if (seen.has(key)) continue;
    seen.add(key);
    data.push({ kmap: r.kmap, pmm: r.pmm, kib: r.pageTableBytes / 1024 });
  }
  if (data.length === 0) return null;
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    width: 360,
    height: 260,
    data: { values: data },
    mark: "bar",
    encoding: {
      x: { field: "kmap", type: "nominal", title: "kernel mapping" },
      xOffset: { field: "pmm", type: "nominal" },
      // several machines: one bar per design and strategy, their median
      y: isMultiMap(rows)
        ? {
            field: "kib",
            type: "quantitative",
            aggregate: "median",
            title: "kernel page tables after boot (KiB, median over machines)",
          }
        : { field: "kib", type: "quantitative", title: "kernel page tables after boot (KiB)" },
      color: { field: "pmm", type: "nominal", title: "PMM", scale: PALETTE },
    },
  };
}

function perOpFigure(rows: ResultRow[], key: "memRefs" | "tlbMisses", title: string): TopLevelSpec | null {
  const data = rows
    .filter((r) => r.kind === "workload" && ok(r) && r.perOp !== null)
    .map((r) => ({ workload: r.workload, pmm: r.pmm, kmap: r.kmap, v: r.perOp![key] }));
  if (data.length === 0) return null;
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    data: { values: data },
    facet: { row: { field: "workload", type: "nominal", title: null } },
    resolve: { scale: { y: "independent" } },
    spec: {
      width: 560,
      height: 140,
      mark: "bar",
      encoding: {
        x: { field: "pmm", type: "nominal", title: "PMM" },
        xOffset: { field: "kmap", type: "nominal" },
        y: isMultiMap(rows)
          ? {
              field: "v",
              type: "quantitative",
              aggregate: "median",
              title: `${title} (median over machines)`,
            }
          : { field: "v", type: "quantitative", title },
        color: { field: "kmap", type: "nominal", title: "kernel mapping", scale: PALETTE },
      },
    },
  };
}

function ipiFigure(rows: ResultRow[]): TopLevelSpec | null {
  const data: { what: string; kmap: string; pmm: string; v: number }[] = [];
  for (const r of rows) {
    if (r.kind !== "workload" || !ok(r)) continue;
    if (r.ipisPerKfree !== null)
      data.push({ what: `kfree (${r.workload})`, kmap: r.kmap, pmm: r.pmm, v: r.ipisPerKfree });
    if (r.ipisPerVfree !== null)
      data.push({ what: `vfree (${r.workload})`, kmap: r.kmap, pmm: r.pmm, v: r.ipisPerVfree });
  }
  if (data.length === 0) return null;
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    data: { values: data },
    facet: { column: { field: "what", type: "nominal", title: null } },
    spec: {
      width: 220,
      height: 220,
      mark: "bar",
      encoding: {
        x: { field: "kmap", type: "nominal", title: "kernel mapping" },
        xOffset: { field: "pmm", type: "nominal" },
        y: { field: "v", type: "quantitative", title: "IPIs per call" },
        color: { field: "pmm", type: "nominal", title: "PMM", scale: PALETTE },
      },
    },
  };
}

function largestFigure(
  rows: ResultRow[],
): { spec: TopLevelSpec; workload: string; kmap: string; map: string } | null {
  const candidates = rows.filter((r) => r.kind === "workload" && ok(r) && r.series.length > 0);
  if (candidates.length === 0) return null;
  const workload = candidates.some((r) => r.workload === "file-cache")
    ? "file-cache"
    : (candidates[0].workload as string);
  const kmap = firstOf(
    candidates.filter((r) => r.workload === workload),
    (r) => r.kmap,
  )[0];
  const cpus = candidates.find((r) => r.workload === workload && r.kmap === kmap)!.cpus;
  const map = candidates.find((r) => r.workload === workload && r.kmap === kmap)!.map;
  const data: { pmm: string; op: number; order: number }[] = [];
  for (const r of candidates) {
    if (r.workload !== workload || r.kmap !== kmap || r.cpus !== cpus || r.map !== map) continue;
    for (const p of r.series) data.push({ pmm: r.pmm, op: p.op, order: p.largestOrder });
  }
  return {
    workload,
    kmap,
    map,
    spec: {
      $schema: "https://vega.github.io/schema/vega-lite/v6.json",
      width: 560,
      height: 300,
      data: { values: data },
      mark: { type: "line", interpolate: "step-after" },
      encoding: {
        x: { field: "op", type: "quantitative", title: `operations (${workload})` },
        y: {
          field: "order",
          type: "quantitative",
          title: "largest order that succeeds (4 KiB x 2^order)",
          scale: { domainMin: -1 },
        },
        color: { field: "pmm", type: "nominal", title: "PMM", scale: PALETTE },
        strokeDash: { field: "pmm", type: "nominal", title: "PMM", scale: { range: DASHES } },
      },
    },
  };
}

/** The rows of a spec's inline data (every spec here has `data: { values }`). */
function valuesOf(spec: TopLevelSpec): Record<string, unknown>[] {
  const d = (spec as { data?: { values?: unknown } }).data;
  return Array.isArray(d?.values) ? (d.values as Record<string, unknown>[]) : [];
}

type AddFigure = (id: string, title: string, caption: string, spec: TopLevelSpec | null) => Promise<void>;

/** The figures only a sweep over several machines has (the corpus report, ./corpus.ts). */
async function corpusFigures(rows: ResultRow[], add: AddFigure): Promise<void> {
  await add(
    "corpus-metadata-share",
    "PMM metadata as a share of RAM, machine by machine",
    "Allocator metadata after boot as a percentage of each machine's usable RAM, against its RAM (log-log), one point per machine and design. Machines whose boot was refused are absent.",
    metadataShareSpec(rows),
  );
  await add(
    "corpus-page-tables",
    "Kernel page tables per strategy, machine by machine",
    `Bytes of page tables in the kernel's final address space after boot with the ${referencePmm(rows)} PMM, per kernel-mapping strategy, against each machine's usable RAM (log-log).`,
    pageTableSpec(rows),
  );
  await add(
    "corpus-refusals",
    "Boot refusals by cause",
    "Machines whose boot was refused, by the error that refused it and the design.",
    refusalSpec(rows),
  );
}

/** Every figure that has data, rendered; a figure whose values are all 0 is a sentence instead. */
export async function buildFigures(rows: ResultRow[]): Promise<Figure[]> {
  const out: Figure[] = [];
  const add = async (id: string, title: string, caption: string, spec: TopLevelSpec | null) => {
    if (spec !== null) out.push({ id, title, caption, svg: await render(spec) });
  };
  if (isMultiMap(rows)) await corpusFigures(rows, add);
  const meta = metadataFigure(rows);
  await add(
    "metadata-vs-ram",
    "PMM metadata vs RAM size",
    "Bytes of allocator metadata after boot (standing + transient) for each design at each RAM size of the sweep (log-log). Refused boots are absent." +
      (meta === null
        ? ""
        : identicalNote(
            identicalSeries(
              valuesOf(meta),
              (d) => String(d.pmm),
              (d) => `${d.map}:${d.metadataKiB}`,
            ),
          )),
    meta,
  );
  await add(
    "page-tables",
    "Kernel page tables per mapping strategy",
    "Bytes of page tables in the kernel's final address space after boot, per kernel-mapping strategy and PMM.",
    pageTableFigure(rows),
  );
  await add(
    "mem-refs",
    "Memory references per operation",
    "32-bit reads and writes of simulated RAM (allocator metadata, page tables, touched data) per workload operation.",
    perOpFigure(rows, "memRefs", "memory refs / op"),
  );
  await add(
    "tlb-misses",
    "TLB misses per operation",
    "TLB misses (walks started) per workload operation, all CPUs.",
    perOpFigure(rows, "tlbMisses", "TLB misses / op"),
  );
  const ipi = ipiFigure(rows);
  const ipiValues = ipi === null ? [] : valuesOf(ipi);
  const ipiTitle = "IPIs per kfree / vfree";
  const ipiCaption =
    "Inter-processor interrupts sent while a kfree or vfree ran, per call (counters read around each call).";
  if (ipi !== null && ipiValues.every((d) => d.v === 0)) {
    const what = [...new Set(ipiValues.map((d) => String(d.what)))];
    out.push({
      id: "ipis",
      title: ipiTitle,
      caption: ipiCaption,
      svg: null,
      sentence:
        `No run sent an IPI per kfree/vfree: all ${ipiValues.length} figures (${what.join(", ")}; ` +
        `${new Set(ipiValues.map((d) => d.pmm)).size} designs, kernel mappings ${[...new Set(ipiValues.map((d) => String(d.kmap)))].join(", ")}) are 0 IPIs per call, so there is no chart.`,
    });
  } else await add("ipis", ipiTitle, ipiCaption, ipi);
  const lf = largestFigure(rows);
  if (lf !== null)
    await add(
      "largest-order",
      "Largest successful allocation over time",
      `Largest order that would succeed, sampled during ${lf.workload} (kernel mapping ${lf.kmap}${isMultiMap(rows) ? `, on ${lf.map}` : ""}); -1 means not even one page.` +
        identicalNote(
          identicalSeries(
            valuesOf(lf.spec),
            (d) => String(d.pmm),
            (d) => `${d.op}:${d.order}`,
          ),
        ),
      lf.spec,
    );
  return out;
}
