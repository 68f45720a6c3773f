import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PagelabError } from "../../../src/errors.ts";
import { type KernelInternals, type Process, startKernel } from "../../../src/kernel/kernel.ts";

const SEED = 6;

type Op =
  | { t: "create" }
  | { t: "mmap"; p: number; vpn: number; pages: number }
  | { t: "munmap"; p: number; vpn: number; pages: number }
  | { t: "touch"; p: number; vpn: number; cpu: number; write: boolean }
  | { t: "idle"; cpu: number }
  | { t: "fork"; p: number }
  | { t: "exit"; p: number }
  | { t: "kmalloc"; size: number; cpu: number };

const page = fc.integer({ min: 0x400, max: 0x400 + 11 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.constant({ t: "create" as const }), weight: 1 },
  {
    arbitrary: fc.record({
      t: fc.constant("mmap" as const),
      p: fc.nat(),
      vpn: page,
      pages: fc.integer({ min: 1, max: 8 }),
    }),
    weight: 3,
  },
  {
    arbitrary: fc.record({
      t: fc.constant("munmap" as const),
      p: fc.nat(),
      vpn: page,
      pages: fc.integer({ min: 1, max: 4 }),
    }),
    weight: 2,
  },
  {
    arbitrary: fc.record({
      t: fc.constant("touch" as const),
      p: fc.nat(),
      vpn: page,
      cpu: fc.nat(3),
      write: fc.boolean(),
    }),
    weight: 6,
  },
  { arbitrary: fc.record({ t: fc.constant("idle" as const), cpu: fc.nat(3) }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("fork" as const), p: fc.nat() }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("exit" as const), p: fc.nat() }), weight: 1 },
  {
    arbitrary: fc.record({
      t: fc.constant("kmalloc" as const),
      size: fc.integer({ min: 1, max: 5000 }),
      cpu: fc.nat(3),
    }),
    weight: 1,
  },
);

/** The model: which pages each process maps, and the word each holds (written through its frame). */
interface Model {
  procs: Process[];
  pages: Map<number, Map<number, number>>;
}

function step(k: KernelInternals, m: Model, op: Op, n: number): void {
  const P = k.processes;
  const port = k.boot.pmmPort;
  if (op.t === "create") {
    const p = P.create();
    m.procs.push(p);
    m.pages.set(p.pid, new Map());
    return;
  }
  if (op.t === "idle") {
    P.switchTo(op.cpu, null);
    return;
  }
  if (op.t === "kmalloc") return void k.run(op.cpu, () => k.heap.kmalloc(op.size));
  if (m.procs.length === 0) return;
  const p = m.procs[op.p % m.procs.length];
  const pages = m.pages.get(p.pid)!;
  if (op.t === "mmap") {
    let free = true;
    for (let v = op.vpn; v < op.vpn + op.pages; v++) if (pages.has(v)) free = false;
    if (!free) {
      expect(() => P.mmap(p, op.vpn, op.pages)).toThrow(/overlap/);
      return;
    }
    P.mmap(p, op.vpn, op.pages, { write: true });
    for (let v = op.vpn; v < op.vpn + op.pages; v++) pages.set(v, 0);
  } else if (op.t === "munmap") {
    P.munmap(p, op.vpn, op.pages);
    for (let v = op.vpn; v < op.vpn + op.pages; v++) pages.delete(v);
  } else if (op.t === "touch") {
    if (!pages.has(op.vpn)) {
      expect(() => P.touch(p, op.vpn, "read", op.cpu)).toThrow(/SEGFAULT|faults/);
      return;
    }
    const pfn = P.touch(p, op.vpn, op.write ? "write" : "read", op.cpu);
    expect(port.read32(pfn * 4096)).toBe(pages.get(op.vpn));
    if (op.write) {
      port.write32(pfn * 4096, n);
      pages.set(op.vpn, n);
    }
  } else if (op.t === "fork") {
    const c = P.fork(p);
    m.procs.push(c);
    m.pages.set(c.pid, new Map(pages));
  } else if (op.t === "exit") {
    P.exit(p);
    m.procs.splice(m.procs.indexOf(p), 1);
    m.pages.delete(p.pid);
  }
}

