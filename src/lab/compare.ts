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
import { workerUrl } from "../paths.ts";
import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  mkdirSync,
  openSync,
  statSync,
  writeSync,
} from "node:fs";
import { availableParallelism } from "node:os";
import { dirname, join, resolve } from "node:path";
import { Worker } from "node:worker_threads";
import { fail, PagelabError } from "../errors.ts";
import { corpusMachine, expandMapNames, isCorpusName } from "../firmware/corpus.ts";
import { DEFAULT_PRESET } from "../firmware/index.ts";
import { forkKernel, type KernelInternals, startKernel } from "../kernel/kernel.ts";
import { DESIGN_NAMES, DESIGNS, getDesign } from "../kernel/pmm/designs.ts";
import type { PmmDesign } from "../kernel/pmm/interface.ts";
import { isDesignPath, loadDesign } from "../kernel/pmm/load.ts";
import { BYO_VALIDATION, checkedDesign, validateDesign } from "../kernel/pmm/validate.ts";
import { BufferRecycler, CloneRefused } from "../machine/clone.ts";
import { Rng } from "../machine/rng.ts";
import type { Levels } from "../machine/x86/vaddr.ts";
import { auditBoot } from "./audit.ts";
import {
  type BootResult,
  bootRam,
  hostBytesEstimate,
  KMAP_NAMES,
  makeStrategy,
} from "../kernel/boot/index.ts";
import { type Shard, shardSpecs } from "./shard-plan.ts";
import { parseTraceLine, readLines } from "./workloads/ftrace.ts";
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
  // corpus selectors (corpus, corpus:FILTER) become one corpus:KEY per real machine
  const maps = forOption("--maps", () => expandMapNames(o.maps ?? [DEFAULT_PRESET]));
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

/**
 * Runs a default plan leaves out because the host-memory budget would refuse them (the same estimate
 * bootKernel refuses with), grouped into one sentence each for the output and report.md.
 */
export interface LeftOut {
  kind: "workload" | "sweep";
  pmms: string[];
  /** Maps (sweep entries with @5 for 5-level paging). */
  maps: string[];
  workloads: string[];
  runs: number;
  /** Host bytes the runs would back, least and most. */
  hostBytes: [number, number];
  text: string;
}

export interface ComparePlan {
  specs: RunSpec[];
  leftOut: LeftOut[];
  /** A run's estimated cost for the shards' deal: costEstimate, or almost nothing when the budget refuses it. */
  cost: (s: RunSpec) => number;
}

const GIB = 2 ** 30;

function gib(n: number): string {
  return `${(n / GIB).toFixed(1)} GiB`;
}

function budgetText(n: number): string {
  return n >= GIB ? gib(n) : `${Math.round(n / 2 ** 20)} MiB`;
}

function listing(items: string[]): string {
  if (items.length <= 1) return items.join("");
  return `${items.slice(0, -1).join(", ")} and ${items[items.length - 1]}`;
}

function uniqOf<T>(xs: T[]): T[] {
  return [...new Set(xs)];
}

/** Rethrow a PagelabError with the option it came from in front (`--maps: cannot read ...`). */
function forOption<T>(option: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof PagelabError) throw new PagelabError(e.code, `${option}: ${e.message}`, e.details);
    throw e;
  }
}

/**
 * --out must be a directory that can be written, or a path where one can be created: checked before
 * anything is created (a refused command leaves no directory behind).
 */
export function checkOutDir(outDir: string): void {
  const abs = resolve(outDir);
  let p = abs;
  while (!existsSync(p)) {
    const up = dirname(p);
    if (up === p) break;
    p = up;
  }
  const expected = "expected a directory to write results.json, report.md and report.html into";
  let isDir = false;
  try {
    isDir = statSync(p).isDirectory();
  } catch (e) {
    fail(
      "BAD_OUTPUT",
      `--out ${outDir}: cannot inspect ${p} (${(e as NodeJS.ErrnoException).code}); ${expected}`,
    );
  }
  if (!isDir)
    fail(
      "BAD_OUTPUT",
      p === abs
        ? `--out ${outDir}: exists and is not a directory; ${expected}`
        : `--out ${outDir}: ${p} is a file, not a directory, so nothing can be created under it; ${expected}`,
    );
  try {
    accessSync(p, constants.W_OK | constants.X_OK);
  } catch {
    fail("BAD_OUTPUT", `--out ${outDir}: ${p} is not writable; ${expected}`);
  }
}

