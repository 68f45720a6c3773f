import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Access } from "../../src/machine/x86/mmu.ts";
import { PAGE_2M, PAGE_4K } from "../../src/machine/x86/pte.ts";
import { TlbArray } from "../../src/machine/x86/tlb.ts";
import { setup, vpnOf } from "./helpers.ts";

const KVA = vpnOf(0xffffffff80000000n);
const UVA = vpnOf(0x400000n);

describe("TLB", () => {
  it("serves repeated translations from the L1 TLB and counts hits per size", () => {
    const { m, cpu, mapper } = setup();
    mapper.map(KVA, 0x50, PAGE_4K, {}).ignore();
    mapper.map(vpnOf(0xffff888000000000n), 0x200, PAGE_2M, {}).ignore();
    cpu.translate(KVA, Access.READ);
    cpu.translate(KVA, Access.READ);
    cpu.translate(vpnOf(0xffff888000000000n) + 3, Access.READ);
    cpu.translate(vpnOf(0xffff888000000000n) + 9, Access.READ);
    expect(m.counters.tlbMisses).toBe(2);
    expect(m.counters.tlbL1Hits).toBe(2);
    expect(m.counters.tlbHits4k).toBe(1);
    expect(m.counters.tlbHits2m).toBe(1);
    expect(m.counters.walks).toBe(2);
  });

  it("refills the L1 from the STLB after an L1 eviction", () => {
    const { m, cpu, mapper } = setup();
    // The L1 4 KiB array has 16 sets of 6 ways: 8 pages 16 apart share one set, so two are evicted.
    const base = vpnOf(0xffffc90000000000n);
    for (let i = 0; i < 8; i++) mapper.map(base + i * 16, 0x1000 + i, PAGE_4K, {}).ignore();
    for (let i = 0; i < 8; i++) cpu.translate(base + i * 16, Access.READ);
    expect(m.counters.tlbMisses).toBe(8);
    cpu.translate(base, Access.READ); // evicted from its 6-way L1 set, still in the STLB
    expect(m.counters.tlbL2Hits).toBe(1);
    expect(m.counters.walks).toBe(8);
  });

  it("a repeated kernel access is served like an L1 hit: same counts, same recency, ended by any fill, INVLPG or PCID switch", () => {
    // The stale detector walks on every hit, so the repeat is served without the lookup only with it off.
    const { m, cpu, mapper } = setup({ pcide: true, checkStale: false });
    // 16 sets of 6 ways: pages 16 apart share one set.
    const base = vpnOf(0xffffc90000000000n);
    // Page 0 is a kernel page; pages 1-7 user pages, whose hits are never served without the lookup.
    mapper.map(base, 0x1000, PAGE_4K, { write: true }).ignore();
    for (let i = 1; i < 8; i++) mapper.map(base + i * 16, 0x1000 + i, PAGE_4K, { user: true }).ignore();
    const user = Access.READ | Access.USER;
    cpu.translate(base, Access.READ);
    for (let i = 1; i < 6; i++) cpu.translate(base + i * 16, user); // set full: page 0 is LRU
    cpu.translate(base, Access.READ); // an L1 hit: page 0 most recent, and remembered
    for (let i = 1; i < 6; i++) cpu.translate(base + i * 16, user); // L1 hits: page 0 is LRU again
    cpu.translate(base, Access.READ); // the repeat: must make page 0 most recent like a lookup would
    expect(m.counters.tlbL1Hits).toBe(7);
    expect(m.counters.tlbHits4k).toBe(7);
    cpu.translate(base + 6 * 16, user); // evicts page 1, not page 0
    const walks = m.counters.walks;
    cpu.translate(base, Access.READ);
    expect(m.counters.walks).toBe(walks);
    expect(m.counters.tlbL1Hits).toBe(8);
    cpu.translate(base + 16, user); // page 1 was evicted from the L1: an STLB hit
    expect(m.counters.tlbL2Hits).toBe(1);
    // A write through an entry that is not dirty yet is not a repeat of the read: the assist happens.
    const pteWrites = m.counters.walkWrites;
    cpu.translate(base, Access.WRITE);
    cpu.translate(base, Access.WRITE);
    expect(m.counters.walkWrites).toBeGreaterThan(pteWrites);
    const w = m.counters.walks;
    cpu.translate(base, Access.WRITE); // now a repeat
    expect(m.counters.walks).toBe(w);
    cpu.invlpg(base);
    cpu.translate(base, Access.WRITE);
    expect(m.counters.walks).toBe(w + 1);
    cpu.writeCr3(mapper.root, 2, true); // another PCID: the entry of PCID 0 is not visible
    cpu.translate(base, Access.WRITE);
    expect(m.counters.walks).toBe(w + 2);
  });

  it("LRU replacement within a set", () => {
    const a = new TlbArray({ entries: 4, ways: 2 }); // 2 sets
    a.insert(0, 0, 0, 0, 100, 0);
    a.insert(2, 0, 0, 0, 102, 0);
    expect(a.lookup(0, 0, 0)).toBeGreaterThanOrEqual(0); // 0 is now most recent
    a.insert(4, 0, 0, 0, 104, 0); // evicts 2
    expect(a.lookup(2, 0, 0)).toBe(-1);
    expect(a.lookup(0, 0, 0)).toBeGreaterThanOrEqual(0);
    expect(a.lookup(4, 0, 0)).toBeGreaterThanOrEqual(0);
  });

  it("the miss filter never changes a lookup: random fills, invalidations and flushes against a scan", () => {
    // Page numbers collide in the filter's buckets (1024 apart) and in the sets.
    const pn = fc.oneof(
      fc.integer({ min: 0, max: 40 }),
      fc.integer({ min: 0, max: 40 }).map((x) => x * 1024),
    );
    const op = fc.oneof(
      fc.record({
        k: fc.constant("insert"),
        pn,
        shift: fc.constantFrom(0, 9),
        pcid: fc.integer({ min: 0, max: 2 }),
        global: fc.integer({ min: 0, max: 1 }),
      }),
      fc.record({ k: fc.constant("invlpg"), pn, pcid: fc.integer({ min: 0, max: 2 }), keep: fc.boolean() }),
      fc.record({ k: fc.constant("flush"), pcid: fc.integer({ min: -1, max: 2 }), keep: fc.boolean() }),
      fc.record({
        k: fc.constant("lookup"),
        pn,
        shift: fc.constantFrom(0, 9),
        pcid: fc.integer({ min: 0, max: 2 }),
      }),
    );
    fc.assert(
      fc.property(
        fc.constantFrom([8, 8], [16, 4]),
        fc.array(op, { maxLength: 200 }),
        ([entries, ways], ops) => {
          const a = new TlbArray({ entries, ways });
          const scan = (p: number, shift: number, pcid: number) => {
            const first = (p & (a.sets - 1)) * a.ways;
            for (let i = first; i < first + a.ways; i++)
              if (a.tag[i] === p && a.shift[i] === shift && (a.pcid[i] === pcid || a.global[i] === 1))
                return i;
            return -1;
          };
          for (const o of ops) {
            if (o.k === "insert") a.insert(o.pn, o.shift, o.pcid, o.global, 7, 0);
            else if (o.k === "invlpg") a.invalidateAddress(o.pn, o.pcid, o.keep, [0]);
            else if (o.k === "flush") a.flush(o.pcid, o.keep);
            else expect(a.lookup(o.pn, o.shift, o.pcid)).toBe(scan(o.pn, o.shift, o.pcid));
            // The filter counts exactly the valid entries of each bucket.
            const want = new Uint16Array(a.bucket.length);
            for (let i = 0; i < a.tag.length; i++)
              if (a.tag[i] !== -1) want[a.tag[i] & (a.bucket.length - 1)]++;
            expect(Array.from(a.bucket)).toEqual(Array.from(want));
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("INVLPG drops one address; a CR3 write drops non-global entries and keeps global ones", () => {
    const { m, cpu, mapper } = setup();
    mapper.map(KVA, 0x50, PAGE_4K, { global: true }).ignore();
    mapper.map(UVA, 0x60, PAGE_4K, { user: true }).ignore();
    cpu.translate(KVA, Access.READ);
    cpu.translate(UVA, Access.READ | Access.USER);
    cpu.writeCr3(mapper.root);
    const walks = m.counters.walks;
    cpu.translate(KVA, Access.READ); // global: survives
    expect(m.counters.walks).toBe(walks);
    cpu.translate(UVA, Access.READ | Access.USER); // flushed
    expect(m.counters.walks).toBe(walks + 1);
    cpu.invlpg(KVA); // INVLPG drops global entries too
    cpu.translate(KVA, Access.READ);
    expect(m.counters.walks).toBe(walks + 2);
    expect(m.counters.invlpg).toBe(1);
    expect(m.counters.cr3Writes).toBe(2);
    cpu.flushAllIncludingGlobal();
    expect(cpu.tlb.occupancy()).toBe(0);
  });

  it("PCIDs: entries are tagged; CR3 bit 63 keeps them; INVPCID types 0-3", () => {
    const { m, cpu, mapper } = setup({ pcide: true });
    mapper.map(UVA, 0x60, PAGE_4K, { user: true }).ignore();
    mapper.map(KVA, 0x50, PAGE_4K, { global: true }).ignore();
    cpu.writeCr3(mapper.root, 1);
    cpu.translate(UVA, Access.READ);
    cpu.translate(KVA, Access.READ);
    cpu.writeCr3(mapper.root, 2, true); // switch PCID without flushing
    let walks = m.counters.walks;
    cpu.translate(UVA, Access.READ); // PCID 1's entry is not visible under PCID 2
    expect(m.counters.walks).toBe(walks + 1);
    cpu.writeCr3(mapper.root, 1, true);
    walks = m.counters.walks;
    cpu.translate(UVA, Access.READ); // PCID 1's entry is still cached
    expect(m.counters.walks).toBe(walks);
    cpu.invpcid(1, 1); // single context: PCID 1, globals kept
    cpu.translate(UVA, Access.READ);
    cpu.translate(KVA, Access.READ);
    expect(m.counters.walks).toBe(walks + 1);
    cpu.invpcid(3); // all contexts except globals
    cpu.translate(KVA, Access.READ);
    expect(m.counters.walks).toBe(walks + 1);
    cpu.invpcid(2); // everything
    cpu.translate(KVA, Access.READ);
    expect(m.counters.walks).toBe(walks + 2);
    cpu.invpcid(0, 1, KVA); // individual address, globals kept
    cpu.translate(KVA, Access.READ);
    expect(m.counters.walks).toBe(walks + 2);
  });

  it("rejects PCID use without CR4.PCIDE and out-of-range CR3 values", () => {
    const { cpu } = setup();
    expect(() => cpu.writeCr3(0x100, 5)).toThrow(/#GP/);
    expect(() => cpu.writeCr3(2 ** 40)).toThrow(/beyond MAXPHYADDR/);
  });

  it("paging-structure caches shorten walks and are flushed by INVLPG", () => {
    const { m, cpu, mapper } = setup({ pagingStructureCaches: true });
    mapper.map(KVA, 0x50, PAGE_4K, {}).ignore();
    mapper.map(KVA + 1, 0x51, PAGE_4K, {}).ignore();
    cpu.translate(KVA, Access.READ);
    const r = m.counters.walkReads;
    cpu.translate(KVA + 1, Access.READ); // PDE cache hit: only the PTE is read
    expect(m.counters.walkReads - r).toBe(1);
    expect(m.counters.pscHits).toBe(1);
    cpu.invlpg(KVA + 1);
    const r2 = m.counters.walkReads;
    cpu.translate(KVA + 1, Access.READ);
    expect(m.counters.walkReads - r2).toBe(4);
  });
});

describe("stale-TLB detector", () => {
  it("reports a missing flush after unmap, and nothing when the flush is applied", () => {
    const { m, cpu, mapper } = setup();
    mapper.map(KVA, 0x50, PAGE_4K, { write: true }).ignore();
    cpu.translate(KVA, Access.READ);
    const u = mapper.unmap(KVA);
    cpu.translate(KVA, Access.READ); // served from the TLB though the page is gone
    expect(m.staleReports()).toHaveLength(1);
    expect(m.staleReports()[0].reason).toBe("page no longer mapped");
    u.flush.apply(cpu);
    expect(cpu.translate(KVA, Access.READ)).toBe(-1);
    expect(m.counters.staleTlbHits).toBe(1);
  });

  it("reports a write-permission downgrade without a flush; an upgrade only faults spuriously", () => {
    const { m, cpu, mapper } = setup();
    mapper.map(KVA, 0x50, PAGE_4K, { write: true }).ignore();
    cpu.translate(KVA, Access.WRITE);
    const f = mapper.protect(KVA, { write: false });
    expect(f.required).toBe(true);
    cpu.translate(KVA, Access.READ);
    expect(m.staleReports()[0].reason).toBe("write permission revoked");
    f.apply(cpu);
    cpu.translate(KVA, Access.READ);
    const up = mapper.protect(KVA, { write: true });
    expect(up.required).toBe(false);
    up.ignore();
    expect(cpu.translate(KVA, Access.WRITE)).toBe(-1); // spurious fault from the stale read-only entry
    expect(cpu.translate(KVA, Access.WRITE)).toBe(0x50); // the fault dropped the entry
    expect(m.staleReports()).toHaveLength(1);
  });
});
