/**
 * `pagelab map`: read a firmware memory map (any format, or a preset), show it sanitized as Linux would
 * with every change explained; `--memblock` rebuilds Linux's `Early memory node ranges` from a boot
 * log; `map convert` writes the map in another format.
 */
import { SUMMARY } from "./index.ts";
import { colour as pc, table } from "../output.ts";
import { writeFileSync } from "node:fs";
import { type Command, Option } from "@commander-js/extra-typings";
import { hex } from "../../errors.ts";
import { FORMAT_HELP, FORMATS } from "../../firmware/detect.ts";
import { mapFormatOption } from "../map-input.ts";
import { E820, e820TypeName } from "../../firmware/e820-types.ts";
import { EMIT_FORMATS, emitMap } from "../../firmware/emit.ts";
import { usablePages } from "../../firmware/frames.ts";
import { type CorpusMachine, isCorpusName, selectCorpus } from "../../firmware/corpus.ts";
import { loadMap } from "../../firmware/load.ts";
import { formatNodeRange, memblockMemory } from "../../firmware/memblock.ts";
import { PRESET_PATTERNS } from "../../firmware/presets.ts";
import { bigMax, bigMin, usableBytes } from "../../firmware/sanitize.ts";
import type { Change, MapEntry, MemoryMap } from "../../firmware/types.ts";

/** Print JSON (bigints as 0x hex strings). */
function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? hex(v) : v), 2)}\n`);
}

/** One character and one colour per type, so the bar reads with and without colour. */
const STYLE: Record<number, [string, (s: string) => string]> = {
  [E820.RAM]: ["#", pc.green],
  [E820.RESERVED]: ["r", pc.red],
  [E820.ACPI]: ["a", pc.yellow],
  [E820.NVS]: ["n", pc.magenta],
  [E820.UNUSABLE]: ["x", pc.gray],
  [E820.PMEM]: ["p", pc.blue],
  [E820.PRAM]: ["p", pc.blue],
  [E820.SOFT_RESERVED]: ["s", pc.cyan],
};
const style = (t: number): [string, (s: string) => string] => STYLE[t] ?? ["?", pc.white];

function size(bytes: bigint): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
  let v = Number(bytes);
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[u]}`;
}

/**
 * A proportional bar of [from, to) in `width` cells, holes as '.'; each cell shows the type covering
 * most of it. Entries must be sorted and non-overlapping (a sanitized map): one pass over the entries
 * that reach the range, O(n + width).
 */
export function bar(entries: readonly MapEntry[], from: bigint, to: bigint, width: number): string {
  const span = to - from;
  const best = new Array<number>(width).fill(-1);
  const bestBytes = new Array<bigint>(width).fill(0n);
  const W = BigInt(width);
  const cellStart = (i: number) => from + (span * BigInt(i)) / W;
  for (const e of entries) {
    const s0 = e.start > from ? e.start : from;
    const t0 = e.end + 1n < to ? e.end + 1n : to;
    if (t0 <= s0) continue;
    // First cell holding s0: the largest i with cellStart(i) <= s0.
    let i = Number(((s0 - from) * W) / span);
    while (i > 0 && cellStart(i) > s0) i--;
    while (i + 1 < width && cellStart(i + 1) <= s0) i++;
    for (; i < width; i++) {
      const lo = cellStart(i);
      if (lo >= t0) break;
      const hi = cellStart(i + 1);
      const s = bigMax(s0, lo);
      const t = bigMin(t0, hi);
      if (t > s && t - s > bestBytes[i]) [best[i], bestBytes[i]] = [e.type, t - s];
    }
  }
  let out = "";
  for (const t of best) out += t < 0 ? pc.dim(".") : style(t)[1](style(t)[0]);
  return out;
}

function printBars(map: MemoryMap): void {
  const width = 64;
  const top = map.entries.reduce((m, e) => (e.end + 1n > m ? e.end + 1n : m), 0n);
  console.log(`\n0 ${bar(map.entries, 0n, 1n << 32n, width)} 4 GiB`);
  if (top > 1n << 32n) console.log(`0 ${bar(map.entries, 0n, top, width)} ${size(top)}`);
  const types = [...new Set(map.entries.map((e) => e.type))].sort((a, b) => a - b);
  const legend = types.map((t) => `${style(t)[1](style(t)[0])} ${e820TypeName(t)}`);
  console.log(`  ${[...legend, `${pc.dim(".")} hole`].join("   ")}`);
}

/** Rows shown at each end of a long table; the middle is elided (--json lists every entry). */
const TABLE_ENDS = 100;

