/**
 * Inter-processor interrupts as counted messages. `send(target, handler)` runs the handler on the
 * target CPU (kernel code there reaches memory through that CPU's MMU and TLB) and returns when it has
 * acknowledged, as Linux's smp_call_function_many with wait=1 does. Delivery is immediate and in CPU
 * order: the simulation is sequential, so an IPI is a synchronous call plus its modelled cost.
 *
 * Cost model (Counters, never host time): `ipiCycles` per IPI (the send, the remote interrupt entry
 * and exit, the acknowledgement the sender spins on). A shootdown's invalidations are charged by the
 * shootdown itself (`shootdownFlushCycles`).
 */
import { cloneable } from "../../machine/clone.ts";
import type { Counters } from "../../machine/counters.ts";
import type { IpiCostModel } from "../api.ts";
import type { Current } from "../percpu.ts";

export class Ipi {
  constructor(
    private readonly cur: Current,
    private readonly counters: Counters,
    readonly cost: IpiCostModel,
  ) {}

  /** Interrupt CPU `target` and run `handler(target)` there; returns after its acknowledgement. */
  send(target: number, handler: (cpu: number) => void): void {
    const c = this.counters;
    c.ipis++;
    c.ipiCycles += this.cost.ipiCycles;
    const cur = this.cur;
    const prev = cur.id;
    cur.switchTo(target);
    try {
      handler(target);
    } finally {
      cur.switchTo(prev);
    }
  }
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(Ipi);
