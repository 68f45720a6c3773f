/**
 * Page accounting the way Linux does it: rebuild memblock.memory (per NUMA node) from a sanitized map,
 * i.e. what Linux prints as `Early memory node ranges`, and the present-page total (the B of
 * `Memory: A/BK available`).
 *
 * Linux's sequence (arch/x86/kernel/setup.c `setup_arch()`, 5.x-6.x):
 *   1. `e820__memory_setup()` sanitizes the firmware table and prints it (`BIOS-e820:` lines).
 *   2. Early edits, each printed as `e820: update ...` / `e820: remove ...`: mem=/memmap= (then the
 *      `user-defined physical RAM map:` printout), EFI reservations in `efi_init()`, `trim_bios_range()`
 *      (page 0 usable ==> reserved; 0xA0000-0xFFFFF usable removed), MTRR trimming. The low/high
 *      `last_pfn =` lines are printed right after, just before step 3.
 *   3. `e820__memblock_setup()`: every usable (and reserved-kern) entry that does not reach 2^64 is
 *      `memblock_add`ed (adjacent regions merge), then `memblock_trim_memory(PAGE_SIZE)` shrinks each
 *      region inward to page boundaries and drops the empty ones. Edits printed after this point
 *      (ESRT, MOKvar, EFI boot services...) change the e820 table but NOT memblock.memory.
 *   4. NUMA init assigns nodes from ACPI SRAT (`memblock_set_node` splits regions at node boundaries;
 *      same-node ranges with nothing of another node between them are joined first, as
 *      `numa_cleanup_meminfo()` does); without SRAT every range is on node 0.
 *   5. `free_area_init()` prints each region: `  node   N: [mem 0x%016x-0x%016x]`.
 */
import { hex } from "../errors.ts";
import { E820, e820TypeName, isUsable } from "./e820-types.ts";
import { bigMax, bigMin, sanitize, updateTable } from "./sanitize.ts";
import {
  type Change,
  type E820Edit,
  type MapEntry,
  type MemoryMap,
  type NodeRange,
  TWO_64,
} from "./types.ts";

export interface MemblockResult {
  /** memblock.memory after NUMA assignment, sorted by address; `end` inclusive. */
  ranges: NodeRange[];
  /** Sum of the pages of `ranges` (Linux's present pages; B of `Memory: A/BK` is this x 4). */
  presentPages: number;
  /** The edits applied and the decisions made, in order. */
  changes: Change[];
}

const PAGE = 4096n;
const fmt = (s: bigint, e: bigint) => `[mem ${hex(s)}-${hex(e)}]`;

/** Linux's `trim_bios_range()` edits, used when the input is not a whole boot log. */
export function defaultEdits(): E820Edit[] {
  const base = { fromType: E820.RAM, beforeMemblock: true };
  return [
    {
      ...base,
      op: "update",
      start: 0n,
      end: 0xfffn,
      toType: E820.RESERVED,
      text: "page 0 usable ==> reserved",
    },
    { ...base, op: "remove", start: 0xa0000n, end: 0xfffffn, text: "legacy 0xa0000-0xfffff usable removed" },
  ];
}

/** Cut `entries` at [s, e]: returns the parts outside, and the parts inside (of the matching type). */
function cut(entries: readonly MapEntry[], s: bigint, e: bigint, match: (t: number) => boolean) {
  const outside: MapEntry[] = [];
  const inside: MapEntry[] = [];
  for (const x of entries) {
    if (!match(x.type) || x.end < s || x.start > e) {
      outside.push(x);
      continue;
    }
    if (x.start < s) outside.push({ ...x, end: s - 1n });
    if (x.end > e) outside.push({ ...x, start: e + 1n });
    inside.push({ ...x, start: x.start > s ? x.start : s, end: x.end < e ? x.end : e });
  }
  return { outside, inside };
}

/** Apply one `e820: update`/`remove` like `e820__range_update`/`_remove` + `e820__update_table`. */
export function applyEdit(entries: readonly MapEntry[], edit: E820Edit): MapEntry[] {
  const match = (t: number) => edit.fromType === 0 || t === edit.fromType;
  const { outside, inside } = cut(entries, edit.start, edit.end, match);
  const kept =
    edit.op === "update"
      ? [...outside, ...inside.map((x) => ({ ...x, type: edit.toType ?? x.type }))]
      : outside;
  return updateTable(kept.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0)));
}

/** memblock_add of every usable entry (merging adjacent ones), then memblock_trim_memory(PAGE_SIZE). */
export function memblockAdd(entries: readonly MapEntry[]): { start: bigint; endEx: bigint }[] {
  const regions: { start: bigint; endEx: bigint }[] = [];
  const usable = entries.filter((e) => isUsable(e.type) && e.end >= e.start && e.end + 1n < TWO_64);
  for (const e of [...usable].sort((a, b) => (a.start < b.start ? -1 : 1))) {
    const last = regions[regions.length - 1];
    if (last && e.start <= last.endEx) last.endEx = e.end + 1n > last.endEx ? e.end + 1n : last.endEx;
    else regions.push({ start: e.start, endEx: e.end + 1n });
  }
  const trimmed: { start: bigint; endEx: bigint }[] = [];
  for (const r of regions) {
    const start = ((r.start + PAGE - 1n) / PAGE) * PAGE;
    const endEx = (r.endEx / PAGE) * PAGE;
    if (endEx > start) trimmed.push({ start, endEx });
  }
  return trimmed;
}

