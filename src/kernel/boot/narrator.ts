/**
 * The boot's narrator: each step logs lines, and on closing records what memblock allocated during the
 * step and the counters the step cost.
 */
import { bare, blank, cloneable } from "../../machine/clone.ts";
import { hex } from "../../errors.ts";
import { Counters } from "../../machine/counters.ts";
import type { Memblock } from "../early/memblock.ts";
import type { OwnedRange, OwnerKind } from "../owner.ts";

export interface BootStep {
  step: number;
  title: string;
  log: string[];
  allocated: { what: string; pa: string; bytes: number; kind: OwnerKind }[];
  counters: Record<string, number>;
}

export class Narrator {
  readonly steps: BootStep[] = [];
  /** What memblock handed out, by step, as typed ownership records. */
  readonly owned: OwnedRange[] = [];
  private before: Record<string, number>;
  private lines: string[] = [];
  private allocMark = 0;
  /** The early allocator, once it exists: each step lists what it allocated. */
  memblock: Memblock | null = null;

  constructor(private readonly counters: Counters) {
    if (blank()) bare(this); // a bare instance for a copy of the machine (machine/clone.ts)
    this.before = counters.snapshot();
  }

  log(line: string): void {
    this.lines.push(line);
  }

  /** Close a step; `now` (default: the counters now) lets a step leave out work done after it. */
  end(title: string, now: Record<string, number> = this.counters.snapshot()): void {
    const mb = this.memblock;
    const allocs = mb ? mb.allocations.slice(this.allocMark) : [];
    if (mb) this.allocMark = mb.allocations.length;
    const step = this.steps.length + 1;
    for (const a of allocs)
      this.owned.push({
        kind: a.kind,
        start: Math.floor(a.base / 4096),
        end: Math.ceil((a.base + a.size) / 4096),
        step,
        why: a.why,
      });
    this.steps.push({
      step,
      title,
      log: this.lines,
      allocated: allocs.map((a) => ({ what: a.why, pa: hex(a.base), bytes: a.size, kind: a.kind })),
      counters: Counters.diff(this.before, now),
    });
    this.before = now;
    this.lines = [];
  }
}

// Copied with their hidden class when a booted machine is forked (machine/clone.ts).
cloneable(Narrator);