/** A boxed table, built in one pass (cli-table3's layout is quadratic in the row count). */
export function tableText(map: MemoryMap, ends = TABLE_ENDS): string {
  const head = ["start", "end (inclusive)", "size", "type"];
  const n = map.entries.length;
  const elided = n > 2 * ends + 1 ? n - 2 * ends : 0;
  const shown = elided ? [...map.entries.slice(0, ends), ...map.entries.slice(n - ends)] : map.entries;
  const rows = shown.map((e) => [hex(e.start), hex(e.end), size(e.end + 1n - e.start), e820TypeName(e.type)]);
  const types = shown.map((e) => e.type);
  const w = head.map((h, c) => rows.reduce((m, r) => Math.max(m, r[c].length), h.length));
  const rule = (l: string, m: string, r: string) => `${l}${w.map((x) => "─".repeat(x + 2)).join(m)}${r}`;
  const line = (cells: string[], type?: number) =>
    `│ ${cells
      .map((c, i) => {
        const padded = c.padEnd(w[i]);
        return i === 3 && type !== undefined ? style(type)[1](padded) : padded;
      })
      .join(" │ ")} │`;
  const out = [rule("┌", "┬", "┐"), line(head), rule("├", "┼", "┤")];
  rows.forEach((r, i) => {
    if (elided && i === ends) {
      const note = `… ${elided} more entries (--json lists all) …`;
      const inner = w.reduce((s, x) => s + x + 3, -1);
      out.push(`│ ${pc.dim(note.padEnd(inner - 2))} │`);
    }
    out.push(line(r, types[i]));
  });
  out.push(rule("└", "┴", "┘"));
  return out.join("\n");
}

function printTable(map: MemoryMap): void {
  console.log(tableText(map));
}

function printChanges(changes: readonly Change[], limit = 40): void {
  if (changes.length === 0) {
    console.log(pc.dim("\nno changes: the map was already sorted, merged and non-overlapping"));
    return;
  }
  console.log(`\n${pc.bold(`${changes.length} change(s):`)}`);
  for (const c of changes.slice(0, limit)) console.log(`  ${pc.cyan(c.kind.padEnd(10))} ${c.message}`);
  if (changes.length > limit) console.log(pc.dim(`  ... ${changes.length - limit} more (--json lists all)`));
}

function changeJson(c: Change): Record<string, unknown> {
  const o: Record<string, unknown> = { kind: c.kind, message: c.message };
  if (c.start !== undefined) o.start = hex(c.start);
  if (c.end !== undefined) o.end = hex(c.end);
  if (c.line !== undefined) o.line = c.line;
  if (c.offset !== undefined) o.offset = c.offset;
  return o;
}

function showMap(map: MemoryMap, json: boolean): void {
  const entries = map.entries.map((e) => ({
    start: hex(e.start),
    end: hex(e.end),
    type: e820TypeName(e.type),
  }));
  const summary = { usableBytes: usableBytes(map), usablePages: usablePages(map) };
  if (json) {
    printJson({ format: map.format, entries, ...summary, changes: map.changes.map(changeJson) });
    return;
  }
  console.log(`${pc.bold(map.source ?? map.format)} (${map.format}): ${map.entries.length} entries`);
  printTable(map);
  printBars(map);
  console.log(`\nusable: ${size(BigInt(summary.usableBytes))} in ${summary.usablePages} whole 4 KiB pages`);
  printChanges(map.changes);
}

function showMemblock(map: MemoryMap, json: boolean): void {
  const mb = memblockMemory(map);
  if (json) {
    const memblock = mb.ranges.map((r) => ({ node: r.node, start: hex(r.start), end: hex(r.end) }));
    printJson({ memblock, presentPages: mb.presentPages });
    return;
  }
  console.log("Early memory node ranges");
  for (const r of mb.ranges) console.log(formatNodeRange(r));
  console.log(
    pc.dim(`present pages: ${mb.presentPages} (${mb.presentPages * 4}K, the B of 'Memory: A/BK available')`),
  );
  const own = map.log?.nodeRanges ?? [];
  if (own.length > 0) {
    const same = own.map(formatNodeRange).join("\n") === mb.ranges.map(formatNodeRange).join("\n");
    console.log(
      same
        ? pc.green("matches the log's own Early memory node ranges")
        : pc.red("differs from the log's own Early memory node ranges"),
    );
  }
  for (const c of mb.changes) console.log(pc.dim(`  ${c.kind.padEnd(8)} ${c.message}`));
}

