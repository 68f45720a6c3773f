import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PagelabError } from "../../../src/errors.ts";
import { type KernelInternals, startKernel } from "../../../src/kernel/kernel.ts";
import { CHUNK_PAGES, POOL_OFFSET } from "../../../src/kernel/heap/pool.ts";

const SEED = 20261208;
const MiB = 2 ** 20;

function poolKernel(extra: Record<string, unknown> = {}): KernelInternals {
  return startKernel({
    map: "qemu:256M",
    mem: 32 * MiB,
    pmm: "buddy",
    kmap: "pool",
    cpus: 4,
    checkStale: true,
    ...extra,
  });
}

type Op =
  | { t: "kmalloc"; size: number; cpu: number }
  | { t: "kfree"; pick: number; cpu: number }
  | { t: "touch"; pick: number; cpu: number }
  | { t: "cache"; pages: number; cpu: number }
  | { t: "huge"; count: number; cpu: number }
  | { t: "release"; pick: number; count: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    arbitrary: fc.record({
      t: fc.constant("kmalloc" as const),
      size: fc.oneof(
        fc.integer({ min: 1, max: 512 }),
        fc.integer({ min: 513, max: 8192 }),
        fc.integer({ min: 8193, max: 2 * MiB }),
      ),
      cpu: fc.nat(3),
    }),
    weight: 6,
  },
  { arbitrary: fc.record({ t: fc.constant("kfree" as const), pick: fc.nat(), cpu: fc.nat(3) }), weight: 5 },
  { arbitrary: fc.record({ t: fc.constant("touch" as const), pick: fc.nat(), cpu: fc.nat(3) }), weight: 2 },
  {
    arbitrary: fc.record({
      t: fc.constant("cache" as const),
      pages: fc.integer({ min: 1, max: 12_000 }), // up to more than RAM: starves the PMM
      cpu: fc.nat(3),
    }),
    weight: 2,
  },
  {
    arbitrary: fc.record({
      t: fc.constant("huge" as const),
      count: fc.integer({ min: 1, max: 16 }),
      cpu: fc.nat(3),
    }),
    weight: 3,
  },
  {
    arbitrary: fc.record({
      t: fc.constant("release" as const),
      pick: fc.nat(),
      count: fc.integer({ min: 1, max: 3000 }),
    }),
    weight: 2,
  },
);

interface Live {
  ptr: number;
  bytes: number;
  tag: number;
}

interface World {
  live: Live[];
  /** Blocks held by "another subsystem" (page cache, huge pages): [pfn, order]. */
  other: [number, number][];
}

function step(k: KernelInternals, w: World, op: Op, n: number): void {
  const h = k.heap;
  if (op.t === "release") {
    for (let i = 0; i < op.count && w.other.length > 0; i++) {
      const j = (op.pick + i * 7919) % w.other.length;
      const [pfn, order] = w.other[j];
      k.pmm.free(pfn, order);
      w.other[j] = w.other[w.other.length - 1];
      w.other.pop();
    }
    return;
  }
  k.run(op.cpu, () => {
    if (op.t === "cache" || op.t === "huge") {
      const order = op.t === "cache" ? 0 : 9;
      const count = op.t === "cache" ? op.pages : op.count;
      for (let i = 0; i < count; i++) {
        const pfn = k.pmmAlloc(order);
        if (pfn < 0) break;
        w.other.push([pfn, order]);
      }
      return;
    }
    if (op.t === "kmalloc") {
      const ptr = h.kmalloc(op.size);
      if (ptr === 0) return; // out of memory is a normal answer
      const tag = (n * 2654435761) >>> 0;
      h.write32(ptr, 0, tag);
      if (op.size >= 8) h.write32(ptr, (op.size & ~3) - 4, tag ^ 0xffff);
      w.live.push({ ptr, bytes: op.size, tag });
      return;
    }
    if (w.live.length === 0) return;
    const l = w.live[op.pick % w.live.length];
    expect(h.read32(l.ptr, 0)).toBe(l.tag);
    if (l.bytes >= 8) expect(h.read32(l.ptr, (l.bytes & ~3) - 4)).toBe((l.tag ^ 0xffff) >>> 0);
    if (op.t === "touch") return;
    const before = k.counters.ipis;
    h.kfree(l.ptr);
    // Pool pages are never unmapped by kfree: no IPI (large allocations above 2 MiB excepted).
    if (l.bytes <= CHUNK_PAGES * 4096) expect(k.counters.ipis).toBe(before);
    w.live.splice(w.live.indexOf(l), 1);
  });
}

