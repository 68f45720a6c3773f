/**
 * Process fork/exit with user address spaces: a shell-like population of 2-8 processes that fork,
 * touch their memory on whatever CPU they run, and exit.
 *
 * The first process maps 8 pages of data at page 0x400 and 2 pages of stack just below 8 TiB (two
 * separate page-table subtrees) and writes all of them. Then, per operation:
 *
 *   - fewer than 2 processes: fork; more than 8: exit; otherwise fork 1/4, exit 1/4, touch 1/2;
 *   - fork: a random live process is copied (eager copy of every page: the kernel has no COW), and
 *     the child writes one random page on a random CPU (it starts running somewhere);
 *   - exit: a random live process other than the first is torn down (frames and page tables return
 *     to the PMM; CPUs that ran it switch to init_mm);
 *   - touch: a random process reads or writes a random page of its own on a random CPU.
 *
 * One operation is one fork, exit or touch. The cost to watch: page-table pages allocated and freed,
 * memory references per fork, address-space switches and the TLB misses after them.
 */
import type { Process } from "../../kernel/api.ts";
import type { Rng } from "../../machine/rng.ts";
import {
  checkOps,
  type LabKernel,
  probeLargestOrder,
  type SamplePoint,
  sampleEvery,
  type Workload,
  type WorkloadOptions,
  type WorkloadResult,
} from "./interface.ts";

const DATA_VPN = 0x400;
const DATA_PAGES = 8;
const STACK_VPN = 0x7fffff00;
const STACK_PAGES = 2;

function randomPage(rng: Rng): number {
  const i = rng.below(DATA_PAGES + STACK_PAGES);
  return i < DATA_PAGES ? DATA_VPN + i : STACK_VPN + (i - DATA_PAGES);
}

export const forkExit: Workload = {
  name: "fork-exit",
  defaultOps: 50,
  describe:
    "2-8 processes of 10 pages (data + stack, two page-table subtrees) fork (eager copy), touch pages on random CPUs and exit",
  run(k: LabKernel, rng: Rng, opts: WorkloadOptions, sample: (p: SamplePoint) => void): WorkloadResult {
    checkOps(this.name, opts);
    const pr = k.processes;
    const ncpu = k.cpus.length;
    const every = sampleEvery(opts);
    const first = pr.create();
    pr.mmap(first, DATA_VPN, DATA_PAGES, { write: true });
    pr.mmap(first, STACK_VPN, STACK_PAGES, { write: true });
    for (let i = 0; i < DATA_PAGES; i++) pr.touch(first, DATA_VPN + i, "write", 0);
    for (let i = 0; i < STACK_PAGES; i++) pr.touch(first, STACK_VPN + i, "write", 0);
    const live: Process[] = [first];
    const ops: Record<string, number> = { fork: 0, exit: 0, touch: 0 };
    let peak = 1;
    for (let i = 0; i < opts.ops; i++) {
      const x = rng.below(4);
      const kind = live.length < 2 ? 0 : live.length > 8 ? 1 : x === 0 ? 0 : x === 1 ? 1 : 2;
      if (kind === 0) {
        ops.fork++;
        const parent = live[rng.below(live.length)];
        const child = pr.fork(parent);
        live.push(child);
        pr.touch(child, randomPage(rng), "write", rng.below(ncpu));
        peak = Math.max(peak, live.length);
      } else if (kind === 1) {
        ops.exit++;
        const j = 1 + rng.below(live.length - 1);
        pr.exit(live[j]);
        live[j] = live[live.length - 1];
        live.pop();
      } else {
        ops.touch++;
        const p = live[rng.below(live.length)];
        pr.touch(p, randomPage(rng), rng.below(2) === 0 ? "read" : "write", rng.below(ncpu));
      }
      if ((i + 1) % every === 0)
        sample({
          op: i + 1,
          largestOrder: probeLargestOrder(k.counters, k.pmm),
          heldFrames: live.length * (DATA_PAGES + STACK_PAGES),
        });
    }
    const info: Record<string, number> = { liveAtEnd: live.length, peakProcesses: peak };
    if (opts.drain) for (const p of live) pr.exit(p);
    return { ops, failed: {}, info, notes: [] };
  },
};
