/**
 * PMM benchmark: alloc+free pairs per second for each design on the same seeded traces, and the ratio
 * against a C twin of the stack, stack-pages, free-list and buddy allocators (bench/native/pmm_ref.c, built with `cc -O2` when a
 * C compiler exists). The C twin keeps the same state in the same simulated RAM model (2 MiB chunks
 * behind a directory, every 32-bit access bounds-checked and counted), so the ratio measures the
 * language, not a different algorithm; both print a checksum of the frames returned, which must match.
 *
 * Traces (splitmix32, seed 42, 1 GiB of RAM): `order0` (2M operations, all order 0) and `mixed`
 * (orders 0/1/2/3/9 with weights 8/4/2/1/1), both keeping 2048-8192 blocks live; each alloc is later
 * freed (a "pair"). Also: `tight`, alloc(0) then free at once, 2M times (the order-0 round trip).
 * The C examples (examples/c/stack_pages.c, examples/c/bitmap.c) run through WebAssembly as "(wasm)"
 * rows, with their ratio to the TypeScript design they mirror access for access (same checksum), and,
 * built for the host by bench/native/byo_host.c, as their "vs C" twin.
 * Timings on a shared VM vary between runs: compare ratios within one run.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { findClang } from "../src/kernel/pmm/wasm/compile.ts";
import { LAYOUT, type Row, type Trace, trace } from "./pmm-lab.ts";

const here = dirname(fileURLToPath(import.meta.url));
const build = join(here, "native", "build");

/**
 * Host memory in 2 MiB pages for the rows, as the CLI relaunches itself for a big boot
 * (src/cli/huge-pages.ts): a design whose RAM model backs new pages during the timed replay (the free
 * list's pages made whole) otherwise pays the host kernel's page faults there (about 35 ns a pair of the
 * free list's 137 here), while the C twin's RAM was faulted in by its untimed boot.
 */
const ROW_ENV = { ...process.env, GLIBC_TUNABLES: "glibc.malloc.hugetlb=1" };

