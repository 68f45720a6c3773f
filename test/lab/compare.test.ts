/**
 * `pagelab compare` end to end through the real binary (worker threads included): the three files,
 * results.json's schema, findings whose numbers match the rows, well-formed SVG; plus determinism
 * across --jobs, refused runs as rows, and bad input.
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as v from "valibot";
import { describe, expect, it } from "vitest";
import { planMatrix, type ResultRow, runSpecs } from "../../src/lab/compare.ts";
import { fmt, fmtBytes } from "../../src/lab/report/findings.ts";
import { pagelab } from "../cli/run.ts";

const Num = v.number();
const Counts = v.record(v.string(), Num);
const Row = v.object({
  index: Num,
  kind: v.picklist(["workload", "sweep"]),
  map: v.string(),
  levels: v.picklist([4, 5]),
  pmm: v.string(),
  kmap: v.string(),
  workload: v.nullable(v.string()),
  cpus: Num,
  seed: Num,
  ops: Num,
  mem: v.nullable(Num),
  trace: v.nullable(v.string()),
  hostBudget: Num,
  paranoid: v.boolean(),
  command: v.pipe(v.string(), v.startsWith("pagelab compare ")),
  error: v.nullable(v.object({ code: v.string(), message: v.string() })),
  ramBytes: Num,
  usablePages: Num,
  freePagesAfterBoot: Num,
  metadataBytes: Num,
  metadataStandingBytes: Num,
  metadataTransientBytes: Num,
  pageTableBytes: Num,
  pageTablePages: Num,
  bootCounters: Counts,
  counters: Counts,
  opCounts: Counts,
  opsTotal: Num,
  failed: Counts,
  info: v.record(v.string(), v.union([Num, v.string()])),
  notes: v.array(v.string()),
  perOp: v.nullable(
    v.object({
      memRefs: Num,
      walks: Num,
      walkReads: Num,
      tlbMisses: Num,
      invlpg: Num,
      ipis: Num,
      ipiCycles: Num,
      shootdowns: Num,
      ptPagesAllocated: Num,
    }),
  ),
  ipisPerKfree: v.nullable(Num),
  ipisPerVfree: v.nullable(Num),
  series: v.array(v.object({ op: Num, largestOrder: Num, heldFrames: Num })),
  hostMs: v.object({ boot: Num, workload: Num }),
  opsPerHostSecond: Num,
});

/** Tags balance, one root <svg>, attributes quoted: enough to catch a truncated or mangled SVG. */
function assertWellFormedSvg(svg: string): void {
  expect(svg.startsWith("<svg")).toBe(true);
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"]*")*)\s*(\/?)>/g)) {
    const [, close, name, , self] = m;
    if (self) continue;
    if (close) expect(stack.pop()).toBe(name);
    else stack.push(name);
  }
  expect(stack).toEqual([]);
  expect(svg.replace(/<[^>]*>/g, "")).not.toMatch(/[<>]/);
}

const hostFree = (r: ResultRow) => ({ ...r, hostMs: null, opsPerHostSecond: null });

