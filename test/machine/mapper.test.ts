import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PagelabError } from "../../src/errors.ts";
import { checkTree } from "../../src/machine/x86/inspect.ts";
import { infoTlb } from "../../src/machine/x86/dump.ts";
import { Access } from "../../src/machine/x86/mmu.ts";
import { PAGE_1G, PAGE_2M, PAGE_4K, type PageShift } from "../../src/machine/x86/pte.ts";
import { setup, vpnOf } from "./helpers.ts";

const KVA = vpnOf(0xffffffff80000000n);
const DMAP = vpnOf(0xffff888000000000n);

/** Everything observable about the tables: the leaf list, the owner's counts, the frames in use. */
function snapshot(s: ReturnType<typeof setup>) {
  return {
    tlb: infoTlb(s.m.mem, s.mapper.root, s.m.levels),
    tables: s.mapper.tables,
    frames: [...s.frames.live].sort(),
    check: checkTree(s.m.mem, s.mapper.root, s.m.levels, {
      maxPhysAddrBits: 46,
      expectTables: s.mapper.tables,
    }).violations,
  };
}

function expectError(fn: () => unknown, code: string, message?: RegExp) {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(PagelabError);
    expect((e as PagelabError).code).toBe(code);
    if (message) expect((e as Error).message).toMatch(message);
    return;
  }
  throw new Error(`expected ${code}`);
}

describe("Mapper", () => {
  it("maps, queries, protects and unmaps; frees emptied tables", () => {
    const s = setup();
    const { mapper, m } = s;
    expect(mapper.tables).toBe(1);
    mapper.map(KVA, 0x50, PAGE_4K, { write: true }).ignore();
    expect(mapper.tables).toBe(4); // root + PDPT + PD + PT
    expect(m.counters.ptPages).toBe(4);
    const leaf = mapper.query(KVA + 0)!;
    expect(leaf).toMatchObject({ pfn: 0x50, shift: 0, level: 1 });
    const u = mapper.unmap(KVA);
    expect(u.base).toBe(0x50);
    expect(u.flush.tablesFreed).toBe(3);
    u.flush.apply(s.cpu);
    expect(mapper.tables).toBe(1);
    expect(m.counters.ptPagesFreed).toBe(3);
    expect(s.frames.live.size).toBe(1);
    expect(mapper.query(KVA)).toBeNull();
  });

  it("mapRange picks 1 GiB, 2 MiB and 4 KiB leaves by alignment", () => {
    const { mapper, cpu } = setup();
    // 1 GiB + 2 MiB + 4 KiB starting at an aligned frame
    const r = mapper.mapRange(DMAP, 0x40000, 262144 + 512 + 1, { write: true, nx: true, global: true });
    expect([r.leaves1g, r.leaves2m, r.leaves4k]).toEqual([1, 1, 1]);
    expect(cpu.translate(DMAP + 262144 + 511, Access.READ)).toBe(0x40000 + 262144 + 511);
    const odd = mapper.mapRange(DMAP + 2 * 262144 + 1, 0x80001, 1023, {});
    expect([odd.leaves1g, odd.leaves2m, odd.leaves4k]).toEqual([0, 1, 511]);
  });

  it("bad input gives a typed error and leaves the tables unchanged", () => {
    const s = setup({ maxPhysAddrBits: 40 });
    const { mapper } = s;
    mapper.map(DMAP, 0x200, PAGE_2M, {}).ignore();
    mapper.map(KVA, 0x50, PAGE_4K, {}).ignore();
    const before = snapshot(s);
    expectError(() => mapper.map(2 ** 36, 0, PAGE_4K, {}), "NON_CANONICAL");
    expectError(
      () => mapper.map(DMAP + 512 + 1, 0x400, PAGE_2M, {}),
      "MISALIGNED",
      /not aligned to a 2 MiB page/,
    );
    expectError(() => mapper.map(DMAP + 1024, 0x401, PAGE_2M, {}), "MISALIGNED");
    expectError(
      () => mapper.map(DMAP + 2048, 2 ** 28, PAGE_4K, {}),
      "PA_OUT_OF_RANGE",
      /MAXPHYADDR \(40 bits\)/,
    );
    expectError(
      () => mapper.map(DMAP + 5, 0x999, PAGE_4K, {}),
      "LARGE_PAGE_CONFLICT",
      /2 MiB page already maps/,
    );
    expectError(() => mapper.map(KVA, 0x51, PAGE_4K, {}), "ALREADY_MAPPED");
    expectError(() => mapper.map(KVA, 0x200, PAGE_2M, {}), "TABLE_CONFLICT");
    expectError(() => mapper.unmap(DMAP + 3), "MISALIGNED", /inside a 2 MiB page/);
    expectError(() => mapper.unmap(KVA + 1), "NOT_MAPPED");
    expectError(() => mapper.map(KVA + 1, 0x52, PAGE_4K, { pk: 16 }), "BAD_PROT");
    expect(snapshot(s)).toEqual(before);
  });

  it("out of frames mid-walk: the tables created for the call are returned", () => {
    const s = setup({ frames: 3 }); // root + 2 tables: a new 4 KiB path needs 3
    const before = snapshot(s);
    expectError(
      () => s.mapper.map(KVA, 0x50, PAGE_4K, {}),
      "OUT_OF_MEMORY",
      /no frame left for a level-1 page table/,
    );
    expect(snapshot(s)).toEqual(before);
    expect(s.m.counters.ptPages).toBe(1);
  });

  it("flush tokens must be consumed once", () => {
    const { mapper, cpu } = setup();
    mapper.map(KVA, 0x50, PAGE_4K, {}).ignore();
    const u = mapper.unmap(KVA);
    expect(mapper.pending).toBe(1);
    u.flush.apply(cpu);
    expect(mapper.pending).toBe(0);
    expect(() => u.flush.apply(cpu)).toThrow(/already applied/);
  });

  it("a flush beyond 33 pages becomes a full flush", () => {
    const { mapper, m, cpu } = setup();
    mapper.freeEmptyTables = false;
    mapper.map(DMAP, 0x200, PAGE_2M, {}).ignore();
    const u = mapper.unmap(DMAP);
    expect(u.flush.invlpgCount).toBe(1); // one INVLPG covers a 2 MiB page
    u.flush.apply(cpu);
    expect(m.counters.invlpg).toBe(1);
  });
});

