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
import { parseTraceLine, readLines } from "./ftrace.ts";
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
    const pages = new Map<number, number>(); // trace pfn -> sim pfn * 32 + order
    const objs = new Map<string, number>(); // trace ptr -> KPtr
    const ops: Record<string, number> = { alloc: 0, free: 0, kmalloc: 0, kfree: 0 };
    const failed: Record<string, number> = {};
    const skipped: Record<string, number> = {};
    const notes: string[] = [];
    let lines = 0;
    let nullKfree = 0;
    let heldFrames = 0;
    let done = 0;
    const skip = (line: number, reason: string, text?: string) => {
      bump(skipped, reason);
      if (notes.length < MAX_NOTES) notes.push(`line ${line}: ${reason}${text ? `: ${text}` : ""}`);
    };
    for (const [text, lineNo] of readLines(opts.trace)) {
      lines++;
      const ev = parseTraceLine(text, lineNo);
      if (ev === null) continue;
      if (ev.kind === "problem") {
        skip(ev.line, ev.reason, ev.text);
        continue;
      }
      const cpu = ev.cpu % ncpu;
      switch (ev.kind) {
        case "page_alloc": {
          if (pages.has(ev.pfn)) {
            skip(ev.line, "pfn allocated twice without a free in between (lost events?)");
            continue;
          }
          const cons: AllocConstraints = { mobility: MOBILITY[ev.migratetype] ?? "unmovable" };
          ops.alloc++;
          const p = k.run(cpu, () => a.alloc(ev.order, cons));
          if (p < 0) bump(failed, `order${ev.order}`);
          else {
            pages.set(ev.pfn, p * 32 + ev.order);
            heldFrames += 2 ** ev.order;
          }
          break;
        }
        case "page_free": {
          const v = pages.get(ev.pfn);
          if (v === undefined) {
            skip(ev.line, "mm_page_free of a block the trace never allocated (allocated before the capture)");
            continue;
          }
          const order = v % 32;
          if (order !== ev.order)
            skip(ev.line, `order ${ev.order} freed, order ${order} allocated: freed as allocated`);
          ops.free++;
          k.run(cpu, () => a.free(Math.floor(v / 32), order));
          pages.delete(ev.pfn);
          heldFrames -= 2 ** order;
          break;
        }
        case "kmalloc": {
          if (objs.has(ev.ptr)) {
            skip(ev.line, "ptr allocated twice without a kfree in between (lost events?)");
            continue;
          }
          if (ev.bytesReq === 0) {
            skip(ev.line, "kmalloc(0) returns ZERO_SIZE_PTR: nothing to allocate");
            continue;
          }
          ops.kmalloc++;
          const p = k.run(cpu, () => k.heap.kmalloc(ev.bytesReq));
          if (p === 0) bump(failed, "kmalloc");
          else objs.set(ev.ptr, p);
          break;
        }
        case "kfree": {
          if (ev.ptr === "0") {
            nullKfree++;
            continue;
          }
          const p = objs.get(ev.ptr);
          if (p === undefined) {
            skip(ev.line, "kfree of an object the trace never allocated (allocated before the capture)");
            continue;
          }
          ops.kfree++;
          k.run(cpu, () => k.heap.kfree(p));
          objs.delete(ev.ptr);
          break;
        }
      }
      done++;
      if (done % every === 0) sample({ op: done, largestOrder: probeLargestOrder(c, a), heldFrames });
    }
    sample({ op: done, largestOrder: probeLargestOrder(c, a), heldFrames });
    let skippedLines = 0;
    for (const v of Object.values(skipped)) skippedLines += v;
    const info: Record<string, number | string> = {
      traceLines: lines,
      eventsReplayed: done,
      linesSkipped: skippedLines,
      nullKfree,
      liveBlocksAtEnd: pages.size,
      liveObjectsAtEnd: objs.size,
    };
    for (const [reason, n] of Object.entries(skipped)) notes.push(`${n} line(s): ${reason}`);
    if (opts.drain) {
      for (const v of pages.values()) {
        ops.free++;
        a.free(Math.floor(v / 32), v % 32);
      }
      for (const p of objs.values()) {
        ops.kfree++;
        k.heap.kfree(p);
      }
    }
    return { ops, failed, info, notes };
  },
};
