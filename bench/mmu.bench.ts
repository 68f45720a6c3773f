/**
 * Foundation benchmark: how fast pagelab itself runs its MMU (host time; simulated costs are counters).
 *  - translations/s served from the L1 TLB,
 *  - translations/s that miss every TLB and do a full 4-level walk (cold TLB),
 *  - map+unmap pairs/s (tables kept, and tables allocated and freed each time).
 */
import { measure } from "mitata";
import { Machine } from "../src/machine/machine.ts";
import { type FrameSource, Mapper } from "../src/machine/x86/mapper.ts";
import { Access } from "../src/machine/x86/mmu.ts";
import { PAGE_4K } from "../src/machine/x86/pte.ts";

class Frames implements FrameSource {
  private next = 0x100000;
  private readonly free: number[] = [];
  allocFrame(): number {
    return this.free.length > 0 ? this.free.pop()! : this.next++;
  }
  freeFrame(pfn: number): void {
    this.free.push(pfn);
  }
}

/**
 * Operations per second of `fn`, which performs `n` operations per call: mitata times many calls
 * (after warm-up) and we take the median batch time, which is robust to this shared machine's noise.
 */
async function rate(n: number, fn: () => void): Promise<number> {
  const st = await measure(fn, { min_cpu_time: 400e6 });
  return (n / st.p50) * 1e9;
}

function fmt(r: number): string {
  return r >= 1e6 ? `${(r / 1e6).toFixed(2)} M/s` : `${(r / 1e3).toFixed(1)} k/s`;
}

export default async function mmuBench(): Promise<void> {
  const m = new Machine();
  const frames = new Frames();
  const mapper = new Mapper(m.mem, frames, { levels: 4, maxPhysAddrBits: 46, counters: m.counters });
  const base = 2 ** 35; // 0xffff800000000000
  const PAGES = 1 << 16; // 65536 pages: 32x the STLB, so a sequential sweep misses every time
  for (let i = 0; i < PAGES; i++) mapper.map(base + i, 0x200000 + i, PAGE_4K, { write: true }).ignore();
  const cpu = m.cpu0;
  cpu.writeCr3(mapper.root);

  const HITS = 1_000_000;
  const hit = await rate(HITS, () => {
    let acc = 0;
    for (let i = 0; i < HITS; i++) acc += cpu.translate(base + (i & 31), Access.READ);
    if (acc < 0) throw new Error("fault");
  });

  const walks0 = m.counters.walks;
  let coldCalls = 0;
  const COLD = 200_000;
  const cold = await rate(COLD, () => {
    let acc = 0;
    coldCalls++;
    for (let i = 0; i < COLD; i++) acc += cpu.translate(base + (i & (PAGES - 1)), Access.READ);
    if (acc < 0) throw new Error("fault");
  });
  const missRatio = (m.counters.walks - walks0) / (coldCalls * COLD);

  const PAIRS = 20_000;
  const keep = await rate(PAIRS, () => {
    for (let i = 0; i < PAIRS; i++) {
      mapper.map(base + PAGES, 0x300000, PAGE_4K, { write: true }).ignore();
      mapper.unmap(base + PAGES).flush.ignore();
    }
  });
  const far = 2 ** 35 + 2 ** 30; // an empty part of the address space: 3 tables made and freed per pair
  const PAIRS2 = 2_000;
  const churn = await rate(PAIRS2, () => {
    for (let i = 0; i < PAIRS2; i++) {
      mapper.map(far, 0x300000, PAGE_4K, { write: true }).ignore();
      mapper.unmap(far).flush.ignore();
    }
  });

  console.log(`TLB-hit translations        ${fmt(hit)}   (target >= 20 M/s)`);
  console.log(
    `cold 4-level walks          ${fmt(cold)}   (every access missed L1 and STLB: miss ratio ${missRatio.toFixed(3)}; target >= 5 M/s)`,
  );
  console.log(`map+unmap pairs, tables kept ${fmt(keep)}`);
  console.log(`map+unmap pairs, 3 tables allocated, zeroed, scanned and freed each time ${fmt(churn)}`);
  console.log(
    `host memory: rss ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB, simulated RAM backed ${(m.mem.backedBytes / 2 ** 20).toFixed(0)} MiB`,
  );
}
