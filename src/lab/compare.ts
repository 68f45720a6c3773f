/**
 * `pagelab compare`: the matrix maps x PMM x kmap x workload x CPUs, one fresh kernel per run, each
 * run in a worker thread, one result row per run streamed into `results.json` (every counter, plus
 * per-operation figures), then the report (src/lab/report).
 *
 * Two kinds of run:
 *   - `workload`: startKernel, then one workload; `counters` is what the workload cost (after - before,
 *     every field, zeros included), `bootCounters` what the boot cost;
 *   - `sweep`: a boot only, at each RAM size of `sweep` (default qemu:256M, 1G, 4G, 16G and the sparse
 *     map with 5-level paging), for the "metadata bytes vs RAM size" figure.
 *
 * Determinism: a run depends only on its spec (map, design, strategy, workload, CPUs, seed, ops), so
 * every field of a row except `hostMs` and `opsPerHostSecond` is the same on every machine and at any
 * `--jobs`. Rows are written in plan order whatever order the workers finish in.
 *
 * A run that fails (the host-memory budget refuses the boot, a kernel module not implemented yet, an
 * invariant violated) becomes a row with `error` and the report lists it: the matrix goes on.
 */
import { closeSync, existsSync, mkdirSync, openSync, writeSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { fail, PagelabError } from "../errors.ts";
import { DEFAULT_PRESET } from "../firmware/index.ts";
import { startKernel } from "../kernel/kernel.ts";
import { SECTIONS } from "../kernel/image.ts";
import { DESIGN_NAMES, getDesign } from "../kernel/pmm/designs.ts";
import type { PmmDesign } from "../kernel/pmm/interface.ts";
import { isDesignPath, loadDesign } from "../kernel/pmm/load.ts";
import { BYO_VALIDATION, checkedDesign, validateDesign } from "../kernel/pmm/validate.ts";
import { Rng } from "../machine/rng.ts";
import type { Levels } from "../machine/x86/vaddr.ts";
import { auditAddressSpace } from "./audit.ts";
import { type BootResult, KMAP_NAMES, makeStrategy } from "./boot.ts";
import { getWorkload, STANDARD_WORKLOADS } from "./workloads/index.ts";
import { type SamplePoint, totalOps } from "./workloads/interface.ts";

export const DEFAULT_KMAPS = ["direct", "recursive", "quickmap"];
export const DEFAULT_SWEEP = ["qemu:256M", "qemu:1G", "qemu:4G", "qemu:16G", "sparse@5"];
export const DEFAULT_CPUS = 4;
export const DEFAULT_HOST_BUDGET = 512 * 2 ** 20;

export interface CompareOptions {
  maps?: string[];
  pmms?: string[];
  kmaps?: string[];
  workloads?: string[];
  cpus?: number[];
  levels?: Levels;
  seed?: number;
  ops?: number;
  trace?: string;
  /** RAM sizes for the metadata figure (`MAP` or `MAP@5` for 5-level paging); [] skips the sweep. */
  sweep?: string[];
  /** Per-run host memory budget (bootKernel refuses above it). */
  hostBudget?: number;
  /** Worker threads (0: run in this thread). Default: min(2, available cores). */
  jobs?: number;
  /** Run every kernel checker after each workload (uncounted; slower). */
  paranoid?: boolean;
}

export interface RunSpec {
  index: number;
  kind: "workload" | "sweep";
  map: string;
  levels: Levels;
  pmm: string;
  kmap: string;
  workload: string | null;
  cpus: number;
  seed: number;
  ops: number;
  /** Linux's mem= for this run (a workload may ask for a smaller boot), or null. */
  mem: number | null;
  trace: string | null;
  hostBudget: number;
  paranoid: boolean;
}

/** Per-operation figures (workload counters / operations). */
export interface PerOp {
  memRefs: number;
  walks: number;
  walkReads: number;
  tlbMisses: number;
  invlpg: number;
  ipis: number;
  ipiCycles: number;
  shootdowns: number;
  ptPagesAllocated: number;
}

export interface RowAudit {
  ok: boolean;
  wxBytes: number;
  userKernelBytes: number;
  executableDataBytes: number;
  nonRamInDirectMapBytes: number;
  ramReadableFraction: number;
  kaslrBits: number;
}

export interface ResultRow extends RunSpec {
  /** The command that reproduces this row on its own. */
  command: string;
  error: { code: string; message: string } | null;
  ramBytes: number;
  usablePages: number;
  freePagesAfterBoot: number;
  metadataBytes: number;
  metadataStandingBytes: number;
  metadataTransientBytes: number;
  pageTableBytes: number;
  pageTablePages: number;
  bootCounters: Record<string, number>;
  counters: Record<string, number>;
  /** Operations done, by kind (the spec's `ops` is how many were asked for). */
  opCounts: Record<string, number>;
  opsTotal: number;
  failed: Record<string, number>;
  info: Record<string, number | string>;
  notes: string[];
  perOp: PerOp | null;
  /** IPIs sent during kfree / vfree calls, per call (null when the workload made none). */
  ipisPerKfree: number | null;
  ipisPerVfree: number | null;
  series: SamplePoint[];
  /** `pagelab audit` of the booted kernel address space (null when the boot failed). */
  audit: RowAudit | null;
  hostMs: { boot: number; workload: number };
  opsPerHostSecond: number;
}

function splitLevels(entry: string): { map: string; levels: Levels } {
  const m = /^(.*)@([45])$/.exec(entry);
  return m ? { map: m[1], levels: Number(m[2]) as Levels } : { map: entry, levels: 4 };
}

/** Check every name up front (a typo fails before any work) and expand the matrix. */
export function planMatrix(o: CompareOptions): RunSpec[] {
  const maps = o.maps ?? [DEFAULT_PRESET];
  const pmms = o.pmms ?? DESIGN_NAMES;
  const kmaps = o.kmaps ?? DEFAULT_KMAPS;
  const workloads = o.workloads ?? [...STANDARD_WORKLOADS, ...(o.trace !== undefined ? ["ftrace"] : [])];
  const cpus = o.cpus ?? [DEFAULT_CPUS];
  const seed = o.seed ?? 1;
  const ops = o.ops;
  const levels = o.levels ?? 4;
  const hostBudget = o.hostBudget ?? DEFAULT_HOST_BUDGET;
  for (const p of pmms) {
    if (!isDesignPath(p)) getDesign(p);
    else if (!existsSync(p)) fail("BAD_DESIGN", `--pmm ${p}: no such file`);
  }
  for (const k of kmaps) makeStrategy(k);
  for (const w of workloads) getWorkload(w);
  for (const c of cpus)
    if (!Number.isInteger(c) || c < 1 || c > 64) fail("BAD_OPTION", `--cpus must be 1..64 (got ${c})`);
  if (ops !== undefined && (!Number.isInteger(ops) || ops < 1 || ops > 1e9))
    fail("BAD_OPTION", `--ops must be an integer from 1 to 1e9 (got ${ops})`);
  if (workloads.includes("ftrace") && o.trace === undefined)
    fail("BAD_OPTION", "--workload ftrace needs --trace FILE (a trace_pipe capture of kmem events)");
  for (const l of [maps, pmms, kmaps, cpus])
    if (l.length === 0) fail("BAD_OPTION", "an empty list was given (e.g. --pmm '')");
  if (workloads.length === 0 && (o.sweep ?? DEFAULT_SWEEP).length === 0)
    fail("BAD_OPTION", "nothing to run: no workload and no sweep (--workload none --sweep none)");
  const specs: RunSpec[] = [];
  const base = { seed, ops: 0, hostBudget, paranoid: o.paranoid ?? false };
  for (const map of maps)
    for (const pmm of pmms)
      for (const kmap of kmaps)
        for (const workload of workloads)
          for (const n of cpus) {
            const w = getWorkload(workload);
            specs.push({
              ...base,
              index: specs.length,
              kind: "workload",
              map,
              levels,
              pmm,
              kmap,
              workload,
              ops: ops ?? w.defaultOps,
              cpus: n,
              mem: w.bootMem ?? null,
              trace: workload === "ftrace" ? (o.trace ?? null) : null,
            });
          }
  for (const entry of o.sweep ?? DEFAULT_SWEEP) {
    const { map, levels: lv } = splitLevels(entry);
    for (const pmm of pmms)
      specs.push({
        ...base,
        index: specs.length,
        kind: "sweep",
        map,
        levels: lv,
        pmm,
        kmap: "direct",
        workload: null,
        cpus: 1,
        mem: null,
        trace: null,
      });
  }
  return specs;
}

/** The `pagelab compare` command that reproduces one run. */
export function commandFor(s: RunSpec): string {
  if (s.kind === "sweep")
    return `pagelab compare --pmm ${s.pmm} --workload none --sweep ${s.map}${s.levels === 5 ? "@5" : ""}`;
  const parts = [
    "pagelab compare",
    `--maps ${s.map}`,
    `--pmm ${s.pmm}`,
    `--kmap ${s.kmap}`,
    `--workload ${s.workload}`,
    `--cpus ${s.cpus}`,
    `--seed ${s.seed}`,
    `--ops ${s.ops}`,
  ];
  if (s.levels === 5) parts.push("--levels 5");
  if (s.trace !== null) parts.push(`--trace ${s.trace}`);
  parts.push("--sweep none");
  return parts.join(" ");
}

const PER_OP_KEYS: (keyof PerOp)[] = [
  "memRefs",
  "walks",
  "walkReads",
  "tlbMisses",
  "invlpg",
  "ipis",
  "ipiCycles",
  "shootdowns",
  "ptPagesAllocated",
];

function emptyRow(s: RunSpec): ResultRow {
  return {
    ...s,
    command: commandFor(s),
    error: null,
    ramBytes: 0,
    usablePages: 0,
    freePagesAfterBoot: 0,
    metadataBytes: 0,
    metadataStandingBytes: 0,
    metadataTransientBytes: 0,
    pageTableBytes: 0,
    pageTablePages: 0,
    bootCounters: {},
    counters: {},
    opCounts: {},
    opsTotal: 0,
    failed: {},
    info: {},
    notes: [],
    perOp: null,
    ipisPerKfree: null,
    ipisPerVfree: null,
    series: [],
    audit: null,
    hostMs: { boot: 0, workload: 0 },
    opsPerHostSecond: 0,
  };
}

const MAX_SERIES = 512;

/** One run, start to finish, in this thread. Never throws: failures become `row.error`. */
export function runOne(s: RunSpec, design?: PmmDesign): ResultRow {
  const row = emptyRow(s);
  const t0 = performance.now();
  let t1 = t0;
  try {
    let pmm: string | PmmDesign = s.pmm;
    if (isDesignPath(s.pmm)) {
      if (design === undefined) fail("BAD_DESIGN", `${s.pmm}: the design file was not loaded`);
      // A user's allocator: validated with shrinking first, then run with its checker after every call.
      const v = validateDesign(design, BYO_VALIDATION);
      if (!v.ok) {
        fail(
          "PMM_VALIDATION",
          `${design.name} (seed ${v.seed}): ${v.failure!.message}; shortest failing sequence: ${v.failure!.steps.join("; ")}`,
        );
      }
      pmm = checkedDesign(design);
    }
    const k = startKernel({
      map: s.map,
      pmm,
      kmap: s.kmap,
      levels: s.levels,
      cpus: s.cpus,
      seed: s.seed,
      mem: s.mem ?? undefined,
      hostBudget: s.hostBudget,
      check: false,
    });
    const b = k.boot;
    row.ramBytes = b.ramBytes;
    row.usablePages = b.usablePages;
    row.freePagesAfterBoot = b.freePagesAfterBoot;
    row.metadataBytes = b.metadataBytes;
    row.metadataStandingBytes = b.metadataStandingBytes;
    row.metadataTransientBytes = b.metadataTransientBytes;
    row.pageTableBytes = b.pageTableBytes;
    row.pageTablePages = b.pageTablePages;
    row.bootCounters = k.counters.snapshot();
    row.audit = rowAudit(b);
    t1 = performance.now();
    row.hostMs.boot = Math.round(t1 - t0);
    if (s.kind === "sweep" || s.workload === null) return row;
    const w = getWorkload(s.workload);
    const before = k.counters.snapshot();
    const res = w.run(k, new Rng(s.seed), { ops: s.ops, trace: s.trace ?? undefined }, (p) => {
      if (row.series.length < MAX_SERIES) row.series.push(p);
    });
    const after = k.counters.snapshot();
    const t2 = performance.now();
    if (s.paranoid) k.check();
    for (const key of Object.keys(after)) row.counters[key] = after[key] - (before[key] ?? 0);
    row.opCounts = res.ops;
    row.opsTotal = totalOps(res);
    row.failed = res.failed;
    row.info = res.info;
    row.notes = res.notes;
    const n = Math.max(1, row.opsTotal);
    const c = row.counters;
    const per: Record<string, number> = {};
    for (const key of PER_OP_KEYS) {
      const v = key === "memRefs" ? c.memReads + c.memWrites : (c[key] ?? 0);
      per[key] = v / n;
    }
    row.perOp = per as unknown as PerOp;
    const kfrees = num(res.info.kfree) ?? res.ops.kfree ?? 0;
    const vfrees = num(res.info.vfree) ?? res.ops.vfree ?? 0;
    if (kfrees > 0) row.ipisPerKfree = (num(res.info.kfreeIpis) ?? 0) / kfrees;
    if (vfrees > 0) row.ipisPerVfree = (num(res.info.vfreeIpis) ?? 0) / vfrees;
    row.hostMs.workload = Math.round(t2 - t1);
    row.opsPerHostSecond = Math.round(row.opsTotal / Math.max((t2 - t1) / 1000, 1e-6));
  } catch (e) {
    if (e instanceof PagelabError) row.error = { code: e.code, message: e.message };
    else row.error = { code: "CRASH", message: e instanceof Error ? `${e.message}` : String(e) };
    if (row.hostMs.boot === 0) row.hostMs.boot = Math.round(performance.now() - t0);
  }
  return row;
}

/** The audit of the booted address space, summed into bytes (read with uncounted peeks). */
function rowAudit(b: BootResult): RowAudit {
  const a = auditAddressSpace({
    machine: b.machine,
    root: b.mapper.root,
    levels: b.levels,
    layout: b.layout,
    kmap: b.kmap,
    ram: b.ram,
    textPages: SECTIONS[0].pages,
    recursiveSlots: b.recursiveSlots,
  });
  const sum = (l: { bytes: number }[]) => l.reduce((t, r) => t + r.bytes, 0);
  return {
    ok: a.ok,
    wxBytes: sum(a.wx),
    userKernelBytes: sum(a.userKernel),
    executableDataBytes: sum(a.executableData),
    nonRamInDirectMapBytes: sum(a.nonRamInDirectMap),
    ramReadableFraction: a.ramReadable.fraction,
    kaslrBits: a.kaslr.entropyBits,
  };
}

/** Load the design file a run needs (in the thread that runs it), then run it. */
export async function runOneLoading(s: RunSpec): Promise<ResultRow> {
  if (!isDesignPath(s.pmm)) return runOne(s);
  try {
    return runOne(s, await loadDesign(s.pmm));
  } catch (e) {
    const row = emptyRow(s);
    row.error =
      e instanceof PagelabError
        ? { code: e.code, message: e.message }
        : { code: "CRASH", message: String(e) };
    return row;
  }
}

function num(v: number | string | undefined): number | undefined {
  return typeof v === "number" ? v : undefined;
}

/** A rough cost estimate, to hand the longest runs out first (the makespan on 2 cores). */
function costEstimate(s: RunSpec): number {
  const m = /^qemu(?:-q35)?:(\d+)([MGT])$/.exec(s.map);
  const gib = m ? Number(m[1]) / (m[2] === "M" ? 1024 : m[2] === "T" ? 1 / 1024 : 1) : 4;
  const ram = s.mem !== null ? Math.min(gib, s.mem / 2 ** 30) : gib;
  const perFrame = /stack/.test(s.pmm) ? 1 : s.pmm === "freelist" ? 8 : 0.1;
  return (
    ram * perFrame + (s.kind === "workload" ? (s.workload === "file-cache" ? ram * 2 : s.ops / 20000) : 0)
  );
}

export interface CompareProgress {
  done: number;
  total: number;
  row: ResultRow;
}

/**
 * Run every spec (in `jobs` worker threads, or here when jobs is 0) and call `onRow` for each row in
 * plan order as soon as it and all rows before it are done.
 */
export async function runSpecs(
  specs: RunSpec[],
  jobs: number,
  onRow: (row: ResultRow) => void,
): Promise<void> {
  const pending = new Map<number, ResultRow>();
  let nextOut = 0;
  const deliver = (row: ResultRow) => {
    pending.set(row.index, row);
    while (pending.has(nextOut)) {
      const r = pending.get(nextOut)!;
      pending.delete(nextOut);
      nextOut++;
      onRow(r);
    }
  };
  const order = [...specs].sort((a, b) => costEstimate(b) - costEstimate(a) || a.index - b.index);
  if (jobs <= 0) {
    for (const s of order) deliver(await runOneLoading(s));
    return;
  }
  let next = 0;
  const url = new URL("./compare-worker.mjs", import.meta.url);
  const one = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const w = new Worker(url);
      let current: RunSpec | null = null;
      const feed = () => {
        if (next >= order.length) {
          current = null;
          void w.terminate().then(() => resolve());
          return;
        }
        current = order[next++];
        w.postMessage(current);
      };
      w.on("message", (row: ResultRow) => {
        deliver(row);
        feed();
      });
      w.on("error", (e) => {
        // The worker died (out of host memory, a bug outside runOne): its run becomes an error row,
        // and a fresh worker takes over the rest of the queue.
        if (current !== null) {
          const row = emptyRow(current);
          row.error = { code: "WORKER_DIED", message: e.message };
          deliver(row);
        }
        one().then(resolve, reject);
      });
      feed();
    });
  const n = Math.min(jobs, order.length);
  await Promise.all(Array.from({ length: n }, one));
}

