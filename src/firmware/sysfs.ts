/**
 * `/sys/firmware/memmap`: one directory per entry (0, 1, ...) holding `start`, `end` (inclusive) and
 * `type` files. Written by drivers/firmware/memmap.c from the e820 table as Linux sanitized it, before
 * its own edits (it ignores mem= and memmap=); type words from arch/x86/kernel/e820.c
 * `e820_type_to_string()`.
 *
 * Accepted dumps:
 *     /sys/firmware/memmap/0/end:0x9fbff            (grep -r . /sys/firmware/memmap)
 *     /sys/firmware/memmap/0/start:0x0
 *     /sys/firmware/memmap/0/type:System RAM
 * or one entry per line:  [index] 0xSTART 0xEND TYPE WORDS
 */
import { fail } from "../errors.ts";
import { E820 } from "./e820-types.ts";
import { parseHex, splitLines, where } from "./text.ts";
import type { Change, MapEntry, MemoryMap } from "./types.ts";

/** Words of `e820_type_to_string()` (also used by /proc/iomem). */
export const FIRMWARE_WORDS: Record<string, number> = {
  "System RAM": E820.RAM,
  Reserved: E820.RESERVED,
  reserved: E820.RESERVED,
  "ACPI Tables": E820.ACPI,
  "ACPI Non-volatile Storage": E820.NVS,
  "Unusable memory": E820.UNUSABLE,
  "Persistent Memory (legacy)": E820.PRAM,
  "Persistent Memory": E820.PMEM,
  "Soft Reserved": E820.SOFT_RESERVED,
  "Unknown E820 type": E820.RESERVED,
};

function typeWord(word: string, at: string, changes: Change[], line: number): number {
  const t = FIRMWARE_WORDS[word.trim()];
  if (t === undefined) {
    fail(
      "BAD_TYPE",
      `${at}: unknown type '${word.trim()}' (expected ${Object.keys(FIRMWARE_WORDS).join(", ")})`,
    );
  }
  if (word.trim() === "Unknown E820 type") {
    changes.push({
      kind: "converted",
      line,
      message: "'Unknown E820 type' (the number is lost in sysfs) read as reserved",
    });
  }
  return t;
}

const FILE_LINE = /(?:^|\/)memmap\/(\d+)\/(start|end|type):(.*)$/;
const ROW_LINE = /^(?:\d+\s+)?(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(\S.*)$/i;

/** Parse a dump of /sys/firmware/memmap (either shape, see the header). */
export function parseSysfs(text: string, source?: string): MemoryMap {
  const byIndex = new Map<number, { start?: bigint; end?: bigint; type?: number; line: number }>();
  const entries: MapEntry[] = [];
  const changes: Change[] = [];
  for (const line of splitLines(text, false)) {
    const at = where(source, line.no);
    const f = FILE_LINE.exec(line.text);
    if (f) {
      const e = byIndex.get(Number(f[1])) ?? { line: line.no };
      if (f[2] === "type") e.type = typeWord(f[3], at, changes, line.no);
      else e[f[2] as "start" | "end"] = parseHex(f[3].trim(), f[2], at);
      byIndex.set(Number(f[1]), e);
      continue;
    }
    const r = ROW_LINE.exec(line.text);
    if (r)
      entries.push({
        start: parseHex(r[1], "start", at),
        end: parseHex(r[2], "end", at),
        type: typeWord(r[3], at, changes, line.no),
      });
  }
  for (const [i, e] of [...byIndex].sort((a, b) => a[0] - b[0])) {
    if (e.start === undefined || e.end === undefined || e.type === undefined) {
      fail(
        "BAD_ENTRY",
        `${where(source, e.line)}: memmap/${i} lacks its ${["start", "end", "type"].filter((k) => e[k as "start"] === undefined).join(" and ")} file`,
      );
    }
    entries.push({ start: e.start, end: e.end, type: e.type });
  }
  if (entries.length === 0)
    fail(
      "NO_TABLE",
      `${source ?? "input"}: no /sys/firmware/memmap entries (e.g. '/sys/firmware/memmap/0/start:0x0')`,
    );
  return { format: "sysfs", entries, changes, source };
}
