/**
 * The large-page workload (issue 8): a seeded trace of mostly 4 KiB requests with a share of 2 MiB and a
 * few 1 GiB requests, frees interleaved, in four phases, replayed on any PMM design:
 *
 *   0 mixed        around half of RAM requested: 4 KiB 94 %, 2 MiB 5.5 %, 1 GiB 0.5 %; random frees (a
 *                  1 GiB page is freed right after its allocation, in every phase but the last, so that
 *                  a design that grants it does not hold more memory afterwards than one that cannot);
 *   1 fragment     4 KiB requests up to 85 % of RAM, then 70 % of the 4 KiB blocks freed at random: the
 *                  survivors are scattered over most 2 MiB blocks;
 *   2 large        2 MiB requests (and a few 1 GiB) while the survivors are freed one by one: how soon
 *                  do large pages come back?
 *   3 recover      everything freed, then 2 MiB and 1 GiB requests until they fail (kept), then freed.
 *
 * The trace does not depend on the design: an alloc fills a slot, a free empties it (skipped when that
 * alloc failed). Replaying reports, per phase, the requests and successes per page size, memory
 * references per operation (`Counters`: 32-bit reads + writes through the port) and host time (the only
 * non-deterministic figure). 2 MiB = order 9, 1 GiB = order 18 (a design without them returns -1).
 */
import { Rng } from "../../machine/rng.ts";
import type { FrameAllocator, FrameRange, PmmDesign, PmmLayout } from "./interface.ts";
import { bringUp } from "./setup.ts";

export const PHASES = ["mixed", "fragment", "large", "recover"] as const;
/** Orders of the three request kinds. */
const ORDERS = [0, 9, 18];
const FRAMES = [1, 512, 262144];

export interface LargePageTrace {
  /** -1 = free the slot; 0/1/2 = allocate 4 KiB / 2 MiB / 1 GiB into the slot. */
  kind: Int8Array;
  slot: Int32Array;
  phase: Uint8Array;
  slots: number;
}

export interface LargePageTraceOptions {
  /** Frames of RAM the trace is sized for (the managed frames of the layout). */
  frames: number;
  /** Operations in phases 0 and 2 (phase 1 and 3 follow from RAM). Default 40 000. */
  ops?: number;
  seed?: number;
}

class TraceBuilder {
  kind: number[] = [];
  slot: number[] = [];
  phase: number[] = [];
  /** Live slots (by request kind) and the frames they request. */
  live: number[][] = [[], [], []];
  liveFrames = 0;
  private freeSlots: number[] = [];
  private slots = 0;
  ph = 0;

  alloc(k: number): void {
    const s = this.freeSlots.length > 0 ? this.freeSlots.pop()! : this.slots++;
    this.push(k, s);
    this.live[k].push(s);
    this.liveFrames += FRAMES[k];
  }

  /** Free live slot i of kind k (swap-remove). */
  free(k: number, i: number): void {
    const l = this.live[k];
    const s = l[i];
    l[i] = l[l.length - 1];
    l.pop();
    this.push(-1, s);
    this.freeSlots.push(s);
    this.liveFrames -= FRAMES[k];
  }

  /** A 1 GiB page used briefly: allocated and freed at once (so designs hold comparable memory after). */
  brief1G(): void {
    this.alloc(2);
    this.free(2, this.live[2].length - 1);
  }

  freeRandom(rng: Rng): void {
    const n = this.live[0].length + this.live[1].length + this.live[2].length;
    if (n === 0) return;
    let i = rng.below(n);
    for (let k = 0; k < 3; k++) {
      if (i < this.live[k].length) {
        this.free(k, i);
        return;
      }
      i -= this.live[k].length;
    }
  }

  private push(k: number, s: number): void {
    this.kind.push(k);
    this.slot.push(s);
    this.phase.push(this.ph);
  }

  build(): LargePageTrace {
    return {
      kind: Int8Array.from(this.kind),
      slot: Int32Array.from(this.slot),
      phase: Uint8Array.from(this.phase),
      slots: this.slots,
    };
  }
}

