/**
 * The E820 sanitizer: the same table Linux builds with `e820__update_table()` (arch/x86/kernel/e820.c),
 * plus a report of every change it made and why.
 *
 * Linux's algorithm, reproduced step by step in `updateTable()`:
 *   1. Every non-empty entry contributes two change points, its start and its (exclusive) end.
 *   2. Points are sorted by address; at equal addresses an end sorts AFTER a start (`cpcompare`).
 *   3. Sweeping the points, Linux keeps the set of entries covering the current address; the type of
 *      the output from here on is the HIGHEST type number in that set (1 usable loses to everything).
 *   4. A new output entry starts whenever that type changes, and also at every change point while the
 *      type is non-mergeable (PRAM 12, soft reserved: `e820_nomerge()`), so those are never merged and
 *      an overlapping entry ending inside one splits it. Zero-size pieces are not emitted.
 *   5. A table of fewer than 2 entries is returned unchanged; a table with a wrapping entry
 *      (addr + size overflows 2^64) is refused whole (`return -1`, left unsorted).
 *
 * pagelab deviates only on wrapping entries: it drops the wrapping entry (and says so, quoting what Linux
 * would have done) and sanitizes the rest, because a refused table is useless downstream.
 */
import { hex } from "../errors.ts";
import { e820NoMerge, e820TypeName, isUsable } from "./e820-types.ts";
import { type Change, type MapEntry, type MemoryMap, TWO_64 } from "./types.ts";

interface ChangePoint {
  addr: bigint;
  isEnd: boolean;
  entry: number;
}

function changePoints(entries: readonly MapEntry[]): ChangePoint[] {
  const points: ChangePoint[] = [];
  entries.forEach((e, i) => {
    if (e.end < e.start) return; // zero length: Linux omits it
    points.push({ addr: e.start, isEnd: false, entry: i }, { addr: e.end + 1n, isEnd: true, entry: i });
  });
  return points.sort((a, b) =>
    a.addr === b.addr ? Number(a.isEnd) - Number(b.isEnd) : a.addr < b.addr ? -1 : 1,
  );
}

/** Counts of the types covering the sweep's address, with the highest in O(log n) (a lazy max-heap). */
class Covering {
  private readonly count = new Map<number, number>();
  private readonly heap: number[] = [];

  add(type: number, delta: number): void {
    const c = (this.count.get(type) ?? 0) + delta;
    this.count.set(type, c);
    if (c === 1 && delta > 0) this.push(type);
  }

  /** The highest type with a positive count (0 when none). */
  highest(): number {
    const h = this.heap;
    while (h.length > 0 && (this.count.get(h[0]) ?? 0) <= 0) this.pop();
    return h.length > 0 ? h[0] : 0;
  }

  private push(t: number): void {
    const h = this.heap;
    let i = h.push(t) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (h[parent] >= h[i]) break;
      [h[parent], h[i]] = [h[i], h[parent]];
      i = parent;
    }
  }

  private pop(): void {
    const h = this.heap;
    const last = h.pop() as number;
    if (h.length === 0) return;
    h[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && h[l] > h[m]) m = l;
      if (r < h.length && h[r] > h[m]) m = r;
      if (m === i) return;
      [h[m], h[i]] = [h[i], h[m]];
      i = m;
    }
  }
}

/**
 * Linux's `e820__update_table()` on entries that neither wrap nor exceed 2^64 (pure; no reporting).
 * Returns the sanitized entries (inclusive ends). O(n log n): the sort, and a heap for the highest type.
 */
export function updateTable(entries: readonly MapEntry[]): MapEntry[] {
  if (entries.length < 2) return entries.map((e) => ({ ...e }));
  const covering = new Covering();
  const out: MapEntry[] = [];
  let lastType = 0;
  let lastAddr = 0n;
  for (const p of changePoints(entries)) {
    covering.add(entries[p.entry].type, p.isEnd ? -1 : 1);
    const current = covering.highest();
    if (current === lastType && !e820NoMerge(current)) continue;
    if (lastType !== 0 && p.addr > lastAddr) out.push({ start: lastAddr, end: p.addr - 1n, type: lastType });
    if (current !== 0) lastAddr = p.addr;
    lastType = current;
  }
  return out;
}