type Op =
  | { kind: "map"; slot: number; size: PageShift; pfn: number; write: boolean; user: boolean }
  | { kind: "unmap"; slot: number }
  | { kind: "protect"; slot: number; write: boolean }
  | { kind: "touch"; slot: number; write: boolean };

describe("Mapper property: random map/unmap/protect keep tables consistent and translations right", () => {
  it("holds for random sequences (checker after every step)", () => {
    const sizes: PageShift[] = [PAGE_4K, PAGE_2M, PAGE_1G];
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({
        kind: fc.constant("map" as const),
        slot: fc.integer({ min: 0, max: 5 }),
        size: fc.constantFrom(...sizes),
        pfn: fc.integer({ min: 0, max: 63 }),
        write: fc.boolean(),
        user: fc.boolean(),
      }),
      fc.record({ kind: fc.constant("unmap" as const), slot: fc.integer({ min: 0, max: 5 }) }),
      fc.record({
        kind: fc.constant("protect" as const),
        slot: fc.integer({ min: 0, max: 5 }),
        write: fc.boolean(),
      }),
      fc.record({
        kind: fc.constant("touch" as const),
        slot: fc.integer({ min: 0, max: 5 }),
        write: fc.boolean(),
      }),
    );
    // Six slots, 1 GiB apart in the user half and 3 GiB apart in the kernel half: every size fits in any slot.
    const slotVpn = (slot: number) => (slot < 3 ? slot * 262144 : 2 ** 35 + (slot - 3) * 262144 * 3);
    let spuriousRetries = 0;
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 80, size: "medium" }), (ops) => {
        const s = setup();
        type Entry = {
          vpn: number;
          pfn: number;
          size: PageShift;
          write: boolean;
          user: boolean;
          upgraded: boolean;
        };
        const model = new Map<number, Entry>();
        for (const o of ops) {
          const vpn = slotVpn(o.slot);
          const cur = model.get(o.slot);
          if (o.kind === "map") {
            const pfn = o.pfn * 262144;
            if (cur) {
              expect(() => s.mapper.map(vpn, pfn, o.size, {})).toThrow(PagelabError);
            } else {
              s.mapper.map(vpn, pfn, o.size, { write: o.write, user: o.user }).ignore();
              model.set(o.slot, { vpn, pfn, size: o.size, write: o.write, user: o.user, upgraded: false });
            }
          } else if (o.kind === "unmap") {
            if (!cur) expect(() => s.mapper.unmap(vpn)).toThrow(PagelabError);
            else {
              s.mapper.unmap(vpn).flush.apply(s.cpu);
              model.delete(o.slot);
            }
          } else if (o.kind === "protect") {
            if (cur) {
              const f = s.mapper.protect(vpn, { write: o.write, user: cur.user });
              // A pure upgrade needs no flush (f.required is false): a stale read-only entry may remain.
              expect(f.required).toBe(cur.write && !o.write);
              f.apply(s.cpu);
              cur.upgraded = !cur.write && o.write;
              cur.write = o.write;
            }
          } else {
            const off = cur ? 2 ** cur.size - 1 : 0;
            const access = o.write ? Access.WRITE : Access.READ;
            let pfn = s.cpu.translate(vpn + off, access);
            if (pfn === -1 && cur?.upgraded && o.write) {
              // Spurious fault from a stale read-only entry; the fault dropped it, so the retry walks.
              spuriousRetries++;
              pfn = s.cpu.translate(vpn + off, access);
            }
            if (cur && o.write) cur.upgraded = false;
            if (!cur) expect(pfn).toBe(-1);
            else if (o.write && !cur.write) expect(pfn).toBe(-1);
            else expect(pfn).toBe(cur.pfn + off);
          }
          const { violations, stats } = checkTree(s.m.mem, s.mapper.root, 4, {
            maxPhysAddrBits: 46,
            expectTables: s.mapper.tables,
          });
          expect(violations).toEqual([]);
          expect(stats.leaves4k + stats.leaves2m + stats.leaves1g).toBe(model.size);
          expect(s.mapper.pending).toBe(0);
          expect(s.m.staleReports()).toEqual([]);
          expect(s.frames.live.size).toBe(s.mapper.tables);
        }
      }),
      { seed: 20261125, numRuns: 150 },
    );
    expect(spuriousRetries).toBeGreaterThan(0); // the runs did reach the permission-upgrade case
  });
});
