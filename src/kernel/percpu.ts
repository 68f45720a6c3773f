/**
 * Which CPU the simulated kernel is executing on. Kernel code reaches memory through the current CPU's
 * MMU and TLB, so ports, windows and recursive accesses read `current.cpu` at each access; an SMP
 * workload switches it (`run(id, fn)`) before doing work "on" another CPU. Per-CPU data such as the
 * fixmap window slots are indexed by `current.id`.
 */
import { bare, blank, cloneable } from "../machine/clone.ts";
import type { Machine } from "../machine/machine.ts";
import type { Cpu } from "../machine/x86/cpu.ts";

export class Current {
  id = 0;
  cpu: Cpu;

  constructor(readonly machine: Machine) {
    if (blank()) bare(this); // a bare instance for a copy of the machine (machine/clone.ts)
    this.cpu = machine.cpus[0];
  }

  switchTo(id: number): void {
    this.id = id;
    this.cpu = this.machine.cpus[id];
  }

  /** Run `fn` on CPU `id`, then come back to the CPU that was current. */
  run<T>(id: number, fn: () => T): T {
    const prev = this.id;
    this.switchTo(id);
    try {
      return fn();
    } finally {
      this.switchTo(prev);
    }
  }
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(Current);
