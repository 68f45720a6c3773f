/**
 * The default `pagelab compare` matrix (every design, direct/recursive/quickmap, the standard
 * workloads, the default sweep), with few operations per run to keep it short: no run fails, what the
 * host budget would refuse is left out and said, every finding holds for the rows it names, the
 * charts tell 12 designs apart, and an all-zero chart is a sentence.
 */
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { DESIGN_NAMES } from "../../src/kernel/pmm/designs.ts";
import type { ResultRow } from "../../src/lab/compare.ts";
import { buildFigures, identicalSeries } from "../../src/lab/report/charts.ts";
import { fmt, refusalsByOrder } from "../../src/lab/report/findings.ts";
import { pagelab } from "../cli/run.ts";

describe("pagelab compare: the default matrix", () => {
  const out = join(mkdtempSync(join(tmpdir(), "pagelab-cmp-default-")), "out");
  let run: ReturnType<typeof pagelab>;
  let rows: ResultRow[];
  let md: string;
  beforeAll(() => {
    run = pagelab("compare", "--ops", "50", "--out", out);
    rows = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as ResultRow[];
    md = readFileSync(join(out, "report.md"), "utf8");
  }, 180_000);

  it("issue 14: the default compare has zero error rows, and says what it left out and why", () => {
    expect(run.status, run.stderr).toBe(0);
    expect(rows.filter((r) => r.error !== null).map((r) => `${r.command}: ${r.error!.message}`)).toEqual([]);
    expect(run.stdout).toMatch(new RegExp(`^${rows.length} runs \\(0 did not complete\\)`));
    // every design ran, in the matrix and in the sweep
    expect(new Set(rows.map((r) => r.pmm))).toEqual(new Set(DESIGN_NAMES));
    // what was left out: freelist on 16 GiB and more (a 64-byte line of host memory per free frame),
    // most designs on the sparse map
    const left = run.stdout.split("\n").filter((l) => l.startsWith("left out of the default: "));
    expect(left.join("\n")).toMatch(
      /freelist in the sweep at qemu:16G and sparse@5 \(2 runs\): would back [\d.]+ [MG]iB to [\d.]+ GiB of host memory \(it writes a next pointer into every free frame.*over the 512 MiB per-run --host-budget; run them with --host-budget \d+G/,
    );
    expect(left.join("\n")).toMatch(/in the sweep at sparse@5/);
    for (const l of left) expect(md).toContain(`- ${l}`);
    // the rows left out are absent, and their count adds up with the rows run to the full matrix
    const leftRuns = left.reduce((s, l) => s + Number(/\((\d+) runs?\)/.exec(l)![1]), 0);
    expect(rows.length + leftRuns).toBe(12 * 3 * 5 + 12 * 5);
    // freelist on 4 GiB runs: its links cost a line each, not a page (it was left out when they did)
    expect(rows.some((r) => r.pmm === "freelist" && r.workload === "page-churn" && r.map === "qemu:4G")).toBe(
      true,
    );
  });

  it("issue 14: the page-churn refusal finding is true, order by order, for every design it names", () => {
    const line = md.split("\n").find((l) => l.startsWith("- On page-churn (direct mapping), "));
    expect(line, "a refusal finding").toBeDefined();
    const clauses = line!
      .replace(/^- On page-churn \(direct mapping\), /, "")
      .replace(/\.$/, "")
      .split("; ");
    const named = new Set<string>();
    for (const c of clauses) {
      const m = /^(.+?) refused ([\d.]+) % of the allocation requests: (.*)$/.exec(c);
      expect(m, c).not.toBeNull();
      const [, who, pct, what] = m!;
      for (const pmm of who.split(/, | and /)) {
        named.add(pmm);
        const r = rows.find((x) => x.pmm === pmm && x.workload === "page-churn" && x.kmap === "direct")!;
        expect(fmt(r.info.refusedPercent as number), c).toBe(pct);
        const per = new Map(refusalsByOrder(r).map((x) => [x.order, x]));
        const every = /every request of order ([\d, and]+?)(?: and served|,| \(|$)/.exec(what);
        for (const o of every?.[1].split(/, | and /) ?? []) {
          const x = per.get(Number(o))!;
          expect(x.refused, `${pmm} order ${o}`).toBe(x.requested);
        }
        const served = /served every request of order ([\d, and]+?)(?: \(|$)/.exec(what);
        for (const o of served?.[1].split(/, | and /) ?? []) expect(per.get(Number(o))!.refused).toBe(0);
        if (what.includes("(no contiguous blocks)"))
          for (const x of per.values())
            expect(x.refused, `${pmm} order ${x.order}`).toBe(x.order > 0 ? x.requested : 0);
      }
    }
    // every design that refused something is named, and no other
    const refusing = rows
      .filter(
        (r) => r.workload === "page-churn" && r.kmap === "direct" && (r.info.refusedPercent as number) > 0,
      )
      .map((r) => r.pmm);
    expect(named).toEqual(new Set(refusing));
  });

  it("issue 14: the metadata finding's least and most are the least and most of the designs it covers", () => {
    const m =
      /PMM metadata after boot ranges(?:, among the (\d+) designs that ran at that size \(([^)]+)\),)? from [\d.]+ \w+ for (\S+) .* to [\d.]+ \w+ for (\S+) \(/.exec(
        md,
      );
    expect(m).not.toBeNull();
    const [, , covered, lo, hi] = m!;
    const top = Math.max(...rows.filter((r) => r.kind === "sweep").map((r) => r.ramBytes));
    const g = rows.filter((r) => r.kind === "sweep" && r.ramBytes === top);
    if (covered !== undefined)
      expect(new Set(covered.split(/, | and /))).toEqual(new Set(g.map((r) => r.pmm)));
    const byMeta = [...g].sort((a, b) => a.metadataBytes - b.metadataBytes);
    expect(lo).toBe(byMeta[0].pmm);
    expect(hi).toBe(byMeta[byMeta.length - 1].pmm);
  });

  it("issue 14: with every IPI figure 0 the IPI chart is a sentence; one IPI brings the chart back", async () => {
    const ipi = rows.flatMap((r) => [r.ipisPerKfree, r.ipisPerVfree]).filter((v) => v !== null);
    expect(ipi.length).toBeGreaterThan(0);
    expect(ipi.every((v) => v === 0)).toBe(true);
    expect(md).toMatch(
      /## IPIs per kfree \/ vfree\n\n.*\n\nNo run sent an IPI per kfree\/vfree: all \d+ figures/,
    );
    expect(existsSync(join(out, "fig-ipis.svg"))).toBe(false);
    const one = rows.map((r, i) =>
      i === rows.findIndex((x) => x.ipisPerKfree !== null) ? { ...r, ipisPerKfree: 1 } : r,
    );
    const fig = (await buildFigures(one)).find((f) => f.id === "ipis")!;
    expect(fig.svg).toMatch(/^<svg/);
  });

  it("issue 14: 12 designs get 12 distinct colours, and identical series are named in the caption", () => {
    const svg = readFileSync(join(out, "fig-metadata-vs-ram.svg"), "utf8");
    const colours = new Set([...svg.matchAll(/stroke="(#[0-9a-f]{3,6})"/gi)].map((m) => m[1].toLowerCase()));
    for (const grey of ["#888", "#ddd", "#000"]) colours.delete(grey);
    expect(colours.size).toBeGreaterThanOrEqual(12);
    const lo = readFileSync(join(out, "fig-largest-order.svg"), "utf8");
    expect(new Set([...lo.matchAll(/stroke-dasharray="([^"]+)"/g)].map((m) => m[1])).size).toBeGreaterThan(1);
    // the caption's "identical" groups are exactly the designs whose sampled series are equal
    const fc = rows.filter((r) => r.workload === "file-cache" && r.kmap === "direct");
    const groups = identicalSeries(
      fc.flatMap((r) => r.series.map((p) => ({ pmm: r.pmm, p: `${p.op}:${p.largestOrder}` }))),
      (d) => d.pmm,
      (d) => d.p,
    );
    const caption = md.split("## Largest successful allocation over time\n\n")[1].split("\n")[0];
    if (groups.length === 0) expect(caption).not.toMatch(/Identical series/);
    for (const g of groups) {
      const series = g.map((p) =>
        JSON.stringify(fc.find((r) => r.pmm === p)!.series.map((s) => s.largestOrder)),
      );
      expect(new Set(series).size).toBe(1);
      expect(caption).toContain(g.length === 2 ? `${g[0]} and ${g[1]}` : g.slice(0, -1).join(", "));
    }
  });
});
