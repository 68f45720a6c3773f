import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PagelabError } from "../../../src/errors.ts";
import { type KernelInternals, KPTR_AREA, startKernel } from "../../../src/kernel/kernel.ts";
import { ramDigest } from "../../../src/kernel/pmm/check.ts";

const SEED = 20261125;

type Op =
  | { t: "kmalloc"; size: number; cpu: number }
  | { t: "kfree"; pick: number; cpu: number }
  | { t: "vmalloc"; bytes: number; cpu: number }
  | { t: "vfree"; pick: number; cpu: number }
  | { t: "touch"; pick: number; cpu: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    arbitrary: fc.record({
      t: fc.constant("kmalloc" as const),
      size: fc.oneof(fc.integer({ min: 1, max: 256 }), fc.integer({ min: 257, max: 20000 })),
      cpu: fc.nat(3),
    }),
    weight: 5,
  },
  { arbitrary: fc.record({ t: fc.constant("kfree" as const), pick: fc.nat(), cpu: fc.nat(3) }), weight: 4 },
  {
    arbitrary: fc.record({
      t: fc.constant("vmalloc" as const),
      bytes: fc.integer({ min: 1, max: 9 * 4096 }),
      cpu: fc.nat(3),
    }),
    weight: 1,
  },
  { arbitrary: fc.record({ t: fc.constant("vfree" as const), pick: fc.nat(), cpu: fc.nat(3) }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("touch" as const), pick: fc.nat(), cpu: fc.nat(3) }), weight: 2 },
);

interface Live {
  ptr: number;
  bytes: number;
  tag: number;
  v: boolean;
}

/** Apply one op; every live allocation carries its tag in its first and last word. */
function step(k: KernelInternals, live: Live[], op: Op, n: number): void {
  const h = k.heap;
  k.run(op.cpu, () => {
    if (op.t === "kmalloc" || op.t === "vmalloc") {
      const bytes = op.t === "kmalloc" ? op.size : op.bytes;
      const ptr = op.t === "kmalloc" ? h.kmalloc(bytes) : h.vmalloc(bytes);
      expect(ptr).toBeGreaterThan(0);
      const tag = (n * 2654435761) >>> 0;
      h.write32(ptr, 0, tag);
      if (bytes >= 8) h.write32(ptr, (bytes & ~3) - 4, tag ^ 0xffff);
      live.push({ ptr, bytes, tag, v: op.t === "vmalloc" });
      return;
    }
    const pool = live.filter((l) => l.v === (op.t === "vfree"));
    if (pool.length === 0) return;
    const l = pool[op.pick % pool.length];
    expect(h.read32(l.ptr, 0)).toBe(l.tag);
    if (l.bytes >= 8) expect(h.read32(l.ptr, (l.bytes & ~3) - 4)).toBe((l.tag ^ 0xffff) >>> 0);
    if (op.t === "touch") return;
    if (op.t === "kfree") h.kfree(l.ptr);
    else h.vfree(l.ptr);
    live.splice(live.indexOf(l), 1);
  });
}

describe("kernel heap: random kmalloc/kfree/vmalloc/vfree on 4 CPUs, every checker after every step", () => {
  const configs = [
    { kmap: "direct", pmm: "buddy" },
    { kmap: "recursive", pmm: "buddy" },
    { kmap: "quickmap", pmm: "stack" },
    { kmap: "hybrid", pmm: "bitmap", lazyMaxPages: 16 },
  ];
  for (const cfg of configs) {
    it(`${cfg.kmap} kmap, ${cfg.pmm} PMM`, () => {
      fc.assert(
        fc.property(fc.array(opArb, { minLength: 1, maxLength: 40 }), (ops) => {
          const k = startKernel({
            map: "qemu:256M",
            mem: 32 * 2 ** 20,
            pmm: cfg.pmm,
            kmap: cfg.kmap,
            cpus: 4,
            checkStale: true,
            heap: { lazyMaxPages: cfg.lazyMaxPages },
          });
          const live: Live[] = [];
          ops.forEach((op, i) => {
            step(k, live, op, i);
            k.check();
          });
          for (const l of [...live]) {
            if (l.v) k.heap.vfree(l.ptr);
            else k.heap.kfree(l.ptr);
          }
          k.heap.purgeLazy();
          k.check();
          const st = k.heap.stats();
          expect(st.largeAllocs + st.vmallocAreas + st.lazyPages).toBe(0);
          expect(st.caches.reduce((s, c) => s + c.activeObjs, 0)).toBe(0);
        }),
        { seed: SEED, numRuns: 8, verbose: true },
      );
    }, 60_000);
  }
});

