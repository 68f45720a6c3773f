/**
 * Sharded sweeps: the manifest a shard writes beside its results.json (`pagelab compare --shard K/N`),
 * and `pagelab compare merge DIR... --out DIR`, which checks that the shards make one whole sweep and
 * writes the results.json, report.md and report.html the unsharded run would have written (the same
 * bytes, host time aside: each row's hostMs and opsPerHostSecond, and the report's wall time, which is
 * the sum of the shards').
 *
 * Merge checks everything before it writes anything: every DIR has a manifest and a complete
 * results.json, all manifests name the same sweep (pagelab version, seed, options, runs), no shard is
 * missing or given twice, and every row is the run its manifest says. The report is then written into
 * a temporary folder beside --out and renamed into place, so a failed merge leaves no partial report.
 */
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import * as v from "valibot";
import { fail } from "../errors.ts";
import { packagePath } from "../paths.ts";
import { type CompareOptions, checkOutDir, type ResultRow, type RunSpec } from "./compare.ts";
import { type ReportFiles, writeReport } from "./report/render.ts";
import { runKey, type Shard } from "./shard-plan.ts";

export const MANIFEST = "manifest.json";
export const RESULTS = "results.json";
const FORMAT = "pagelab-compare-shard/1";

let version: string | undefined;

/** pagelab's version, from the package's package.json. */
export function pagelabVersion(): string {
  version ??= String(
    (JSON.parse(readFileSync(packagePath("package.json"), "utf8")) as { version: unknown }).version,
  );
  return version;
}

/** The sweep a shard belongs to: equal in every shard of one sweep. */
export interface Sweep {
  pagelabVersion: string;
  seed: number;
  /** The compare options as given (undefined: null), without --jobs. */
  options: Record<string, unknown>;
  /** The report's command line (without --out, --jobs, --shard, --json). */
  command: string;
  /** The sentences saying which runs the default plan left out. */
  leftOut: string[];
  /** Every run of the sweep (runKey), in plan order. */
  runs: string[];
}

export interface Manifest {
  format: string;
  sweep: Sweep;
  shard: Shard;
  /** The runs of this shard (runKey), in plan order: the rows of its results.json. */
  keys: string[];
  wallMs: number;
  jobs: number;
}

const Str = v.string();
const Int = v.pipe(v.number(), v.integer(), v.minValue(0));
const ManifestSchema = v.object({
  format: v.literal(FORMAT),
  sweep: v.object({
    pagelabVersion: Str,
    seed: Int,
    options: v.record(Str, v.unknown()),
    command: Str,
    leftOut: v.array(Str),
    runs: v.array(Str),
  }),
  shard: v.object({ k: v.pipe(Int, v.minValue(1)), n: v.pipe(Int, v.minValue(1)) }),
  keys: v.array(Str),
  wallMs: Int,
  jobs: Int,
});

/** The fields a merged row must have (every ResultRow field; the nested ones by type). */
const Num = v.number();
const Counts = v.record(Str, Num);
const RowSchema = v.object({
  index: Int,
  kind: v.picklist(["workload", "sweep"]),
  map: Str,
  levels: v.picklist([4, 5]),
  pmm: Str,
  kmap: Str,
  workload: v.nullable(Str),
  cpus: Int,
  seed: Int,
  ops: Int,
  mem: v.nullable(Num),
  trace: v.nullable(Str),
  hostBudget: Num,
  paranoid: v.boolean(),
  command: Str,
  error: v.nullable(v.object({ code: Str, message: Str })),
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
  info: v.record(Str, v.union([Num, Str])),
  notes: v.array(Str),
  perOp: v.nullable(v.record(Str, Num)),
  ipisPerKfree: v.nullable(Num),
  ipisPerVfree: v.nullable(Num),
  series: v.array(v.object({ op: Num, largestOrder: Num, heldFrames: Num })),
  audit: v.nullable(v.record(Str, v.union([Num, v.boolean()]))),
  hostMs: v.object({ boot: Num, workload: Num }),
  opsPerHostSecond: Num,
});

/** The sweep's options as the manifest records them (JSON: undefined becomes null; no --jobs). */
export function sweepOptions(o: CompareOptions): Record<string, unknown> {
  const { jobs: _jobs, ...rest } = o;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(rest).sort()) out[k] = (rest as Record<string, unknown>)[k] ?? null;
  return out;
}

