/**
 * Writes the report of a `pagelab compare` run: `report.md` (findings, tables, figures as
 * `fig-*.svg` next to it) and `report.html` (self-contained: the same content with every SVG inline).
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ResultRow } from "../compare.ts";
import { buildFigures, type Figure } from "./charts.ts";
import { isMultiMap, pageTablesByMap, refusals } from "./corpus.ts";
import { computeFindings, type Finding, fmt, fmtBytes } from "./findings.ts";

export interface ReportMeta {
  /** The command line that produced the run. */
  command: string;
  wallMs: number;
  jobs: number;
  /** Sentences saying which runs a default plan left out and why (`left out of the default: ...`). */
  leftOut?: string[];
  /** Set for one shard of a sweep (its report covers its own runs only). */
  shard?: { k: number; n: number; sweepRuns: number };
}

export interface ReportFiles {
  md: string;
  html: string;
  figures: string[];
  findings: Finding[];
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** Per workload: PMM x kmap table of one per-op figure (markdown rows). */
function perOpTable(rows: ResultRow[], workload: string, key: "memRefs" | "tlbMisses"): string[][] {
  const g = rows.filter((r) => r.kind === "workload" && r.workload === workload && r.error === null);
  const kmaps = [...new Set(g.map((r) => r.kmap))];
  const pmms = [...new Set(g.map((r) => r.pmm))];
  const multi = isMultiMap(rows);
  const out: string[][] = [["PMM", ...kmaps]];
  for (const p of pmms)
    out.push([
      p,
      ...kmaps.map((k) => {
        if (multi) {
          // several machines: the median over them
          const v = g.filter((x) => x.pmm === p && x.kmap === k && x.perOp).map((x) => x.perOp![key]);
          return v.length === 0 ? "-" : fmt(median(v));
        }
        const r = g.find((x) => x.pmm === p && x.kmap === k);
        return r?.perOp ? fmt(r.perOp[key]) : "-";
      }),
    ]);
  return out;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** " (median over N machines)" after a per-op table's title when the sweep has several maps. */
function overMachines(rows: ResultRow[]): string {
  const n = new Set(rows.filter((r) => r.kind === "workload" && r.error === null).map((r) => r.map)).size;
  return isMultiMap(rows) ? ` (median over ${n} machines)` : "";
}

function mdTable(t: string[][]): string {
  if (t.length === 0) return "";
  const head = `| ${t[0].join(" | ")} |`;
  const sep = `|${t[0].map(() => "---").join("|")}|`;
  return [head, sep, ...t.slice(1).map((r) => `| ${r.join(" | ")} |`)].join("\n");
}

function htmlTable(t: string[][]): string {
  if (t.length === 0) return "";
  const [h, ...b] = t;
  return `<table><thead><tr>${h.map((c) => `<th>${esc(c)}</th>`).join("")}</tr></thead><tbody>${b
    .map((r) => `<tr>${r.map((c) => `<td>${esc(c)}</td>`).join("")}</tr>`)
    .join("")}</tbody></table>`;
}

function summary(rows: ResultRow[], meta: ReportMeta): string[] {
  const done = rows.filter((r) => r.error === null).length;
  const ops = rows.reduce((s, r) => s + r.opsTotal, 0);
  const r0 = rows.find((r) => r.kind === "workload");
  return [
    meta.shard === undefined
      ? ""
      : `Shard ${meta.shard.k}/${meta.shard.n} of a sweep of ${meta.shard.sweepRuns} runs: this report covers its own runs only; pagelab compare merge writes the whole sweep's.`,
    `${rows.length} runs (${done} completed), ${ops} simulated operations, in ${(meta.wallMs / 1000).toFixed(1)} s with ${meta.jobs} worker thread(s).`,
    r0
      ? `Seed ${r0.seed}, ${r0.cpus} CPUs; operations per run: ${[...new Map(rows.filter((r) => r.kind === "workload").map((r) => [r.workload, r.ops])).entries()].map(([w, n]) => `${w} ${n}`).join(", ")}.`
      : "",
    "Every figure below is computed from results.json (one row per run, every counter); host time appears only as run time.",
  ].filter((s) => s !== "");
}

function errorTable(rows: ResultRow[]): string[][] {
  const bad = rows.filter((r) => r.error !== null);
  if (bad.length === 0) return [];
  // with several maps, a matrix run names its machine
  const on = (r: ResultRow) => (r.kind === "workload" && isMultiMap(rows) ? `${r.map}: ` : "");
  return [
    ["run", "error", "message"],
    ...bad.map((r) => [
      `${on(r)}${r.kind === "sweep" ? `sweep ${r.map}${r.levels === 5 ? "@5" : ""}` : r.workload} / ${r.pmm} / ${r.kmap}`,
      r.error!.code,
      r.error!.message.length > 200 ? `${r.error!.message.slice(0, 197)}...` : r.error!.message,
    ]),
  ];
}

function sweepTable(rows: ResultRow[]): string[][] {
  const s = rows.filter((r) => r.kind === "sweep");
  if (s.length === 0) return [];
  const maps = [...new Set(s.map((r) => `${r.map}${r.levels === 5 ? "@5" : ""}`))];
  const pmms = [...new Set(s.map((r) => r.pmm))];
  return [
    ["PMM", ...maps],
    ...pmms.map((p) => [
      p,
      ...maps.map((m) => {
        const r = s.find((x) => x.pmm === p && `${x.map}${x.levels === 5 ? "@5" : ""}` === m);
        if (!r) return "-";
        return r.error ? "refused" : fmtBytes(r.metadataBytes);
      }),
    ]),
  ];
}

/** Per machine: its RAM and the reference design's page-table bytes per strategy (several maps only). */
function machineTable(rows: ResultRow[]): string[][] {
  if (!isMultiMap(rows)) return [];
  const { kmaps, maps } = pageTablesByMap(rows);
  if (maps.length === 0) return [];
  return [
    ["machine", "usable RAM", ...kmaps.map((k) => `page tables, ${k}`)],
    ...maps.map((m) => [
      m.map,
      fmtBytes(m.ramBytes),
      ...kmaps.map((k) => (m.byKmap[k] === undefined ? "-" : fmtBytes(m.byKmap[k]))),
    ]),
  ];
}

/** Boots refused, by cause and design (several maps only). */
function refusalTable(rows: ResultRow[]): string[][] {
  if (!isMultiMap(rows)) return [];
  const g = refusals(rows);
  if (g.length === 0) return [];
  return [
    ["cause", "PMM", "machines", "e.g."],
    ...g.map((x) => [x.code, x.pmm, String(x.maps.length), x.maps[0]]),
  ];
}

function markdown(rows: ResultRow[], meta: ReportMeta, findings: Finding[], figs: Figure[]): string {
  const L: string[] = [];
  L.push("# pagelab compare", "", `\`${meta.command}\``, "");
  L.push(...summary(rows, meta), "");
  for (const l of meta.leftOut ?? []) L.push(`- ${l}`);
  if ((meta.leftOut ?? []).length > 0) L.push("");
  L.push("## Findings", "");
  for (const f of findings) L.push(`- ${f.text}`, `  \`${f.command}\``);
  L.push("");
  for (const f of figs)
    L.push(
      `## ${f.title}`,
      "",
      f.caption,
      "",
      f.svg === null ? (f.sentence ?? "") : `![${f.title}](fig-${f.id}.svg)`,
      "",
    );
  const workloads = [...new Set(rows.filter((r) => r.kind === "workload").map((r) => r.workload as string))];
  if (workloads.length > 0) {
    L.push("## Tables", "");
    for (const w of workloads) {
      const m = overMachines(rows);
      L.push(
        `### ${w}: memory references per operation${m}`,
        "",
        mdTable(perOpTable(rows, w, "memRefs")),
        "",
      );
      L.push(`### ${w}: TLB misses per operation${m}`, "", mdTable(perOpTable(rows, w, "tlbMisses")), "");
    }
  }
  const st = sweepTable(rows);
  if (st.length > 0) L.push("### PMM metadata after boot by RAM size", "", mdTable(st), "");
  const rt = refusalTable(rows);
  if (rt.length > 0) L.push("### Boot refusals by cause", "", mdTable(rt), "");
  const pt = machineTable(rows);
  if (pt.length > 0)
    L.push(`### Page tables by machine (${pageTablesByMap(rows).pmm} PMM)`, "", mdTable(pt), "");
  const et = errorTable(rows);
  if (et.length > 0) L.push("## Runs that did not complete", "", mdTable(et), "");
  return `${L.join("\n")}\n`;
}

const CSS = `body{font:15px/1.5 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
code{background:#f3f3f3;padding:1px 4px;border-radius:3px;font-size:13px}
li{margin:.5em 0} table{border-collapse:collapse;margin:.5em 0 1.5em} td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}
td:first-child,th:first-child{text-align:left} figure{margin:1em 0 2em} figcaption{color:#555;font-size:14px}`;

function html(rows: ResultRow[], meta: ReportMeta, findings: Finding[], figs: Figure[]): string {
  const H: string[] = [];
  H.push(
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>pagelab compare</title><style>${CSS}</style></head><body>`,
  );
  H.push(`<h1>pagelab compare</h1><p><code>${esc(meta.command)}</code></p>`);
  H.push(...summary(rows, meta).map((s) => `<p>${esc(s)}</p>`));
  if ((meta.leftOut ?? []).length > 0)
    H.push(`<ul>${(meta.leftOut ?? []).map((l) => `<li>${esc(l)}</li>`).join("")}</ul>`);
  H.push("<h2>Findings</h2><ul>");
  for (const f of findings) H.push(`<li>${esc(f.text)}<br><code>${esc(f.command)}</code></li>`);
  H.push("</ul>");
  for (const f of figs)
    H.push(
      `<figure id="${f.id}"><h2>${esc(f.title)}</h2>${f.svg ?? `<p>${esc(f.sentence ?? "")}</p>`}<figcaption>${esc(f.caption)}</figcaption></figure>`,
    );
  const workloads = [...new Set(rows.filter((r) => r.kind === "workload").map((r) => r.workload as string))];
  if (workloads.length > 0) {
    H.push("<h2>Tables</h2>");
    for (const w of workloads) {
      H.push(
        `<h3>${esc(w)}: memory references per operation${esc(overMachines(rows))}</h3>${htmlTable(perOpTable(rows, w, "memRefs"))}`,
      );
      H.push(
        `<h3>${esc(w)}: TLB misses per operation${esc(overMachines(rows))}</h3>${htmlTable(perOpTable(rows, w, "tlbMisses"))}`,
      );
    }
  }
  const st = sweepTable(rows);
  if (st.length > 0) H.push(`<h3>PMM metadata after boot by RAM size</h3>${htmlTable(st)}`);
  const rt = refusalTable(rows);
  if (rt.length > 0) H.push(`<h3>Boot refusals by cause</h3>${htmlTable(rt)}`);
  const pt = machineTable(rows);
  if (pt.length > 0)
    H.push(`<h3>Page tables by machine (${esc(pageTablesByMap(rows).pmm)} PMM)</h3>${htmlTable(pt)}`);
  const et = errorTable(rows);
  if (et.length > 0) H.push(`<h2>Runs that did not complete</h2>${htmlTable(et)}`);
  H.push("</body></html>");
  return `${H.join("\n")}\n`;
}

export async function writeReport(outDir: string, rows: ResultRow[], meta: ReportMeta): Promise<ReportFiles> {
  const figs = await buildFigures(rows);
  const findings = computeFindings(rows);
  const figures: string[] = [];
  for (const f of figs) {
    if (f.svg === null) continue;
    const p = join(outDir, `fig-${f.id}.svg`);
    writeFileSync(p, f.svg);
    figures.push(p);
  }
  const md = join(outDir, "report.md");
  const htmlPath = join(outDir, "report.html");
  writeFileSync(md, markdown(rows, meta, findings, figs));
  writeFileSync(htmlPath, html(rows, meta, findings, figs));
  return { md, html: htmlPath, figures, findings };
}