/** `pagelab map corpus:FILTER`: the machines a selector names, one line each. */
function listMachines(selector: string, ms: CorpusMachine[], json: boolean): void {
  const rows = ms.map((m) => ({
    map: `corpus:${m.key}`,
    usableBytes: m.ramBytes,
    firmware: m.firmware,
    platform: m.platform,
    hypervisor: m.hypervisor,
    numaNodes: m.numaNodes,
    entries: m.entries,
    dmi: m.dmi,
  }));
  if (json) {
    printJson({ selector, machines: rows });
    return;
  }
  console.log(`${pc.bold(selector)}: ${ms.length} machines (pagelab map corpus:ID shows one)`);
  const t = table({
    head: ["map", "usable RAM", "firmware", "platform", "NUMA", "entries", "DMI"],
    chars: { mid: "", "left-mid": "", "mid-mid": "", "right-mid": "" },
  });
  for (const r of rows)
    t.push([
      r.map,
      `${(r.usableBytes / 2 ** 30).toFixed(1)} GiB`,
      r.firmware,
      r.hypervisor ?? r.platform,
      r.numaNodes,
      r.entries,
      (r.dmi ?? "").replace(/, BIOS .*$/, "").slice(0, 48),
    ]);
  console.log(t.toString());
}

const HELP = `
Sources: a file in any of these formats (detected, or named with --format), or a preset.
${FORMATS.map((f) => `  ${f.padEnd(11)} ${FORMAT_HELP[f]}`).join("\n")}

Presets: ${PRESET_PATTERNS.join(", ")} (SIZE like 4G, 512M; qemu:4G is the default machine)

Real machines: corpus:ID is one of the 244 firmware maps of corpus/e820-real.jsonl (Linux boot logs of
real machines and VMs; the record's table lines, parsed as dmesg). Wherever a command takes a map,
corpus:FIELD OP VALUE[:...] selects by ram (8G, ram=8G..64G), numa, entries, firmware (uefi, bios,
xen-pv), platform (physical, vm), hypervisor (qemu/kvm, hyper-v, none, ...) or origin, and 'corpus' is
every map. pagelab map SELECTOR lists the machines it names (--json: their fields); other commands
that boot take one machine, while pagelab compare --map runs each.

The map is sanitized exactly as Linux's e820__update_table() does (sorted, overlaps resolved with the
higher type number winning, adjacent same-type entries merged except PRAM and soft reserved, zero-length
and wrapping entries dropped), and every change is listed with its reason.

Examples:
  pagelab map qemu:4G
  pagelab map corpus:linuxhw-029040A622     # a Dell PowerEdge R240 as Linux saw it
  dmesg > boot.log && pagelab map boot.log
  journalctl -k -b | pagelab map -           # '-' reads standard input
  pagelab map boot.log --memblock            # Linux's 'Early memory node ranges', rebuilt
  pagelab map memmap.txt --format uefi --keep-boot-services
  pagelab map numa:2x8G --json | jq .usablePages
  pagelab map convert boot.log --to multiboot2 --out mbi.bin`;

export function registerMap(program: Command): void {
  const map = program
    .command("map")
    .description(SUMMARY.map)
    .argument(
      "<source>",
      "file, - (standard input), preset (qemu:4G, qemu-q35:5G, ovmf:512M, sparse, numa:2x8G) or corpus:ID",
    )
    .addOption(mapFormatOption())
    .option("--json", "print JSON instead of a table")
    .option("--memblock", "rebuild Linux's memblock.memory per node (Early memory node ranges)")
    .option("--keep-boot-services", "UEFI input: keep BootServicesCode/Data reserved")
    .addHelpText("after", HELP)
    .action((source, o) => {
      // a corpus selector naming several machines: the list of them, to pick one from
      if (isCorpusName(source) && o.format === undefined && !o.memblock) {
        const ms = selectCorpus(source);
        if (ms.length > 1) return listMachines(source, ms, o.json === true);
      }
      const m = loadMap(source, { format: o.format, keepBootServices: o.keepBootServices });
      if (o.memblock) showMemblock(m, o.json === true);
      else showMap(m, o.json === true);
    });

  map
    .command("convert")
    .description("write one map in another format (binary where the format is binary)")
    .argument("<source>", "file, - (standard input) or preset")
    .addOption(new Option("--to <format>", "output format").choices(EMIT_FORMATS).makeOptionMandatory())
    .requiredOption("--out <file>", "output file")
    .addOption(mapFormatOption())
    .option("--keep-boot-services", "UEFI input: keep BootServicesCode/Data reserved")
    .addHelpText(
      "after",
      "\nExample:\n  pagelab map convert qemu:4G --to uefi --out memmap.bin   # then: pagelab map memmap.bin",
    )
    .action((source, o) => {
      const m = loadMap(source, { format: o.format, keepBootServices: o.keepBootServices });
      const out = emitMap(m, o.to);
      writeFileSync(o.out, out.bytes);
      console.log(
        `wrote ${o.out}: ${out.bytes.length} bytes of ${o.to} (${m.entries.length} entries; read it back as ${out.readBack})`,
      );
      for (const c of out.changes) console.log(pc.dim(`  ${c.kind.padEnd(10)} ${c.message}`));
    });
}
