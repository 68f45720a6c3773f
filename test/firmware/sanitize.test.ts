/**
 * Hand-made maps with the exact table Linux's e820__update_table() builds from them, and the change
 * report pagelab gives. Expected tables follow the kernel's algorithm (change points, ends after starts,
 * highest type wins, no merge for PRAM/soft reserved), worked by hand.
 */
import { describe, expect, it } from "vitest";
import { PagelabError } from "../../src/errors.ts";
import { E820 } from "../../src/firmware/e820-types.ts";
import { sanitize, updateTable } from "../../src/firmware/sanitize.ts";
import type { MapEntry, MemoryMap } from "../../src/firmware/types.ts";

const e = (start: number | bigint, end: number | bigint, type: number): MapEntry => ({
  start: BigInt(start),
  end: BigInt(end),
  type,
});
const map = (...entries: MapEntry[]): MemoryMap => ({ format: "test", entries, changes: [] });
const kinds = (m: MemoryMap) => m.changes.map((c) => c.kind);
const { RAM, RESERVED, ACPI, NVS, PRAM, SOFT_RESERVED } = E820;

describe("sanitize: Linux's e820__update_table", () => {
  it("an overlap goes to the higher type, splitting the lower entry", () => {
    const out = sanitize(map(e(0, 0xfffff, RAM), e(0x40000, 0x4ffff, RESERVED)));
    expect(out.entries).toEqual([
      e(0, 0x3ffff, RAM),
      e(0x40000, 0x4ffff, RESERVED),
      e(0x50000, 0xfffff, RAM),
    ]);
    expect(kinds(out)).toEqual(["relabelled", "split"]);
    expect(out.changes[0].message).toContain(
      "[mem 0x40000-0x4ffff] of entry #0 [mem 0x0-0xfffff] usable became reserved",
    );
    expect(out.changes[1].message).toContain("split into 2 entries");
  });

  it("the higher number wins even when it is 'less reserved' (ACPI NVS 4 over ACPI data 3)", () => {
    const out = sanitize(map(e(0x1000, 0x2fff, NVS), e(0x2000, 0x3fff, ACPI)));
    expect(out.entries).toEqual([e(0x1000, 0x2fff, NVS), e(0x3000, 0x3fff, ACPI)]);
    expect(kinds(out)).toEqual(["relabelled"]);
  });

  it("unsorted input is sorted and the sort is reported", () => {
    const out = sanitize(map(e(0x100000, 0x1fffff, RAM), e(0, 0x9ffff, RAM), e(0xf0000, 0xfffff, RESERVED)));
    expect(out.entries).toEqual([
      e(0, 0x9ffff, RAM),
      e(0xf0000, 0xfffff, RESERVED),
      e(0x100000, 0x1fffff, RAM),
    ]);
    expect(kinds(out)).toEqual(["sorted"]);
  });

  it("adjacent and overlapping entries of one type merge", () => {
    const out = sanitize(map(e(0, 0xfff, RAM), e(0x1000, 0x1fff, RAM), e(0x1800, 0x2fff, RAM)));
    expect(out.entries).toEqual([e(0, 0x2fff, RAM)]);
    expect(kinds(out)).toEqual(["merged"]);
    expect(out.changes[0].message).toBe(
      "3 overlapping or adjacent usable entries (#0, #1, #2) were merged into [mem 0x0-0x2fff]",
    );
  });

  it("unaligned entries are kept byte-exact (Linux aligns only later, in memblock)", () => {
    const out = sanitize(map(e(0, 0x9fbff, RAM), e(0x9fc00, 0x9ffff, RESERVED)));
    expect(out.entries).toEqual([e(0, 0x9fbff, RAM), e(0x9fc00, 0x9ffff, RESERVED)]);
    expect(out.changes).toEqual([]);
  });

  it("zero-length entries are dropped and said", () => {
    const out = sanitize(map(e(0, 0xfff, RAM), e(0x5000, 0x4fff, RESERVED), e(0x1000, 0x1fff, RAM)));
    expect(out.entries).toEqual([e(0, 0x1fff, RAM)]);
    expect(kinds(out)).toEqual(["dropped", "merged"]);
    expect(out.changes[0].message).toContain(
      "entry #1 [mem 0x5000-0x4fff] reserved was dropped: it has zero length",
    );
  });

  it("a wrapping entry is dropped, quoting what Linux would have done", () => {
    const wrap = e(0xfffffffffffff000n, 0xfffffffffffff000n + 0x2000n - 1n, RESERVED); // end past 2^64
    const top = e(0xffffffff00000000n, 0xffffffffffffffffn, RESERVED); // addr + size == 2^64 wraps to 0 in u64
    const out = sanitize(map(e(0, 0xfff, RAM), wrap, top, e(0x1000, 0x1fff, RAM)));
    expect(out.entries).toEqual([e(0, 0x1fff, RAM)]);
    expect(kinds(out)).toEqual(["dropped", "dropped", "merged"]);
    expect(out.changes[0].message).toContain("wraps past 2^64");
    expect(out.changes[0].message).toContain("would refuse the whole table");
  });

  it("PRAM (type 12) is never merged, and an overlap ending inside it splits it", () => {
    const adjacent = sanitize(map(e(0x100000000n, 0x13fffffffn, PRAM), e(0x140000000n, 0x17fffffffn, PRAM)));
    expect(adjacent.entries).toEqual([
      e(0x100000000n, 0x13fffffffn, PRAM),
      e(0x140000000n, 0x17fffffffn, PRAM),
    ]);
    expect(adjacent.changes).toEqual([]);
    const inside = sanitize(map(e(0x100000000n, 0x1ffffffffn, PRAM), e(0x80000000n, 0x13fffffffn, RAM)));
    expect(inside.entries).toEqual([
      e(0x80000000n, 0xffffffffn, RAM),
      e(0x100000000n, 0x13fffffffn, PRAM),
      e(0x140000000n, 0x1ffffffffn, PRAM),
    ]);
    expect(kinds(inside)).toEqual(["sorted", "split", "relabelled"]);
    expect(inside.changes[1].message).toContain("persistent (type 12) is never merged");
  });

  it("soft reserved (0xefffffff) beats every type, is never merged, and is cut at every change point", () => {
    const out = sanitize(
      map(e(0, 0xffff, SOFT_RESERVED), e(0x10000, 0x1ffff, SOFT_RESERVED), e(0x8000, 0x17fff, NVS)),
    );
    // The NVS entry vanishes, but its start and end still cut the soft-reserved ranges (e820_nomerge).
    expect(out.entries).toEqual([
      e(0, 0x7fff, SOFT_RESERVED),
      e(0x8000, 0xffff, SOFT_RESERVED),
      e(0x10000, 0x17fff, SOFT_RESERVED),
      e(0x18000, 0x1ffff, SOFT_RESERVED),
    ]);
    expect(kinds(out)).toEqual(["sorted", "split", "split", "relabelled", "relabelled", "dropped"]);
    expect(out.changes[5].message).toContain("entry #2 [mem 0x8000-0x17fff] ACPI NVS vanished");
  });

  it("a single entry is left as it is (Linux returns early for fewer than 2)", () => {
    expect(updateTable([e(0x1000, 0x1fff, RAM)])).toEqual([e(0x1000, 0x1fff, RAM)]);
  });

  it("is idempotent: a sanitized table sanitizes to itself with no changes", () => {
    const once = sanitize(
      map(e(0x5000, 0x8fff, RESERVED), e(0, 0x6fff, RAM), e(0x9000, 0x9fff, RAM), e(0x8000, 0x8fff, PRAM)),
    );
    const twice = sanitize({ ...once, changes: [] });
    expect(twice.entries).toEqual(once.entries);
    expect(twice.changes).toEqual([]);
  });

  it("never throws PagelabError on bad entries: it reports them", () => {
    expect(() => sanitize(map(e(5, 1, RAM)))).not.toThrow(PagelabError);
    expect(sanitize(map(e(5, 1, RAM))).entries).toEqual([]);
  });
});
