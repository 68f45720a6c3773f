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
import { bitmapDesign } from "../src/kernel/pmm/bitmap.ts";
import { buddyDesign } from "../src/kernel/pmm/buddy.ts";
import { colourStacksDesign, zonedDesign } from "../src/kernel/pmm/compose.ts";
import { freeListDesign } from "../src/kernel/pmm/freelist.ts";
import { hugePoolDesign } from "../src/kernel/pmm/huge-pool.ts";
import type { FrameAllocator, PmmDesign, PmmLayout } from "../src/kernel/pmm/interface.ts";
import { bringUp } from "../src/kernel/pmm/setup.ts";
import { stackDesign } from "../src/kernel/pmm/stack.ts";
import { stackPagesDesign } from "../src/kernel/pmm/stack-pages.ts";
import { findClang } from "../src/kernel/pmm/wasm/compile.ts";
import { loadWasmDesign } from "../src/kernel/pmm/wasm/index.ts";
import { Rng } from "../src/machine/rng.ts";

const here = dirname(fileURLToPath(import.meta.url));
const build = join(here, "native", "build");
const LAYOUT: PmmLayout = { usable: [{ start: 0x100, end: 0x40000 }], cpus: 1, colours: 16 };
const OPS = 2_000_000;

/** A trace: op[i] >= 0 allocates order op[i] into slot[i]; op[i] = -1 frees slot[i]. */
interface Trace {
  name: string;
  op: Int32Array;
  slot: Int32Array;
  slots: number;
  pairs: number;
}

function makeTrace(name: string, seed: number, pick: (r: Rng) => number): Trace {
  const rng = new Rng(seed);
  const op = new Int32Array(OPS * 2);
  const slot = new Int32Array(OPS * 2);
  const live: number[] = [];
  const freeSlots: number[] = [];
  let slots = 0;
  let n = 0;
  let pairs = 0;
  for (let i = 0; i < OPS; i++) {
    const doAlloc = live.length < 2048 || (live.length < 8192 && rng.below(2) === 0);
    if (doAlloc) {
      const s = freeSlots.length > 0 ? freeSlots.pop()! : slots++;
      op[n] = pick(rng);
      slot[n++] = s;
      live.push(s);
      pairs++;
    } else {
      const j = rng.below(live.length);
      const s = live[j];
      live[j] = live[live.length - 1];
      live.pop();
      op[n] = -1;
      slot[n++] = s;
      freeSlots.push(s);
    }
  }
  for (const s of live) {
    op[n] = -1;
    slot[n++] = s;
  }
  return { name, op: op.subarray(0, n), slot: slot.subarray(0, n), slots, pairs };
}

const mixedOrder = (r: Rng) => {
  const x = r.below(16);
  return x < 8 ? 0 : x < 12 ? 1 : x < 14 ? 2 : x < 15 ? 3 : 9;
};

/**
 * A fresh copy of a driver loop, for one design: a C driver calls one allocator's functions directly,
 * while one loop shared by every design sees every design's class and its calls go megamorphic (about
 * 20-35 ns a pair more here, not the design's cost). `f` must use nothing but its arguments and globals.
 */
function ownCopy<F extends (...args: never[]) => unknown>(f: F): F {
  return new Function(`return (${f.toString()})`)() as F;
}

/** Replay a trace; returns [nanoseconds, checksum of returned frames, failed allocs]. */
function replayLoop(a: FrameAllocator, t: Trace): [number, number, number] {
  const pfn = new Float64Array(t.slots);
  const ord = new Int32Array(t.slots);
  const op = t.op;
  const slot = t.slot;
  let sum = 0;
  let failed = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < op.length; i++) {
    const o = op[i];
    const s = slot[i];
    if (o >= 0) {
      const p = a.alloc(o);
      pfn[s] = p;
      ord[s] = o;
      if (p < 0) failed++;
      else sum = (sum + p) % 4294967296;
    } else if (pfn[s] >= 0) {
      a.free(pfn[s], ord[s]);
    }
  }
  return [Number(process.hrtime.bigint() - t0), sum, failed];
}

function tightLoop(a: FrameAllocator, n: number): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) a.free(a.alloc(0), 0);
  return Number(process.hrtime.bigint() - t0) / n;
}

