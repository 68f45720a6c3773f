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
      c.qemu === (c.pagelab & ~PF_P),
  },
  {
    id: "1g-without-pdpe1gb",
    title: "1 GiB pages work even when CPUID lacks Page1GB",
    sdm: "SDM Vol. 3A 4.5: PS=1 in a PDPTE is reserved (a #PF with RSVD) unless CPUID.80000001H:EDX.Page1GB [bit 26] = 1.",
    qemu: "QEMU never consults the pdpe1gb feature in the page walk: a PS=1 PDPTE maps 1 GiB whatever CPUID says.",
    where: "mmu_translate(): level 3 'if (pte & PG_PSE_MASK) /* 1 GB page */' has no CPUID check",
    matches: (c) =>
      !c.pdpe1gb && c.shift === 18 && c.pagelab >= 0 && (c.pagelab & PF_RSVD) !== 0 && c.qemu === -1,
  },
  {
    id: "locked-rmw-faults-as-read",
    title: "with -smp 1, a locked read-modify-write faults as a read",
    sdm: "SDM Vol. 3A 4.7: W/R is 1 when the access causing the fault was a write; a locked read-modify-write (LOCK OR, XCHG) is a write access, so a fault on it reports W=1 even when the page is not present.",
    qemu: "Without parallel vCPUs (-smp 1) TCG executes LOCK-prefixed instructions as a plain load followed by a store: the load faults first, with W=0.",
    where: "target/i386/tcg/translate.c: gen_op for LOCK without CF_PARALLEL is a normal load/op/store",
    matches: (c) => c.kind === "lock" && c.smp === 1 && c.pagelab >= 0 && c.qemu === (c.pagelab & ~PF_W),
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
  if (d === undefined) throw new Error(`no known QEMU deviation "${id}"`);
  return d;
}