/** Join same-node SRAT ranges that have no other node's range between them (numa_cleanup_meminfo). */
function cleanupSrat(srat: readonly NodeRange[]): NodeRange[] {
  const sorted = [...srat].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const out: NodeRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && last.node === r.node) last.end = bigMax(r.end, last.end);
    else out.push({ ...r });
  }
  return out;
}

/** Split memblock regions at node boundaries and label them (memblock_set_node + merge). */
function assignNodes(regions: { start: bigint; endEx: bigint }[], srat: readonly NodeRange[]): NodeRange[] {
  if (srat.length === 0) return regions.map((r) => ({ node: 0, start: r.start, end: r.endEx - 1n }));
  const nodes = cleanupSrat(srat);
  const out: NodeRange[] = [];
  for (const r of regions) {
    let s = r.start;
    while (s < r.endEx) {
      const hit = nodes.find((n) => n.start <= s && s <= n.end);
      const next = nodes.filter((n) => n.start > s).reduce((m, n) => bigMin(n.start, m), r.endEx);
      const stop = hit ? bigMin(hit.end + 1n, r.endEx) : next;
      const node = hit?.node ?? 0;
      const last = out[out.length - 1];
      if (last && last.node === node && last.end + 1n === s) last.end = stop - 1n;
      else out.push({ node, start: s, end: stop - 1n });
      s = stop;
    }
  }
  return out;
}

function editMessage(edit: E820Edit): string {
  const range = fmt(edit.start, edit.end);
  const from = edit.fromType ? ` ${e820TypeName(edit.fromType)}` : "";
  if (edit.op === "remove") return `Linux removed ${range}${from}`;
  return `Linux changed ${range}${from} ==> ${e820TypeName(edit.toType ?? 0)}`;
}

/** Replay the early edits and later table printouts (in log order) that precede memblock setup. */
function replay(map: MemoryMap, changes: Change[]): MapEntry[] {
  const log = map.log;
  let table = map.entries;
  // Linux prints its edits at KERN_DEBUG: a log without any (a table excerpt, or a console capture
  // below debug level) gets the edits trim_bios_range() always makes.
  if (!log || log.edits.length === 0) {
    for (const edit of defaultEdits()) {
      table = applyEdit(table, edit);
      const why = log
        ? "the log shows no e820 edits (KERN_DEBUG lines missing?): assuming trim_bios_range()"
        : "trim_bios_range()";
      changes.push({
        kind: edit.op === "remove" ? "removed" : "updated",
        message: `${editMessage(edit)} (${why})`,
      });
    }
    return table;
  }
  const limit = log.memblockLine ?? Number.POSITIVE_INFINITY;
  const events = [
    ...log.edits.map((e) => ({
      line: e.line ?? 0,
      edit: e as E820Edit | undefined,
      table: undefined as MapEntry[] | undefined,
    })),
    ...log.laterTables.map((t) => ({ line: t.line, edit: undefined, table: t.entries })),
  ].sort((a, b) => a.line - b.line);
  for (const ev of events) {
    if (ev.table && ev.line < limit) table = sanitize({ format: "", entries: ev.table, changes: [] }).entries;
    if (!ev.edit) continue;
    if (!ev.edit.beforeMemblock) {
      changes.push({
        kind: "note",
        line: ev.line,
        message: `${editMessage(ev.edit)} after memblock setup: memblock.memory keeps it`,
      });
      continue;
    }
    table = applyEdit(table, ev.edit);
    changes.push({
      kind: ev.edit.op === "remove" ? "removed" : "updated",
      line: ev.line,
      message: editMessage(ev.edit),
    });
  }
  return table;
}

/**
 * Rebuild memblock.memory per node from a map (a whole boot log replays its own edits; any other map
 * gets Linux's `trim_bios_range()` edits), exactly as `Early memory node ranges` prints it.
 */
export function memblockMemory(map: MemoryMap): MemblockResult {
  const clean = map.sanitized ? map : sanitize(map);
  const changes: Change[] = [];
  const table = replay(clean, changes);
  const regions = memblockAdd(table);
  const ranges = assignNodes(regions, clean.nodes ?? []);
  let pages = 0;
  for (const r of ranges) pages += Number((r.end + 1n - r.start) / PAGE);
  return { ranges, presentPages: pages, changes };
}

/** One line as Linux prints it in `Early memory node ranges`. */
export function formatNodeRange(r: NodeRange): string {
  const h = (v: bigint) => `0x${v.toString(16).padStart(16, "0")}`;
  return `  node ${String(r.node).padStart(3, " ")}: [mem ${h(r.start)}-${h(r.end)}]`;
}
