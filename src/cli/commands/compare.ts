/**
 * `pagelab compare`: run the matrix maps x PMM x kmap x workload x CPUs in worker threads and write
 * DIR/results.json, DIR/report.md and DIR/report.html (src/lab/compare.ts, src/lab/report/).
 */
import { SUMMARY } from "./index.ts";
import { type Command, Option } from "@commander-js/extra-typings";
import cliProgress from "cli-progress";
import { fail } from "../../errors.ts";
import { DEFAULT_PRESET } from "../../firmware/index.ts";
import { DESIGN_NAMES } from "../../kernel/pmm/designs.ts";
import {
  type CompareOptions,
  type CompareProgress,
  DEFAULT_CPUS,
  DEFAULT_HOST_BUDGET,
  DEFAULT_KMAPS,
  DEFAULT_SWEEP,
  defaultJobs,
  KMAP_NAMES,
  runCompare,
} from "../../lab/compare.ts";
import { writeReport } from "../../lab/report/render.ts";
import { mergeShards, writeManifest } from "../../lab/shard.ts";
import { parseShard } from "../../lab/shard-plan.ts";
import { STANDARD_WORKLOADS, WORKLOAD_NAMES, WORKLOADS } from "../../lab/workloads/index.ts";
import { parseIntOption, parseLevels, printJson } from "../output.ts";
import { parseBytes } from "./boot.ts";

/** A comma-separated list; `all` expands to `every`, `none` to an empty list when allowed. */
function list(name: string, every: readonly string[] | null, allowNone = false) {
  return (s: string): string[] => {
    const v = s
      .split(",")
      .map((x) => x.trim())
      .filter((x) => x !== "");
    if (v.length === 1 && v[0] === "all" && every !== null) return [...every];
    if (v.length === 1 && v[0] === "none" && allowNone) return [];
    if (v.length === 0) fail("BAD_OPTION", `${name} needs at least one name (comma-separated)`);
    return v;
  };
}

function cpuList(s: string): number[] {
  const one = parseIntOption("--cpus", 1, 64);
  return list("--cpus", null)(s).map(one);
}

