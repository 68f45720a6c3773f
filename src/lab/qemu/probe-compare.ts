/**
 * What pagelab's MMU says each probe case does, and the comparison with what QEMU's CPU did.
 *
 * For each case pagelab gets a fresh `Cpu` with the case's controls (CR0.WP, EFER.NXE, CR4.SMEP/SMAP,
 * EFLAGS.AC; PGE off), on a PhysMem holding the exported tables with QEMU's MAXPHYADDR and Page1GB as
 * the probe reported them; clears A/D on the path as the probe does, makes the access with
 * `translate`, and reads the path back. Compared: fault or not, the error code, CR2, and the low words
 * (A and D) of every entry on the path. A difference is a pass only if nothing differs; a known
 * deviation when `KNOWN_QEMU_DEVIATIONS` explains it; otherwise a failure.
 */
import type { PhysMem } from "../../machine/phys-mem.ts";
import { Cpu } from "../../machine/x86/cpu.ts";
import { Access } from "../../machine/x86/mmu.ts";
import { type Levels, vaToVpn, vpnToVa } from "../../machine/x86/vaddr.ts";
import { explainDeviation } from "./deviations.ts";
import { Ctl, type ProbeHeader, type ProbeResult } from "./probe.ts";
import type { CaseSpec } from "./probe-space.ts";

export interface Expected {
  /** Page-fault error code, or -1 when the access completes. */
  code: number;
  cr2: bigint;
  path: number[];
}

const ACCESS = { read: Access.READ, write: Access.WRITE, fetch: Access.FETCH, lock: Access.WRITE } as const;

export function pagelabCase(
  mem: PhysMem,
  root: number,
  levels: Levels,
  cpuid: { pdpe1gb: boolean },
  c: CaseSpec,
): Expected {
  const cpu = new Cpu(mem, {
    levels,
    pdpe1gb: cpuid.pdpe1gb,
    wp: (c.ctl & Ctl.WP) !== 0,
    nxe: (c.ctl & Ctl.NXE) !== 0,
    smep: (c.ctl & Ctl.SMEP) !== 0,
    smap: (c.ctl & Ctl.SMAP) !== 0,
    pge: false,
  });
  const user = (c.ctl & Ctl.CPL3) !== 0;
  cpu.setControl({ ac: (c.ctl & Ctl.AC) !== 0 && !user });
  cpu.writeCr3(root);
  for (const pa of c.path) mem.poke32(pa, (mem.peek32(pa) & ~0x60) >>> 0);
  const { vpn, offset } = vaToVpn(c.va, levels);
  const r = cpu.translate(vpn, ACCESS[c.kind] | (user ? Access.USER : 0));
  return {
    code: r < 0 ? cpu.faultCode : -1,
    cr2: r < 0 ? vpnToVa(cpu.cr2Vpn, levels, offset) : 0n,
    path: c.path.map((pa) => mem.peek32(pa)),
  };
}

export type Verdict = "pass" | "deviation" | "fail";

export interface CaseReport {
  spec: CaseSpec;
  verdict: Verdict;
  deviation?: string;
  pagelab: Expected;
  qemu: ProbeResult | null;
  why: string;
}

export interface ProbeReport {
  total: number;
  pass: number;
  deviations: Record<string, number>;
  failures: CaseReport[];
  cases: CaseReport[];
}

function codeOf(r: ProbeResult): number {
  return r.vector === 14 ? r.error : r.vector === -1 ? -1 : -1000 - r.vector;
}

export function compareCase(
  spec: CaseSpec,
  pagelab: Expected,
  qemu: ProbeResult | undefined,
  header: ProbeHeader,
  smp: number,
): CaseReport {
  if (qemu === undefined)
    return { spec, verdict: "fail", pagelab, qemu: null, why: "no result from the probe" };
  const q = codeOf(qemu);
  const diffs: string[] = [];
  if (q !== pagelab.code) {
    const show = (x: number) =>
      x === -1 ? "none" : x <= -1000 ? `vector ${-1000 - x}` : `#PF 0x${x.toString(16)}`;
    diffs.push(`fault: pagelab ${show(pagelab.code)}, QEMU ${show(q)}`);
  }
  if (q >= 0 && pagelab.code >= 0 && qemu.cr2 !== pagelab.cr2) {
    diffs.push(`CR2: pagelab 0x${pagelab.cr2.toString(16)}, QEMU 0x${qemu.cr2.toString(16)}`);
  }
  const pathDiff =
    pagelab.path.some((w, i) => w !== qemu.path[i]) || qemu.path.length !== pagelab.path.length;
  if (pathDiff) {
    const hex = (a: number[]) => a.map((w) => (w >>> 0).toString(16)).join(" ");
    diffs.push(`path words: pagelab [${hex(pagelab.path)}], QEMU [${hex(qemu.path)}]`);
  }
  if (diffs.length === 0) return { spec, verdict: "pass", pagelab, qemu, why: "" };
  const dev = explainDeviation({
    kind: spec.kind,
    cpl: (spec.ctl & Ctl.CPL3) !== 0 ? 3 : 0,
    shift: spec.shift,
    pdpe1gb: header.pdpe1gb,
    smp,
    pagelab: pagelab.code,
    qemu: q,
    pagelabPath: pagelab.path,
    qemuPath: qemu.path,
  });
  const cr2Agrees = q < 0 || pagelab.code < 0 || qemu.cr2 === pagelab.cr2;
  if (dev !== null && cr2Agrees) {
    return { spec, verdict: "deviation", deviation: dev.id, pagelab, qemu, why: diffs.join("; ") };
  }
  return { spec, verdict: "fail", pagelab, qemu, why: diffs.join("; ") };
}

export function compareProbe(
  mem: PhysMem,
  root: number,
  levels: Levels,
  header: ProbeHeader,
  specs: CaseSpec[],
  results: ProbeResult[],
  smp = 1,
): ProbeReport {
  const byId = new Map(results.map((r) => [r.id, r]));
  const cases = specs.map((s) =>
    compareCase(s, pagelabCase(mem, root, levels, header, s), byId.get(s.id), header, smp),
  );
  const deviations: Record<string, number> = {};
  for (const c of cases)
    if (c.deviation !== undefined) deviations[c.deviation] = (deviations[c.deviation] ?? 0) + 1;
  return {
    total: cases.length,
    pass: cases.filter((c) => c.verdict === "pass").length,
    deviations,
    failures: cases.filter((c) => c.verdict === "fail"),
    cases,
  };
}
