/**
 * What the PMM benchmark measures, shared by bench/pmm.bench.ts and the process that measures each row
 * (bench/pmm-row.ts): the traces, the driver loops and the designs by name.
 *
 * Each row runs in a process of its own, as the C twin calls one allocator directly: in one
 * isolate, the code every design shares (the RAM model, the region, the checks of a free) learns every
 * design's types, and a design measured after the others ran 1.2-2.3x slower here than measured first
 * (stack-pages' round trip 18 -> 41 ns in one process).
 */
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
import { loadWasmDesign } from "../src/kernel/pmm/wasm/index.ts";
import { Rng } from "../src/machine/rng.ts";

export const LAYOUT: PmmLayout = { usable: [{ start: 0x100, end: 0x40000 }], cpus: 1, colours: 16 };
const OPS = 2_000_000;

/** A trace: op[i] >= 0 allocates order op[i] into slot[i]; op[i] = -1 frees slot[i]. */
export interface Trace {
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

/** The two traces (splitmix32, seed 42): `order0` (all order 0) and `mixed` (orders 0/1/2/3/9, weights 8/4/2/1/1). */
export function trace(name: "order0" | "mixed"): Trace {
  return name === "order0" ? makeTrace("order0", 42, () => 0) : makeTrace("mixed", 42, mixedOrder);
}

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
      else sum = (sum + p) >>> 0; // mod 2^32, as C's uint32_t sum
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

export interface Row {
  design: string;
  trace: string;
  nsPerPair: number;
  pairsPerSec: number;
  checksum: number;
  failed: number;
}

/** Replay `t` on fresh boots of `d`: a warm-up, then the best of two. */
export function measureReplay(d: PmmDesign, t: Trace): Row {
  const replay = ownCopy(replayLoop);
  replay(bringUp(d, LAYOUT).alloc, t); // warm-up (and JIT)
  let best = Number.POSITIVE_INFINITY;
  let sum = 0;
  let failed = 0;
  for (let r = 0; r < 2; r++) {
    const [ns, s, f] = replay(bringUp(d, LAYOUT).alloc, t);
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

/** The order-0 round trip (alloc, then free at once), ns, after a warm-up. */
export function measureTight(d: PmmDesign): number {
  const up = bringUp(d, LAYOUT);
  const tight = ownCopy(tightLoop);
  tight(up.alloc, 200_000);
  return tight(up.alloc, 2_000_000);
}

/** The designs the benchmark names, by key ("wasm:FILE" is examples/c/FILE through WebAssembly). */
export function designFor(key: string): PmmDesign {
  if (key.startsWith("wasm:")) {
    const file = key.slice(5);
    const d = loadWasmDesign(join(dirname(fileURLToPath(import.meta.url)), "..", "examples", "c", file), {
      isolate: false,
    });
    return { ...d, name: `${file} (wasm)` };
  }
  const make: Record<string, () => PmmDesign> = {
    "stack-unchecked": () => stackDesign({ checked: false }),
    stack: () => stackDesign(),
    "stack-pages-unchecked": () => stackPagesDesign({ checked: false }),
    "stack-pages": () => stackPagesDesign(),
    "freelist-unchecked": () => freeListDesign({ checked: false }),
    "colour-stacks": () => colourStacksDesign(),
    bitmap: () => bitmapDesign(),
    buddy: () => buddyDesign(),
    "buddy-nopcp": () => buddyDesign({ pcp: false, name: "buddy-nopcp" }),
    "buddy-mt": () => buddyDesign({ migrate: true }),
    "zoned-buddy": () => zonedDesign(),
    "huge-pool": () => hugePoolDesign(),
  };
  const f = make[key];
  if (f === undefined) throw new Error(`pmm bench: no design ${key}`);
  return f();
}
