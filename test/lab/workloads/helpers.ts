import { type Kernel, startKernel } from "../../../src/kernel/kernel.ts";
import type { KernelOptions } from "../../../src/kernel/api.ts";
import { Rng } from "../../../src/machine/rng.ts";
import type {
  SamplePoint,
  Workload,
  WorkloadOptions,
  WorkloadResult,
} from "../../../src/lab/workloads/index.ts";

export const SMALL: KernelOptions = { map: "qemu:256M", pmm: "buddy", kmap: "direct", cpus: 2, check: false };

export interface Ran {
  k: Kernel;
  res: WorkloadResult;
  series: SamplePoint[];
  counters: Record<string, number>;
  /** Free frames when the workload started (startKernel itself allocates after the boot). */
  freeBefore: number;
}

/** Boot a small kernel, run the workload, return what it did and what it cost. */
export function runWorkload(w: Workload, opts: WorkloadOptions, kopts: KernelOptions = {}, seed = 7): Ran {
  const k = startKernel({ ...SMALL, mem: w.bootMem, ...kopts });
  const freeBefore = k.pmm.stats().freeFrames;
  const before = k.counters.snapshot();
  const series: SamplePoint[] = [];
  const res = w.run(k, new Rng(seed), opts, (p) => series.push(p));
  const after = k.counters.snapshot();
  const counters: Record<string, number> = {};
  for (const key of Object.keys(after)) counters[key] = after[key] - before[key];
  return { k, res, series, counters, freeBefore };
}
