/**
 * What only a sweep over many machines can show (the real maps of `--map corpus`, or any sweep with
 * several maps in its matrix): PMM metadata as a share of each machine's RAM, the page tables each
 * kernel-mapping strategy builds on each machine, why boots were refused, and the machines on which
 * the designs rank differently from the rest. Data and vega-lite specs here; charts.ts renders them,
 * findings.ts words them, render.ts tables them. Everything is a function of the rows, in row order.
 */
import type { TopLevelSpec } from "vega-lite";
import { corpusMachine } from "../../firmware/corpus.ts";
import type { ResultRow } from "../compare.ts";

const GiB = 2 ** 30;
const SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json";
const PALETTE = { scheme: "tableau20" } as const;

const ok = (r: ResultRow) => r.error === null;
const matrix = (rows: ResultRow[]) => rows.filter((r) => r.kind === "workload");

function uniq<T>(xs: T[]): T[] {
  return [...new Set(xs)];
}

/** The matrix's maps, in plan order. */
export function matrixMaps(rows: ResultRow[]): string[] {
  return uniq(matrix(rows).map((r) => r.map));
}

/** Does the sweep have several maps (the corpus report's sections are written only then)? */
export function isMultiMap(rows: ResultRow[]): boolean {
  return matrixMaps(rows).length >= 2;
}

/** A machine's name in a sentence: the map, plus what the corpus says it is (DMI, trimmed). */
export function machineName(map: string): string {
  const m = corpusMachine(map);
  const dmi = m?.dmi
    ?.replace(/, BIOS .*$/, "")
    .replace(/\/.*$/, "")
    .trim();
  return dmi ? `${map} (${dmi})` : map;
}

/** The reference design for per-strategy figures: buddy when it ran, else the first design. */
export function referencePmm(rows: ResultRow[]): string {
  const m = matrix(rows);
  return m.some((r) => r.pmm === "buddy") ? "buddy" : (m[0]?.pmm ?? "");
}

export interface SharePoint {
  map: string;
  pmm: string;
  ramGiB: number;
  metadataBytes: number;
  /** Metadata after boot, percent of the machine's usable RAM. */
  percent: number;
}

