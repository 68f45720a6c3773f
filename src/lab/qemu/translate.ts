/**
 * Conformance of translations: load a page-table export into a stopped QEMU, switch paging on through
 * the gdbstub, and compare what QEMU's monitor says with what pagelab says for the same tables:
 *
 *  - `info tlb` (every present leaf: address, frame, X G P D A C T U W) with pagelab's `infoTlb`,
 *    line by line;
 *  - `gva2gpa ADDR` for sample addresses with pagelab's side-effect-free walk (`peekWalk`);
 *  - `info mem` (ranges of user/write rights ANDed over the levels) with pagelab's `infoMem`, for
 *    4-level paging only (under LA57 QEMU hangs: known deviation info-mem-la57-hangs).
 */
import { hex } from "../../errors.ts";
import type { PhysMem } from "../../machine/phys-mem.ts";
import { Cpu } from "../../machine/x86/cpu.ts";
import { infoMem, infoTlb } from "../../machine/x86/dump.ts";
import { peekWalk } from "../../machine/x86/mmu.ts";
import { type Levels, vaToVpn } from "../../machine/x86/vaddr.ts";
import { deviation } from "./deviations.ts";
import { type Blob, QemuSession, type SessionOptions } from "./session.ts";

export interface TranslationInput {
  mem: PhysMem;
  root: number;
  levels: Levels;
  /** Table frames to load (normally `reachableTables` or an export's pages). */
  tables: number[];
  /** Virtual addresses to translate with gva2gpa. */
  samples: bigint[];
  nxe?: boolean;
  /** pagelab's `info tlb` text to compare with (an export's info-tlb.txt); computed when absent. */
  infoTlb?: string;
}

export interface LineDiff {
  line: number;
  pagelab: string;
  qemu: string;
}

export interface TranslationReport {
  levels: Levels;
  infoTlb: { lines: number; equal: boolean; diffs: LineDiff[] };
  gva2gpa: { va: string; pagelab: string; qemu: string; equal: boolean }[];
  infoMem: { lines: number; equal: boolean; diffs: LineDiff[] } | { skipped: string };
  /** Known deviations that applied (by id) with a note. */
  deviations: { id: string; note: string }[];
}

function lines(s: string): string[] {
  return s
    .replace(/\r/g, "")
    .split("\n")
    .filter((l) => l.trim() !== "");
}

function diffLines(a: string[], b: string[]): LineDiff[] {
  const out: LineDiff[] = [];
  for (let i = 0; i < Math.max(a.length, b.length) && out.length < 20; i++) {
    if (a[i] !== b[i]) out.push({ line: i + 1, pagelab: a[i] ?? "(none)", qemu: b[i] ?? "(none)" });
  }
  return out;
}

/** pagelab's answer in gva2gpa's words: "gpa: 0x…" or "Unmapped". */
export function pagelabGva2gpa(cpu: Cpu, va: bigint, root: number): string {
  const { vpn, offset } = vaToVpn(va, cpu.levels);
  const r = peekWalk(cpu, vpn, root);
  return r === null ? "Unmapped" : `gpa: ${hex(r.pfn * 4096 + offset)}`;
}

/** QEMU prints "gpa: 0x1000", "gpa: 0" (printf %#x of zero) or "Unmapped": make it pagelab's form. */
export function normalizeGva2gpa(text: string): string {
  const t = text.trim();
  const m = /^gpa: (0x[0-9a-f]+|0)$/i.exec(t);
  return m === null ? t : `gpa: ${hex(BigInt(m[1]))}`;
}

export function tablesAsBlobs(mem: PhysMem, tables: number[]): Blob[] {
  return tables.map((t) => ({ pa: t * 4096, data: mem.readBytes(t * 4096, 4096) }));
}

/** Run one QEMU with these tables and compare its monitor's view with pagelab's. */
export async function compareTranslations(
  input: TranslationInput,
  opts: SessionOptions = {},
): Promise<TranslationReport> {
  const s = await QemuSession.start({ ...opts, blobs: tablesAsBlobs(input.mem, input.tables) });
  try {
    await s.enablePaging({ cr3: input.root * 4096, levels: input.levels, nxe: input.nxe ?? true });
    const pl = lines(input.infoTlb ?? infoTlb(input.mem, input.root, input.levels));
    const qm = lines(await s.hmp("info tlb"));
    const cpu = new Cpu(input.mem, { levels: input.levels, nxe: input.nxe ?? true });
    const gva: TranslationReport["gva2gpa"] = [];
    for (const va of input.samples) {
      const p = pagelabGva2gpa(cpu, va, input.root);
      const q = normalizeGva2gpa(await s.hmp(`gva2gpa ${hex(va)}`));
      gva.push({ va: hex(va), pagelab: p, qemu: q, equal: p === q });
    }
    const deviations: TranslationReport["deviations"] = [];
    let mem: TranslationReport["infoMem"];
    if (input.levels === 5) {
      const d = deviation("info-mem-la57-hangs");
      mem = { skipped: d.title };
      deviations.push({ id: d.id, note: "info mem not compared under LA57" });
    } else {
      const a = lines(infoMem(input.mem, input.root, input.levels));
      const b = lines(await s.hmp("info mem"));
      const diffs = diffLines(a, b);
      mem = { lines: b.length, equal: diffs.length === 0, diffs };
    }
    const diffs = diffLines(pl, qm);
    return {
      levels: input.levels,
      infoTlb: { lines: qm.length, equal: diffs.length === 0, diffs },
      gva2gpa: gva,
      infoMem: mem,
      deviations,
    };
  } finally {
    await s.close();
  }
}