/** Run one measurement in a process of its own (a fresh isolate: see bench/pmm-lab.ts). */
function inProcess<T>(args: string[]): T {
  const r = spawnSync(process.execPath, ["--import", "tsx/esm", join(here, "pmm-row.ts"), ...args], {
    encoding: "utf8",
    env: ROW_ENV,
  });
  if (r.status !== 0) throw new Error(`pmm bench row ${args.join(" ")} failed:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as T;
}

const replayRow = (key: string, t: Trace) => inProcess<Row>([key, t.name]);
function tightRow(key: string): [string, number] {
  const r = inProcess<{ design: string; tightNs: number }>([key]);
  return [r.design, r.tightNs];
}

function writeTrace(t: Trace): string {
  mkdirSync(build, { recursive: true });
  const file = join(build, `trace-${t.name}.bin`);
  const head = new Int32Array([t.op.length, t.slots, t.pairs]);
  const body = new Int32Array(t.op.length * 2);
  for (let i = 0; i < t.op.length; i++) {
    body[2 * i] = t.op[i];
    body[2 * i + 1] = t.slot[i];
  }
  writeFileSync(file, Buffer.concat([Buffer.from(head.buffer), Buffer.from(body.buffer)]));
  return file;
}

/** Build and run the C twin; returns its rows, or null (with a message) when there is no compiler. */
function runNative(traces: Trace[], twins = true): Row[] | null {
  const cc = spawnSync("cc", ["--version"], { encoding: "utf8" });
  if (cc.error || cc.status !== 0) {
    console.log("C reference skipped: no C compiler (`cc`) on this machine.");
    return null;
  }
  mkdirSync(build, { recursive: true });
  const exe = join(build, "pmm_ref");
  const src = join(here, "native", "pmm_ref.c");
  const b = spawnSync("cc", ["-O2", "-std=c11", "-o", exe, src], { encoding: "utf8" });
  if (b.status !== 0) {
    console.log(`C reference skipped: cc -O2 failed:\n${b.stderr}`);
    return null;
  }
  const rows: Row[] = [];
  for (const t of traces) {
    const r = spawnSync(
      exe,
      [writeTrace(t), t.name, String(LAYOUT.usable[0].start), String(LAYOUT.usable[0].end)],
      { encoding: "utf8" },
    );
    if (r.status !== 0 || !existsSync(exe)) {
      console.log(`C reference failed on ${t.name}: ${r.stderr}`);
      return null;
    }
    for (const line of r.stdout.trim().split("\n")) rows.push(JSON.parse(line) as Row);
  }
  if (!twins) return rows;
  // The twins of the WebAssembly rows: examples/c/stack_pages.c (order 0 only) and examples/c/bitmap.c
  // themselves, each built for the host into bench/native/byo_host.c.
  const inc = join(here, "..", "include");
  for (const [file, traceNames] of [
    ["stack_pages.c", ["order0"]],
    ["bitmap.c", ["order0", "mixed"]],
  ] as const) {
    const byo = join(build, `byo_host-${file.replace(".c", "")}`);
    const bb = spawnSync(
      "cc",
      [
        "-O2",
        "-std=c11",
        `-I${inc}`,
        `-DBYO_SOURCE="../../examples/c/${file}"`,
        "-o",
        byo,
        join(here, "native", "byo_host.c"),
      ],
      { encoding: "utf8" },
    );
    if (bb.status !== 0) {
      console.log(`C twin of ${file} skipped: cc -O2 failed:\n${bb.stderr}`);
      continue;
    }
    for (const t of traces.filter((x) => (traceNames as readonly string[]).includes(x.name))) {
      const r = spawnSync(
        byo,
        [writeTrace(t), t.name, String(LAYOUT.usable[0].start), String(LAYOUT.usable[0].end)],
        { encoding: "utf8" },
      );
      if (r.status === 0) for (const line of r.stdout.trim().split("\n")) rows.push(JSON.parse(line) as Row);
      else console.log(`C twin of ${file} failed on ${t.name}: ${r.stderr}`);
    }
  }
  return rows;
}

/** The C examples compiled to WebAssembly (the same source a kernel compiles), when clang is here. */
function wasmKeys(): { stackPages: string[]; bitmap: string[] } {
  if (findClang() === null) {
    console.log("WebAssembly rows skipped: no clang (apt-get install clang lld).");
    return { stackPages: [], bitmap: [] };
  }
  return { stackPages: ["wasm:stack_pages.c"], bitmap: ["wasm:bitmap.c"] };
}

/** The PMM row of the aims table (bench/aims.bench.ts): ratios to the C twin measured in this run. */
export interface TwinFigures {
  /** TypeScript ns/pair over C ns/pair on the order-0 trace, or NaN without a C compiler. */
  stack: number;
  stackPages: number;
  freelist: number;
  buddy: number;
  buddyMixed: number;
  /** Bitmap order-0 round trip (alloc then free), ns. */
  bitmapPairNs: number;
}

/** Set by `main` when the full PMM benchmark ran in this process. */
export let lastFigures: TwinFigures | null = null;

function figuresOf(rows: Row[], native: Row[] | null, tights: [string, number][]): TwinFigures {
  const ratio = (design: string, trace: string) => {
    const r = rows.find((x) => x.design === design && x.trace === trace);
    const n = native?.find((x) => x.design === design && x.trace === trace);
    if (r === undefined || n === undefined) return Number.NaN;
    if (r.checksum !== n.checksum) {
      console.log(`${design} ${trace}: the C twin's checksum differs, so it is not a twin; no ratio.`);
      return Number.NaN;
    }
    return r.nsPerPair / n.nsPerPair;
  };
  // Each design against its own C twin in bench/native/pmm_ref.c (same algorithm, same accesses).
  return {
    stack: ratio("stack-unchecked", "order0"),
    stackPages: ratio("stack-pages-unchecked", "order0"),
    freelist: ratio("freelist-unchecked", "order0"),
    buddy: ratio("buddy", "order0"),
    buddyMixed: ratio("buddy", "mixed"),
    bitmapPairNs: tights.find(([n]) => n === "bitmap")?.[1] ?? Number.NaN,
  };
}

