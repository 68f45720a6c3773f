/**
 * Kernel pool benchmark (issue 8), on qemu:256M with 4 CPUs, buddy PMM, red zones off, stale detector
 * off:
 *
 *   - kmalloc+kfree pairs/s (host time) and IPIs per kfree (counters) for `pool` and `direct`, with
 *     `quickmap` (heap pages mapped one by one, unmapped with a shootdown when a slab empties) as the
 *     no-direct-map reference: sizes cycling 8..8192 with 4096 objects live, on 4 CPUs;
 *   - the fragmentation workload of src/lab/pool-vs-direct.ts (counters: deterministic).
 *
 * Host timings vary on a shared VM: compare within one run.
 */
import { type KernelOptions, startKernel } from "../src/kernel/kernel.ts";
import { formatPoolVsDirect, measurePoolVsDirect } from "../src/lab/pool-vs-direct.ts";
import { Rng } from "../src/machine/rng.ts";

const BASE: KernelOptions = { map: "qemu:256M", pmm: "buddy", cpus: 4, heap: { redZones: false } };
const SIZES = [8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1000, 2048, 4000, 8192];

function pairs(kmap: string, n: number) {
  const k = startKernel({ ...BASE, kmap });
  const rng = new Rng(42);
  const live = new Float64Array(4096);
  for (let i = 0; i < live.length; i++) live[i] = k.heap.kmalloc(SIZES[i % SIZES.length]);
  const c = k.counters;
  const s = c.snapshot();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const slot = rng.below(live.length);
    k.current.switchTo(i & 3);
    k.heap.kfree(live[slot]);
    live[slot] = k.heap.kmalloc(SIZES[rng.below(SIZES.length)]);
  }
  const dt = (performance.now() - t0) / 1000;
  k.current.switchTo(0);
  return {
    perSec: n / dt,
    ipisPerKfree: (c.ipis - s.ipis) / n,
    refsPerPair: (c.memReads + c.memWrites - s.memReads - s.memWrites) / n,
    slabPagesFreed: c.slabPagesFreed - s.slabPagesFreed,
  };
}

export default async function main(): Promise<void> {
  for (const kmap of ["direct", "pool", "quickmap"]) {
    const r = pairs(kmap, 100_000);
    console.log(
      `kmalloc+kfree (${kmap.padEnd(8)}): ${(r.perSec / 1e6).toFixed(2)} M pairs/s, ${r.ipisPerKfree.toFixed(4)} IPIs per kfree, ` +
        `${r.refsPerPair.toFixed(1)} memory refs per pair, ${r.slabPagesFreed} slab pages freed`,
    );
  }
  const t0 = performance.now();
  const r = measurePoolVsDirect();
  console.log(
    `\nfragmentation workload (seed ${r.options.seed}, ${r.options.map} mem=${r.options.mem / 2 ** 20}M, ${r.options.pmm}, ${r.options.cpus} CPUs; ${Math.round(performance.now() - t0)} ms):`,
  );
  console.log(formatPoolVsDirect(r));
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