export function defaultJobs(): number {
  return Math.max(1, Math.min(2, availableParallelism()));
}

/**
 * Run the matrix and stream `DIR/results.json` (a JSON array, one row per line, in plan order).
 * Returns the rows (small: counters and at most 512 samples each) for the report.
 */
export async function runCompare(
  o: CompareOptions,
  outDir: string,
  onProgress?: (p: CompareProgress) => void,
): Promise<{ specs: RunSpec[]; rows: ResultRow[]; resultsPath: string; wallMs: number }> {
  const t0 = performance.now();
  const specs = planMatrix(o);
  mkdirSync(outDir, { recursive: true });
  const resultsPath = join(outDir, "results.json");
  const fd = openSync(resultsPath, "w");
  const rows: ResultRow[] = [];
  try {
    writeSync(fd, "[\n");
    await runSpecs(specs, o.jobs ?? defaultJobs(), (row) => {
      writeSync(fd, `${rows.length === 0 ? "" : ",\n"}${JSON.stringify(row)}`);
      rows.push(row);
      onProgress?.({ done: rows.length, total: specs.length, row });
    });
    writeSync(fd, "\n]\n");
  } finally {
    closeSync(fd);
  }
  return { specs, rows, resultsPath, wallMs: Math.round(performance.now() - t0) };
}

export { KMAP_NAMES };
