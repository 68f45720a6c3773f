/**
 * SMP and kernel-heap benchmark (issue 6), on qemu:256M with 4 CPUs, buddy PMM, direct kmap, red
 * zones off (production SLUB), stale detector off:
 *
 *   - kmalloc+kfree pairs/s (host time): sizes cycling 8..8192 with 4096 objects live, on 4 CPUs;
 *   - vmalloc+vfree pairs/s (host time): 1..8 pages, 64 live, eager flushes and lazy purge;
 *   - shootdowns/s (host time): munmap+mmap of one page of a process running on 4 CPUs;
 *   - IPIs per vfree with and without lazy purge, and cycles per shootdown (counters: deterministic).
 *
 * Also per kmap strategy: the memory references of one kmalloc+kfree pair (counters).
 * Host timings vary on a shared VM: compare within one run.
 */
import { type KernelOptions, startKernel } from "../src/kernel/kernel.ts";
import { Rng } from "../src/machine/rng.ts";

const BASE: KernelOptions = {
  map: "qemu:256M",
  pmm: "buddy",
  kmap: "direct",
  cpus: 4,
  heap: { redZones: false },
};
const SIZES = [8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1000, 2048, 4000, 8192];

function kmallocPairs(opts: KernelOptions, pairs: number): { perSec: number; refsPerPair: number } {
  const k = startKernel(opts);
  const rng = new Rng(42);
  const live = new Float64Array(4096);
  for (let i = 0; i < live.length; i++) live[i] = k.heap.kmalloc(SIZES[i % SIZES.length]);
  const c = k.counters;
  const r0 = c.memReads + c.memWrites;
  const t0 = performance.now();
  for (let i = 0; i < pairs; i++) {
    const slot = rng.below(live.length);
    k.current.switchTo(i & 3);
    k.heap.kfree(live[slot]);
    live[slot] = k.heap.kmalloc(SIZES[rng.below(SIZES.length)]);
  }
  const dt = (performance.now() - t0) / 1000;
  k.current.switchTo(0);
  return { perSec: pairs / dt, refsPerPair: (c.memReads + c.memWrites - r0) / pairs };
}

function vmallocPairs(lazyPurge: boolean, pairs: number) {
  const k = startKernel({ ...BASE, heap: { redZones: false, lazyPurge } });
  const rng = new Rng(7);
  const live: number[] = [];
  for (let i = 0; i < 64; i++) live.push(k.heap.vmalloc((1 + rng.below(8)) * 4096));
  const s = k.counters.snapshot();
  const t0 = performance.now();
  for (let i = 0; i < pairs; i++) {
    const slot = rng.below(live.length);
    k.current.switchTo(i & 3);
    k.heap.write32(live[slot], 0, i); // the area is used, so TLBs cache it
    k.heap.vfree(live[slot]);
    live[slot] = k.heap.vmalloc((1 + rng.below(8)) * 4096);
  }
  const dt = (performance.now() - t0) / 1000;
  const c = k.counters;
  return {
    perSec: pairs / dt,
    ipisPerVfree: (c.ipis - s.ipis) / pairs,
    shootdownsPerVfree: (c.shootdowns - s.shootdowns) / pairs,
    purges: c.lazyPurges - s.lazyPurges,
    cyclesPerVfree: (c.ipiCycles - s.ipiCycles + c.shootdownFlushCycles - s.shootdownFlushCycles) / pairs,
  };
}

function shootdowns(opts: KernelOptions, rounds: number) {
  const k = startKernel(opts);
  const p = k.processes.create();
  k.processes.mmap(p, 0x400, 16, { write: true });
  for (let c = 0; c < 4; c++) k.processes.touch(p, 0x400, "write", c);
  const s = k.counters.snapshot();
  const t0 = performance.now();
  for (let i = 0; i < rounds; i++) {
    k.processes.munmap(p, 0x401, 1);
    k.processes.mmap(p, 0x401, 1, { write: true });
  }
  const dt = (performance.now() - t0) / 1000;
  const c = k.counters;
  const n = c.shootdowns - s.shootdowns;
  return {
    perSec: n / dt,
    ipisPer: (c.ipis - s.ipis) / n,
    cyclesPer: (c.ipiCycles - s.ipiCycles + c.shootdownFlushCycles - s.shootdownFlushCycles) / n,
  };
}

export default async function main(): Promise<void> {
  const km = kmallocPairs(BASE, 200_000);
  console.log(
    `kmalloc+kfree: ${(km.perSec / 1e6).toFixed(2)} M pairs/s (4 CPUs, 4096 live, sizes 8..8192), ${km.refsPerPair.toFixed(1)} memory refs per pair`,
  );
  for (const kmap of ["recursive", "quickmap", "hybrid"]) {
    const r = kmallocPairs({ ...BASE, kmap }, 50_000);
    console.log(
      `  ${kmap.padEnd(9)}: ${(r.perSec / 1e6).toFixed(2)} M pairs/s, ${r.refsPerPair.toFixed(1)} memory refs per pair`,
    );
  }
  for (const lazy of [false, true]) {
    const v = vmallocPairs(lazy, 20_000);
    console.log(
      `vmalloc+vfree (${lazy ? "lazy purge" : "eager"}): ${(v.perSec / 1e3).toFixed(1)} k pairs/s, ` +
        `${(v.ipisPerVfree * 1000).toFixed(2)} IPIs and ${(v.shootdownsPerVfree * 1000).toFixed(2)} shootdowns per 1000 vfree (${v.purges} purges), ` +
        `${v.cyclesPerVfree.toFixed(1)} modelled flush cycles per vfree`,
    );
  }
  for (const [name, o] of [
    ["IPI, per-CPU slots", {}],
    ["IPI, kmalloc'd requests", { requests: "alloc" }],
    ["INVLPGB broadcast", { mode: "invlpgb" }],
  ] as const) {
    const r = shootdowns({ ...BASE, shootdown: o }, 20_000);
    console.log(
      `shootdowns (${name}): ${(r.perSec / 1e3).toFixed(1)} k/s, ${r.ipisPer.toFixed(2)} IPIs and ${r.cyclesPer.toFixed(0)} modelled cycles each`,
    );
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
