/**
 * Who owns every physical frame of a booted machine, as of any boot step: the data behind the web
 * explorer's memory strip.
 *
 * Ownership is painted in layers, lowest first; where layers overlap the higher one wins:
 *
 *   hole            addresses no firmware-map entry describes
 *   reserved        firmware-map entries that are not RAM (reserved, ACPI, NVS...), and usable entries
 *                   Linux left out of memblock.memory (trim_bios_range, beyond the mapping's reach)
 *   free/allocated  memblock.memory: free until the PMM exists; after the final step, RAM the PMM does
 *                   not list as free is "allocated" unless a higher layer explains it
 *   free (PMM)      after the final step: the PMM's own free list (forEachFree)
 *   memblock        each step's memblock reservations and allocations, by their recorded purpose
 *   kernel image    from step 2, the 2 MiB image
 *   page table      every table of the final tree: those in the image's .bss from step 2 (the boot
 *                   tables), those memblock allocated from their step, those the PMM gave from the end
 *   PMM metadata    frames holding the PMM's transient metadata (forEachMetaFrame), at the end
 *
 * The result is a sorted list of runs (start, end, owner, note) that the strip queries by range and
 * aggregates into buckets, so a map of millions of frames costs only as many runs as it has regions.
 */
import type { Change, MemoryMap } from "../firmware/index.ts";
import { e820TypeName, isUsable, memblockMemory } from "../firmware/index.ts";
import type { BootResult } from "../kernel/boot/index.ts";
import { tableFrames } from "../kernel/boot/index.ts";

export const OWNERS = [
  "free",
  "kernel-image",
  "page-table",
  "pmm-metadata",
  "slab",
  "user",
  "allocated",
  "reserved",
  "hole",
] as const;
export type Owner = (typeof OWNERS)[number];

const O = Object.fromEntries(OWNERS.map((o, i) => [o, i])) as Record<Owner, number>;

/** A run of frames [start, end) with one owner; `note` indexes the notes table. */
export interface Run {
  start: number;
  end: number;
  owner: number;
  note: number;
}

interface Layer {
  start: number;
  end: number;
  prio: number;
  owner: number;
  note: number;
}

const PRIO = { hole: 0, map: 1, ram: 2, pmmFree: 3, memblock: 4, image: 5, table: 6, meta: 7 };
const MAX_PFN = 2 ** 40;

/** Paint layers into non-overlapping runs covering [0, spanEnd): the highest priority wins. */
export function paint(layers: Layer[], spanEnd: number): Run[] {
  const all = layers
    .map((l) => ({ ...l, start: Math.max(0, l.start), end: Math.min(spanEnd, l.end) }))
    .filter((l) => l.end > l.start);
  const points = [...new Set([0, spanEnd, ...all.flatMap((l) => [l.start, l.end])])].sort((a, b) => a - b);
  const byStart = [...all].sort((a, b) => a.start - b.start);
  const byEnd = [...all].sort((a, b) => a.end - b.end);
  const active: Layer[][] = Array.from({ length: 8 }, () => []);
  const runs: Run[] = [];
  let si = 0;
  let ei = 0;
  for (let i = 0; i + 1 < points.length; i++) {
    const p = points[i];
    while (ei < byEnd.length && byEnd[ei].end <= p) {
      const l = byEnd[ei++];
      const list = active[l.prio];
      const at = list.indexOf(l);
      if (at >= 0) list.splice(at, 1);
    }
    while (si < byStart.length && byStart[si].start <= p) {
      const l = byStart[si++];
      if (l.end > p) active[l.prio].push(l);
    }
    let top: Layer | undefined;
    for (let pr = active.length - 1; pr >= 0 && !top; pr--) top = active[pr][active[pr].length - 1];
    if (!top) continue;
    const last = runs[runs.length - 1];
    if (last && last.end === p && last.owner === top.owner && last.note === top.note)
      last.end = points[i + 1];
    else runs.push({ start: p, end: points[i + 1], owner: top.owner, note: top.note });
  }
  return runs;
}

/** Everything about a booted machine the strip needs, computed once per session. */
export interface OwnershipModel {
  spanEnd: number;
  ramTop: number;
  notes: string[];
  /** Runs as of each boot step (index 0 = after step 1). */
  steps: Run[][];
  changes: Change[];
  entries: { start: number; end: number; type: string }[];
}