const HELP = `
The matrix: every map x PMM x kernel mapping x workload x CPU count is one run: a fresh kernel
(startKernel: boot, SMP, heap, processes), one workload, its counters. Runs go to worker threads
(--jobs) and stream into results.json as they finish; the report is written at the end.

Workloads (one module each under src/lab/workloads/):
${WORKLOAD_NAMES.map((n) => `  ${n.padEnd(11)} ${WORKLOADS[n].describe}`).join("\n")}

The sweep boots every PMM (direct map, no workload) at each RAM size of --sweep for the
"metadata vs RAM size" figure; MAP@5 boots with 5-level paging (the sparse map's RAM at 128 TiB
needs it for a direct map). A run whose simulation would back more host memory than --host-budget
is refused. When you name both its design (--pmm) and its map (--maps, or --sweep for the sweep),
the refusal is a row with an error, listed in the report. Otherwise (a default list) such runs are
left out before anything starts, and the output and report.md say which and why: the default
leaves out freelist at qemu:16G (a next pointer in every free frame: a 64-byte line of host memory
each) and most designs at sparse@5 (2 TiB of RAM).

Checked before any run starts, and before DIR is created: every name, every map and sweep entry
(it must load and have RAM), the trace (a readable file with kmem events), every design file (it
must load; its invariants are checked in its own rows), and DIR (a writable directory, or a path
where one can be made). A failed check prints one line naming the option, the file or value and
what was expected.

Exit status:
  0  at least one run completed (runs that did not are rows with an error, counted on the first
     line of the output and listed in report.md)
  1  every run failed (results.json and the report are still written)
  2  a usage error found by the checks above; nothing was run or written

Output (DIR = --out):
  results.json   one row per run: the spec, every counter (boot and workload), operations by kind,
                 per-operation figures, IPIs per kfree/vfree, the sampled time series, errors
  report.md      findings in plain sentences, each with the command that reproduces it; tables;
                 figures as DIR/fig-*.svg
  report.html    the same, self-contained (SVG inline)

Everything but host time is deterministic: the same command gives the same results.json rows.

Real machines (--map corpus...): the 244 firmware maps of corpus/e820-real.jsonl, read from the
Linux boot logs of real machines and VMs. 'corpus' is all of them, corpus:ID one, and
corpus:FIELD OP VALUE[:FIELD OP VALUE...] those every term holds for:
  ram      usable RAM: ram>=8G, 'ram<1T', ram=8G..64G (both ends included; ram=64G.. has no top)
  numa     NUMA nodes; entries: e820 entries (same operators)
  firmware uefi, bios, xen-pv, unknown     platform  physical, vm, unknown
  hypervisor qemu/kvm, hyper-v, none, ...  origin    linuxhw, mailing-list      (= or !=)
('>' and '<' need quotes in a shell.) Each machine is a map of the matrix, named corpus:ID in the rows.
A machine a design cannot boot (too little RAM, no room for the kernel, over the host budget) is a
row with the error, and the report counts refusals by cause. With several maps the report adds PMM
metadata as a share of RAM per machine, page-table bytes per strategy per machine, and the machines
where the designs' ranking flips.

Sharding (--shard K/N): the runs are dealt into N slices, longest first by the estimated cost, so
each slice has about the same work; K (1..N) runs one. Each shard writes results.json, a report of
its own runs and manifest.json (the whole sweep: options, seed, pagelab version, every run, and this
shard's runs). Run the same command with K = 1..N, on as many machines as you like, then
'pagelab compare merge DIR... --out DIR' checks the shards and writes the report the unsharded run
writes (see pagelab compare merge --help).

Examples:
  pagelab compare                                   # all PMMs x direct/recursive/quickmap, standard workloads
  pagelab compare --pmm buddy,bitmap --kmap direct --workload page-churn --ops 5000 --sweep none
  pagelab compare --workload file-cache --pmm buddy,buddy-mt,bitmap,stack --out frag/
  pagelab compare --workload ftrace --trace kmem.trace --pmm buddy --kmap direct,quickmap
  pagelab compare --workload none --sweep qemu:1G,qemu:64G,sparse@5 --pmm bitmap,buddy
  pagelab compare --cpus 2,8 --workload heap-churn --pmm buddy --json | jq .findings
  pagelab compare --map corpus:firmware=uefi:ram=8G..64G --pmm buddy,bitmap --kmap direct --workload none --sweep none
  pagelab compare --map corpus --pmm stack-pages,bitmap,buddy --kmap direct,recursive --workload page-churn --shard 1/4 --out s1

Capture your own trace (as root), then replay it with --workload ftrace --trace kmem.trace:
  cd /sys/kernel/tracing
  for e in mm_page_alloc mm_page_free kmalloc kfree; do echo 1 > events/kmem/$e/enable; done
  cat trace_pipe > ~/kmem.trace        # Ctrl-C after a few seconds`;

/** The command's options and help: a declarative table (the action follows). */
function compareCommand(program: Command) {
  return (
    program
      .command("compare")
      .description(SUMMARY.compare)
      .option(
        "--maps <list>",
        `firmware maps (presets, files or corpus selectors), comma-separated (default: ${DEFAULT_PRESET})`,
        list("--maps", null),
      )
      .option(
        "--map <list>",
        "the same as --maps (corpus: all 244 real maps; see Real machines below)",
        list("--map", null),
      )
      .option(
        "--pmm <list>",
        `PMM designs or design files, or 'all' (default: all of ${DESIGN_NAMES.join(", ")})`,
        list("--pmm", DESIGN_NAMES),
      )
      .option(
        "--kmap <list>",
        `kernel mappings, or 'all' (${KMAP_NAMES.join(", ")})`,
        list("--kmap", KMAP_NAMES),
        [...DEFAULT_KMAPS],
      )
      .option(
        "--workload <list>",
        `workloads, 'all' or 'none' (default: ${STANDARD_WORKLOADS.join(", ")}, plus ftrace with --trace)`,
        list("--workload", WORKLOAD_NAMES, true),
      )
      .option("--cpus <list>", "CPU counts, comma-separated", cpuList, [DEFAULT_CPUS])
      .option("--out <dir>", "output directory", "pagelab-compare")
      .addOption(
        new Option("--seed <n>", "seed of every workload's request stream")
          .default(1)
          .argParser(parseIntOption("--seed", 0, 2 ** 32 - 1)),
      )
      .addOption(
        new Option(
          "--ops <n>",
          `operations per run, for every workload (default: each workload's own: ${WORKLOAD_NAMES.map((n) => `${n} ${WORKLOADS[n].defaultOps}`).join(", ")})`,
        ).argParser(parseIntOption("--ops", 1, 1e9)),
      )
      .option("--trace <file>", "ftrace capture of kmem events to replay (adds the ftrace workload)")
      .option(
        "--sweep <list>",
        `RAM sizes for the metadata figure (MAP or MAP@5), or 'none' (default ${DEFAULT_SWEEP.join(",")})`,
        list("--sweep", null, true),
      )
      .addOption(
        new Option("--levels <n>", "paging levels of the matrix runs")
          .default(4 as const)
          .argParser(parseLevels),
      )
      .addOption(
        new Option("--jobs <n>", "worker threads (0: run in the main thread)")
          .default(defaultJobs())
          .argParser(parseIntOption("--jobs", 0, 64)),
      )
      .option(
        "--host-budget <bytes>",
        `refuse a run whose simulation would back more host memory (default ${DEFAULT_HOST_BUDGET / 2 ** 20}M per run)`,
      )
      .option(
        "--paranoid",
        "run every kernel checker after each workload (slower; a violation becomes the row's error)",
      )
      .addOption(
        new Option(
          "--shard <K/N>",
          "run only the K-th of N slices of the runs (balanced by estimated cost)",
        ).argParser(parseShard),
      )
      .option("--json", "print a JSON summary (files, run counts, findings) instead of text")
      .addHelpText("after", HELP)
      // `compare merge DIR... --out DIR`: its --out is its own, not compare's
      .enablePositionalOptions()
  );
}