describe("pagelab compare (CLI, end to end)", () => {
  const out = mkdtempSync(join(tmpdir(), "pagelab-compare-"));
  const args = [
    "compare",
    "--maps",
    "qemu:256M",
    "--pmm",
    "buddy,stack",
    "--kmap",
    "direct,quickmap",
    "--workload",
    "page-churn,heap-churn",
    "--cpus",
    "2",
    "--ops",
    "2500",
    "--sweep",
    "qemu:64M,qemu:256M",
    "--jobs",
    "2",
    "--out",
    out,
  ];
  const run = pagelab(...args);

  it("exits 0, shows progress, and writes results.json, report.md, report.html and the figures", () => {
    expect(run.stderr).toMatch(/compare \[=+\] 12\/12 runs/);
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^12 runs \(\d+ did not complete\)/);
    for (const f of [
      "results.json",
      "report.md",
      "report.html",
      "fig-metadata-vs-ram.svg",
      "fig-mem-refs.svg",
    ])
      expect(readFileSync(join(out, f), "utf8").length, f).toBeGreaterThan(100);
  });

  it("results.json: one row per run in plan order, every counter, valid schema", () => {
    const rows = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as ResultRow[];
    expect(rows.map((r) => r.index)).toEqual([...Array(12).keys()]);
    for (const r of rows) {
      const p = v.safeParse(Row, r);
      expect(p.success, JSON.stringify(p.issues?.[0]?.path?.map((x) => x.key))).toBe(true);
      expect(r.error, r.command).toBeNull();
    }
    const w = rows.filter((r) => r.kind === "workload");
    expect(w).toHaveLength(8);
    for (const r of w) {
      expect(Object.keys(r.counters)).toEqual(Object.keys(r.bootCounters));
      expect(r.opsTotal).toBe(2500);
      expect(r.perOp!.memRefs).toBeCloseTo((r.counters.memReads + r.counters.memWrites) / 2500, 9);
      expect(r.series.length).toBeGreaterThan(0);
    }
    expect(rows.filter((r) => r.kind === "sweep").map((r) => `${r.map}/${r.pmm}`)).toEqual([
      "qemu:64M/buddy",
      "qemu:64M/stack",
      "qemu:256M/buddy",
      "qemu:256M/stack",
    ]);
  });

  it("report.md states findings whose numbers are the rows' numbers, each with its command", () => {
    const rows = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as ResultRow[];
    const md = readFileSync(join(out, "report.md"), "utf8");
    // metadata at the largest sweep size, both designs
    const s256 = rows.filter((r) => r.kind === "sweep" && r.map === "qemu:256M");
    const lo = s256.reduce((a, b) => (a.metadataBytes <= b.metadataBytes ? a : b));
    const hi = s256.reduce((a, b) => (a.metadataBytes > b.metadataBytes ? a : b));
    expect(md).toContain(
      `PMM metadata after boot ranges from ${fmtBytes(lo.metadataBytes)} for ${lo.pmm} (${fmt((100 * lo.metadataBytes) / lo.ramBytes)} % of RAM) to ${fmtBytes(hi.metadataBytes)} for ${hi.pmm}`,
    );
    // memory references per page-churn operation, direct mapping
    const pc = rows.filter((r) => r.workload === "page-churn" && r.kmap === "direct");
    const cheap = pc.reduce((a, b) => (a.perOp!.memRefs <= b.perOp!.memRefs ? a : b));
    expect(md).toContain(
      `${cheap.pmm} needs the fewest memory references per operation (${fmt(cheap.perOp!.memRefs)})`,
    );
    // TLB misses per heap-churn op for buddy, per strategy
    const hc = rows.filter((r) => r.workload === "heap-churn" && r.pmm === "buddy");
    expect(md).toContain(
      `TLB misses per operation are ${fmt(hc[0].perOp!.tlbMisses)} with ${hc[0].kmap} and ${fmt(hc[1].perOp!.tlbMisses)} with ${hc[1].kmap}`,
    );
    // IPIs per kfree
    expect(md).toContain(`a kfree sends ${fmt(hc[0].ipisPerKfree!)} IPIs with ${hc[0].kmap}`);
    // every finding is followed by its command
    const lines = md.split("\n");
    const findings = lines.filter((l) => l.startsWith("- "));
    expect(findings.length).toBeGreaterThanOrEqual(5);
    for (const f of findings) expect(lines[lines.indexOf(f) + 1]).toMatch(/^ {2}`pagelab compare .*`$/);
  });

  it("report.html is self-contained with well-formed inline SVG; the figure files are well-formed", () => {
    const html = readFileSync(join(out, "report.html"), "utf8");
    expect(html).not.toMatch(/<script|<link|src="http/);
    const svgs = [...html.matchAll(/<svg[\s\S]*?<\/svg>/g)].map((m) => m[0]);
    expect(svgs.length).toBeGreaterThanOrEqual(5);
    for (const f of ["fig-metadata-vs-ram.svg", "fig-page-tables.svg", "fig-largest-order.svg"])
      assertWellFormedSvg(readFileSync(join(out, f), "utf8"));
    // the IPI chart is drawn when some run sent an IPI per kfree/vfree, else a sentence says none did
    const rows = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as ResultRow[];
    const ipis = rows.flatMap((r) => [r.ipisPerKfree ?? 0, r.ipisPerVfree ?? 0]);
    if (ipis.some((x) => x > 0)) assertWellFormedSvg(readFileSync(join(out, "fig-ipis.svg"), "utf8"));
    else expect(readFileSync(join(out, "report.md"), "utf8")).toMatch(/No run sent an IPI per kfree\/vfree/);
  });

  it("rows are deterministic: the same plan in this thread gives the CLI's rows (host time aside)", async () => {
    const cli = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as ResultRow[];
    const specs = planMatrix({
      maps: ["qemu:256M"],
      pmms: ["buddy", "stack"],
      kmaps: ["direct", "quickmap"],
      workloads: ["page-churn", "heap-churn"],
      cpus: [2],
      ops: 2500,
      sweep: ["qemu:64M", "qemu:256M"],
    }).filter((s) => s.kind === "workload" && s.kmap === "direct");
    const here: ResultRow[] = [];
    await runSpecs(specs, 0, (r) => here.push(r));
    for (const r of here) expect(hostFree(r)).toEqual(hostFree(cli[r.index]));
  });
});