/** --trace must be a readable file with at least one event the ftrace workload replays. */
export function checkTrace(file: string): void {
  const expected = "expected a trace_pipe capture of kmem events (see pagelab compare --help)";
  let isFile = false;
  try {
    isFile = statSync(file).isFile();
  } catch (e) {
    fail("TRACE_FILE", `--trace ${file}: cannot read it (${(e as NodeJS.ErrnoException).code}); ${expected}`);
  }
  if (!isFile) fail("TRACE_FILE", `--trace ${file}: not a regular file; ${expected}`);
  for (const [text, n] of forOption("--trace", () => readLines(file))) {
    const ev = parseTraceLine(text, n);
    if (ev !== null && ev.kind !== "problem") return;
  }
  fail(
    "TRACE_FILE",
    `--trace ${file}: no mm_page_alloc, mm_page_free, kmalloc or kfree event in it; ${expected}`,
  );
}

/** A sweep entry or matrix map as the user wrote it. */
function mapLabel(s: RunSpec): string {
  return s.kind === "sweep" && s.levels === 5 ? `${s.map}@5` : s.map;
}

/**
 * Everything `runCompare` checks before it starts: the names (planMatrix), the output directory,
 * the trace, every design file (it must load; its invariants are checked per run, as a row), every
 * map and sweep entry (it must load and have RAM). A bad input fails here, before any run and before
 * DIR exists. Then, for the lists the user did not name (no --pmm, or no --maps / --sweep), the runs
 * the host-memory budget would refuse are left out, each group with a sentence saying why.
 */
export async function prepareCompare(o: CompareOptions, outDir: string): Promise<ComparePlan> {
  const planned = planMatrix(o);
  checkOutDir(outDir);
  if (o.trace !== undefined) {
    checkTrace(o.trace);
    if (o.workloads !== undefined && !o.workloads.includes("ftrace"))
      fail(
        "BAD_OPTION",
        `--trace ${o.trace} is replayed only by the ftrace workload; add ftrace to --workload`,
      );
  }
  const designs = new Map<string, PmmDesign>();
  for (const p of uniqOf(planned.map((s) => s.pmm))) {
    if (!isDesignPath(p)) designs.set(p, getDesign(p));
    else {
      const d = await loadDesign(p).catch((e: unknown) => {
        if (e instanceof PagelabError) throw new PagelabError(e.code, `--pmm: ${e.message}`, e.details);
        throw e;
      });
      designs.set(p, d);
    }
  }
  // Every map and sweep entry must load and have RAM (as the user wrote it: no mem=).
  const rams = new Map<string, ReturnType<typeof bootRam> | null>();
  for (const s of planned) {
    const key = `${s.map}|${s.kmap}|${s.levels}`;
    if (rams.has(key)) continue;
    const option = s.kind === "sweep" ? `--sweep ${mapLabel(s)}` : `--maps ${s.map}`;
    const ram = () => bootRam(s.map, makeStrategy(s.kmap), s.levels, undefined);
    if (!isCorpusName(s.map)) rams.set(key, forOption(option, ram));
    else {
      // a real machine pagelab cannot boot is the run's error row, not a usage error
      try {
        rams.set(key, ram());
      } catch {
        rams.set(key, null);
      }
    }
  }
  const estimate = (s: RunSpec): { bytes: number; why: string } | null => {
    const key = `${s.map}|${s.kmap}|${s.levels}|${s.mem}`;
    if (!rams.has(key)) {
      try {
        rams.set(key, bootRam(s.map, makeStrategy(s.kmap), s.levels, s.mem ?? undefined));
      } catch {
        rams.set(key, null); // the run itself will say what is wrong
      }
    }
    const r = rams.get(key);
    const d = designs.get(s.pmm);
    if (r === null || r === undefined || d === undefined) return null;
    try {
      return hostBytesEstimate(d, { usable: r.ram, cpus: 1 });
    } catch {
      return null;
    }
  };
  const autoPmm = o.pmms === undefined;
  const specs: RunSpec[] = [];
  const out: { s: RunSpec; bytes: number; why: string }[] = [];
  for (const s of planned) {
    const auto = autoPmm || (s.kind === "sweep" ? o.sweep === undefined : o.maps === undefined);
    const est = auto ? estimate(s) : null;
    if (est !== null && est.bytes > s.hostBudget) out.push({ s, ...est });
    else specs.push({ ...s, index: specs.length });
  }
  const leftOut = groupLeftOut(out, o.hostBudget ?? DEFAULT_HOST_BUDGET);
  if (specs.length === 0)
    fail(
      "NOTHING_TO_RUN",
      `every run would be refused by the host-memory budget: ${leftOut.map((l) => l.text).join("; ")}`,
    );
  // a run the budget refuses costs its refusal only (a 1.5 TiB machine's stack is refused in a moment)
  const cost = (s: RunSpec): number => {
    const est = estimate(s);
    return est !== null && est.bytes > s.hostBudget ? 0.01 : costEstimate(s);
  };
  return { specs, leftOut, cost };
}