interface Row {
  design: string;
  trace: string;
  nsPerPair: number;
  pairsPerSec: number;
  checksum: number;
  failed: number;
}

function benchDesign(d: PmmDesign, t: Trace): Row {
  const up = bringUp(d, LAYOUT);
  const replay = ownCopy(replayLoop);
  replay(up.alloc, t); // warm-up (and JIT)
  let best = Number.POSITIVE_INFINITY;
  let sum = 0;
  let failed = 0;
  for (let r = 0; r < 2; r++) {
    const fresh = bringUp(d, LAYOUT);
    const [ns, s, f] = replay(fresh.alloc, t);
    if (ns < best) best = ns;
    sum = s;
    failed = f;
  }
  return {
    design: d.name,
    trace: t.name,
    nsPerPair: best / t.pairs,
    pairsPerSec: (t.pairs * 1e9) / best,
    checksum: sum,
    failed,
  };
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
function wasmDesigns(): { stackPages: PmmDesign[]; bitmap: PmmDesign[] } {
  if (findClang() === null) {
    console.log("WebAssembly rows skipped: no clang (apt-get install clang lld).");
    return { stackPages: [], bitmap: [] };
  }
  const load = (file: string): PmmDesign => {
    const d = loadWasmDesign(join(here, "..", "examples", "c", file), { isolate: false });
    return { ...d, name: `${file} (wasm)` };
  };
  return { stackPages: [load("stack_pages.c")], bitmap: [load("bitmap.c")] };
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
export function measureTwinFigures(): TwinFigures {
  const order0 = makeTrace("order0", 42, () => 0);
  const mixed = makeTrace("mixed", 42, mixedOrder);
  const rows = [
    benchDesign(stackDesign({ checked: false }), order0),
    benchDesign(stackPagesDesign({ checked: false }), order0),
    benchDesign(freeListDesign({ checked: false }), order0),
    benchDesign(buddyDesign(), order0),
    benchDesign(buddyDesign(), mixed),
  ];
  const up = bringUp(bitmapDesign(), LAYOUT);
  const tight = ownCopy(tightLoop);
  tight(up.alloc, 200_000);
  const tights: [string, number][] = [["bitmap", tight(up.alloc, 2_000_000)]];
  return figuresOf(rows, runNative([order0, mixed], false), tights);
}

export default async function main(): Promise<void> {
  const wasm = wasmDesigns();
  const order0 = makeTrace("order0", 42, () => 0);
  const mixed = makeTrace("mixed", 42, mixedOrder);
  console.log(`RAM 1 GiB; traces: order0 ${order0.pairs} pairs, mixed ${mixed.pairs} pairs (seed 42)`);
  const order0Designs = [
    stackDesign({ checked: false }),
    stackDesign(),
    stackPagesDesign({ checked: false }),
    stackPagesDesign(),
    ...wasm.stackPages,
    freeListDesign({ checked: false }),
    colourStacksDesign(),
    bitmapDesign(),
    ...wasm.bitmap,
    buddyDesign(),
    buddyDesign({ pcp: false, name: "buddy-nopcp" }),
    zonedDesign(),
    hugePoolDesign(),
  ];
  const mixedDesigns = [
    bitmapDesign(),
    ...wasm.bitmap,
    buddyDesign(),
    buddyDesign({ pcp: false, name: "buddy-nopcp" }),
    buddyDesign({ migrate: true }),
    zonedDesign(),
    hugePoolDesign(),
  ];
  const rows: Row[] = [];
  for (const d of order0Designs) rows.push(benchDesign(d, order0));
  for (const d of mixedDesigns) rows.push(benchDesign(d, mixed));
  const tights: [string, number][] = [];
  for (const d of [
    stackDesign({ checked: false }),
    stackPagesDesign({ checked: false }),
    stackPagesDesign(),
    ...wasm.stackPages,
    freeListDesign({ checked: false }),
    buddyDesign(),
    bitmapDesign(),
    ...wasm.bitmap,
  ]) {
    const up = bringUp(d, LAYOUT);
    const tight = ownCopy(tightLoop);
    tight(up.alloc, 200_000);
    tights.push([d.name, tight(up.alloc, 2_000_000)]);
  }
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
