/**
 * The workloads that need the kernel heap and processes (heap-churn, ipc, fork-exit). They run once
 * src/kernel/heap and src/kernel/mm implement the API of src/kernel/api.ts; until then they skip.
 */
import { describe, expect, it } from "vitest";
import { forkExit } from "../../../src/lab/workloads/fork-exit.ts";
import { HEAP_SIZE_MIX, heapChurn, pickHeapSize } from "../../../src/lab/workloads/heap-churn.ts";
import { totalOps } from "../../../src/lab/workloads/interface.ts";
import { ipc } from "../../../src/lab/workloads/ipc.ts";
import { Rng } from "../../../src/machine/rng.ts";
import { implemented, runWorkload } from "./helpers.ts";

const HEAP = implemented("heap");
const PROCS = implemented("processes");

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

describe.skipIf(!HEAP)("heap-churn", () => {
  it("is deterministic, and the heap is consistent and empty after a drain", () => {
    const a = runWorkload(heapChurn, { ops: 3000 });
    const b = runWorkload(heapChurn, { ops: 3000 });
    expect(a.counters).toEqual(b.counters);
    expect(a.res).toEqual(b.res);
    expect(totalOps(a.res)).toBe(3000);
    const d = runWorkload(heapChurn, { ops: 3000, drain: true }, { kmap: "quickmap" });
    d.k.check();
    expect(d.res.info.kfreeIpis).toBeGreaterThanOrEqual(0);
    const st = d.k.heap.stats();
    expect(st.largeAllocs + st.vmallocAreas).toBe(0);
  });
});

describe.skipIf(!HEAP || !PROCS)("ipc", () => {
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

describe.skipIf(!PROCS)("fork-exit", () => {
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
