import { Machine, type MachineOptions } from "../../src/machine/machine.ts";
import { type FrameSource, Mapper } from "../../src/machine/x86/mapper.ts";

/**
 * A frame source for tests: hands out frames from [first, first+count) and takes them back (LIFO).
 * It stands in for the early allocator / PMM, which are policies tested elsewhere.
 */
export class TestFrames implements FrameSource {
  private next: number;
  private readonly end: number;
  private readonly freed: number[] = [];
  readonly live = new Set<number>();

  constructor(first = 0x100, count = 4096) {
    this.next = first;
    this.end = first + count;
  }

  allocFrame(): number {
    const f = this.freed.length > 0 ? this.freed.pop()! : this.next < this.end ? this.next++ : -1;
    if (f >= 0) this.live.add(f);
    return f;
  }

  freeFrame(pfn: number): void {
    if (!this.live.delete(pfn)) throw new Error(`test frames: double free of ${pfn}`);
    this.freed.push(pfn);
  }
}

export function setup(opts: MachineOptions & { frames?: number } = {}) {
  const m = new Machine({ checkStale: true, ...opts });
  const frames = new TestFrames(0x100, opts.frames ?? 4096);
  const mapper = new Mapper(m.mem, frames, {
    levels: m.levels,
    maxPhysAddrBits: m.mem.maxPhysAddrBits,
    counters: m.counters,
  });
  m.cpu0.writeCr3(mapper.root);
  return { m, cpu: m.cpu0, mapper, frames };
}

/** VPN of a canonical 48-bit address given as bigint. */
export function vpnOf(va: bigint): number {
  return Number((va & ((1n << 48n) - 1n)) >> 12n);
}
