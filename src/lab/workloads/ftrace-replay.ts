/**
 * Replay of a Linux ftrace capture of kmem events (`--trace FILE`; formats and capture recipe in
 * ftrace.ts): every `mm_page_alloc` / `mm_page_free` goes to the PMM, every `kmalloc` / `kfree` to the
 * kernel heap, on the CPU the trace names (modulo the simulated CPU count), in trace order.
 *
 * The trace's frame numbers and pointers are names, not addresses: the replay maps each traced
 * allocation (pfn, or hashed pointer) to the simulated one it made, and frees through that map. A
 * line it cannot use is counted by reason and the first 20 are reported with their line numbers:
 * frees of blocks allocated before the capture began, allocations that failed in the traced kernel,
 * events other than the four replayed, lost-event markers, malformed lines. A NULL kfree is legal
 * and counted apart.
 *
 * The whole trace is replayed, streamed line by line (memory follows the live allocations, not the
 * trace length); `ops` only sets the sampling cadence. One operation is one replayed event.
 */
import { fail } from "../../errors.ts";
import type { AllocConstraints, Mobility } from "../../kernel/pmm/interface.ts";
import type { Rng } from "../../machine/rng.ts";
import { parseTraceLine, readLines, type TraceEvent } from "./ftrace.ts";
import {
  bump,
  checkOps,
  type LabKernel,
  probeLargestOrder,
  type SamplePoint,
  sampleEvery,
  type Workload,
  type WorkloadOptions,
  type WorkloadResult,
} from "./interface.ts";

const MOBILITY: Mobility[] = ["unmovable", "movable", "reclaimable"];
const MAX_NOTES = 20;

/** The replay's state: trace ids mapped to simulated allocations, and what it counted. */
interface Replay {
  k: LabKernel;
  pages: Map<number, number>; // trace pfn -> sim pfn * 32 + order
  objs: Map<string, number>; // trace ptr -> KPtr
  ops: Record<string, number>;
  failed: Record<string, number>;
  skipped: Record<string, number>;
  notes: string[];
  nullKfree: number;
  heldFrames: number;
}

/** Count a line the replay cannot use by reason; the first MAX_NOTES are noted with their line number. */
function skip(st: Replay, line: number, reason: string, text?: string): void {
  bump(st.skipped, reason);
  if (st.notes.length < MAX_NOTES) st.notes.push(`line ${line}: ${reason}${text ? `: ${text}` : ""}`);
}

type Ev<K extends TraceEvent["kind"]> = Extract<TraceEvent, { kind: K }>;

/** mm_page_alloc: allocate the block from the PMM. Returns false when the line is skipped. */
function replayPageAlloc(st: Replay, ev: Ev<"page_alloc">, cpu: number): boolean {
  const a = st.k.pmm;
  if (st.pages.has(ev.pfn)) {
    skip(st, ev.line, "pfn allocated twice without a free in between (lost events?)");
    return false;
  }
  const cons: AllocConstraints = { mobility: MOBILITY[ev.migratetype] ?? "unmovable" };
  st.ops.alloc++;
  const p = st.k.run(cpu, () => a.alloc(ev.order, cons));
  if (p < 0) bump(st.failed, `order${ev.order}`);
  else {
    st.pages.set(ev.pfn, p * 32 + ev.order);
    st.heldFrames += 2 ** ev.order;
  }
  return true;
}

/** mm_page_free: free the block the trace's pfn was mapped to, at its allocated order. */
function replayPageFree(st: Replay, ev: Ev<"page_free">, cpu: number): boolean {
  const a = st.k.pmm;
  const v = st.pages.get(ev.pfn);
  if (v === undefined) {
    skip(st, ev.line, "mm_page_free of a block the trace never allocated (allocated before the capture)");
    return false;
  }
  const order = v % 32;
  if (order !== ev.order)
    skip(st, ev.line, `order ${ev.order} freed, order ${order} allocated: freed as allocated`);
  st.ops.free++;
  st.k.run(cpu, () => a.free(Math.floor(v / 32), order));
  st.pages.delete(ev.pfn);
  st.heldFrames -= 2 ** order;
  return true;
}

