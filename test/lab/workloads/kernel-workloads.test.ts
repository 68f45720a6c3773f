/** The workloads that need the kernel heap and processes (heap-churn, ipc, fork-exit). */
import { describe, expect, it } from "vitest";
import { forkExit } from "../../../src/lab/workloads/fork-exit.ts";
import { HEAP_SIZE_MIX, heapChurn, pickHeapSize } from "../../../src/lab/workloads/heap-churn.ts";
import { totalOps } from "../../../src/lab/workloads/interface.ts";
import { ipc } from "../../../src/lab/workloads/ipc.ts";
import { Rng } from "../../../src/machine/rng.ts";
import { runWorkload } from "./helpers.ts";

describe("heap-churn size mix", () => {
  it("draws every row of the documented mix with about its weight", () => {
    const rng = new Rng(3);
    const counts = HEAP_SIZE_MIX.map(() => 0);
    const N = 100_000;
    for (let i = 0; i < N; i++) {
      const s = pickHeapSize(rng);
      const row = HEAP_SIZE_MIX.findIndex(([lo, hi]) =>
        hi < 0 ? s < 0 && -s >= lo && -s <= -hi + 4095 : s >= lo && s <= hi + 7,
      );
      expect(row, String(s)).toBeGreaterThanOrEqual(0);
      counts[row]++;
    }
    const total = HEAP_SIZE_MIX.reduce((a, r) => a + r[2], 0);
    HEAP_SIZE_MIX.forEach(([, , w], i) => {
      expect(Math.abs(counts[i] / N - w / total)).toBeLessThan(0.01);
    });
  });
});

describe("heap-churn", () => {
  it("is deterministic, and the heap is consistent and empty after a drain", () => {
    const a = runWorkload(heapChurn, { ops: 3000 });
    const b = runWorkload(heapChurn, { ops: 3000 });
    expect(a.counters).toEqual(b.counters);
    expect(a.res).toEqual(b.res);
    expect(totalOps(a.res)).toBe(3000);
    const d = runWorkload(heapChurn, { ops: 3000, drain: true }, { kmap: "quickmap" });
    d.k.check();
    const st = d.k.heap.stats();
    expect(st.largeAllocs + st.vmallocAreas).toBe(0);
  });

  it("a kfree that discards a slab sends one IPI to every other CPU if the slab was mapped, none if direct", () => {
    // With the direct map every slab is a direct-mapped PMM block: discarding one changes no page
    // table, so no kfree has anything to shoot down, however many CPUs there are.
    const dm = runWorkload(heapChurn, { ops: 3000, drain: true }, { cpus: 4 });
    expect(dm.counters.slabPagesFreed).toBeGreaterThan(0);
    expect(dm.counters.kheapUnmaps).toBe(0);
    expect(dm.res.info.kfreeIpis).toBe(0);
    // quickmap has no direct map, so every slab is mapped page by page in the kernel heap region. The
    // drain empties every slab; each empty slab past min_partial is discarded, its pages unmapped in one
    // batch: one flush_tlb_kernel_range round naming exactly those pages, which interrupts every online
    // CPU but the sender (kernel mappings: lazy or not). vfree's flushes wait for the lazy purge, which
    // stays below its threshold here. So kfree sends (cpus - 1) IPIs per discarded slab, and nothing
    // else sends any.
    for (const cpus of [2, 4]) {
      const d = runWorkload(heapChurn, { ops: 3000, drain: true }, { kmap: "quickmap", cpus });
      d.k.check();
      const c = d.counters;
      const i = d.res.info;
      const at = `${cpus} CPUs`;
      expect(c.slabPagesFreed, at).toBe(dm.counters.slabPagesFreed); // the same slabs go
      expect(c.kheapUnmaps, at).toBe(c.slabPagesFreed);
      expect(c.shootdownPages, at).toBe(c.slabPagesFreed);
      expect(c.shootdowns, at).toBeGreaterThan(0);
      expect(c.lazyPurges, at).toBe(0);
      expect(i.lazyPagesAtEnd, at).toBeGreaterThan(0);
      expect(i.vfreeIpis, at).toBe(0);
      expect(i.kfreeIpis, at).toBe((cpus - 1) * c.shootdowns);
      expect(c.ipis, at).toBe(i.kfreeIpis);
    }
  });
});

describe("ipc", () => {
  it("is deterministic and attributes IPIs to kfree, vfree and munmap", () => {
    const a = runWorkload(ipc, { ops: 400 });
    const b = runWorkload(ipc, { ops: 400 });
    expect(a.counters).toEqual(b.counters);
    expect(a.res).toEqual(b.res);
    expect(a.res.ops.message).toBe(400);
    const i = a.res.info as Record<string, number>;
    expect(i.kfree + i.vfree).toBe(400 - Object.values(a.res.failed).reduce((s, v) => s + v, 0));
    expect(i.kfreeIpis + i.vfreeIpis + i.munmapIpis).toBeLessThanOrEqual(a.counters.ipis);
    const d = runWorkload(ipc, { ops: 200, drain: true });
    d.k.check();
  });
});

describe("fork-exit", () => {
  it("is deterministic and gives every frame back when drained", () => {
    const a = runWorkload(forkExit, { ops: 300 });
    const b = runWorkload(forkExit, { ops: 300 });
    expect(a.counters).toEqual(b.counters);
    expect(a.res).toEqual(b.res);
    expect(a.res.ops.fork).toBeGreaterThan(10);
    const d = runWorkload(forkExit, { ops: 300, drain: true });
    d.k.check();
    expect(d.k.processes.list()).toEqual([]);
  });
});
