/**
 * Linux `dmesg` text: the e820 table Linux prints at boot, and (for a whole boot log) everything
 * memblock.ts needs to rebuild memblock.memory.
 *
 * Table lines (arch/x86/kernel/e820.c `e820__print_table()`; end INCLUSIVE since 3.9):
 *
 *     BIOS-provided physical RAM map:
 *     BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable
 *     BIOS-e820: [gap 0x00000000000a0000-0x00000000000effff]          (6.16+: not an entry)
 *     <who>: [mem 0xSTART-0xEND] TYPE                                  (who: BIOS-e820, Xen, user, ...)
 *
 * Before 3.9 (`e820_print_map()`), END EXCLUSIVE, 16 hex digits without 0x:
 *
 *     BIOS-e820: 0000000000000000 - 000000000009f800 (usable)
 *
 * Later printouts of the same table: `extended physical RAM map:` (prefix `reserve setup_data`),
 * `user-defined physical RAM map:` (prefix `user`, after mem=/memmap=), `modified physical RAM map:`.
 * Early edits: `e820: update [mem A-B] usable ==> reserved`, `e820: remove [mem A-B] usable` (and the
 * pre-3.9 `e820 update range: A - B (usable) ==> (reserved)`). A whole log also gives the SRAT lines
 * (`ACPI: SRAT: Node N PXM P [mem A-B]`), `Early memory node ranges` and `Memory: A/BK available`.
 * Timestamps, syslog prefixes and `> ` e-mail quoting are stripped first.
 */
import { fail } from "../errors.ts";
import { parseE820TypeName, requireE820Type } from "./e820-types.ts";
import type { BootLogInfo, Change, E820Edit, MapEntry, MemoryMap, NodeRange } from "./types.ts";
import { type Line, parseHex, splitLines, where } from "./text.ts";

/** Prefixes (Linux's `who`) that introduce table lines; a malformed line after one of these is an error. */
const TABLE_PREFIXES = ["BIOS-e820", "BIOS-88", "BIOS-e801", "Xen", "user", "modified", "reserve setup_data"];
const MODERN = /^([A-Za-z][\w -]*?): \[(mem|gap) (0x[0-9a-fA-F]+)-(0x[0-9a-fA-F]+)\](?: (.+))?$/;
const LEGACY = /^([A-Za-z][\w -]*?): ([0-9a-fA-F]{1,16}) - ([0-9a-fA-F]{1,16}) \((.+)\)$/;

interface TableLine {
  prefix: string;
  entry?: MapEntry; // undefined for [gap] lines
}

function modernLine(m: RegExpExecArray, at: string): TableLine | undefined {
  const [, prefix, kind, s, t, word] = m;
  const known = TABLE_PREFIXES.includes(prefix);
  if (!known && /^e820\b/.test(prefix)) return undefined; // e820: edits and notes, not table lines
  if (kind === "gap") return known ? { prefix } : undefined;
  if (word === undefined) {
    if (known) fail("BAD_LINE", `${at}: expected a type after '[mem ${s}-${t}]' (e.g. usable)`);
    return undefined;
  }
  const type = known ? requireE820Type(word, at) : parseE820TypeName(word);
  if (type === undefined) return undefined;
  const start = parseHex(s, "start", at);
  const end = parseHex(t, "end", at);
  return { prefix, entry: { start, end, type } };
}

/** Xen's hvmloader prints its table end-EXCLUSIVE with numeric types: `HVM4:   0: 0000… - 0009fc00 = 1 RAM`. */
const HVMLOADER =
  /^(?:\(XEN\) )?(HVM\d+): +\d+: ([0-9a-fA-F]{1,16}) - ([0-9a-fA-F]{1,16}) = (\d{1,10})(?: .*)?$/;

