/**
 * `pagelab compare` boots each machine once: runs with the same boot options form a group, the group
 * boots a template and each run but the last works on a copy (src/lab/compare.ts, BootGroup). The rows
 * must be exactly those of booting per run.
 */
import { describe, expect, it } from "vitest";
import { bootKey, groupByBoot, planMatrix, type ResultRow, runGroup, runOne } from "../../src/lab/compare.ts";

/** A row without its host-time fields (the only ones a copy may change). */
function simulated(r: ResultRow): string {
  const { hostMs: _h, opsPerHostSecond: _o, ...rest } = r;
  return JSON.stringify(rest);
}

describe("boot groups", () => {
  const specs = planMatrix({
    maps: ["qemu:256M"],
    pmms: ["buddy", "stack"],
    kmaps: ["direct", "quickmap"],
    workloads: ["page-churn", "heap-churn", "ipc"],
    ops: 300,
    sweep: ["qemu:256M"],
  });

  it("groups the runs that boot the same machine, and nothing else", () => {
    const groups = groupByBoot(specs);
    // 2 designs x 2 mappings of 3 workloads each; the sweep runs boot with 1 CPU: alone
    expect(groups.map((g) => g.length).sort()).toEqual([1, 1, 3, 3, 3, 3]);
    for (const g of groups) expect(new Set(g.map(bootKey)).size).toBe(1);
    expect(bootKey({ ...specs[0], pmm: "./my_pmm.c" })).toBeNull();
  });

  it("boots once and copies, with the rows booting per run gives; a machine too big to hold twice boots per run", () => {
    for (const g of groupByBoot(specs).filter((x) => x.length === 3)) {
      const copied: ResultRow[] = [];
      expect(runGroup(g, (r) => copied.push(r))).toEqual({ boots: 1, copies: 2 });
      const perRun: ResultRow[] = [];
      expect(runGroup(g, (r) => perRun.push(r), undefined, 0)).toEqual({ boots: 3, copies: 0 });
      const alone = g.map((s) => runOne(s));
      for (let i = 0; i < g.length; i++) {
        expect(copied[i].error).toBeNull();
        expect(simulated(copied[i])).toBe(simulated(alone[i]));
        expect(simulated(perRun[i])).toBe(simulated(alone[i]));
      }
    }
  });
});
