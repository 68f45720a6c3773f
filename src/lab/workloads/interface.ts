/**
 * The one interface every workload implements, and the small helpers they share.
 *
 * A workload drives a booted kernel with a seeded, deterministic stream of requests (same kernel, same
 * seed, same options: same counters), counts what it did by kind (`ops`), and reports a bounded time
 * series through `sample` (a point every `sampleEvery` operations). It never keeps per-operation logs:
 * only the blocks it currently holds (typed arrays) and its counts.
 *
 * Its simulated cost is what the kernel's `Counters` gained while it ran; the caller (src/lab/compare.ts)
 * takes that difference. Probes made only to sample (the largest order that would succeed now) are
 * wrapped in `uncounted` so they cost nothing.
 */
import { fail } from "../../errors.ts";
import type { Counters } from "../../machine/counters.ts";
import type { Rng } from "../../machine/rng.ts";
import type { Kernel } from "../../kernel/api.ts";
import type { FrameAllocator } from "../../kernel/pmm/interface.ts";

/** What a workload runs on: the running kernel from `startKernel` (src/kernel/kernel.ts). */
export type LabKernel = Kernel;

export interface WorkloadOptions {
  /** Operations to perform (each workload says what one operation is). */
  ops: number;
  /** Take a sample every this many operations (default: ops / 64, so about 64 points per run). */
  sampleEvery?: number;
  /** Free everything still held at the end (counted as operations). Tests use it to check conservation. */
  drain?: boolean;
  /** The ftrace workload: path of a trace_pipe capture. */
  trace?: string;
}

/** One point of a run's time series. */
export interface SamplePoint {
  /** Operations done so far. */
  op: number;
  /** Largest order (4 KiB x 2^order) that would succeed now, -1 when nothing would. */
  largestOrder: number;
  /** Frames the workload holds (page cache, heap slabs, user pages...). */
  heldFrames: number;
}

export interface WorkloadResult {
  /** Operations done, by kind (alloc, free, kmalloc, kfree, vmalloc, vfree, fork, exit, send, ...). */
  ops: Record<string, number>;
  /** Requests the kernel refused (out of memory, no contiguous block): a normal answer, counted. */
  failed: Record<string, number>;
  /** Workload-specific figures (success rates, trace lines used and skipped...). */
  info: Record<string, number | string>;
  /** Problems worth telling the user (unusable trace lines, with line numbers), bounded. */
  notes: string[];
}

export interface Workload {
  /** CLI name (`--workload`). */
  readonly name: string;
  /** One sentence: what it does and what it shows. */
  readonly describe: string;
  /** Boot options this workload needs (e.g. a smaller `mem` to keep a fill-everything run quick). */
  readonly bootMem?: number;
  /**
   * Operations when `--ops` is not given: sized so that one run costs a fraction of a second on the
   * default map (a fork copies every page of a process; a page-churn step is one alloc or free).
   */
  readonly defaultOps: number;
  run(k: LabKernel, rng: Rng, opts: WorkloadOptions, sample: (p: SamplePoint) => void): WorkloadResult;
}

/** Total operations of a result. */
export function totalOps(r: WorkloadResult): number {
  let n = 0;
  for (const v of Object.values(r.ops)) n += v;
  return n;
}

/**
 * Run `fn` without charging the counters: every numeric field is restored afterwards. For sampling
 * probes only (a probe that changes state still changes it; only its cost is forgotten).
 */
export function uncounted<T>(c: Counters, fn: () => T): T {
  const saved = c.snapshot();
  try {
    return fn();
  } finally {
    const rec = c as unknown as Record<string, number>;
    for (const k of Object.keys(saved)) rec[k] = saved[k];
  }
}

/** Largest order that succeeds now (the block is freed at once), -1 when even order 0 fails. Uncounted. */
export function probeLargestOrder(c: Counters, a: FrameAllocator): number {
  return uncounted(c, () => {
    for (let k = Math.min(a.maxOrder ?? 10, 18); k >= 0; k--) {
      const p = a.alloc(k);
      if (p >= 0) {
        a.free(p, k);
        return k;
      }
    }
    return -1;
  });
}

/**
 * Blocks a workload holds, in typed arrays (no per-block objects): first frame and order, removed by
 * swapping with the last, so a random victim costs O(1).
 */
export class HeldBlocks {
  pfn = new Int32Array(1024);
  order = new Uint8Array(1024);
  /** Extra per-block tag (mobility, owner...). */
  tag = new Uint8Array(1024);
  n = 0;
  frames = 0;

  push(pfn: number, order: number, tag = 0): void {
    if (this.n === this.pfn.length) {
      const p = new Int32Array(this.n * 2);
      p.set(this.pfn);
      this.pfn = p;
      const o = new Uint8Array(this.n * 2);
      o.set(this.order);
      this.order = o;
      const t = new Uint8Array(this.n * 2);
      t.set(this.tag);
      this.tag = t;
    }
    this.pfn[this.n] = pfn;
    this.order[this.n] = order;
    this.tag[this.n] = tag;
    this.n++;
    this.frames += 2 ** order;
  }

  /** Remove block i (the last block takes its place). */
  remove(i: number): void {
    this.frames -= 2 ** this.order[i];
    const last = --this.n;
    this.pfn[i] = this.pfn[last];
    this.order[i] = this.order[last];
    this.tag[i] = this.tag[last];
  }
}

/** Sampling cadence: `opts.sampleEvery`, else about 64 points over the run. */
export function sampleEvery(opts: WorkloadOptions): number {
  const s = opts.sampleEvery ?? Math.ceil(opts.ops / 64);
  return Math.max(1, s);
}

export function checkOps(name: string, opts: WorkloadOptions): void {
  if (!Number.isInteger(opts.ops) || opts.ops < 1 || opts.ops > 1e9)
    fail("BAD_OPTION", `workload ${name}: --ops must be an integer from 1 to 1e9 (got ${opts.ops})`);
}

/** Add `n` to counter `k` of a record. */
export function bump(r: Record<string, number>, k: string, n = 1): void {
  r[k] = (r[k] ?? 0) + n;
}