/**
 * Register `compare` and `compare merge`. `argv` (the arguments after `pagelab`) gives the report's
 * command line; a test that runs the command in its own process passes the arguments it parses.
 */
export function registerCompare(program: Command, argv: string[] = process.argv.slice(2)): void {
  // `compare merge DIR... --out DIR`: options after a subcommand's name are the subcommand's, at
  // every level (commander hands a parent's unknown options to the child before its operands)
  program.enablePositionalOptions();
  const compare = compareCommand(program).action((o) => compareAction(o, reportCommand(argv)));
  compare
    .command("merge")
    .description("merge the output directories of a sweep's shards into the report a single run writes")
    .argument("<dirs...>", "the shards' --out directories (each with results.json and manifest.json)")
    .option("--out <dir>", "output directory", "pagelab-compare")
    .option("--json", "print a JSON summary (files, run counts, findings) instead of text")
    .addHelpText("after", MERGE_HELP)
    .action(mergeAction);
}

const MERGE_HELP = `
Checks, before anything is written: every DIR holds a finished shard (manifest.json, written last,
and a complete results.json), all of them are of one sweep (same pagelab version, seed, options and
runs), and no shard is missing or given twice. Then writes results.json, report.md and report.html
into --out: the files the unsharded command writes, byte for byte, host time aside (each row's hostMs
and opsPerHostSecond; the report's wall time is the shards' summed). The files are written into a
temporary folder beside --out and moved into place: a failed merge leaves no partial report.

Example:
  for k in 1 2 3 4; do pagelab compare --map corpus --pmm buddy,bitmap --shard $k/4 --out shard-$k; done
  pagelab compare merge shard-* --out sweep`;

/** The command line a report shows: the options that decide the rows (no --out, --jobs, --shard, --json). */
export function reportCommand(argv: string[]): string {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--json") continue;
    if (/^--(out|jobs|shard)=/.test(a)) continue;
    if (/^--(out|jobs|shard)$/.test(a)) {
      i++;
      continue;
    }
    out.push(a);
  }
  return `pagelab ${out.join(" ")}`.trim();
}

async function mergeAction(dirs: string[], o: { out: string; json?: true }) {
  const m = await mergeShards(dirs, o.out);
  const errors = m.rows.filter((r) => r.error !== null).length;
  if (errors === m.rows.length) process.exitCode = 1;
  if (o.json) {
    printJson({
      out: m.out,
      files: m.files,
      runs: m.rows.length,
      completed: m.rows.length - errors,
      errors,
      shards: m.shards,
      wallMs: m.wallMs,
      findings: m.findings,
    });
    return;
  }
  process.stdout.write(
    `${m.rows.length} runs from ${m.shards.length} shards (${errors} did not complete)\n` +
      `  ${m.files.results}\n  ${m.files.reportMd}\n  ${m.files.reportHtml}\n\n`,
  );
  for (const f of m.findings) process.stdout.write(`- ${f.text}\n    ${f.command}\n`);
}

type CompareCliOptions = ReturnType<ReturnType<typeof compareCommand>["opts"]>;

