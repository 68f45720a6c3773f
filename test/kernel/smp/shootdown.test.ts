import { describe, expect, it } from "vitest";
import { type KernelOptions, startKernel } from "../../../src/kernel/kernel.ts";
import { PCPU_CTXS } from "../../../src/kernel/smp/tlbstate.ts";

const BASE: KernelOptions = { map: "qemu:256M", pmm: "buddy", kmap: "direct", cpus: 4, checkStale: true };

/** A process touched on every CPU at `vpn`, so every TLB caches it. */
function everywhere(opts: KernelOptions = {}) {
  const k = startKernel({ ...BASE, ...opts });
  const p = k.processes.create();
  k.processes.mmap(p, 0x400, 64, { write: true });
  for (let c = 0; c < 4; c++) k.processes.touch(p, 0x401, "write", c);
  return { k, p };
}

describe("shootdowns: Linux's protocol", () => {
  it("munmap sends one IPI to every other CPU running the mm, and no stale entry is used", () => {
    const { k, p } = everywhere();
    const before = k.counters.snapshot();
    k.processes.munmap(p, 0x401, 1);
    k.processes.mmap(p, 0x401, 1, { write: true }); // a new frame at the same page
    const after = k.counters.snapshot();
    expect(after.ipis - before.ipis).toBe(3);
    expect(after.shootdowns - before.shootdowns).toBe(1);
    expect(after.ipiCycles - before.ipiCycles).toBe(3 * 1200);
    for (let c = 0; c < 4; c++) k.processes.touch(p, 0x401, "read", c);
    k.check();
    expect(k.machine.staleReports()).toEqual([]);
  });

  it("a protocol that skips the IPI to one CPU is caught by the stale-TLB detector", () => {
    const { k, p } = everywhere({ shootdown: { faults: { skipIpiTo: 2 } } });
    k.processes.munmap(p, 0x401, 1);
    k.processes.mmap(p, 0x500, 1); // takes the frame just freed (LIFO), so 0x401 gets another one
    k.processes.mmap(p, 0x401, 1, { write: true });
    k.processes.touch(p, 0x401, "read", 1);
    expect(k.machine.staleReports()).toEqual([]);
    k.processes.touch(p, 0x401, "read", 2);
    const r = k.machine.staleReports();
    expect(r.length).toBe(1);
    expect(r[0].cpu).toBe(2);
    expect(r[0].vpn).toBe(0x401);
    expect(() => k.check()).toThrow(/CPU 2 used a stale TLB entry for page 0x401/);
  });

  it("a switch that ignores tlb_gen (reuses a PCID without the flushes it missed) is caught", () => {
    for (const broken of [false, true]) {
      const k = startKernel({ ...BASE, shootdown: { faults: { ignoreGenerations: broken } } });
      const [p, q] = [k.processes.create(), k.processes.create()];
      k.processes.mmap(p, 0x400, 4, { write: true });
      k.processes.mmap(q, 0x400, 4, { write: true });
      k.processes.touch(p, 0x400, "read", 1);
      k.processes.touch(q, 0x400, "read", 1); // CPU 1 leaves p: p's entries stay under its PCID
      const ipis = k.counters.ipis;
      k.processes.munmap(p, 0x400, 1); // CPU 1 is not in p's cpumask: no IPI
      expect(k.counters.ipis).toBe(ipis);
      k.processes.mmap(p, 0x500, 1);
      k.processes.mmap(p, 0x400, 1, { write: true });
      k.processes.touch(p, 0x400, "read", 1); // back to p: its PCID context is one generation behind
      expect(k.machine.staleReports().length, `broken=${broken}`).toBe(broken ? 1 : 0);
    }
  });

  it("PCIDs: switching back to an up-to-date mm keeps its TLB entries (CR3 no-flush bit)", () => {
    const k = startKernel(BASE);
    const [p, q] = [k.processes.create(), k.processes.create()];
    k.processes.mmap(p, 0x400, 1);
    k.processes.mmap(q, 0x400, 1);
    k.processes.touch(p, 0x400, "read", 1);
    k.processes.touch(q, 0x400, "read", 1);
    const walks = k.counters.walks;
    const noflush = k.counters.mmSwitchNoFlush;
    k.processes.touch(p, 0x400, "read", 1);
    expect(k.counters.mmSwitchNoFlush).toBe(noflush + 1);
    expect(k.counters.walks).toBe(walks); // a TLB hit under p's PCID
    const k2 = startKernel({ ...BASE, shootdown: { pcid: false } });
    const [p2, q2] = [k2.processes.create(), k2.processes.create()];
    k2.processes.mmap(p2, 0x400, 1);
    k2.processes.mmap(q2, 0x400, 1);
    k2.processes.touch(p2, 0x400, "read", 1);
    k2.processes.touch(q2, 0x400, "read", 1);
    const w2 = k2.counters.walks;
    k2.processes.touch(p2, 0x400, "read", 1);
    expect(k2.counters.walks).toBeGreaterThan(w2); // without PCIDs every switch flushed
    k.check();
    k2.check();
  });

  it("lazy TLB: a CPU running a kernel thread is skipped, catches up when it returns", () => {
    const { k, p } = everywhere();
    k.processes.switchTo(3, null);
    expect(k.processes.loadedOn(3)).toEqual({ proc: p, lazy: true });
    const ipis = k.counters.ipis;
    k.processes.munmap(p, 0x401, 1); // 4 KiB out of a 64-page mapping: no table freed
    expect(k.counters.ipis - ipis).toBe(2);
    expect(k.counters.lazySkips).toBe(1);
    k.processes.mmap(p, 0x401, 1, { write: true });
    k.processes.touch(p, 0x401, "read", 3); // leaves lazy mode: generation behind -> flush
    k.check();
  });

  it("lazy TLB: freed page tables reach lazy CPUs too, which switch to init_mm", () => {
    const { k, p } = everywhere();
    k.processes.switchTo(3, null);
    const ipis = k.counters.ipis;
    k.processes.munmap(p, 0x400, 64); // the whole mapping: its page table is freed
    expect(k.counters.ipis - ipis).toBe(3);
    expect(k.counters.lazyToInitMm).toBe(1);
    expect(k.processes.loadedOn(3)).toEqual({ proc: null, lazy: false });
    k.check();
  });

  it("without lazy TLB, a kernel thread switches to init_mm at once", () => {
    const { k } = everywhere({ shootdown: { lazyTlb: false } });
    k.processes.switchTo(3, null);
    expect(k.processes.loadedOn(3)).toEqual({ proc: null, lazy: false });
  });

  it("ranges up to the ceiling are INVLPGs; beyond it, and with freed tables, full flushes", () => {
    const { k, p } = everywhere();
    let s = k.counters.snapshot();
    k.processes.munmap(p, 0x402, 8);
    let d = diff(s, k.counters.snapshot());
    expect(d.invlpg).toBe(4 * 8);
    expect(d.fullFlushesByShootdown ?? 0).toBe(0);
    expect(d.shootdownFlushCycles).toBe(32 * 250);
    s = k.counters.snapshot();
    k.processes.munmap(p, 0x40a, 40); // 40 > 33
    d = diff(s, k.counters.snapshot());
    expect(d.invlpg ?? 0).toBe(0);
    expect(d.fullFlushesByShootdown).toBe(4);
    k.check();
  });

  it("a CPU behind by more than one generation does a full flush", () => {
    const { k, p } = everywhere();
    // As if CPU 1 had missed a round (IPIs race in real machines): its context two generations behind.
    const asid = k.tlbState.loadedAsid(1);
    const at = k.tlbState.pcpu(1) + PCPU_CTXS + asid * 16 + 8;
    k.kmem.write64(at, k.kmem.read64(at) - 1);
    const s = k.counters.snapshot();
    k.processes.munmap(p, 0x402, 1);
    const d = diff(s, k.counters.snapshot());
    expect(d.genBehindFull).toBe(1);
    expect(d.fullFlushesByShootdown).toBe(1);
    expect(d.invlpg).toBe(3); // the others: one INVLPG each
    k.check();
  });

  it("kernel mappings go to every CPU, lazy or not (vfree without lazy purge)", () => {
    const k = startKernel({ ...BASE, heap: { lazyPurge: false } });
    k.processes.switchTo(2, k.processes.create());
    k.processes.switchTo(2, null);
    const v = k.run(1, () => k.heap.vmalloc(3 * 4096));
    for (let c = 0; c < 4; c++) k.run(c, () => k.heap.write32(v, 8192, c));
    const s = k.counters.snapshot();
    k.heap.vfree(v);
    const d = diff(s, k.counters.snapshot());
    expect(d.ipis).toBe(3);
    expect(d.shootdowns).toBe(1);
    expect(d.invlpg).toBe(4 * 3);
    k.check();
  });

  it("request records: per-CPU slots vs one kmalloc per shootdown, the difference in counters", () => {
    const run = (requests: "percpu" | "alloc") => {
      const { k, p } = everywhere({ shootdown: { requests } });
      const s = k.counters.snapshot();
      for (let i = 0; i < 10; i++) {
        k.processes.munmap(p, 0x402 + i, 1);
        k.processes.touch(p, 0x401, "read", 1);
      }
      k.check();
      return diff(s, k.counters.snapshot());
    };
    const slot = run("percpu");
    const alloc = run("alloc");
    expect(slot.shootdownReqSlotWrites).toBe(10);
    expect(alloc.shootdownReqAllocs).toBe(10);
    expect(alloc.slabAllocs - slot.slabAllocs).toBe(10); // (munmap also kmallocs VMA records)
    expect(alloc.memWrites).toBeGreaterThan(slot.memWrites);
    expect(alloc.ipis).toBe(slot.ipis);
  });

  it("INVLPGB mode: no IPIs, broadcasts and one TLBSYNC per round, still no stale entry", () => {
    const { k, p } = everywhere({ shootdown: { mode: "invlpgb" } });
    const s = k.counters.snapshot();
    k.processes.munmap(p, 0x401, 12);
    k.processes.mmap(p, 0x401, 12, { write: true });
    const d = diff(s, k.counters.snapshot());
    expect(d.ipis ?? 0).toBe(0);
    expect(d.invlpgb).toBe(2); // 12 pages, 8 per instruction
    expect(d.tlbsync).toBe(1);
    for (let c = 0; c < 4; c++) k.processes.touch(p, 0x401, "read", c);
    // a CPU that switched away and back needs no flush: broadcasts reached it anyway
    const q = k.processes.create();
    k.processes.mmap(q, 0x400, 1);
    k.processes.touch(q, 0x400, "read", 2);
    k.processes.munmap(p, 0x402, 1);
    k.processes.mmap(p, 0x402, 1);
    k.processes.touch(p, 0x402, "read", 2);
    k.processes.exit(q);
    k.check();
  });

  it("runs on every kernel-mapping strategy, 4- and 5-level", () => {
    for (const kmap of ["direct", "recursive", "quickmap", "hybrid"]) {
      for (const levels of [4, 5] as const) {
        const { k, p } = everywhere({ kmap, levels });
        k.processes.munmap(p, 0x401, 1);
        k.processes.mmap(p, 0x401, 1, { write: true });
        for (let c = 0; c < 4; c++) k.processes.touch(p, 0x401, "write", c);
        k.processes.exit(p);
        k.check();
      }
    }
  });
});

function diff(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const key of Object.keys(b)) if (b[key] !== a[key]) out[key] = b[key] - (a[key] ?? 0);
  return out;
}