/** Is the entry unusable for the sweep, and why (zero length, wrapping, type 0)? */
function rejectReason(e: MapEntry): string | undefined {
  if (e.start < 0n || e.end + 1n > TWO_64 - 1n || e.end < e.start - 1n) {
    return (
      "it wraps past 2^64 (start + size overflows); Linux's e820__update_table() would refuse the whole " +
      "table and leave it unsorted, pagelab drops only this entry"
    );
  }
  if (e.end === e.start - 1n) return "it has zero length (Linux omits empty entries from the sweep)";
  if (e.type === 0) return "type 0 is no type (Linux's sweep treats it as a hole)";
  return undefined;
}

/** Math.min/max for bigints (Math.* refuses them). */
export function bigMin(a: bigint, b: bigint): bigint {
  return b < a ? b : a;
}
export function bigMax(a: bigint, b: bigint): bigint {
  return b > a ? b : a;
}

function fmt(start: bigint, end: bigint): string {
  return `[mem ${hex(start)}-${hex(end)}]`;
}

function describe(e: MapEntry, i: number): string {
  return `entry #${i} ${fmt(e.start, e.end)} ${e820TypeName(e.type)}`;
}

/** First index in a sorted array whose key is > x (keys ascending). */
function upperBound(keys: readonly bigint[], x: bigint): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (keys[mid] <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** First index of the sorted output whose end is >= s (the first that can overlap [s, ...]). */
function firstEndingFrom(out: readonly MapEntry[], s: bigint): number {
  let lo = 0;
  let hi = out.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (out[mid].end < s) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** At most this many pieces of one entry are reported one by one; the rest are counted. */
const LISTED = 8;

/** The output indices of each type, ascending (the output is sorted and non-overlapping). */
function indicesByType(out: readonly MapEntry[]): Map<number, number[]> {
  const m = new Map<number, number[]>();
  out.forEach((o, i) => {
    const l = m.get(o.type);
    if (l) l.push(i);
    else m.set(o.type, [i]);
  });
  return m;
}

/** How many of the ascending indices lie in [lo, hi). */
function countIn(indices: readonly number[] | undefined, lo: number, hi: number): number {
  if (!indices) return 0;
  const at = (x: number) => {
    let a = 0;
    let b = indices.length;
    while (a < b) {
      const mid = (a + b) >> 1;
      if (indices[mid] < x) a = mid + 1;
      else b = mid;
    }
    return a;
  };
  return at(hi) - at(lo);
}

/**
 * Report what happened to each surviving input entry: split, relabelled, dropped. O(n log n): the
 * overlapping output entries are found and counted by binary search; at most LISTED relabelled pieces
 * of one entry are listed, the others counted in one line.
 */
function reportInputs(
  input: readonly MapEntry[],
  kept: readonly number[],
  out: readonly MapEntry[],
): Change[] {
  const changes: Change[] = [];
  const byType = indicesByType(out);
  const outStarts = out.map((o) => o.start);
  for (const i of kept) {
    const e = input[i];
    const lo = firstEndingFrom(out, e.start);
    const hi = upperBound(outStarts, e.end);
    const same = countIn(byType.get(e.type), lo, hi);
    const other = hi - lo - same;
    let listed = 0;
    for (let k = lo; k < hi && listed < LISTED; k++) {
      const o = out[k];
      if (o.type === e.type) continue;
      listed++;
      const s = bigMax(o.start, e.start);
      const t = bigMin(o.end, e.end);
      changes.push({
        kind: "relabelled",
        start: s,
        end: t,
        message:
          `${fmt(s, t)} of ${describe(e, i)} became ${e820TypeName(o.type)}: it overlaps an entry of ` +
          `higher type number (${o.type} > ${e.type}), and on overlap the higher type wins`,
      });
      if (k - lo > 4 * LISTED) break; // long runs of its own (never-merged) type: count the rest
    }
    if (other > listed) {
      changes.push({
        kind: "relabelled",
        start: e.start,
        end: e.end,
        message: `${other - listed} more piece(s) of ${describe(e, i)} became types of higher number (on overlap the higher type wins)`,
      });
    }
    if (same === 0) {
      changes.push({
        kind: "dropped",
        start: e.start,
        end: e.end,
        message: `${describe(e, i)} vanished: entries of higher type number cover all of it`,
      });
    } else if (same > 1) {
      const why = e820NoMerge(e.type)
        ? `${e820TypeName(e.type)} is never merged, so it is cut at every change point inside it`
        : "entries of higher type number overlap its middle";
      changes.push({
        kind: "split",
        start: e.start,
        end: e.end,
        message: `${describe(e, i)} was split into ${same} entries: ${why}`,
      });
    }
  }
  return changes;
}

/**
 * Report output entries built from more than one input entry of their type. O(n log n): per type, the
 * inputs sorted by start and by end; the contributors of an output entry [s, e] are counted as
 * #(start <= e) - #(end < s), and at most LISTED of them are named.
 */
function reportMerges(
  input: readonly MapEntry[],
  kept: readonly number[],
  out: readonly MapEntry[],
): Change[] {
  const changes: Change[] = [];
  const perType = new Map<number, number[]>();
  for (const i of kept) {
    const l = perType.get(input[i].type);
    if (l) l.push(i);
    else perType.set(input[i].type, [i]);
  }
  const sorted = new Map<number, { byStart: number[]; starts: bigint[]; ends: bigint[] }>();
  for (const [t, idx] of perType) {
    const byStart = [...idx].sort((a, b) =>
      input[a].start < input[b].start ? -1 : input[a].start > input[b].start ? 1 : a - b,
    );
    const ends = idx.map((i) => input[i].end).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    sorted.set(t, { byStart, starts: byStart.map((i) => input[i].start), ends });
  }
  for (const o of out) {
    const t = sorted.get(o.type);
    if (!t) continue;
    const p = upperBound(t.starts, o.end);
    const count = p - upperBound(t.ends, o.start - 1n);
    if (count < 2) continue;
    // Name the contributors: walk back from the last input starting inside, keeping those that reach o.
    const named: number[] = [];
    for (let j = p - 1; j >= 0 && named.length < LISTED && p - j <= 8 * LISTED; j--)
      if (input[t.byStart[j]].end >= o.start) named.push(t.byStart[j]);
    named.sort((a, b) => a - b);
    let overlap = false;
    const byAddr = [...named].sort((a, b) => (input[a].start < input[b].start ? -1 : 1));
    for (let x = 1; x < byAddr.length; x++)
      if (input[byAddr[x]].start <= input[byAddr[x - 1]].end) overlap = true;
    const complete = named.length === count;
    const kind = overlap || !complete ? "overlapping or adjacent" : "adjacent";
    const list = complete ? named.join(", #") : `${named.join(", #")} and ${count - named.length} more`;
    changes.push({
      kind: "merged",
      start: o.start,
      end: o.end,
      message: `${count} ${kind} ${e820TypeName(o.type)} entries (#${list}) were merged into ${fmt(o.start, o.end)}`,
    });
  }
  return changes;
}

function isSorted(entries: readonly MapEntry[]): boolean {
  for (let i = 1; i < entries.length; i++) if (entries[i].start < entries[i - 1].start) return false;
  return true;
}

/**
 * Sanitize a map as Linux does and report every change. Pure: returns a new map (`sanitized: true`)
 * whose `changes` are the input's plus this pass's. Idempotent: sanitizing a sanitized map changes nothing.
 */
export function sanitize(map: MemoryMap): MemoryMap {
  const input = map.entries;
  const changes: Change[] = [];
  const kept: number[] = [];
  input.forEach((e, i) => {
    const why = rejectReason(e);
    if (why === undefined) kept.push(i);
    else
      changes.push({
        kind: "dropped",
        start: e.start,
        end: e.end,
        message: `${describe(e, i)} was dropped: ${why}`,
      });
  });
  if (kept.length < 2) {
    return {
      ...map,
      entries: kept.map((i) => ({ ...input[i] })),
      changes: [...map.changes, ...changes],
      sanitized: true,
    };
  }
  const valid = kept.map((i) => input[i]);
  if (!isSorted(valid))
    changes.push({ kind: "sorted", message: "the entries were not in address order; Linux sorts them" });
  const out = updateTable(valid);
  const all = map.changes.concat(changes, reportInputs(input, kept, out), reportMerges(input, kept, out));
  return { ...map, entries: out, changes: all, sanitized: true };
}

/** Sum of the bytes of the usable entries of a SANITIZED map, as a number (usable RAM is below 2^53). */
export function usableBytes(map: MemoryMap): number {
  let total = 0n;
  for (const e of map.entries) if (isUsable(e.type) && e.end >= e.start) total += e.end - e.start + 1n;
  return Number(total);
}
