/**
 * Page churn: random allocations and frees of mixed orders straight from the PMM, as the page
 * allocator sees them in a busy kernel (page tables, pipe buffers, skb pages, THP attempts).
 *
 * Request stream (the same for every design, from the seed): orders 0/1/2/3/9 with weights 8:4:2:1:1,
 * three quarters movable (user pages) and one quarter unmovable (kernel); the workload keeps between
 * `low` and `high` blocks live: below `low` it allocates, above `high` it frees, in between it flips a
 * coin. A free picks a random live block. One operation is one alloc or one free request.
 *
 * Designs without contiguity (the stacks, maxOrder 0) refuse every order above 0: those refusals are
 * counted in `failed` by order, and `info.requestsOrderN` counts the requests of each order, so the
 * report can say which orders a design refused and what share of each.
 */
import type { AllocConstraints } from "../../kernel/pmm/interface.ts";
import type { Rng } from "../../machine/rng.ts";
import {
  bump,
  checkOps,
  HeldBlocks,
  type LabKernel,
  probeLargestOrder,
  type SamplePoint,
  sampleEvery,
  type Workload,
  type WorkloadOptions,
  type WorkloadResult,
} from "./interface.ts";

const ORDERS = [0, 1, 2, 3, 9];
const WEIGHTS = [8, 4, 2, 1, 1];
const WEIGHT_SUM = 16;
const MOVABLE: AllocConstraints = { mobility: "movable" };

function pickOrder(rng: Rng): number {
  let x = rng.below(WEIGHT_SUM);
  for (let i = 0; i < ORDERS.length; i++) {
    x -= WEIGHTS[i];
    if (x < 0) return ORDERS[i];
  }
  return 0;
}

export const pageChurn: Workload = {
  name: "page-churn",
  defaultOps: 20_000,
  describe:
    "random alloc/free of orders 0/1/2/3/9 (weights 8:4:2:1:1, 3/4 movable) keeping 1024-4096 blocks live",
  run(k: LabKernel, rng: Rng, opts: WorkloadOptions, sample: (p: SamplePoint) => void): WorkloadResult {
    checkOps(this.name, opts);
    const a = k.pmm;
    const c = k.counters;
    const every = sampleEvery(opts);
    const held = new HeldBlocks();
    const ops: Record<string, number> = { alloc: 0, free: 0 };
    const failed: Record<string, number> = {};
    const requested: Record<string, number> = {};
    const low = 1024;
    const high = 4096;
    for (let i = 0; i < opts.ops; i++) {
      const doAlloc = held.n < low || (held.n < high && rng.below(2) === 0);
      if (doAlloc) {
        const order = pickOrder(rng);
        const movable = rng.below(4) !== 0;
        ops.alloc++;
        bump(requested, `order${order}`);
        const p = movable ? a.alloc(order, MOVABLE) : a.alloc(order);
        if (p < 0) bump(failed, `order${order}`);
        else held.push(p, order);
      } else {
        const j = rng.below(held.n);
        ops.free++;
        a.free(held.pfn[j], held.order[j]);
        held.remove(j);
      }
      if ((i + 1) % every === 0)
        sample({ op: i + 1, largestOrder: probeLargestOrder(c, a), heldFrames: held.frames });
    }
    const info: Record<string, number> = { liveBlocksAtEnd: held.n, liveFramesAtEnd: held.frames };
    // requests per order (`requestsOrder9`), beside `failed.order9`: what share of each order was refused
    for (const [k, v] of Object.entries(requested)) info[`requests${k[0].toUpperCase()}${k.slice(1)}`] = v;
    if (opts.drain) {
      while (held.n > 0) {
        ops.free++;
        a.free(held.pfn[held.n - 1], held.order[held.n - 1]);
        held.remove(held.n - 1);
      }
    }
    let refused = 0;
    for (const v of Object.values(failed)) refused += v;
    info.refusedPercent = ops.alloc === 0 ? 0 : Math.round((1000 * refused) / ops.alloc) / 10;
    return { ops, failed, info, notes: [] };
  },
};