/** Parse one table line, or return undefined if the line is not one (throws if it is one, malformed). */
export function parseTableLine(text: string, at: string): TableLine | undefined {
  const h = HVMLOADER.exec(text);
  if (h) {
    const start = parseHex(h[2], "start", at);
    const type = Number(h[4]);
    if (type > 0xffffffff) fail("BAD_TYPE", `${at}: type ${h[4]} does not fit 32 bits`);
    return { prefix: h[1], entry: { start, end: parseHex(h[3], "end", at) - 1n, type } };
  }
  const m = MODERN.exec(text);
  if (m) return modernLine(m, at);
  const l = LEGACY.exec(text);
  const legacyOk =
    l && (TABLE_PREFIXES.includes(l[1]) || (!/^e820\b/.test(l[1]) && parseE820TypeName(l[4]) !== undefined));
  if (l && legacyOk) {
    const start = parseHex(l[2], "start", at);
    const endEx = parseHex(l[3], "end", at);
    return { prefix: l[1], entry: { start, end: endEx - 1n, type: requireE820Type(l[4], at) } };
  }
  const p = /^([A-Za-z][\w -]*?):/.exec(text);
  if (p && TABLE_PREFIXES.includes(p[1]) && !/physical RAM map/.test(text)) {
    fail("BAD_LINE", `${at}: expected '${p[1]}: [mem 0xSTART-0xEND] TYPE' or '${p[1]}: START - END (TYPE)'`);
  }
  return undefined;
}

const EDIT = /^e820: (update|remove) \[mem (0x[0-9a-fA-F]+)-(0x[0-9a-fA-F]+)\](?: (.+?))?(?: ==> (.+))?$/;
const EDIT_LEGACY =
  /^e820 (update|remove) range: ([0-9a-fA-F]{1,16}) - ([0-9a-fA-F]{1,16}) \((.+?)\)(?: ==> \((.+)\))?$/;

/** Parse an `e820: update/remove` line into an edit (beforeMemblock filled in later), or undefined. */
export function parseEditLine(line: Line, source?: string): E820Edit | undefined {
  const at = where(source, line.no);
  const m = EDIT.exec(line.text);
  const l = m ? undefined : EDIT_LEGACY.exec(line.text);
  const g = m ?? l;
  if (!g) return undefined;
  const [, op, s, t, from, to] = g;
  const start = parseHex(s, "start", at);
  const end = l ? parseHex(t, "end", at) - 1n : parseHex(t, "end", at);
  if (op === "update" && (from === undefined || to === undefined)) {
    fail("BAD_LINE", `${at}: expected 'e820: update [mem A-B] FROM ==> TO'`);
  }
  const edit: E820Edit = {
    op: op as "update" | "remove",
    start,
    end,
    fromType: from === undefined ? 0 : requireE820Type(from, at),
    line: line.no,
    beforeMemblock: true,
    text: line.text,
  };
  if (to !== undefined) edit.toType = requireE820Type(to, at);
  return edit;
}

interface Table {
  prefix: string;
  header: string;
  line: number;
  entries: MapEntry[];
}

/**
 * Parse a table line; a malformed line of the redundant `reserve setup_data` printout (the same table
 * split at setup_data blocks, often cut short in pasted logs) becomes a note instead of an error.
 */
function tableLineOrNote(line: Line, source: string | undefined, changes: Change[]): TableLine | undefined {
  try {
    return parseTableLine(line.text, where(source, line.no));
  } catch (e) {
    if (!line.text.startsWith("reserve setup_data:")) throw e;
    changes.push({
      kind: "note",
      line: line.no,
      message: `ignored a malformed setup_data line: ${(e as Error).message}`,
    });
    return undefined;
  }
}

/** Group table lines into tables: a new table starts at a header line or when the prefix changes. */
function collectTables(lines: readonly Line[], source: string | undefined, changes: Change[]): Table[] {
  const tables: Table[] = [];
  let header = "";
  let current: Table | undefined;
  for (const line of lines) {
    if (/physical RAM map:$/.test(line.text)) {
      header = line.text.replace(/^e820: /, "");
      current = undefined;
      continue;
    }
    const t = tableLineOrNote(line, source, changes);
    if (!t) continue;
    if (!current || current.prefix !== t.prefix) {
      current = { prefix: t.prefix, header: header || `${t.prefix} table`, line: line.no, entries: [] };
      tables.push(current);
      header = "";
    }
    if (t.entry) current.entries.push(t.entry);
  }
  return tables;
}

const SRAT = /^(?:ACPI: )?SRAT: Node (\d+) PXM \d+ \[mem (0x[0-9a-fA-F]+)-(0x[0-9a-fA-F]+)\]/;
const NODE_RANGE = /^node +(\d+): \[mem (0x[0-9a-fA-F]+)-(0x[0-9a-fA-F]+)\]$/;
/** Before 2.6.39 (`early_node_map[N] active PFN ranges`): `0: 0x00000001 -> 0x000000a0`, pfns, end exclusive. */
const NODE_PFNS = /^(\d+): (0x[0-9a-fA-F]+) -> (0x[0-9a-fA-F]+)$/;