/** Only the aims table's PMM figures (when the full benchmark did not run in this process). */
export async function measureTwinFigures(): Promise<TwinFigures> {
  const order0 = trace("order0");
  const mixed = trace("mixed");
  const rows = [
    replayRow("stack-unchecked", order0),
    replayRow("stack-pages-unchecked", order0),
    replayRow("freelist-unchecked", order0),
    replayRow("buddy", order0),
    replayRow("buddy", mixed),
  ];
  const tights = [tightRow("bitmap")];
  return figuresOf(rows, runNative([order0, mixed], false), tights);
}

export default async function main(): Promise<void> {
  const wasm = wasmKeys();
  const order0 = trace("order0");
  const mixed = trace("mixed");
  console.log(`RAM 1 GiB; traces: order0 ${order0.pairs} pairs, mixed ${mixed.pairs} pairs (seed 42)`);
  console.log(
    "each row in a process of its own (a fresh isolate, as the C twin calls one allocator), host memory in 2 MiB pages",
  );
  const order0Designs = [
    "stack-unchecked",
    "stack",
    "stack-pages-unchecked",
    "stack-pages",
    ...wasm.stackPages,
    "freelist-unchecked",
    "colour-stacks",
    "bitmap",
    ...wasm.bitmap,
    "buddy",
    "buddy-nopcp",
    "zoned-buddy",
    "huge-pool",
  ];
  const mixedDesigns = [
    "bitmap",
    ...wasm.bitmap,
    "buddy",
    "buddy-nopcp",
    "buddy-mt",
    "zoned-buddy",
    "huge-pool",
  ];
  const rows: Row[] = [];
  for (const d of order0Designs) rows.push(replayRow(d, order0));
  for (const d of mixedDesigns) rows.push(replayRow(d, mixed));
  const tights: [string, number][] = [];
  for (const d of [
    "stack-unchecked",
    "stack-pages-unchecked",
    "stack-pages",
    ...wasm.stackPages,
    "freelist-unchecked",
    "buddy",
    "bitmap",
    ...wasm.bitmap,
  ])
    tights.push(tightRow(d));
  const native = runNative([order0, mixed]);
  lastFigures = figuresOf(rows, native, tights);
  const twin = (r: Row) => native?.find((n) => n.trace === r.trace && n.design === r.design);
  console.log("\ndesign                 trace    ns/pair   pairs/s      failed  vs C (same trace)");
  for (const r of rows) {
    const n = twin(r);
    const ratio = n
      ? `${(r.nsPerPair / n.nsPerPair).toFixed(2)}x C (${n.nsPerPair.toFixed(1)} ns${n.checksum === r.checksum ? ", checksum ok" : ", CHECKSUM DIFFERS"})`
      : "";
    console.log(
      `${r.design.padEnd(22)} ${r.trace.padEnd(7)} ${r.nsPerPair.toFixed(1).padStart(8)} ${(r.pairsPerSec / 1e6).toFixed(2).padStart(7)} M ${String(r.failed).padStart(8)}  ${ratio}`,
    );
  }
  console.log("");
  for (const [c, tsName] of [
    ["stack_pages.c", "stack-pages"],
    ["bitmap.c", "bitmap"],
  ]) {
    for (const w of rows.filter((r) => r.design === `${c} (wasm)`)) {
      const ts = rows.find((r) => r.design === tsName && r.trace === w.trace);
      if (ts !== undefined)
        console.log(
          `${c} through wasm vs TypeScript ${tsName} (same algorithm, same accesses), ${w.trace}: ${(w.nsPerPair / ts.nsPerPair).toFixed(2)}x (${w.checksum === ts.checksum ? "checksum ok" : "CHECKSUM DIFFERS"})`,
        );
    }
    const wt = tights.find(([n]) => n === `${c} (wasm)`);
    const tt = tights.find(([n]) => n === tsName);
    if (wt !== undefined && tt !== undefined)
      console.log(`${c} through wasm vs TypeScript ${tsName}, tight: ${(wt[1] / tt[1]).toFixed(2)}x`);
  }
  console.log("\norder-0 alloc+free round trip (alloc then free at once):");
  for (const [n, ns] of tights) {
    const c = native?.find((x) => x.trace === "tight" && x.design === n);
    console.log(
      `  ${n.padEnd(22)} ${ns.toFixed(1).padStart(6)} ns${c ? `   C ${c.nsPerPair.toFixed(1)} ns (${(ns / c.nsPerPair).toFixed(2)}x)` : ""}`,
    );
  }
}
