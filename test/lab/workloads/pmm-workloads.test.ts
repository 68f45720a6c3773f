import { describe, expect, it } from "vitest";
import { fileCache } from "../../../src/lab/workloads/file-cache.ts";
import { totalOps } from "../../../src/lab/workloads/interface.ts";
import { pageChurn } from "../../../src/lab/workloads/page-churn.ts";
import { runWorkload } from "./helpers.ts";

describe("page-churn", () => {
  it("is deterministic: same seed, same counters, operations and samples", () => {
    const a = runWorkload(pageChurn, { ops: 3000 });
    const b = runWorkload(pageChurn, { ops: 3000 });
    expect(a.counters).toEqual(b.counters);
    expect(a.res).toEqual(b.res);
    expect(a.series).toEqual(b.series);
    expect(totalOps(a.res)).toBe(3000);
    expect(a.series.length).toBeGreaterThanOrEqual(60);
    const c = runWorkload(pageChurn, { ops: 3000 }, {}, 8);
    expect(c.counters).not.toEqual(a.counters);
  });

  it("leaves the PMM consistent and gives every frame back when drained", () => {
    for (const pmm of ["buddy", "bitmap", "stack", "buddy-mt"]) {
      const r = runWorkload(pageChurn, { ops: 2000, drain: true }, { pmm });
      r.k.pmm.check();
      expect(r.k.pmm.stats().freeFrames, pmm).toBe(r.freeBefore);
      expect(r.res.ops.alloc + r.res.ops.free).toBeGreaterThan(2000);
    }
  });

  it("stacks refuse every order above 0 and say so", () => {
    const r = runWorkload(pageChurn, { ops: 2000 }, { pmm: "stack" });
    expect(r.res.failed.order0).toBeUndefined();
    expect(r.res.failed.order1).toBeGreaterThan(0);
    expect(r.res.info.refusedPercent).toBeGreaterThan(30);
    expect(r.series.every((p) => p.largestOrder === 0)).toBe(true);
  });

  it("sampling probes cost nothing", () => {
    const sparse = runWorkload(pageChurn, { ops: 2000, sampleEvery: 2000 });
    const dense = runWorkload(pageChurn, { ops: 2000, sampleEvery: 10 });
    expect(dense.series.length).toBe(200);
    expect(dense.counters.memReads + dense.counters.memWrites).toBe(
      sparse.counters.memReads + sparse.counters.memWrites,
    );
  });
});

describe("file-cache then high-order requests", () => {
  it("is deterministic and reports the high-order success rates", () => {
    const a = runWorkload(fileCache, { ops: 1000 });
    const b = runWorkload(fileCache, { ops: 1000 });
    expect(a.counters).toEqual(b.counters);
    expect(a.res).toEqual(b.res);
    const i = a.res.info;
    expect(i.filledFrames).toBeGreaterThan(0.85 * a.k.boot.freePagesAfterBoot);
    expect(i.evictedFrames).toBeGreaterThan(0);
    expect(i.order9Attempts).toBe(64);
    expect(i.order9SuccessPercent).toBe(Math.round((1000 * (i.order9Successes as number)) / 64) / 10);
    expect(a.series.at(-1)!.op).toBe(totalOps(a.res));
  });

  it("drains back to the boot state; the stack serves no order-9 block", () => {
    for (const pmm of ["buddy", "stack"]) {
      const r = runWorkload(fileCache, { ops: 1000, drain: true }, { pmm });
      r.k.pmm.check();
      expect(r.k.pmm.stats().freeFrames, pmm).toBe(r.freeBefore);
      if (pmm === "stack") expect(r.res.info.order9Successes).toBe(0);
    }
  });
});