/** The sweep's options from the command line (--map and --maps are one option). */
function sweepOptionsOf(o: CompareCliOptions): CompareOptions {
  if (o.map !== undefined && o.maps !== undefined)
    fail("BAD_OPTION", "--map and --maps are the same option: give one");
  return {
    maps: o.maps ?? o.map,
    pmms: o.pmm,
    kmaps: o.kmap,
    workloads: o.workload,
    cpus: o.cpus,
    levels: o.levels,
    seed: o.seed,
    ops: o.ops,
    trace: o.trace,
    sweep: o.sweep,
    jobs: o.jobs,
    paranoid: o.paranoid === true,
    hostBudget: o.hostBudget === undefined ? undefined : parseBytes(o.hostBudget, "--host-budget"),
  };
}

/** The progress bar on stderr: a callback for runCompare, and `stop` for the end. */
function progressBar(): { onProgress: (p: CompareProgress) => void; stop: () => void } {
  const bar = new cliProgress.SingleBar(
    {
      format: "compare [{bar}] {value}/{total} runs | {last}",
      noTTYOutput: true,
      notTTYSchedule: 5000,
      stream: process.stderr,
      hideCursor: true,
    },
    cliProgress.Presets.legacy,
  );
  let started = false;
  return {
    onProgress: (p) => {
      if (!started) {
        bar.start(p.total, 0, { last: "" });
        started = true;
      }
      const r = p.row;
      const what = r.kind === "sweep" ? `sweep ${r.map}` : `${r.workload}`;
      bar.update(p.done, { last: `${what} ${r.pmm}/${r.kmap}${r.error ? ` (${r.error.code})` : ""}` });
    },
    stop: () => {
      if (started) bar.stop();
    },
  };
}

async function compareAction(o: CompareCliOptions, command: string) {
  const options = sweepOptionsOf(o);
  const bar = progressBar();
  const res = await runCompare(options, o.out, bar.onProgress, o.shard);
  bar.stop();
  const leftOut = res.leftOut.map((l) => l.text);
  const shard = o.shard === undefined ? undefined : { ...o.shard, sweepRuns: res.plan.length };
  const rep = await writeReport(o.out, res.rows, {
    command,
    wallMs: res.wallMs,
    jobs: o.jobs,
    leftOut,
    shard,
  });
  const manifest =
    o.shard === undefined
      ? undefined
      : writeManifest(o.out, { ...res, options, command, leftOut, shard: o.shard, jobs: o.jobs });
  const errors = res.rows.filter((r) => r.error !== null).length;
  // every run failed: nothing was measured (exit status 1, documented in --help); a shard may have no run
  if (errors === res.rows.length && res.rows.length > 0) process.exitCode = 1;
  if (o.json) {
    printJson({
      out: o.out,
      files: { results: res.resultsPath, reportMd: rep.md, reportHtml: rep.html, figures: rep.figures },
      runs: res.rows.length,
      completed: res.rows.length - errors,
      errors,
      leftOut,
      wallMs: res.wallMs,
      findings: rep.findings,
      ...(shard === undefined ? {} : { shard: { ...shard, manifest } }),
    });
    return;
  }
  if (shard !== undefined)
    process.stdout.write(
      `shard ${shard.k}/${shard.n} of a sweep of ${shard.sweepRuns} runs; when every shard is done: pagelab compare merge DIR... --out DIR\n  ${manifest}\n`,
    );
  printSummary(res, rep, leftOut, errors);
}

/** The text output: counts, files, left-out runs, findings. */
function printSummary(
  res: { rows: unknown[]; wallMs: number; resultsPath: string },
  rep: Awaited<ReturnType<typeof writeReport>>,
  leftOut: string[],
  errors: number,
): void {
  const all = errors === res.rows.length && errors > 0;
  process.stdout.write(
    `${res.rows.length} runs (${errors} did not complete${all ? ": every run failed" : ""}) in ${(res.wallMs / 1000).toFixed(1)} s\n` +
      `  ${res.resultsPath}\n  ${rep.md}\n  ${rep.html}\n\n`,
  );
  for (const l of leftOut) process.stdout.write(`${l}\n`);
  if (leftOut.length > 0) process.stdout.write("\n");
  for (const f of rep.findings) process.stdout.write(`- ${f.text}\n    ${f.command}\n`);
  if (all)
    process.stderr.write(`pagelab: every run failed (${errors} of ${res.rows.length}); see ${rep.md}\n`);
}