export function makeLargePageTrace(o: LargePageTraceOptions): LargePageTrace {
  const rng = new Rng(o.seed ?? 8);
  const ops = o.ops ?? 40_000;
  const t = new TraceBuilder();
  // 0: mixed, around half of RAM requested.
  for (let i = 0; i < ops; i++) {
    if (t.liveFrames < o.frames * 0.5 && (t.liveFrames < o.frames * 0.3 || rng.below(2) === 0)) {
      const x = rng.below(1000);
      if (x < 995) t.alloc(x < 940 ? 0 : 1);
      else t.brief1G();
    } else t.freeRandom(rng);
  }
  // 1: fragment - 4 KiB up to 85 %, then 70 % of the 4 KiB blocks freed at random.
  t.ph = 1;
  while (t.liveFrames < o.frames * 0.85) t.alloc(0);
  for (let n = Math.floor(t.live[0].length * 0.7); n > 0; n--) t.free(0, rng.below(t.live[0].length));
  // 2: large requests while the 4 KiB survivors go, one by one.
  t.ph = 2;
  for (let i = 0; i < ops; i++) {
    const x = rng.below(100);
    if (x < 40 && t.live[0].length > 0) t.free(0, rng.below(t.live[0].length));
    else if (x < 70) t.alloc(1);
    else if (x < 71) t.brief1G();
    else if (x < 90 && t.live[1].length > 0) t.free(1, rng.below(t.live[1].length));
    else t.alloc(0);
  }
  // 3: recover - free everything, take every 1 GiB, then every 2 MiB page, then free them.
  t.ph = 3;
  for (let k = 0; k < 3; k++) while (t.live[k].length > 0) t.free(k, t.live[k].length - 1);
  for (let i = 0; i < Math.floor(o.frames / FRAMES[2]) + 1; i++) t.alloc(2);
  for (let i = 0; i < Math.floor(o.frames / FRAMES[1]) + 1; i++) t.alloc(1);
  for (let k = 2; k >= 0; k--) while (t.live[k].length > 0) t.free(k, t.live[k].length - 1);
  return t.build();
}

export interface PhaseResult {
  phase: string;
  ops: number;
  /** Requests and successes per kind: [4 KiB, 2 MiB, 1 GiB]. */
  requests: number[];
  successes: number[];
  /** Memory references (32-bit reads + writes through the port) per operation. */
  refsPerOp: number;
  /** Host nanoseconds per operation (not deterministic). */
  nsPerOp: number;
}

export interface LargePageResult {
  design: string;
  metadataBytes: number;
  transientBytesEnd: number;
  managedFrames: number;
  phases: PhaseResult[];
  /** Design event counters, when it has them (large-stacks: splits, compactions and their references). */
  events: Record<string, number>;
}

/** Replay a trace on a freshly brought-up design. Everything but `nsPerOp` is deterministic. */
export function runLargePageWorkload(
  design: PmmDesign,
  layout: PmmLayout,
  trace: LargePageTrace,
  reserved?: FrameRange[],
): LargePageResult {
  const up = bringUp(design, layout, { reserved });
  const a = up.alloc;
  const boot = a.stats();
  const phases = PHASES.map((p) => ({
    phase: p,
    ops: 0,
    requests: [0, 0, 0],
    successes: [0, 0, 0],
    refsPerOp: 0,
    nsPerOp: 0,
  }));
  const pfn = new Float64Array(trace.slots).fill(-1);
  const ord = new Int8Array(trace.slots);
  for (let i = 0; i < trace.kind.length; ) {
    const ph = trace.phase[i];
    let j = i;
    while (j < trace.kind.length && trace.phase[j] === ph) j++;
    replayRange(a, trace, i, j, pfn, ord, phases[ph], up.counters);
    i = j;
  }
  const events: Record<string, number> = {};
  for (const k of ["splits2M", "splits1G", "compactions4K", "compactions2M", "reformed2M", "reformed1G"]) {
    const v = (a as unknown as Record<string, unknown>)[k];
    if (typeof v === "number") events[k] = v;
  }
  const cr = (a as unknown as Record<string, unknown>).compactRefs;
  if (typeof cr === "number") events.compactRefs = cr;
  a.check();
  return {
    design: design.name,
    metadataBytes: boot.metadataBytes,
    transientBytesEnd: a.stats().transientBytes,
    managedFrames: boot.managedFrames,
    phases,
    events,
  };
}

function replayRange(
  a: FrameAllocator,
  t: LargePageTrace,
  from: number,
  to: number,
  pfn: Float64Array,
  ord: Int8Array,
  r: PhaseResult,
  c: { memReads: number; memWrites: number },
): void {
  const refs0 = c.memReads + c.memWrites;
  const t0 = process.hrtime.bigint();
  for (let i = from; i < to; i++) {
    const k = t.kind[i];
    const s = t.slot[i];
    if (k >= 0) {
      const p = a.alloc(ORDERS[k]);
      pfn[s] = p;
      ord[s] = ORDERS[k];
      r.requests[k]++;
      if (p >= 0) r.successes[k]++;
    } else if (pfn[s] >= 0) {
      a.free(pfn[s], ord[s]);
      pfn[s] = -1;
    }
  }
  const ns = Number(process.hrtime.bigint() - t0);
  r.ops = to - from;
  r.refsPerOp = (c.memReads + c.memWrites - refs0) / Math.max(1, r.ops);
  r.nsPerOp = ns / Math.max(1, r.ops);
}
