/**
 * A simulated x86-64 machine as memory management sees it: sparse physical RAM, N CPUs each with its
 * own TLBs and control registers, and one counter registry shared by all of them. It knows nothing of
 * allocators, firmware maps or kernels: those are policies that run on it.
 */
import { bare, blank, cloneable } from "./clone.ts";
import { Counters } from "./counters.ts";
import { PhysMem } from "./phys-mem.ts";
import { Cpu, type CpuOptions } from "./x86/cpu.ts";
import type { Levels } from "./x86/vaddr.ts";

export interface MachineOptions extends Omit<CpuOptions, "id"> {
  /** MAXPHYADDR in bits (default 46). */
  maxPhysAddrBits?: number;
  /** Number of CPUs (default 1). */
  cpus?: number;
  levels?: Levels;
}

export class Machine {
  readonly counters: Counters;
  readonly mem: PhysMem;
  readonly cpus: Cpu[];
  readonly levels: Levels;

  constructor(opts: MachineOptions = {}) {
    if (blank()) bare(this); // a bare instance for a copy of the machine (machine/clone.ts)
    this.counters = new Counters();
    this.mem = new PhysMem({ maxPhysAddrBits: opts.maxPhysAddrBits ?? 46, counters: this.counters });
    this.levels = opts.levels ?? 4;
    this.cpus = [];
    for (let i = 0; i < (opts.cpus ?? 1); i++)
      this.cpus.push(new Cpu(this.mem, { ...opts, id: i, levels: this.levels }));
  }

  get cpu0(): Cpu {
    return this.cpus[0];
  }

  /** Every stale-TLB report of every CPU (empty when no flush was missed). */
  staleReports() {
    return this.cpus.flatMap((c) => c.staleReports);
  }
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(Machine);