/** Write DIR/manifest.json, last: a shard directory with a manifest is a finished shard. */
export function writeManifest(
  outDir: string,
  a: {
    options: CompareOptions;
    command: string;
    leftOut: string[];
    plan: RunSpec[];
    specs: RunSpec[];
    shard: Shard;
    wallMs: number;
    jobs: number;
  },
): string {
  const m: Manifest = {
    format: FORMAT,
    sweep: {
      pagelabVersion: pagelabVersion(),
      seed: a.options.seed ?? 1,
      options: sweepOptions(a.options),
      command: a.command,
      leftOut: a.leftOut,
      runs: a.plan.map(runKey),
    },
    shard: a.shard,
    keys: a.specs.map(runKey),
    wallMs: a.wallMs,
    jobs: a.jobs,
  };
  const p = join(outDir, MANIFEST);
  writeFileSync(p, `${JSON.stringify(m, null, 1)}\n`);
  return p;
}

/** results.json as compare writes it: a JSON array, one row a line. */
export function resultsText(rows: ResultRow[]): string {
  return `[\n${rows.map((r) => JSON.stringify(r)).join(",\n")}\n]\n`;
}

function readJson(file: string, what: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return fail(
      "BAD_SHARD",
      code === "ENOENT"
        ? `${file}: missing; expected ${what}`
        : `${file}: cannot read it (${code}); expected ${what}`,
    );
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    const why = text.trim() === "" ? "empty" : `truncated or not JSON: ${(e as Error).message}`;
    return fail("BAD_SHARD", `${file}: ${why}; expected ${what}`);
  }
}

function firstIssue(file: string, issues: v.BaseIssue<unknown>[], what: string): never {
  const i = issues[0];
  return fail("BAD_SHARD", `${file}: ${v.getDotPath(i) ?? "top level"}: ${i.message}; expected ${what}`);
}

interface LoadedShard {
  dir: string;
  manifest: Manifest;
}

function loadManifest(dir: string): LoadedShard {
  const file = join(dir, MANIFEST);
  const what = "the manifest.json a finished `pagelab compare --shard K/N` writes (it is written last)";
  const r = v.safeParse(ManifestSchema, readJson(file, what));
  if (!r.success) firstIssue(file, r.issues, what);
  return { dir, manifest: r.output as Manifest };
}

/** The first option whose value differs between two sweeps, as `name: a vs b`. */
function sweepDifference(a: Sweep, b: Sweep): string | null {
  if (a.pagelabVersion !== b.pagelabVersion)
    return `pagelab version ${b.pagelabVersion}, not ${a.pagelabVersion}`;
  if (a.seed !== b.seed) return `seed ${b.seed}, not ${a.seed}`;
  for (const k of new Set([...Object.keys(a.options), ...Object.keys(b.options)])) {
    const x = JSON.stringify(a.options[k] ?? null);
    const y = JSON.stringify(b.options[k] ?? null);
    if (x !== y) return `option ${k} ${y}, not ${x}`;
  }
  if (JSON.stringify(a.runs) !== JSON.stringify(b.runs)) return "another list of runs";
  if (JSON.stringify(a.leftOut) !== JSON.stringify(b.leftOut)) return "other runs left out of the default";
  return null;
}

/** Every shard of one sweep, once each, in shard order; or a clear error naming the culprit. */
function checkShards(shards: LoadedShard[]): LoadedShard[] {
  const first = shards[0];
  const n = first.manifest.shard.n;
  for (const s of shards) {
    const d = sweepDifference(first.manifest.sweep, s.manifest.sweep);
    if (d !== null)
      fail(
        "SHARD_MISMATCH",
        `${join(s.dir, MANIFEST)} is from another sweep than ${join(first.dir, MANIFEST)}: ${d}; merge only the shards of one command`,
      );
    const { k, n: sn } = s.manifest.shard;
    if (sn !== n)
      fail(
        "SHARD_MISMATCH",
        `${s.dir} is shard ${k}/${sn}, but ${first.dir} is shard ${first.manifest.shard.k}/${n}`,
      );
    if (k > n) fail("BAD_SHARD", `${join(s.dir, MANIFEST)}: shard ${k}/${n}: K must be 1..${n}`);
  }
  const byK = new Map<number, LoadedShard>();
  for (const s of shards) {
    const k = s.manifest.shard.k;
    const twin = byK.get(k);
    if (twin !== undefined)
      fail("SHARD_DUPLICATE", `shard ${k}/${n} is given twice: ${twin.dir} and ${s.dir}`);
    byK.set(k, s);
  }
  const missing = [...Array(n).keys()].map((i) => i + 1).filter((k) => !byK.has(k));
  if (missing.length > 0)
    fail(
      "SHARD_MISSING",
      `shard${missing.length > 1 ? "s" : ""} ${missing.map((k) => `${k}/${n}`).join(", ")} ${missing.length > 1 ? "are" : "is"} missing (given: ${[
        ...byK.entries(),
      ]
        .sort((a, b) => a[0] - b[0])
        .map(([k, s]) => `${k}/${n} in ${s.dir}`)
        .join(", ")})`,
    );
  const ordered = [...byK.entries()].sort((a, b) => a[0] - b[0]).map(([, s]) => s);
  // the shards' runs are the sweep's, each exactly once
  const owner = new Map<string, string>();
  for (const s of ordered)
    for (const key of s.manifest.keys) {
      if (owner.has(key))
        fail("SHARD_MISMATCH", `run ${key} is in two shards: ${owner.get(key)} and ${s.dir}`);
      owner.set(key, s.dir);
    }
  for (const key of first.manifest.sweep.runs)
    if (!owner.has(key)) fail("SHARD_MISMATCH", `run ${key} of the sweep is in no shard's manifest`);
  if (owner.size !== first.manifest.sweep.runs.length)
    fail("SHARD_MISMATCH", `the shards' manifests name runs that are not in the sweep's list`);
  return ordered;
}