/** Linux's early edits carry their range only in the message ("[mem 0x0-0xfff]"): recover it. */
function withRange(c: Change): Change {
  if (c.start !== undefined) return c;
  const m = /\[mem (0x[0-9a-fA-F]+)-(0x[0-9a-fA-F]+)\]/.exec(c.message);
  return m ? { ...c, start: BigInt(m[1]), end: BigInt(m[2]) } : c;
}

function pageRange(startByte: bigint, endInclusive: bigint): { start: number; end: number } {
  const s = startByte / 4096n;
  const e = (endInclusive + 4096n) / 4096n;
  return {
    start: Number(s < BigInt(MAX_PFN) ? s : BigInt(MAX_PFN)),
    end: Number(e < BigInt(MAX_PFN) ? e : BigInt(MAX_PFN)),
  };
}

function mergeFrames(frames: number[]): { start: number; end: number }[] {
  const sorted = [...frames].sort((a, b) => a - b);
  const out: { start: number; end: number }[] = [];
  for (const f of sorted) {
    const last = out[out.length - 1];
    if (last && last.end === f) last.end++;
    else if (!last || last.end < f) out.push({ start: f, end: f + 1 });
  }
  return out;
}

/** A table of notes: note(s) is the index of s, added on first use (runs refer to notes by index). */
function noteTable(): { notes: string[]; note: (s: string) => number } {
  const notes: string[] = [];
  const noteIndex = new Map<string, number>();
  const note = (s: string): number => {
    let i = noteIndex.get(s);
    if (i === undefined) {
      i = notes.push(s) - 1;
      noteIndex.set(s, i);
    }
    return i;
  };
  return { notes, note };
}

type Frames = { start: number; end: number };
type Entry = Frames & { type: string; usable: boolean };

/** The lowest layers, the same at every step: holes, and the map's entries memblock.memory left out. */
function baseLayers(r: BootResult, entries: Entry[], spanEnd: number, note: (s: string) => number): Layer[] {
  const base: Layer[] = [
    {
      start: 0,
      end: spanEnd,
      prio: PRIO.hole,
      owner: O.hole,
      note: note("no firmware-map entry describes these addresses"),
    },
  ];
  for (const e of entries) {
    const why = e.usable
      ? `${e.type} in the firmware map, but not in memblock.memory (trimmed by Linux's early edits or beyond the ${r.kmap} mapping's reach)`
      : `${e.type} (firmware map)`;
    base.push({ start: e.start, end: e.end, prio: PRIO.map, owner: O.reserved, note: note(why) });
  }
  return base;
}

/** Each boot step's memblock reservations and allocations (steps 1-5), by their recorded purpose. */
function memblockLayers(r: BootResult, note: (s: string) => number): Layer[][] {
  return r.bootSteps.map((s) =>
    r.owned
      .filter((o) => o.step === s.step && o.step < 6)
      .map((o) => ({
        start: o.start,
        end: o.end,
        prio: o.kind === "page-table" ? PRIO.table : PRIO.memblock,
        owner: O[o.kind],
        note: note(`memblock (step ${s.step}): ${o.why}`),
      })),
  );
}

/** The PMM's free list (forEachFree) as sorted runs, overlapping or touching ones merged. */
function pmmFreeRuns(r: BootResult): Frames[] {
  const freeRuns: Frames[] = [];
  r.pmmAllocator.forEachFree?.((pfn, count) => freeRuns.push({ start: pfn, end: pfn + count }));
  freeRuns.sort((a, b) => a.start - b.start);
  const freeMerged: Frames[] = [];
  for (const f of freeRuns) {
    const last = freeMerged[freeMerged.length - 1];
    if (last && last.end >= f.start) last.end = Math.max(last.end, f.end);
    else freeMerged.push({ ...f });
  }
  return freeMerged;
}

/** What the layers of every step are painted from (computed once per boot). */
interface Sources {
  r: BootResult;
  note: (s: string) => number;
  base: Layer[];
  memblockAllocs: Layer[][];
  image: Frames;
  /** Page-table frames in the kernel image's .bss. */
  inImage: number[];
  /** Page tables the PMM gave (step 6 on). */
  fromPmm: Frames[];
  /** The index of the final step. */
  finalIdx: number;
  freeMerged: Frames[];
  metaFrames: number[];
}

