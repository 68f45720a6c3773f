/**
 * Kernel-heap churn: kmalloc/kfree of a documented synthetic size mix, with an occasional
 * vmalloc/vfree, from random CPUs (an object is often freed on another CPU than the one that
 * allocated it, as with RCU callbacks and network buffers).
 *
 * The size distribution is SYNTHETIC, not measured: it follows the shape every published kmalloc
 * profile shares (most requests are small, the count falls off with size, a thin tail of page-sized
 * and larger buffers) with round weights, so that it is easy to reason about and to reproduce:
 *
 *     bytes           weight   stands for
 *     8 - 32            30     list nodes, small strings, refcounted handles (kmalloc-8..32)
 *     33 - 96           25     small structs and names (kmalloc-64/96)
 *     97 - 256          20     file/socket-sized structs (kmalloc-128/192/256)
 *     257 - 1024        15     buffers, pipe and tty structures (kmalloc-512/1k)
 *     1025 - 4096        7     page-sized scratch buffers (seq_file, kmalloc-2k/4k)
 *     4097 - 8192        2     the largest slab class (kmalloc-8k)
 *     vmalloc 16-256 KiB 1     big tables and buffers (vmalloc, a guard page after, unmapped on vfree)
 *
 * Sizes are uniform within a row, rounded up to 8 bytes. For a real distribution, capture one with
 * ftrace on your machine and replay it (`--workload ftrace --trace FILE`, see ftrace.ts).
 *
 * The live set stays between 2048 and 8192 allocations (below: allocate; above: free; between: a coin);
 * a free picks a random live allocation. Every new object gets one 32-bit store (its first word), as
 * constructors do. One operation is one kmalloc, kfree, vmalloc or vfree.
 */
import type { Rng } from "../../machine/rng.ts";
import {
  bump,
  checkOps,
  type LabKernel,
  probeLargestOrder,
  type SamplePoint,
  sampleEvery,
  uncounted,
  type Workload,
  type WorkloadOptions,
  type WorkloadResult,
} from "./interface.ts";

/** [low, high, weight]; high < 0 marks vmalloc. */
export const HEAP_SIZE_MIX: readonly (readonly [number, number, number])[] = [
  [8, 32, 30],
  [33, 96, 25],
  [97, 256, 20],
  [257, 1024, 15],
  [1025, 4096, 7],
  [4097, 8192, 2],
  [16384, -262144, 1],
];
const MIX_WEIGHT = HEAP_SIZE_MIX.reduce((s, r) => s + r[2], 0);

/** A request: bytes (positive: kmalloc, negative: vmalloc of -bytes). */
export function pickHeapSize(rng: Rng): number {
  let x = rng.below(MIX_WEIGHT);
  for (const [lo, hi, w] of HEAP_SIZE_MIX) {
    if (x < w) {
      const top = Math.abs(hi);
      const n = lo + rng.below(top - lo + 1);
      const rounded = Math.ceil(n / 8) * 8;
      return hi < 0 ? -Math.ceil(n / 4096) * 4096 : rounded;
    }
    x -= w;
  }
  return 64;
}

/** The churn's state: the live allocations (pointer, vmalloc flag; unordered) and what it counted. */
interface Churn {
  k: LabKernel;
  rng: Rng;
  ncpu: number;
  cap: number;
  ptr: Float64Array;
  isV: Uint8Array;
  /** Live allocations: ptr[0..n), isV[0..n). */
  n: number;
  ops: Record<string, number>;
  failed: Record<string, number>;
  liveBytes: number;
  peakBytes: number;
  sizes: Map<number, number>;
  kfreeIpis: number;
  vfreeIpis: number;
}

/** Free live allocation j on a random CPU, counting the IPIs its kfree / vfree sent; the last takes its place. */
function freeAt(st: Churn, j: number): void {
  const { k, ptr, isV } = st;
  const heap = k.heap;
  const c = k.counters;
  const p = ptr[j];
  const cpu = st.rng.below(st.ncpu);
  const before = c.ipis;
  if (isV[j]) {
    st.ops.vfree++;
    k.run(cpu, () => heap.vfree(p));
    st.vfreeIpis += c.ipis - before;
  } else {
    st.ops.kfree++;
    k.run(cpu, () => heap.kfree(p));
    st.kfreeIpis += c.ipis - before;
  }
  st.liveBytes -= st.sizes.get(p) ?? 0;
  st.sizes.delete(p);
  st.n--;
  ptr[j] = ptr[st.n];
  isV[j] = isV[st.n];
}