describe("pagelab compare: refusals and bad input", () => {
  it("a run refused by the host budget is a row with its error, and the report says so", () => {
    const out = mkdtempSync(join(tmpdir(), "pagelab-compare-"));
    const r = pagelab(
      "compare",
      "--maps",
      "qemu:256M",
      "--pmm",
      "freelist,bitmap",
      "--kmap",
      "direct",
      "--workload",
      "page-churn",
      "--ops",
      "100",
      "--sweep",
      "none",
      "--host-budget",
      "8M",
      "--jobs",
      "0",
      "--out",
      out,
    );
    expect(r.status, r.stderr).toBe(0);
    const rows = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as ResultRow[];
    expect(rows.map((x) => x.error?.code ?? "ok")).toEqual(["HOST_MEMORY", "ok"]);
    expect(readFileSync(join(out, "report.md"), "utf8")).toMatch(
      /1 of 2 runs ended with HOST_MEMORY \(freelist/,
    );
  });

  it("unknown names, missing traces and empty plans fail before any work, with clear messages", () => {
    const cases: [string[], RegExp][] = [
      [["--pmm", "buddy,nope"], /UNKNOWN_DESIGN.*no PMM design 'nope'/],
      [["--kmap", "sideways"], /no kernel-mapping strategy 'sideways'/],
      [["--workload", "churn"], /UNKNOWN_WORKLOAD.*no workload 'churn'/],
      [["--workload", "ftrace"], /needs --trace FILE/],
      [["--workload", "none", "--sweep", "none"], /nothing to run/],
      [["--cpus", "0"], /--cpus must be an integer from 1 to 64/],
      [["--ops", "-3"], /--ops must be an integer/],
    ];
    for (const [extra, msg] of cases) {
      const r = pagelab("compare", "--out", join(tmpdir(), "never-written"), ...extra);
      expect(r.status, extra.join(" ")).toBe(2);
      expect(r.stderr, extra.join(" ")).toMatch(msg);
    }
  });

  it("--help teaches: workloads, output files, examples, the capture recipe", () => {
    const r = pagelab("compare", "--help");
    expect(r.status).toBe(0);
    for (const s of [
      "--maps",
      "--pmm",
      "--kmap",
      "--workload",
      "--cpus",
      "--out",
      "page-churn",
      "results.json",
      "Examples:",
      "trace_pipe",
    ])
      expect(r.stdout).toContain(s);
  });
});