/** memblock.memory's RAM at step i: free, in the PMM, or (at the final step) allocated. */
function ramLayers(src: Sources, i: number, layers: Layer[]): void {
  const { r, note, finalIdx } = src;
  const final = i >= finalIdx;
  for (const x of r.ram) {
    layers.push({
      start: x.start,
      end: x.end,
      prio: PRIO.ram,
      owner: final ? O.allocated : O.free,
      note: final
        ? note(`allocated from the ${r.pmm} PMM`)
        : note(
            i >= finalIdx - 1
              ? `in the ${r.pmm} PMM (memblock handed it over)`
              : "RAM in memblock.memory, not reserved",
          ),
    });
  }
}

/** The final state's own layers: the PMM's free list, the page tables it gave, and its metadata. */
function finalLayers(src: Sources, layers: Layer[]): void {
  const { r, note } = src;
  const n = note(`on the ${r.pmm} PMM's free lists`);
  for (const f of src.freeMerged) layers.push({ ...f, prio: PRIO.pmmFree, owner: O.free, note: n });
  const nt = note(`page table, allocated from the ${r.pmm} PMM after memblock retired`);
  for (const t of src.fromPmm)
    layers.push({ start: t.start, end: t.end, prio: PRIO.table, owner: O["page-table"], note: nt });
  const nm = note(`${r.pmm} PMM metadata (transient, in frames it took for itself)`);
  for (const m of mergeFrames(src.metaFrames))
    layers.push({ ...m, prio: PRIO.meta, owner: O["pmm-metadata"], note: nm });
}

/** From step 2: the kernel image and the boot page tables in its .bss. */
function imageLayers(src: Sources, layers: Layer[]): void {
  const { r, note } = src;
  layers.push({
    ...src.image,
    prio: PRIO.image,
    owner: O["kernel-image"],
    note: note(`kernel image at ${r.kernelPhys} (.text .rodata .data .bss), mapped at 0xffffffff80000000`),
  });
  const nb = note("page table in the kernel image's .bss (boot tables, kernel half of the final tree)");
  for (const t of mergeFrames(src.inImage))
    layers.push({ ...t, prio: PRIO.table, owner: O["page-table"], note: nb });
}

/** Every layer of step i (index 0 = after step 1), lowest first. */
function stepLayers(src: Sources, i: number): Layer[] {
  const layers = [...src.base];
  ramLayers(src, i, layers);
  if (i >= src.finalIdx) finalLayers(src, layers);
  for (let s = 0; s <= i; s++) layers.push(...src.memblockAllocs[s]);
  if (i >= 1) imageLayers(src, layers);
  return layers;
}

export function buildOwnership(r: BootResult, map: MemoryMap): OwnershipModel {
  const { notes, note } = noteTable();
  const mb = memblockMemory(map);
  const entries = map.entries
    .filter((e) => e.end >= e.start)
    .map((e) => ({ ...pageRange(e.start, e.end), type: e820TypeName(e.type), usable: isUsable(e.type) }));
  // The RAM the boot used (memblock.memory in frames, cut at what the mapping reaches): one rounding.
  const ram = r.ram;
  const ramTop = Math.max(1, ...ram.map((x) => x.end));
  const spanEnd = Math.max(ramTop, ...entries.map((e) => e.end));

  const base = baseLayers(r, entries, spanEnd, note);
  // The boot's typed ownership records: memblock's (steps 1-5) and the page tables the PMM gave.
  const image = r.owned.find((o) => o.kind === "kernel-image") ?? { start: 0, end: 0 };
  const memblockAllocs = memblockLayers(r, note);
  const tables = tableFrames(r.machine, r.mapper.root, r.levels, r.recursiveSlots);
  const inImage = tables.filter((t) => t >= image.start && t < image.end);
  const fromPmm = r.owned.filter((o) => o.step >= 6 && o.kind === "page-table");
  const finalIdx = Math.max(
    0,
    r.bootSteps.findIndex((s) => s.title.startsWith("Final")),
  );

  // The final state's own layers.
  const freeMerged = pmmFreeRuns(r);
  const metaFrames: number[] = [];
  r.pmmAllocator.forEachMetaFrame?.((pfn) => metaFrames.push(pfn));

  const src: Sources = {
    r,
    note,
    base,
    memblockAllocs,
    image,
    inImage,
    fromPmm,
    finalIdx,
    freeMerged,
    metaFrames,
  };
  const steps: Run[][] = [];
  for (let i = 0; i < r.bootSteps.length; i++) steps.push(paint(stepLayers(src, i), spanEnd));
  const changes = [...map.changes, ...mb.changes].map(withRange);
  return {
    spanEnd,
    ramTop,
    notes,
    steps,
    changes,
    entries: entries.map(({ start, end, type }) => ({ start, end, type })),
  };
}

