/**
 * Test support for the real-machine corpus (corpus/ at the package root, copied from the team's shared corpus):
 * loading records, and rebuilding a boot-log excerpt from a record's separate fields.
 *
 * A record keeps Linux's lines by kind (table, updates, later tables, NUMA lines, node ranges), not in
 * log order. `recordToLog` puts them back in the order setup_arch() prints them. One thing the record
 * does not say is where `e820__memblock_setup()` ran relative to the updates printed after the legacy
 * hole removal: MTRR trimming (before memblock; always whole MiB, usually up to 4 GiB or the end of
 * RAM) versus EFI reservations such as ESRT and MOKvar (after; page-sized). The `last_pfn` line, which
 * Linux prints just before memblock setup, is placed after the MiB-aligned (MTRR) updates.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export interface CorpusRecord {
  id: string;
  kernel: string | null;
  cmdline: string | null;
  e820_raw: string[];
  e820_updates: string[];
  later_tables: string[];
  numa_lines: string[];
  numa_nodes: number | null;
  node_ranges: string[];
  memory_line: string | null;
  last_pfn_lines: string[];
  e820: { start: string; end: string; type: string }[];
  derived: { usable_bytes: number; firmware: string; platform: string; hypervisor_guess: string | null };
}

export const FIXTURES = fileURLToPath(new URL("../../corpus/", import.meta.url));

export function loadRecords(): CorpusRecord[] {
  return readFileSync(`${FIXTURES}e820-real.jsonl`, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as CorpusRecord);
}

const MIB = 1n << 20n;

/** An update line after the legacy-hole removal that MTRR trimming would print (whole MiB, reserving RAM). */
function mtrrLike(line: string): boolean {
  const m =
    /^e820: update \[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\] (?:usable|System RAM) ==> (?:reserved|device reserved)$/.exec(
      line,
    );
  if (!m) return false;
  return BigInt(m[1]) % MIB === 0n && (BigInt(m[2]) + 1n) % MIB === 0n;
}

/** Updates split into those Linux made before memblock setup and those after (see the header). */
function splitUpdates(updates: readonly string[]): { before: string[]; after: string[] } {
  const hole = updates.findIndex((u) =>
    /^e820:? remove(?: range:)? \[?(?:mem )?0x0*a0000|^e820 remove range: 0*a0000/.test(u),
  );
  if (hole < 0) return { before: [...updates], after: [] };
  const rest = updates.slice(hole + 1);
  return {
    before: [...updates.slice(0, hole + 1), ...rest.filter(mtrrLike)],
    after: rest.filter((u) => !mtrrLike(u)),
  };
}

/** A boot-log excerpt with the record's lines in setup_arch() order. */
export function recordToLog(r: CorpusRecord): string {
  const { before, after } = splitUpdates(r.e820_updates);
  const pfn = r.last_pfn_lines.length > 0 ? r.last_pfn_lines : [];
  return [
    ...(r.cmdline ? [`Command line: ${r.cmdline}`] : []),
    "BIOS-provided physical RAM map:",
    ...r.e820_raw,
    ...r.later_tables,
    ...before,
    ...pfn,
    ...after,
    ...r.numa_lines,
    "Early memory node ranges",
    ...r.node_ranges.map((l) => `  ${l}`),
    ...(r.memory_line ? [r.memory_line] : []),
  ].join("\n");
}