describe("processes: random mmap/munmap/touch/fork/exit on 4 CPUs, every checker and the stale detector", () => {
  const configs: [string, string, object][] = [
    ["direct", "buddy", {}],
    ["recursive", "buddy", {}],
    ["quickmap", "bitmap", { requests: "alloc" }],
    ["direct", "buddy", { mode: "invlpgb" }],
    ["hybrid", "buddy", { pcid: false, lazyTlb: false }],
  ];
  for (const [kmap, pmm, shootdown] of configs) {
    it(`${kmap} kmap, ${pmm} PMM, ${JSON.stringify(shootdown)}`, () => {
      fc.assert(
        fc.property(fc.array(opArb, { minLength: 1, maxLength: 40 }), (ops) => {
          const k = startKernel({
            map: "qemu:256M",
            mem: 48 * 2 ** 20,
            pmm,
            kmap,
            cpus: 4,
            checkStale: true,
            shootdown,
          });
          const m: Model = { procs: [], pages: new Map() };
          step(k, m, { t: "create" }, 0);
          ops.forEach((op, i) => {
            step(k, m, op, i + 1);
            k.check();
          });
          for (const p of [...m.procs]) k.processes.exit(p);
          k.check();
          expect(k.processes.list()).toEqual([]);
          expect(k.machine.staleReports()).toEqual([]);
        }),
        { seed: SEED, numRuns: 12, verbose: true },
      );
    }, 60_000);
  }
});

describe("processes: the API's edges", () => {
  const k = startKernel({ map: "qemu:256M", mem: 48 * 2 ** 20, cpus: 4, checkStale: true });
  it("bad input is a clear error", () => {
    const p = k.processes.create();
    expect(() => k.processes.mmap(p, -1, 1)).toThrow(/not a range of whole pages/);
    expect(() => k.processes.mmap(p, 2 ** 35 - 1, 2)).toThrow(/beyond the user half/);
    expect(() => k.processes.touch(p, 0x400, "read", 9)).toThrow(/CPU 9 does not exist/);
    k.processes.exit(p);
    expect(() => k.processes.touch(p, 0x400, "read", 0)).toThrow(PagelabError);
    expect(() => k.processes.exit(p)).toThrow(/does not exist/);
    k.check();
  });

  it("a no-execute mapping faults on fetch; an executable one does not", () => {
    const p = k.processes.create();
    k.processes.mmap(p, 0x400, 1);
    k.processes.mmap(p, 0x401, 1, { exec: true });
    expect(() => k.processes.touch(p, 0x400, "fetch", 1)).toThrow(/fetch at user page 0x400/);
    expect(k.processes.touch(p, 0x401, "fetch", 1)).toBeGreaterThan(0);
    expect(() => k.processes.touch(p, 0x400, "write", 1)).toThrow(/SEGFAULT|faults/);
    k.processes.exit(p);
    k.check();
  });

  it("exit frees every frame and page table the process had", () => {
    const free0 = k.pmm.stats().freeFrames;
    const p = k.processes.create();
    k.processes.mmap(p, 0x400, 30, { write: true });
    k.processes.mmap(p, 0x100000, 3, { write: true });
    for (let c = 0; c < 4; c++) k.processes.touch(p, 0x400 + c, "write", c);
    const c = k.processes.fork(p);
    k.processes.exit(p);
    k.processes.exit(c);
    k.check();
    // the heap may keep a slab it grew for the mm structs and VMA records; nothing else is kept
    expect(free0 - k.pmm.stats().freeFrames).toBeLessThanOrEqual(k.heap.stats().slabPages);
  });
});