describe("kernel pool: random kmalloc/kfree on 4 CPUs with page-cache and huge-page pressure, every checker after every step", () => {
  it("pool kmap, buddy PMM", () => {
    let rebalances = 0;
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 15, maxLength: 40 }), (ops) => {
        const k = poolKernel();
        const w: World = { live: [], other: [] };
        ops.forEach((op, i) => {
          step(k, w, op, i);
          k.check(); // heap, pool, processes, PMM, page tables, stale TLB use on every CPU
        });
        for (const l of w.live) k.heap.kfree(l.ptr);
        for (const [pfn, order] of w.other) k.pmm.free(pfn, order);
        k.check();
        // Everything the pool holds can go back but the pages the kernel keeps (per-CPU area, caches).
        rebalances += k.counters.poolRebalances;
        k.reclaim();
        k.check();
        expect(k.heap.stats().caches.reduce((s, c) => s + c.activeObjs, 0)).toBe(0);
      }),
      { seed: SEED, numRuns: 10, verbose: true },
    );
    console.log(`pool property test: ${rebalances} rebalances`);
    expect(rebalances).toBeGreaterThan(0); // the pressure did force rebalances
  }, 90_000);
});

describe("kernel pool: growth, kfree, rebalance", () => {
  it("grows with one 2 MiB leaf per chunk while the PMM has aligned order-9 blocks", () => {
    const k = poolKernel();
    expect(k.counters.poolChunks2m).toBe(1); // the per-CPU area and kernel data page
    expect(k.counters.poolChunks4k).toBe(0);
    const p = k.heap.kmalloc(2 * MiB); // 512 pages, large kmalloc: a second chunk
    expect(k.counters.poolGrows).toBe(2);
    const vpn = k.kmem.vpnOf(p);
    expect(vpn - k.kmem.areaVpn - POOL_OFFSET / 4096).toBe(2 * CHUNK_PAGES);
    expect(k.mapper.query(vpn)?.shift).toBe(9);
    k.check();
  });

  it("kfree never unmaps or flushes; rebalance gives every free chunk back with ONE shootdown through the per-CPU slot", () => {
    const k = poolKernel({ shootdown: { requests: "alloc" } });
    const ptrs: number[] = [];
    for (let i = 0; i < 4000; i++) ptrs.push(k.run(i & 3, () => k.heap.kmalloc(16 + (i % 500) * 8)));
    for (const p of ptrs) k.run(3, () => k.heap.read32(p, 0)); // every CPU caches pool translations
    const chunks = k.pool!.backedChunks;
    expect(chunks).toBeGreaterThan(3);
    const s = k.counters.snapshot();
    for (let i = 0; i < ptrs.length; i++) k.run((i * 3) & 3, () => k.heap.kfree(ptrs[i]));
    const c = k.counters;
    expect(c.slabPagesFreed - s.slabPagesFreed).toBeGreaterThan(100); // slabs emptied and discarded
    expect(c.ipis - s.ipis).toBe(0);
    expect(c.shootdowns - s.shootdowns).toBe(0);
    expect(k.pool!.backedChunks).toBe(chunks); // still mapped
    k.check();
    const free = k.pool!.freeChunks();
    expect(free).toBeGreaterThan(0);
    const before = k.pmm.stats().freeFrames;
    expect(k.run(2, () => k.reclaim())).toBe(free * CHUNK_PAGES);
    expect(c.shootdowns - s.shootdowns).toBe(1);
    expect(c.ipis - s.ipis).toBe(3); // the three other CPUs, once
    expect(c.shootdownReqSlotWrites - s.shootdownReqSlotWrites).toBe(1);
    expect(c.shootdownReqAllocs - s.shootdownReqAllocs).toBe(0);
    expect(c.poolRebalances - s.poolRebalances).toBe(1);
    expect(c.poolReturnedBytes - s.poolReturnedBytes).toBe(free * CHUNK_PAGES * 4096);
    expect(k.pmm.stats().freeFrames).toBe(before + free * CHUNK_PAGES);
    expect(k.reclaim()).toBe(0); // nothing left to give: no flush
    expect(c.shootdowns - s.shootdowns).toBe(1);
    k.check();
    // The freed range is reused from fresh frames; the stale detector (on) stays silent.
    for (let i = 0; i < 2000; i++) k.run(i & 3, () => k.heap.write32(k.heap.kmalloc(200), 0, i));
    k.check();
  });

  it("pmmAlloc rebalances when the PMM starves, then retries; without free chunks it just fails", () => {
    const k = poolKernel();
    const big = k.heap.kmalloc(2 * MiB); // a whole chunk
    k.heap.kfree(big); // still mapped, fully free
    const held: number[] = [];
    for (let pfn = k.pmm.alloc(9); pfn >= 0; pfn = k.pmm.alloc(9)) held.push(pfn);
    expect(k.counters.poolRebalances).toBe(0);
    const got = k.pmmAlloc(9);
    expect(got).toBeGreaterThanOrEqual(0);
    expect(k.counters.poolRebalances).toBe(1);
    expect(k.pmmAlloc(9)).toBe(-1);
    expect(k.counters.poolRebalances).toBe(1);
    k.check();
    for (const p of [...held, got]) k.pmm.free(p, 9);
    k.check();
  });

  it("falls back to 512 x 4 KiB frames when no order-9 block is left; returning it frees its page table", () => {
    const k = poolKernel();
    const huge: number[] = [];
    for (let pfn = k.pmm.alloc(9); pfn >= 0; pfn = k.pmm.alloc(9)) huge.push(pfn);
    const p = k.heap.kmalloc(2 * MiB);
    expect(p).not.toBe(0);
    expect(k.counters.poolChunks4k).toBe(1);
    expect(k.mapper.query(k.kmem.vpnOf(p))?.shift).toBe(0);
    k.run(1, () => k.heap.write32(p, 4096 * 100, 7));
    k.check();
    k.heap.kfree(p);
    const pt = k.counters.ptPagesFreed;
    const s = k.counters.snapshot();
    expect(k.reclaim()).toBe(CHUNK_PAGES);
    expect(k.counters.ptPagesFreed).toBe(pt + 1);
    expect(k.counters.fullFlushesByShootdown - s.fullFlushesByShootdown).toBe(4); // tables freed: full flush
    expect(k.counters.ipis - s.ipis).toBe(3);
    k.check();
    for (const h of huge) k.pmm.free(h, 9);
    // Now an order-9 block exists again: the same chunk comes back as one 2 MiB leaf.
    const q = k.heap.kmalloc(2 * MiB);
    expect(k.mapper.query(k.kmem.vpnOf(q))?.shift).toBe(9);
    k.check();
  });

  it("the checker names a chunk whose record lies, and a chunk both returned and mapped", () => {
    const k = poolKernel();
    const p = k.heap.kmalloc(2 * MiB);
    k.heap.kfree(p);
    const rec = k.pool!.basePtr + 2 * 128; // chunk 2's record
    k.kmem.write32(rec + 4, 5); // pages in use
    expect(() => k.check()).toThrow(/chunk 2 .*0 pages set in the bitmap, record says 5 in use/);
    k.kmem.write32(rec + 4, 0);
    k.kmem.write32(rec, 0); // "returned" while still mapped
    k.kmem.write64(rec + 8, 0);
    let err: unknown = null;
    try {
      k.pool!.check();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PagelabError);
    expect((err as Error).message).toMatch(/chunk 2 .* is returned, yet page 0 is still mapped/);
  });
});