function oldNodeLine(line: Line, source?: string): NodeRange | undefined {
  const r = nodeLine(NODE_PFNS, line, source);
  return r && { node: r.node, start: r.start << 12n, end: (r.end << 12n) - 1n };
}

function nodeLine(re: RegExp, line: Line, source?: string): NodeRange | undefined {
  const m = re.exec(line.text);
  if (!m) return undefined;
  const at = where(source, line.no);
  return { node: Number(m[1]), start: parseHex(m[2], "start", at), end: parseHex(m[3], "end", at) };
}

/** Lines Linux prints only after e820__memblock_setup(): the edit window has closed by then. */
const AFTER_MEMBLOCK =
  /^(?:MEMBLOCK configuration|init_memory_mapping:|RAMDISK:|ACPI: (?:Early table|RSDP)|No NUMA configuration|NUMA:|Zone ranges:|Early memory node ranges|esrt:|Secure boot)/;

/**
 * Where Linux copied the table into memblock: the first `memblock_add:` (memblock=debug); else the
 * last `last_pfn =` line (e820__end_of_ram_pfn / _low_ram_pfn run after the page-0, legacy-hole and
 * MTRR edits and right before e820__memblock_setup); else the first line printed only afterwards.
 */
function findMemblockLine(lines: readonly Line[]): number | undefined {
  const add = lines.find((l) => l.text.startsWith("memblock_add:"));
  if (add) return add.no;
  const marker = lines.find((l) => AFTER_MEMBLOCK.test(l.text));
  const pfn = lines.filter((l) => l.text.startsWith("last_pfn =") && (!marker || l.no < marker.no));
  if (pfn.length > 0) return pfn[pfn.length - 1].no;
  return marker?.no;
}

function parseLog(lines: readonly Line[], tables: readonly Table[], source?: string): BootLogInfo {
  const edits: E820Edit[] = [];
  const srat: NodeRange[] = [];
  const nodeRanges: NodeRange[] = [];
  const info: BootLogInfo = { edits, srat, nodeRanges, laterTables: [] };
  let noNuma = false;
  for (const line of lines) {
    const edit = parseEditLine(line, source);
    if (edit) edits.push(edit);
    const s = nodeLine(SRAT, line, source);
    if (s) srat.push(s);
    const n = nodeLine(NODE_RANGE, line, source) ?? oldNodeLine(line, source);
    if (n) nodeRanges.push(n);
    const mem = /^Memory: \d+K\/(\d+)K available/.exec(line.text);
    if (mem && info.memoryTotalKiB === undefined) info.memoryTotalKiB = Number(mem[1]);
    if (line.text.startsWith("Command line: ")) info.commandLine = line.text.slice(14);
    if (/^(?:No NUMA configuration found|SRAT: SRAT not used|NUMA turned off)/.test(line.text)) noNuma = true;
  }
  if (noNuma) srat.length = 0;
  info.memblockLine = findMemblockLine(lines);
  for (const e of edits)
    e.beforeMemblock = info.memblockLine === undefined || (e.line ?? 0) < info.memblockLine;
  info.laterTables = tables.slice(1).map((t) => ({ header: t.header, line: t.line, entries: t.entries }));
  return info;
}

/** Choose the firmware table: the first one printed (a second `BIOS-e820` table is a second boot). */
function mainTables(tables: Table[], changes: Change[]): Table[] {
  const again = tables.findIndex((t, i) => i > 0 && t.prefix === tables[0].prefix);
  if (again < 0) return tables;
  changes.push({
    kind: "note",
    line: tables[again].line,
    message: `a second '${tables[0].prefix}' table at line ${tables[again].line} (another boot?) was ignored`,
  });
  return tables.slice(0, again);
}

/** Parse dmesg text (a table excerpt or a whole boot log) into a raw (unsanitized) map. */
export function parseDmesg(text: string, source?: string): MemoryMap {
  const lines = splitLines(text).filter((l) => !l.text.startsWith("#"));
  const changes: Change[] = [];
  const tables = mainTables(collectTables(lines, source, changes), changes);
  if (tables.length === 0 || tables[0].entries.length === 0) {
    fail(
      "NO_TABLE",
      `${source ?? "input"}: no e820 table found (expected lines like ` +
        "'BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable')",
    );
  }
  const log = parseLog(lines, tables, source);
  const map: MemoryMap = { format: "dmesg", entries: tables[0].entries, changes, log, source };
  if (log.srat.length > 0) map.nodes = log.srat;
  return map;
}