describe("kernel heap: bad frees are typed errors and change nothing", () => {
  const k = startKernel({ map: "qemu:256M", pmm: "buddy", kmap: "direct", cpus: 4, checkStale: true });
  const h = k.heap;
  const a = h.kmalloc(96);
  const b = h.kmalloc(100);
  const big = h.kmalloc(3 * 4096);
  const v = h.vmalloc(2 * 4096);
  h.kfree(b);
  h.write32(a, 0, 1);
  h.read32(big, 0);
  h.read32(v, 4096);

  const state = () => `${ramDigest(k.machine.mem)}\n${JSON.stringify(h.stats())}`;
  const cases: [string, () => void, RegExp][] = [
    ["double free", () => h.kfree(b), /double free of object \d+ of a kmalloc-128 slab/],
    ["middle of an object", () => h.kfree(a + 8), /points 8 bytes into object \d+ of a kmalloc-96 slab/],
    ["not a heap pointer", () => h.kfree(0x12345678), /not a heap pointer/],
    ["inside a large allocation", () => h.kfree(big + 4096), /not a heap pointer/],
    ["middle of a large allocation's first page", () => h.kfree(big + 64), /inside a large kmalloc/],
    ["vfree of a kmalloc pointer", () => h.vfree(a), /kmalloc allocation; free it with kfree/],
    ["kfree of a vmalloc pointer", () => h.kfree(v), /vmalloc area; free it with vfree/],
    ["vfree inside an area", () => h.vfree(v + 4096), /not a heap pointer/],
    ["not a number", () => h.kfree(-5), /not a kernel pointer/],
    ["kmalloc(0)", () => h.kmalloc(0), /at least 1/],
  ];
  for (const [name, fn, msg] of cases) {
    it(name, () => {
      k.check();
      const before = state();
      let err: unknown = null;
      try {
        fn();
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(PagelabError);
      expect((err as Error).message).toMatch(msg);
      expect(state()).toBe(before);
      k.check();
    });
  }
});

describe("kernel heap: red zones and poison", () => {
  it("an overflow into the red zone is found by the checker and refused by kfree", () => {
    const k = startKernel({ map: "qemu:256M", pmm: "buddy", kmap: "direct", cpus: 2, checkStale: true });
    const p = k.heap.kmalloc(64);
    k.heap.write32(p, 64, 0xdeadbeef); // one word past the end
    expect(() => k.heap.check()).toThrow(/red zone of object \d+ .* overwritten/);
    const before = ramDigest(k.machine.mem);
    expect(() => k.heap.kfree(p)).toThrow(/red zone of a kmalloc-64 object overwritten/);
    expect(ramDigest(k.machine.mem)).toBe(before);
  });

  it("a write after free is found by the checker and by the next kmalloc of that object", () => {
    const k = startKernel({ map: "qemu:256M", pmm: "buddy", kmap: "quickmap", cpus: 2, checkStale: true });
    const p = k.heap.kmalloc(32);
    k.heap.kfree(p);
    k.heap.write32(p, 8, 1);
    expect(() => k.heap.check()).toThrow(/written after free/);
    expect(() => k.heap.kmalloc(32)).toThrow(/was written after it was freed/);
  });

  it("size classes, slab orders, and where pointers live per strategy", () => {
    const d = startKernel({ map: "qemu:256M", kmap: "direct", cpus: 1 });
    const q = startKernel({ map: "qemu:256M", kmap: "quickmap", cpus: 1 });
    const st = d.heap.stats();
    expect(st.caches.map((c) => c.objSize)).toEqual([
      8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192,
    ]);
    for (const c of st.caches) expect(c.objsPerSlab).toBeGreaterThanOrEqual(3);
    expect(d.heap.kmalloc(40)).toBeLessThan(KPTR_AREA); // through the direct map
    expect(q.heap.kmalloc(40)).toBeGreaterThanOrEqual(KPTR_AREA); // through the kernel heap region
    expect(d.heap.ksize(d.heap.kmalloc(100))).toBe(128);
    expect(d.heap.ksize(d.heap.kmalloc(9000))).toBe(4 * 4096);
    expect(q.heap.stats().kheapPages).toBeGreaterThan(0);
  });

  it("vmalloc: a guard page after each area; an overrun faults", () => {
    const k = startKernel({ map: "qemu:256M", kmap: "direct", cpus: 2 });
    const v = k.heap.vmalloc(4096);
    k.heap.write32(v, 4092, 1);
    expect(() => k.heap.write32(v, 4096, 1)).toThrow(/#PF/);
  });
});

describe("vmalloc: IPIs per vfree with and without lazy purge", () => {
  it("eager: one round per vfree; lazy: one round per purge", () => {
    const measure = (lazyPurge: boolean) => {
      const k = startKernel({
        map: "qemu:256M",
        kmap: "direct",
        cpus: 4,
        checkStale: true,
        heap: { lazyPurge, lazyMaxPages: 64 },
      });
      const s = k.counters.snapshot();
      for (let i = 0; i < 40; i++) {
        const v = k.run(i % 4, () => k.heap.vmalloc(4 * 4096));
        k.run((i + 1) % 4, () => k.heap.write32(v, 0, i));
        k.run((i + 2) % 4, () => k.heap.vfree(v));
      }
      k.check();
      return { ipis: k.counters.ipis - s.ipis, purges: k.counters.lazyPurges - s.lazyPurges };
    };
    const eager = measure(false);
    const lazy = measure(true);
    expect(eager.ipis).toBe(40 * 3);
    expect(lazy.purges).toBe(2); // 160 pages freed, a purge each time more than 64 are pending
    expect(lazy.ipis).toBe(lazy.purges * 3);
  });
});