/** One item of the strip: frames [s, e) and how many of them each owner holds. */
export interface StripItem {
  s: number;
  e: number;
  /** [owner index, frames] pairs, largest first. */
  parts: [number, number][];
  /** The note of a single-owner item. */
  note?: string;
}

function firstRun(runs: Run[], pfn: number): number {
  let lo = 0;
  let hi = runs.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (runs[mid].end <= pfn) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * The strip for frames [from, to) in at most `buckets` items: the runs themselves when few enough,
 * else fixed-width buckets with per-owner counts (neighbouring single-owner buckets merged).
 */
export function stripItems(
  m: OwnershipModel,
  step: number,
  from: number,
  to: number,
  buckets: number,
): StripItem[] {
  const runs = m.steps[step];
  const out: StripItem[] = [];
  let i = firstRun(runs, from);
  const inRange: Run[] = [];
  for (; i < runs.length && runs[i].start < to; i++) inRange.push(runs[i]);
  if (inRange.length <= buckets) {
    for (const r of inRange) {
      const s = Math.max(from, r.start);
      const e = Math.min(to, r.end);
      out.push({ s, e, parts: [[r.owner, e - s]], note: m.notes[r.note] });
    }
    return out;
  }
  const width = (to - from) / buckets;
  let ri = 0;
  for (let b = 0; b < buckets; b++) {
    const s = Math.floor(from + b * width);
    const e = b === buckets - 1 ? to : Math.floor(from + (b + 1) * width);
    if (e <= s) continue;
    const counts = new Map<number, number>();
    while (ri < inRange.length && inRange[ri].end <= s) ri++;
    let lastNote = -1;
    for (let j = ri; j < inRange.length && inRange[j].start < e; j++) {
      const r = inRange[j];
      const n = Math.min(e, r.end) - Math.max(s, r.start);
      counts.set(r.owner, (counts.get(r.owner) ?? 0) + n);
      lastNote = r.note;
    }
    const parts = [...counts].sort((x, y) => y[1] - x[1]);
    const prev = out[out.length - 1];
    if (
      parts.length === 1 &&
      prev &&
      prev.parts.length === 1 &&
      prev.parts[0][0] === parts[0][0] &&
      prev.e === s
    ) {
      prev.e = e;
      prev.parts[0][1] += parts[0][1];
      if (prev.note !== m.notes[lastNote]) prev.note = undefined;
      continue;
    }
    out.push({ s, e, parts, note: parts.length === 1 ? m.notes[lastNote] : undefined });
  }
  return out;
}

/** Frames per owner over the whole span at a step. */
export function ownerTotals(m: OwnershipModel, step: number): Record<Owner, number> {
  const t = Object.fromEntries(OWNERS.map((o) => [o, 0])) as Record<Owner, number>;
  for (const r of m.steps[step]) t[OWNERS[r.owner]] += r.end - r.start;
  return t;
}

/** The run holding `pfn` at a step, the map entry around it, and the sanitizer changes touching it. */
export function frameInfo(m: OwnershipModel, step: number, pfn: number) {
  const runs = m.steps[step];
  const run = runs[firstRun(runs, pfn)];
  const entry = m.entries.find((e) => pfn >= e.start && pfn < e.end) ?? null;
  const lo = BigInt(entry ? entry.start : run.start) * 4096n;
  const hi = BigInt(entry ? entry.end : run.end) * 4096n - 1n;
  const changes = m.changes
    .filter((c) => c.start !== undefined && c.start <= hi && (c.end ?? c.start) >= lo)
    .slice(0, 20)
    .map((c) => ({ kind: c.kind, message: c.message }));
  return {
    pfn,
    owner: OWNERS[run.owner],
    note: m.notes[run.note],
    run: { start: run.start, end: run.end },
    entry,
    changes,
  };
}