/** A shard's rows, checked complete: one valid row per run of its manifest, in its order. */
function loadRows(s: LoadedShard): ResultRow[] {
  const file = join(s.dir, RESULTS);
  const what = `the JSON array of ${s.manifest.keys.length} rows shard ${s.manifest.shard.k}/${s.manifest.shard.n} wrote`;
  const json = readJson(file, what);
  if (!Array.isArray(json)) fail("BAD_SHARD", `${file}: not a JSON array; expected ${what}`);
  if (json.length !== s.manifest.keys.length)
    fail("BAD_SHARD", `${file}: ${json.length} rows; expected ${what}`);
  return json.map((row, i) => {
    const r = v.safeParse(RowSchema, row);
    if (!r.success) {
      const x = r.issues[0];
      fail("BAD_SHARD", `${file}: row ${i}: ${v.getDotPath(x) ?? "row"}: ${x.message}; expected ${what}`);
    }
    const key = runKey(r.output as unknown as RunSpec);
    if (key !== s.manifest.keys[i])
      fail("BAD_SHARD", `${file}: row ${i} is run ${key}; the manifest says ${s.manifest.keys[i]}`);
    return row as ResultRow;
  });
}

export interface MergeResult {
  out: string;
  rows: ResultRow[];
  shards: { dir: string; k: number; n: number; runs: number }[];
  files: { results: string; reportMd: string; reportHtml: string; figures: string[] };
  findings: ReportFiles["findings"];
  wallMs: number;
}

/** Move every file of `from` into `to` (created when missing), then remove `from`. */
function moveInto(from: string, to: string): void {
  if (!existsSync(to)) {
    mkdirSync(dirname(to), { recursive: true });
    renameSync(from, to);
    return;
  }
  for (const f of readdirSync(from)) renameSync(join(from, f), join(to, f));
  rmdirSync(from);
}

/** `pagelab compare merge DIR... --out DIR`. */
export async function mergeShards(dirs: string[], out: string): Promise<MergeResult> {
  if (dirs.length === 0) fail("BAD_OPTION", "compare merge: name the shards' output directories (DIR...)");
  checkOutDir(out);
  const shards = checkShards(dirs.map(loadManifest));
  const rows = shards.flatMap(loadRows).sort((a, b) => a.index - b.index);
  const sweep = shards[0].manifest.sweep;
  rows.forEach((r, i) => {
    if (r.index !== i) fail("SHARD_MISMATCH", `the shards' rows skip run ${i} of the sweep`);
  });
  const wallMs = shards.reduce((t, s) => t + s.manifest.wallMs, 0);
  const jobs = Math.max(...shards.map((s) => s.manifest.jobs));
  const abs = resolve(out);
  mkdirSync(dirname(abs), { recursive: true });
  const tmp = mkdtempSync(join(dirname(abs), `.${basename(abs)}.merge-`));
  let rep: ReportFiles;
  try {
    writeFileSync(join(tmp, RESULTS), resultsText(rows));
    rep = await writeReport(tmp, rows, { command: sweep.command, wallMs, jobs, leftOut: sweep.leftOut });
    moveInto(tmp, abs);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  const here = (p: string) => join(out, basename(p));
  return {
    out,
    rows,
    shards: shards.map((s) => ({
      dir: s.dir,
      k: s.manifest.shard.k,
      n: s.manifest.shard.n,
      runs: s.manifest.keys.length,
    })),
    files: {
      results: join(out, RESULTS),
      reportMd: here(rep.md),
      reportHtml: here(rep.html),
      figures: rep.figures.map(here),
    },
    findings: rep.findings,
    wallMs,
  };
}