/** One point per machine and design that booted: its metadata as a share of its RAM. */
export function metadataShares(rows: ResultRow[]): SharePoint[] {
  const seen = new Set<string>();
  const out: SharePoint[] = [];
  for (const r of matrix(rows)) {
    if (!ok(r) || r.ramBytes === 0) continue;
    const key = `${r.map}|${r.pmm}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({
      map: r.map,
      pmm: r.pmm,
      ramGiB: r.ramBytes / GiB,
      metadataBytes: r.metadataBytes,
      percent: (100 * r.metadataBytes) / r.ramBytes,
    });
  }
  return out;
}

export function metadataShareSpec(rows: ResultRow[]): TopLevelSpec | null {
  const data = metadataShares(rows).map((p) => ({
    map: machineName(p.map),
    pmm: p.pmm,
    ramGiB: p.ramGiB,
    percent: Math.max(p.percent, 1e-4),
  }));
  if (data.length === 0) return null;
  return {
    $schema: SCHEMA,
    width: 560,
    height: 340,
    data: { values: data },
    mark: { type: "point", filled: true, opacity: 0.7 },
    encoding: {
      x: { field: "ramGiB", type: "quantitative", scale: { type: "log" }, title: "usable RAM (GiB, log)" },
      y: {
        field: "percent",
        type: "quantitative",
        scale: { type: "log" },
        title: "PMM metadata after boot (% of RAM, log)",
      },
      color: { field: "pmm", type: "nominal", title: "PMM", scale: PALETTE },
      shape: { field: "pmm", type: "nominal", title: "PMM" },
      tooltip: [{ field: "map" }, { field: "pmm" }, { field: "percent" }],
    },
  };
}

export interface PageTableRow {
  map: string;
  ramBytes: number;
  /** Page-table bytes after boot by strategy (the reference design's runs). */
  byKmap: Record<string, number>;
}

/** Per machine (plan order), the reference design's page-table bytes after boot under each strategy. */
export function pageTablesByMap(rows: ResultRow[]): { kmaps: string[]; pmm: string; maps: PageTableRow[] } {
  const pmm = referencePmm(rows);
  const m = matrix(rows).filter((r) => r.pmm === pmm && ok(r));
  const kmaps = uniq(m.map((r) => r.kmap));
  const maps: PageTableRow[] = [];
  for (const map of uniq(m.map((r) => r.map))) {
    const of = m.filter((r) => r.map === map);
    const byKmap: Record<string, number> = {};
    for (const r of of) byKmap[r.kmap] ??= r.pageTableBytes;
    maps.push({ map, ramBytes: of[0].ramBytes, byKmap });
  }
  return { kmaps, pmm, maps };
}

export function pageTableSpec(rows: ResultRow[]): TopLevelSpec | null {
  const { maps } = pageTablesByMap(rows);
  const data = maps.flatMap((m) =>
    Object.entries(m.byKmap).map(([kmap, bytes]) => ({
      map: machineName(m.map),
      kmap,
      ramGiB: m.ramBytes / GiB,
      kib: Math.max(bytes, 1) / 1024,
    })),
  );
  if (data.length === 0) return null;
  return {
    $schema: SCHEMA,
    width: 560,
    height: 300,
    data: { values: data },
    mark: { type: "point", filled: true, opacity: 0.7 },
    encoding: {
      x: { field: "ramGiB", type: "quantitative", scale: { type: "log" }, title: "usable RAM (GiB, log)" },
      y: {
        field: "kib",
        type: "quantitative",
        scale: { type: "log" },
        title: "kernel page tables after boot (KiB, log)",
      },
      color: { field: "kmap", type: "nominal", title: "kernel mapping", scale: PALETTE },
      shape: { field: "kmap", type: "nominal", title: "kernel mapping" },
      tooltip: [{ field: "map" }, { field: "kmap" }, { field: "kib" }],
    },
  };
}

export interface Refusal {
  code: string;
  pmm: string;
  /** Machines (maps) refused, plan order. */
  maps: string[];
  message: string;
}

/** Boots refused (the run has no boot counters), by cause and design. */
export function refusals(rows: ResultRow[]): Refusal[] {
  const out = new Map<string, Refusal>();
  for (const r of matrix(rows)) {
    if (r.error === null || Object.keys(r.bootCounters).length > 0) continue;
    const key = `${r.error.code}|${r.pmm}`;
    const g = out.get(key) ?? { code: r.error.code, pmm: r.pmm, maps: [], message: r.error.message };
    if (!g.maps.includes(r.map)) g.maps.push(r.map);
    out.set(key, g);
  }
  return [...out.values()];
}

export function refusalSpec(rows: ResultRow[]): TopLevelSpec | null {
  const data = refusals(rows).map((g) => ({ cause: g.code, pmm: g.pmm, machines: g.maps.length }));
  if (data.length === 0) return null;
  return {
    $schema: SCHEMA,
    width: 360,
    height: 240,
    data: { values: data },
    mark: "bar",
    encoding: {
      x: { field: "cause", type: "nominal", title: "why the boot was refused" },
      xOffset: { field: "pmm", type: "nominal" },
      y: { field: "machines", type: "quantitative", title: "machines" },
      color: { field: "pmm", type: "nominal", title: "PMM", scale: PALETTE },
    },
  };
}

export interface RankingGroup {
  workload: string;
  kmap: string;
  cpus: number;
  /** The designs, fewest memory references per operation first, and on how many machines. */
  usual: string[];
  machines: number;
  /** Machines where the order differs, with their order. */
  flips: { map: string; order: string[]; rows: ResultRow[] }[];
  usualRows: ResultRow[];
}

/**
 * Per workload, strategy and CPU count: the designs ranked by memory references per operation on
 * each machine where at least two completed; the most common order where all of them completed, and
 * the machines whose order differs from it (on the designs that completed there).
 */
export function rankingFlips(rows: ResultRow[]): RankingGroup[] {
  const w = matrix(rows).filter((r) => ok(r) && r.perOp !== null);
  const out: RankingGroup[] = [];
  const combos = uniq(w.map((r) => `${r.workload}|${r.kmap}|${r.cpus}`));
  for (const c of combos) {
    const g = w.filter((r) => `${r.workload}|${r.kmap}|${r.cpus}` === c);
    const perMap = new Map<string, ResultRow[]>();
    for (const r of g) perMap.set(r.map, [...(perMap.get(r.map) ?? []), r]);
    const orders: { map: string; order: string[]; rows: ResultRow[] }[] = [];
    for (const [map, rs] of perMap) {
      if (rs.length < 2) continue;
      const s = [...rs].sort((a, b) => a.perOp!.memRefs - b.perOp!.memRefs || a.index - b.index);
      orders.push({ map, order: s.map((r) => r.pmm), rows: s });
    }
    if (orders.length < 2) continue;
    // the most common order among the machines where every design ran (ties: the one met first)
    const most = Math.max(...orders.map((o) => o.order.length));
    const count = new Map<string, number>();
    for (const o of orders)
      if (o.order.length === most) count.set(o.order.join(" < "), (count.get(o.order.join(" < ")) ?? 0) + 1);
    let usual = [...count.keys()][0];
    for (const [k, n] of count) if (n > count.get(usual)!) usual = k;
    const ranked = usual.split(" < ");
    // a machine where some design did not run flips only if the others are out of the usual order
    const flipped = (o: { order: string[] }) =>
      o.order.join(" < ") !== ranked.filter((p) => o.order.includes(p)).join(" < ");
    const [workload, kmap, cpus] = c.split("|");
    out.push({
      workload,
      kmap,
      cpus: Number(cpus),
      usual: ranked,
      machines: orders.length,
      flips: orders.filter(flipped),
      usualRows: orders.find((o) => o.order.join(" < ") === usual)!.rows,
    });
  }
  return out;
}