/** kmalloc: allocate from the kernel heap (kmalloc(0) is skipped). */
function replayKmalloc(st: Replay, ev: Ev<"kmalloc">, cpu: number): boolean {
  const k = st.k;
  if (st.objs.has(ev.ptr)) {
    skip(st, ev.line, "ptr allocated twice without a kfree in between (lost events?)");
    return false;
  }
  if (ev.bytesReq === 0) {
    skip(st, ev.line, "kmalloc(0) returns ZERO_SIZE_PTR: nothing to allocate");
    return false;
  }
  st.ops.kmalloc++;
  const p = k.run(cpu, () => k.heap.kmalloc(ev.bytesReq));
  if (p === 0) bump(st.failed, "kmalloc");
  else st.objs.set(ev.ptr, p);
  return true;
}

/** kfree: free the object the trace's pointer was mapped to (a NULL kfree is counted apart). */
function replayKfree(st: Replay, ev: Ev<"kfree">, cpu: number): boolean {
  const k = st.k;
  if (ev.ptr === "0") {
    st.nullKfree++;
    return false;
  }
  const p = st.objs.get(ev.ptr);
  if (p === undefined) {
    skip(st, ev.line, "kfree of an object the trace never allocated (allocated before the capture)");
    return false;
  }
  st.ops.kfree++;
  k.run(cpu, () => k.heap.kfree(p));
  st.objs.delete(ev.ptr);
  return true;
}

/** Replay one event on its CPU. Returns whether it counts as a replayed event. */
function replayEvent(st: Replay, ev: TraceEvent, cpu: number): boolean {
  switch (ev.kind) {
    case "page_alloc":
      return replayPageAlloc(st, ev, cpu);
    case "page_free":
      return replayPageFree(st, ev, cpu);
    case "kmalloc":
      return replayKmalloc(st, ev, cpu);
    case "kfree":
      return replayKfree(st, ev, cpu);
  }
  return true;
}

/** With --drain: free every block and object still live at the end of the trace. */
function drainLive(st: Replay): void {
  const k = st.k;
  for (const v of st.pages.values()) {
    st.ops.free++;
    k.pmm.free(Math.floor(v / 32), v % 32);
  }
  for (const p of st.objs.values()) {
    st.ops.kfree++;
    k.heap.kfree(p);
  }
}

export const ftraceReplay: Workload = {
  name: "ftrace",
  defaultOps: 1_000,
  describe:
    "replay of a Linux ftrace capture (mm_page_alloc, mm_page_free, kmalloc, kfree) from --trace FILE, trace ids mapped to simulated allocations",
  run(k: LabKernel, _rng: Rng, opts: WorkloadOptions, sample: (p: SamplePoint) => void): WorkloadResult {
    checkOps(this.name, opts);
    if (opts.trace === undefined)
      fail(
        "BAD_OPTION",
        "the ftrace workload needs a trace: --trace FILE (a trace_pipe capture, see --help)",
      );
    const a = k.pmm;
    const c = k.counters;
    const ncpu = k.cpus.length;
    const every = sampleEvery(opts);
    const st: Replay = {
      k,
      pages: new Map(),
      objs: new Map(),
      ops: { alloc: 0, free: 0, kmalloc: 0, kfree: 0 },
      failed: {},
      skipped: {},
      notes: [],
      nullKfree: 0,
      heldFrames: 0,
    };
    let lines = 0;
    let done = 0;
    for (const [text, lineNo] of readLines(opts.trace)) {
      lines++;
      const ev = parseTraceLine(text, lineNo);
      if (ev === null) continue;
      if (ev.kind === "problem") {
        skip(st, ev.line, ev.reason, ev.text);
        continue;
      }
      if (!replayEvent(st, ev, ev.cpu % ncpu)) continue;
      done++;
      if (done % every === 0)
        sample({ op: done, largestOrder: probeLargestOrder(c, a), heldFrames: st.heldFrames });
    }
    sample({ op: done, largestOrder: probeLargestOrder(c, a), heldFrames: st.heldFrames });
    let skippedLines = 0;
    for (const v of Object.values(st.skipped)) skippedLines += v;
    const info: Record<string, number | string> = {
      traceLines: lines,
      eventsReplayed: done,
      linesSkipped: skippedLines,
      nullKfree: st.nullKfree,
      liveBlocksAtEnd: st.pages.size,
      liveObjectsAtEnd: st.objs.size,
    };
    for (const [reason, n] of Object.entries(st.skipped)) st.notes.push(`${n} line(s): ${reason}`);
    if (opts.drain) drainLive(st);
    return { ops: st.ops, failed: st.failed, info, notes: st.notes };
  },
};