/** Add a live allocation (the arrays double when full). */
function keep(st: Churn, p: number, v: boolean, bytes: number): void {
  if (st.n === st.cap) {
    st.cap *= 2;
    const np = new Float64Array(st.cap);
    np.set(st.ptr);
    st.ptr = np;
    const nv = new Uint8Array(st.cap);
    nv.set(st.isV);
    st.isV = nv;
  }
  st.ptr[st.n] = p;
  st.isV[st.n] = v ? 1 : 0;
  st.n++;
  st.sizes.set(p, bytes);
  st.liveBytes += bytes;
  if (st.liveBytes > st.peakBytes) st.peakBytes = st.liveBytes;
}

/** Operation i's allocation: a size from the mix, kmalloc or vmalloc on a random CPU, its first word stored. */
function allocOne(st: Churn, i: number): void {
  const { k, rng } = st;
  const heap = k.heap;
  const req = pickHeapSize(rng);
  const cpu = rng.below(st.ncpu);
  const v = req < 0;
  const bytes = Math.abs(req);
  if (v) st.ops.vmalloc++;
  else st.ops.kmalloc++;
  const p = k.run(cpu, () => {
    const q = v ? heap.vmalloc(bytes) : heap.kmalloc(bytes);
    if (q !== 0) heap.write32(q, 0, i >>> 0);
    return q;
  });
  if (p === 0) bump(st.failed, v ? "vmalloc" : "kmalloc");
  else keep(st, p, v, bytes);
}

export const heapChurn: Workload = {
  name: "heap-churn",
  defaultOps: 10_000,
  describe:
    "kmalloc/kfree of a synthetic size mix (8 B-8 KiB, most below 256 B) plus 1 in 100 vmalloc/vfree (16-256 KiB), from random CPUs, 2048-8192 live",
  run(k: LabKernel, rng: Rng, opts: WorkloadOptions, sample: (p: SamplePoint) => void): WorkloadResult {
    checkOps(this.name, opts);
    const heap = k.heap;
    const every = sampleEvery(opts);
    const cap = 8192 + 16;
    const st: Churn = {
      k,
      rng,
      ncpu: k.cpus.length,
      cap,
      ptr: new Float64Array(cap),
      isV: new Uint8Array(cap),
      n: 0,
      ops: { kmalloc: 0, kfree: 0, vmalloc: 0, vfree: 0 },
      failed: {},
      liveBytes: 0,
      peakBytes: 0,
      sizes: new Map(),
      kfreeIpis: 0,
      vfreeIpis: 0,
    };
    const c = k.counters;
    for (let i = 0; i < opts.ops; i++) {
      const doAlloc = st.n < 2048 || (st.n < 8192 && rng.below(2) === 0);
      if (doAlloc) allocOne(st, i);
      else freeAt(st, rng.below(st.n));
      if ((i + 1) % every === 0)
        sample({
          op: i + 1,
          largestOrder: probeLargestOrder(k.counters, k.pmm),
          heldFrames: Math.ceil(st.liveBytes / 4096),
        });
    }
    const info: Record<string, number> = {
      liveAtEnd: st.n,
      liveBytesAtEnd: st.liveBytes,
      peakLiveBytes: st.peakBytes,
    };
    if (opts.drain) while (st.n > 0) freeAt(st, st.n - 1);
    // IPIs sent while a kfree / vfree ran (attributed exactly: counters read around each call)
    info.kfreeIpis = st.kfreeIpis;
    info.vfreeIpis = st.vfreeIpis;
    // vfree'd pages whose TLB flush the lazy purge still defers (their IPIs are not sent yet)
    info.lazyPagesAtEnd = uncounted(c, () => heap.stats().lazyPages);
    return { ops: st.ops, failed: st.failed, info, notes: [] };
  },
};
