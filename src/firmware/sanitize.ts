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

function highestType(covering: Map<number, number>): number {
  let t = 0;
  for (const [type, count] of covering) if (count > 0 && type > t) t = type;
  return t;
}

/**
 * Linux's `e820__update_table()` on entries that neither wrap nor exceed 2^64 (pure; no reporting).
 * Returns the sanitized entries (inclusive ends).
 */
export function updateTable(entries: readonly MapEntry[]): MapEntry[] {
  if (entries.length < 2) return entries.map((e) => ({ ...e }));
  const covering = new Map<number, number>();
  const out: MapEntry[] = [];
  let lastType = 0;
  let lastAddr = 0n;
  for (const p of changePoints(entries)) {
    const t = entries[p.entry].type;
    covering.set(t, (covering.get(t) ?? 0) + (p.isEnd ? -1 : 1));
    const current = highestType(covering);
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

/** Output entries overlapping [s, e] (inclusive), found by binary search in the sorted output. */
function overlapping(out: readonly MapEntry[], s: bigint, e: bigint): MapEntry[] {
  let lo = 0;
  let hi = out.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (out[mid].end < s) lo = mid + 1;
    else hi = mid;
  }
  const found: MapEntry[] = [];
  for (let i = lo; i < out.length && out[i].start <= e; i++) found.push(out[i]);
  return found;
}

/** Report what happened to each surviving input entry: split, relabelled, dropped. */
function reportInputs(
  input: readonly MapEntry[],
  kept: readonly number[],
  out: readonly MapEntry[],
): Change[] {
  const changes: Change[] = [];
  for (const i of kept) {
    const e = input[i];
    const over = overlapping(out, e.start, e.end);
    const same = over.filter((o) => o.type === e.type);
    for (const o of over.filter((x) => x.type !== e.type)) {
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
    }
    if (same.length === 0) {
      changes.push({
        kind: "dropped",
        start: e.start,
        end: e.end,
        message: `${describe(e, i)} vanished: entries of higher type number cover all of it`,
      });
    } else if (same.filter((o) => o.start <= e.end && o.end >= e.start).length > 1) {
      const why = e820NoMerge(e.type)
        ? `${e820TypeName(e.type)} is never merged, so it is cut at every change point inside it`
        : "entries of higher type number overlap its middle";
      changes.push({
        kind: "split",
        start: e.start,
        end: e.end,
        message: `${describe(e, i)} was split into ${same.length} entries: ${why}`,
      });
    }
  }
  return changes;
}

/** Report output entries built from more than one input entry of their type. */
function reportMerges(
  input: readonly MapEntry[],
  kept: readonly number[],
  out: readonly MapEntry[],
): Change[] {
  const changes: Change[] = [];
  const byStart = [...kept].sort((a, b) => (input[a].start < input[b].start ? -1 : 1));
  let k = 0;
  for (const o of out) {
    const from: number[] = [];
    while (k < byStart.length && input[byStart[k]].end < o.start) k++;
    for (let j = k; j < byStart.length && input[byStart[j]].start <= o.end; j++) {
      const e = input[byStart[j]];
      if (e.type === o.type && e.end >= o.start) from.push(byStart[j]);
    }
    if (from.length < 2) continue;
    const overlap = from.some((a, x) =>
      from.some((b, y) => x < y && input[a].start <= input[b].end && input[b].start <= input[a].end),
    );
    changes.push({
      kind: "merged",
      start: o.start,
      end: o.end,
      message:
        `${from.length} ${overlap ? "overlapping or adjacent" : "adjacent"} ${e820TypeName(o.type)} entries ` +
        `(#${from.join(", #")}) were merged into ${fmt(o.start, o.end)}`,
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
  changes.push(...reportInputs(input, kept, out), ...reportMerges(input, kept, out));
  return { ...map, entries: out, changes: [...map.changes, ...changes], sanitized: true };
}

/** Sum of the bytes of the usable entries of a SANITIZED map, as a number (usable RAM is below 2^53). */
export function usableBytes(map: MemoryMap): number {
  let total = 0n;
  for (const e of map.entries) if (isUsable(e.type) && e.end >= e.start) total += e.end - e.start + 1n;
  return Number(total);
}
