/**
 * A page walk told step by step, for people: which table, which index, which entry, what its bits say,
 * and how the walk ends. Reads with uncounted peeks; the outcome (frame or fault) comes from the real
 * MMU so that the explanation and the machine never disagree.
 */
import { hex } from "../../errors.ts";
import type { Cpu } from "./cpu.ts";
import { reservedEntry } from "./mmu.ts";
import { type DecodedPte, decodePte, flagString, Pte, pfnOf, SDM_NAMES } from "./pte.ts";
import { tableIndex, vpnToVa } from "./vaddr.ts";

export interface WalkStep {
  level: number;
  /** SDM name of the entry: PML5E, PML4E, PDPTE, PDE, PTE. */
  entry: string;
  index: number;
  tablePa: string;
  entryPa: string;
  raw: string;
  flags: string;
  decoded: Omit<DecodedPte, "raw">;
  /** What this entry does for the walk. */
  meaning: string;
}

export interface WalkExplanation {
  va: string;
  cr3: string;
  levels: number;
  steps: WalkStep[];
  /** Physical address on success, else null. */
  pa: string | null;
  pageSize: string | null;
  fault: { errorCode: number; bits: string[]; cr2: string } | null;
}

export function errorCodeBits(code: number): string[] {
  const names: [number, string][] = [
    [1, "P (protection violation)"],
    [2, "W (write)"],
    [4, "U (user mode)"],
    [8, "RSVD (reserved bit set)"],
    [16, "I (instruction fetch)"],
    [32, "PK (protection key)"],
  ];
  const out = names.filter(([b]) => (code & b) !== 0).map(([, n]) => n);
  if ((code & 1) === 0) out.unshift("not present");
  return out;
}

export function explainWalk(cpu: Cpu, vpn: number, offset: number, access: number): WalkExplanation {
  const steps: WalkStep[] = [];
  let table = cpu.cr3Pfn;
  for (let level: number = cpu.levels; level >= 1; level--) {
    const index = tableIndex(vpn, level);
    const pa = table * 4096 + index * 8;
    const lo = cpu.mem.peek32(pa);
    const hi = cpu.mem.peek32(pa + 4);
    const d = decodePte(lo, hi, level);
    const { raw, ...decoded } = d;
    const leaf = level === 1 || ((level === 2 || level === 3) && (lo & Pte.PS) !== 0);
    const present = (lo & Pte.P) !== 0;
    const reserved = present && reservedEntry(cpu, level, lo, hi);
    let meaning: string;
    if (!present) meaning = "not present: the walk stops with a page fault";
    else if (reserved) meaning = "reserved bits set: the walk stops with a page fault (RSVD)";
    else if (leaf)
      meaning = `maps a ${level === 1 ? "4 KiB" : level === 2 ? "2 MiB" : "1 GiB"} page at ${hex(d.pfn * 4096)}`;
    else meaning = `points to the next table at ${hex(pfnOf(lo, hi) * 4096)}`;
    steps.push({
      level,
      entry: SDM_NAMES[level],
      index,
      tablePa: hex(table * 4096),
      entryPa: hex(pa),
      raw: `0x${raw.toString(16).padStart(16, "0")}`,
      flags: flagString(lo, hi, level),
      decoded,
      meaning,
    });
    if (!present || reserved || leaf) break;
    table = pfnOf(lo, hi);
  }
  const pfn = cpu.translate(vpn, access);
  const last = steps[steps.length - 1];
  const size = last.level === 1 ? "4K" : last.level === 2 ? "2M" : "1G";
  return {
    va: `0x${vpnToVa(vpn, cpu.levels, offset).toString(16).padStart(16, "0")}`,
    cr3: hex(cpu.cr3Pfn * 4096),
    levels: cpu.levels,
    steps,
    pa: pfn >= 0 ? hex(pfn * 4096 + offset) : null,
    pageSize: pfn >= 0 ? size : null,
    fault:
      pfn >= 0
        ? null
        : {
            errorCode: cpu.faultCode,
            bits: errorCodeBits(cpu.faultCode),
            cr2: `0x${vpnToVa(cpu.cr2Vpn, cpu.levels, offset).toString(16).padStart(16, "0")}`,
          },
  };
}