function groupLeftOut(out: { s: RunSpec; bytes: number; why: string }[], budget: number): LeftOut[] {
  // per design: where it was left out; then designs left out of the same places for the same reason
  const byPmm = new Map<string, { s: RunSpec; bytes: number; why: string }[]>();
  for (const x of out) {
    const k = `${x.s.kind}|${x.s.pmm}`;
    byPmm.set(k, [...(byPmm.get(k) ?? []), x]);
  }
  const groups = new Map<string, LeftOut & { why: string }>();
  for (const xs of byPmm.values()) {
    const s0 = xs[0].s;
    const maps = uniqOf(xs.map((x) => mapLabel(x.s)));
    const workloads = uniqOf(xs.map((x) => x.s.workload).filter((w): w is string => w !== null));
    const why = xs[0].why;
    const key = `${s0.kind}|${maps.join(",")}|${workloads.join(",")}|${why}`;
    const lo = Math.min(...xs.map((x) => x.bytes));
    const hi = Math.max(...xs.map((x) => x.bytes));
    const g = groups.get(key);
    if (g === undefined)
      groups.set(key, {
        kind: s0.kind,
        pmms: [s0.pmm],
        maps,
        workloads,
        runs: xs.length,
        hostBytes: [lo, hi],
        why,
        text: "",
      });
    else {
      g.pmms.push(s0.pmm);
      g.runs += xs.length;
      g.hostBytes = [Math.min(g.hostBytes[0], lo), Math.max(g.hostBytes[1], hi)];
    }
  }
  return [...groups.values()].map(({ why, ...g }) => {
    const [lo, hi] = g.hostBytes;
    const range = gib(lo) === gib(hi) ? gib(hi) : `${gib(lo)} to ${gib(hi)}`;
    // a corpus sweep leaves a design out on hundreds of machines: name a few
    const many = g.maps.length > 8;
    const maps = many ? `${g.maps.length} maps (${g.maps.slice(0, 3).join(", ")}, ...)` : listing(g.maps);
    const where =
      g.kind === "sweep"
        ? `${listing(g.pmms)} in the sweep at ${maps}`
        : `${listing(g.pmms)} on ${maps} for ${listing(g.workloads)}`;
    const name =
      g.kind === "sweep"
        ? `--pmm ${g.pmms.join(",")} --sweep ${g.maps.join(",")}`
        : `--pmm ${g.pmms.join(",")} --maps ${many ? "<those maps>" : g.maps.join(",")}`;
    const text =
      `left out of the default: ${where} (${g.runs} run${g.runs === 1 ? "" : "s"}): ` +
      `would back ${range} of host memory (${why}), over the ${budgetText(budget)} per-run --host-budget; ` +
      `run them with --host-budget ${Math.ceil(hi / GIB)}G, or name them (${name}) to see the refusal as a row`;
    return { ...g, text };
  });
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

/** Where a run gets its booted kernel: a boot of its own, or a copy of its group's (`BootGroup`). */
type KernelSource = (s: RunSpec, pmm: string | PmmDesign) => KernelInternals;

/** A run's booted kernel, and the audit of that boot once a run of the same boot has made it. */
interface BootSource {
  take: KernelSource;
  audit: RowAudit | null;
}

const freshBoot: KernelSource = (s, pmm) =>
  startKernel({
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

/**
 * The options a run's kernel boots with. Runs with the same key boot the same machine to the same
 * state (the boot is deterministic), so a group of them boots once and each run takes a copy
 * (`forkKernel`). A user's design file is booted per run (null): its code may keep state a copy
 * cannot carry.
 */
export function bootKey(s: RunSpec): string | null {
  if (isDesignPath(s.pmm)) return null;
  return JSON.stringify([s.map, s.pmm, s.kmap, s.levels, s.cpus, s.seed, s.mem, s.hostBudget]);
}

/** The runs grouped by boot key, each group in plan order (a run without a key alone). */
export function groupByBoot(specs: RunSpec[]): RunSpec[][] {
  const groups = new Map<string, RunSpec[]>();
  const out: RunSpec[][] = [];
  for (const s of specs) {
    const key = bootKey(s);
    const g = key === null ? undefined : groups.get(key);
    if (g !== undefined) g.push(s);
    else {
      const fresh = [s];
      out.push(fresh);
      if (key !== null) groups.set(key, fresh);
    }
  }
  return out;
}

/**
 * This thread's host memory for copies, kept across groups: RAM comes in the same sizes from machine
 * to machine (2 MiB dense chunks, page slabs of 1..64 MiB), and memory already faulted in costs a
 * memcpy where fresh memory costs a page fault every 4 KiB as well.
 */
const RECYCLER = new BufferRecycler(256 * 2 ** 20);

/**
 * A booted machine backing more host memory than this is not kept as a template: a group would hold
 * it twice (template and copy) while a run goes on, so its runs boot one at a time as before.
 */
const MAX_TEMPLATE_BYTES = 256 * 2 ** 20;

/**
 * The kernels of one boot group: the first run boots the template, every run but the last works on a
 * copy of it, and the last on the template itself. When the template cannot be copied, each run boots
 * its own. A boot that fails fails its run only: the next run tries again.
 */
class BootGroup implements BootSource {
  audit: RowAudit | null = null;
  private template: KernelInternals | null = null;
  private refused = false;
  /** The last copy's big buffers: back to RECYCLER once its run is over (the next run asks, or the group ends). */
  private made: ArrayBuffer[] = [];
  /** What the group did: boots and copies (for tests and profiles). */
  readonly tally = { boots: 0, copies: 0 };
  constructor(
    private remaining: number,
    private readonly maxTemplateBytes: number,
  ) {}

  private boot(s: RunSpec, pmm: string | PmmDesign): KernelInternals {
    this.tally.boots++;
    return freshBoot(s, pmm);
  }

  /** The last copy's run is over: its buffers go back for the next copy. */
  done(): void {
    RECYCLER.give(this.made);
    this.made = [];
  }

  readonly take: KernelSource = (s, pmm) => {
    this.remaining--;
    this.done();
    if (this.refused) return this.boot(s, pmm);
    if (this.template === null) {
      const k = this.boot(s, pmm);
      if (this.remaining === 0) return k;
      if (k.machine.mem.backedBytes > this.maxTemplateBytes) {
        // Too big to hold twice (the template and a copy): this run takes it, the others boot afresh.
        this.refused = true;
        return k;
      }
      this.template = k;
    }
    const t = this.template;
    if (this.remaining === 0) {
      this.template = null;
      return t;
    }
    try {
      const copy = forkKernel(t, { recycler: RECYCLER, made: this.made });
      this.tally.copies++;
      return copy;
    } catch (e) {
      if (!(e instanceof CloneRefused)) throw e;
      this.refused = true;
      this.template = null;
      return t;
    }
  };
}

/**
 * The runs of one boot group (`groupByBoot`), in order, in this thread; `onRow` gets each row as it is
 * done. Returns how many boots and copies it took.
 */
export function runGroup(
  specs: RunSpec[],
  onRow: (row: ResultRow) => void,
  design?: PmmDesign,
  maxTemplateBytes = MAX_TEMPLATE_BYTES,
): { boots: number; copies: number } {
  const group = new BootGroup(specs.length, maxTemplateBytes);
  for (const s of specs) onRow(runOne(s, design, group));
  group.done();
  return group.tally;
}

/** One run, start to finish, in this thread. Never throws: failures become `row.error`. */
export function runOne(
  s: RunSpec,
  design?: PmmDesign,
  boots: BootSource = { take: freshBoot, audit: null },
): ResultRow {
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
    const k = boots.take(s, pmm);
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
    // The audit reads the booted tables; a group's runs share one boot (BootGroup), so one audit.
    row.audit = boots.audit ?? rowAudit(b);
    boots.audit = row.audit;
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
  const a = auditBoot(b);
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

/** Run a boot group (`groupByBoot`), loading the design file a lone run needs first. */
export async function runGroupLoading(specs: RunSpec[], onRow: (row: ResultRow) => void): Promise<void> {
  if (specs.length === 1) onRow(await runOneLoading(specs[0]));
  else runGroup(specs, onRow);
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

/**
 * Host work per simulated frame of a design, from its traits: one unit for 8 host bytes a free frame
 * (a stack), up to 8 (a free list writes a line into each); 0.1 for metadata-only designs.
 */
function hostWorkPerFrame(pmm: string): number {
  const d = Object.hasOwn(DESIGNS, pmm) ? DESIGNS[pmm]() : undefined;
  if (d?.hostBytes === undefined) return 0.1;
  const frames = 2 ** 24; // a 64 GiB layout: the per-frame part dominates
  return Math.min(8, d.hostBytes({ usable: [{ start: 0, end: frames }] }).bytes / frames / 8);
}

/** RAM of a run's map in GiB, for the cost estimate: from a qemu preset's name, a corpus record, else 4. */
function mapGiB(map: string): number {
  const m = /^qemu(?:-q35)?:(\d+)([MGT])$/.exec(map);
  if (m) return Number(m[1]) / (m[2] === "M" ? 1024 : m[2] === "T" ? 1 / 1024 : 1);
  const c = corpusMachine(map);
  return c !== undefined ? c.ramBytes / 2 ** 30 : 4;
}

/**
 * A rough cost estimate, to hand the longest runs out first (the makespan on 2 cores) and to balance
 * the shards of a sweep (shard.ts).
 */
export function costEstimate(s: RunSpec): number {
  const gib = mapGiB(s.map);
  const ram = s.mem !== null ? Math.min(gib, s.mem / 2 ** 30) : gib;
  const perFrame = hostWorkPerFrame(s.pmm);
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
  // rows come out in the order of `specs` (a shard's indices are the whole plan's: not 0, 1, 2, ...)
  const position = new Map(specs.map((s, i) => [s.index, i]));
  const pending = new Map<number, ResultRow>();
  let nextOut = 0;
  const deliver = (row: ResultRow) => {
    pending.set(position.get(row.index)!, row);
    while (pending.has(nextOut)) {
      const r = pending.get(nextOut)!;
      pending.delete(nextOut);
      nextOut++;
      onRow(r);
    }
  };
  // Runs that boot the same machine go together, to boot it once (BootGroup); the costliest groups first.
  const groups = groupByBoot(specs);
  const cost = new Map(groups.map((g) => [g, g.reduce((t, s) => t + costEstimate(s), 0)]));
  const order = [...groups].sort((a, b) => cost.get(b)! - cost.get(a)! || a[0].index - b[0].index);
  if (jobs <= 0) {
    for (const g of order) await runGroupLoading(g, deliver);
    return;
  }
  let next = 0;
  const url = workerUrl("lab/compare-worker");
  const one = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const w = new Worker(url);
      // The group in the worker, and which of its runs have answered.
      let current: RunSpec[] | null = null;
      const answered = new Set<number>();
      const feed = () => {
        if (next >= order.length) {
          current = null;
          void w.terminate().then(() => resolve());
          return;
        }
        current = order[next++];
        answered.clear();
        w.postMessage(current);
      };
      w.on("message", (row: ResultRow) => {
        answered.add(row.index);
        deliver(row);
        if (current !== null && answered.size === current.length) feed();
      });
      w.on("error", (e) => {
        // The worker died (out of host memory, a bug outside runOne): its unanswered runs become error
        // rows, and a fresh worker takes over the rest of the queue.
        for (const s of current ?? []) {
          if (answered.has(s.index)) continue;
          const row = emptyRow(s);
          row.error = { code: "WORKER_DIED", message: e.message };
          deliver(row);
        }
        current = null;
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
  shard?: Shard,
): Promise<{
  specs: RunSpec[];
  leftOut: LeftOut[];
  rows: ResultRow[];
  resultsPath: string;
  wallMs: number;
  /** The whole plan (`specs` is the shard's part of it when `shard` is given). */
  plan: RunSpec[];
}> {
  const t0 = performance.now();
  const { specs: plan, leftOut, cost } = await prepareCompare(o, outDir);
  const specs = shard === undefined ? plan : shardSpecs(plan, shard, cost);
  const resultsPath = join(outDir, "results.json");
  let fd: number;
  try {
    mkdirSync(outDir, { recursive: true });
    fd = openSync(resultsPath, "w");
  } catch (e) {
    fail("BAD_OUTPUT", `--out ${outDir}: cannot write ${resultsPath} (${(e as NodeJS.ErrnoException).code})`);
  }
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
  return { specs, leftOut, rows, resultsPath, wallMs: Math.round(performance.now() - t0), plan };
}

export { KMAP_NAMES };
