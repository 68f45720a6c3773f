/**
 * Known places where QEMU (TCG, Debian's qemu-system-x86 7.2) departs from the Intel SDM, as far as
 * the conformance harness can see. The comparisons consult this table: a difference that one of these
 * entries explains is reported as "known deviation <id>", never as a pass and never hidden; any other
 * difference fails.
 *
 * Each entry says what the SDM specifies (what pagelab models) and what QEMU does instead, and has a
 * `matches` predicate that recognises exactly that difference in a probe case (for the deviations of
 * the real accesses) or is null (deviations of the monitor, handled where the monitor is used).
 */

import { fail } from "../../errors.ts";

/** One probe case as compared: what was done, what pagelab says, what QEMU did. */
export interface DeviationContext {
  kind: "read" | "write" | "fetch" | "lock";
  cpl: 0 | 3;
  /** Leaf size of the page touched: 0, 9 or 18 (log2 of 4 KiB pages), -1 when nothing maps it. */
  shift: number;
  /** The CPU's CPUID.80000001H:EDX.Page1GB as QEMU reports it to the guest. */
  pdpe1gb: boolean;
  /** QEMU's -smp value. */
  smp: number;
  /** Page-fault error codes, or -1 when the access completed. */
  pagelab: number;
  qemu: number;
  /** Low words of the path's entries after the access (root first, leaf or faulting entry last). */
  pagelabPath: number[];
  qemuPath: number[];
}

function samePath(c: DeviationContext): boolean {
  return c.pagelabPath.length === c.qemuPath.length && c.pagelabPath.every((w, i) => w === c.qemuPath[i]);
}

/** The paths differ only in the Accessed flag of the last entry, which QEMU set and pagelab did not. */
function onlyLeafAccessedByQemu(c: DeviationContext): boolean {
  const n = c.pagelabPath.length;
  if (n === 0 || n !== c.qemuPath.length) return false;
  for (let i = 0; i < n - 1; i++) if (c.pagelabPath[i] !== c.qemuPath[i]) return false;
  const p = c.pagelabPath[n - 1];
  return (p & PF_A) === 0 && c.qemuPath[n - 1] === (p | PF_A) >>> 0;
}

export interface KnownDeviation {
  id: string;
  title: string;
  /** What the SDM says (and pagelab does). */
  sdm: string;
  /** What QEMU does. */
  qemu: string;
  /** Where it comes from in QEMU. */
  where: string;
  /** Recognises the deviation in a probe case; null for monitor-only deviations. */
  matches: ((c: DeviationContext) => boolean) | null;
}

const PF_P = 1;
const PF_W = 2;
const PF_RSVD = 8;
/** The Accessed flag of an entry (bit 5). */
const PF_A = 0x20;

export const KNOWN_QEMU_DEVIATIONS: readonly KnownDeviation[] = [
  {
    id: "rsvd-without-p",
    title: "reserved-bit page faults are reported without the P bit",
    sdm: "SDM Vol. 3A 4.7: a reserved bit set in a present paging-structure entry causes #PF with P=1 and RSVD=1 (the entry is present).",
    qemu: "QEMU's page walk (target/i386/tcg/sysemu/excp_helper.c, do_fault_rsvd) sets RSVD but not P.",
    where: "mmu_translate(): do_fault_rsvd: error_code = PG_ERROR_RSVD_MASK",
    matches: (c) =>
      c.pagelab >= 0 &&
      c.qemu >= 0 &&
      (c.pagelab & (PF_P | PF_RSVD)) === (PF_P | PF_RSVD) &&
      c.qemu === (c.pagelab & ~PF_P) &&
      samePath(c),
  },
  {
    id: "1g-without-pdpe1gb",
    title: "1 GiB pages work even when CPUID lacks Page1GB",
    sdm: "SDM Vol. 3A 4.5: PS=1 in a PDPTE is reserved (a #PF with RSVD) unless CPUID.80000001H:EDX.Page1GB [bit 26] = 1.",
    qemu: "QEMU never consults the pdpe1gb feature in the page walk: a PS=1 PDPTE maps 1 GiB whatever CPUID says.",
    where: "mmu_translate(): level 3 'if (pte & PG_PSE_MASK) /* 1 GB page */' has no CPUID check",
    matches: (c) =>
      !c.pdpe1gb && c.shift === 18 && c.pagelab >= 0 && (c.pagelab & PF_RSVD) !== 0 && c.qemu !== c.pagelab,
  },
  {
    id: "locked-rmw-faults-as-read",
    title: "with -smp 1, a locked read-modify-write faults as a read (and its load sets A first)",
    sdm: "SDM Vol. 3A 4.7/4.8: a locked read-modify-write (LOCK OR, XCHG) is one write access: a fault on it reports W=1 even when the page is not present, and a write that faults on rights does not get to set the leaf's Accessed flag.",
    qemu: "Without parallel vCPUs (-smp 1) TCG executes LOCK-prefixed instructions as a plain load followed by a store: on a non-present page the load faults first, with W=0; on a read-only page the load succeeds and sets the leaf's Accessed flag, then the store faults with W=1.",
    where: "target/i386/tcg/translate.c: LOCK without CF_PARALLEL is a normal load/op/store",
    matches: (c) =>
      c.kind === "lock" &&
      c.smp === 1 &&
      c.pagelab >= 0 &&
      ((c.qemu === (c.pagelab & ~PF_W) && c.qemu !== c.pagelab && samePath(c)) ||
        (c.qemu === c.pagelab && onlyLeafAccessedByQemu(c))),
  },
  {
    id: "1g-leaf-accessed-on-fault",
    title: "a 1 GiB leaf gets its Accessed flag even when the access faults on rights",
    sdm: "SDM Vol. 3A 4.8 sets A in every entry used for a translation and D in the leaf on a write; whether an access that faults on rights sets A in the leaf is not spelled out, but nothing makes a 1 GiB leaf different from a 2 MiB or 4 KiB one. pagelab (like QEMU itself for 4 KiB and 2 MiB leaves) sets a leaf's A/D only when the access is allowed.",
    qemu: "QEMU sets A in a PDPTE before it looks at PS, so a 1 GiB leaf is marked accessed before the rights check: a read that faults (user access to a supervisor page, a write to a read-only page, a fetch from an NX page) leaves A=1 in the leaf.",
    where:
      "mmu_translate(): level 3 'ptw_setl(..., PG_ACCESSED_MASK)' precedes 'if (pte & PG_PSE_MASK) /* 1 GB page */'",
    matches: (c) => c.shift === 18 && c.pagelab >= 0 && c.qemu === c.pagelab && onlyLeafAccessedByQemu(c),
  },
  {
    id: "info-mem-la57-hangs",
    title: "`info mem` hangs under 5-level paging",
    sdm: "(monitor command, not architecture) `info mem` should list the mapped ranges with their user/write rights.",
    qemu: "With CR4.LA57 = 1 the monitor's mem_info_la57() never returns; the harness does not issue `info mem` under LA57.",
    where: "target/i386/monitor.c: mem_info_la57()",
    matches: null,
  },
];

/** The known deviation that explains a probe difference, or null. */
export function explainDeviation(c: DeviationContext): KnownDeviation | null {
  for (const d of KNOWN_QEMU_DEVIATIONS) if (d.matches?.(c)) return d;
  return null;
}

export function deviation(id: string): KnownDeviation {
  const d = KNOWN_QEMU_DEVIATIONS.find((x) => x.id === id);
  if (d === undefined) fail("QEMU_DEVIATION", `no known QEMU deviation "${id}"`);
  return d;
}
