/** The known-deviation table explains exactly its own differences, nothing else (no QEMU needed). */
import { describe, expect, it } from "vitest";
import { PagelabError } from "../../src/errors.ts";
import {
  type DeviationContext,
  deviation,
  explainDeviation,
  KNOWN_QEMU_DEVIATIONS,
} from "../../src/lab/qemu/deviations.ts";
import { compareCase } from "../../src/lab/qemu/probe-compare.ts";
import type { CaseSpec } from "../../src/lab/qemu/probe-space.ts";

const base: DeviationContext = {
  kind: "read",
  cpl: 0,
  shift: 0,
  pdpe1gb: true,
  smp: 1,
  pagelab: -1,
  qemu: -1,
  pagelabPath: [0x1027, 0x2027, 0x3027, 0x600021],
  qemuPath: [0x1027, 0x2027, 0x3027, 0x600021],
};
const id = (c: Partial<DeviationContext>) => explainDeviation({ ...base, ...c })?.id ?? null;

/** A probe difference each deviation with a predicate must explain (and no other deviation before it). */
const EXAMPLES: Record<string, Partial<DeviationContext>[]> = {
  "rsvd-without-p": [{ pagelab: 0x9, qemu: 0x8 }],
  "1g-without-pdpe1gb": [{ shift: 18, pdpe1gb: false, pagelab: 0x9, qemu: -1, qemuPath: [0x1027, 0xa3] }],
  "locked-rmw-faults-as-read": [
    { kind: "lock", pagelab: 0x2, qemu: 0x0 },
    {
      kind: "lock",
      pagelab: 0x3,
      qemu: 0x3,
      pagelabPath: [0x1027, 0x2027, 0x3027, 0x600001],
      qemuPath: [0x1027, 0x2027, 0x3027, 0x600021],
    },
  ],
  "1g-leaf-accessed-on-fault": [
    { shift: 18, pagelab: 0x5, qemu: 0x5, pagelabPath: [0x1027, 0x83], qemuPath: [0x1027, 0xa3] },
  ],
};

/**
 * What each entry must say: what the SDM specifies, what QEMU does instead, and where in QEMU. A new
 * or removed entry in src/lab/qemu/deviations.ts fails here until it is described.
 */
const CONTENT: Record<string, { title: RegExp; sdm: RegExp; qemu: RegExp; where: RegExp }> = {
  "rsvd-without-p": {
    title: /reserved-bit .*without the P bit/,
    sdm: /^SDM Vol\. 3A 4\.7: .*present.* P=1 and RSVD=1/,
    qemu: /excp_helper\.c.*do_fault_rsvd.*sets RSVD but not P/,
    where: /^mmu_translate\(\): do_fault_rsvd/,
  },
  "1g-without-pdpe1gb": {
    title: /1 GiB pages .*CPUID lacks Page1GB/,
    sdm: /^SDM Vol\. 3A 4\.5: PS=1 in a PDPTE is reserved .*Page1GB/,
    qemu: /never consults the pdpe1gb feature/,
    where: /^mmu_translate\(\): level 3 .*no CPUID check/,
  },
  "locked-rmw-faults-as-read": {
    title: /-smp 1, a locked read-modify-write faults as a read/,
    sdm: /^SDM Vol\. 3A 4\.7\/4\.8: a locked read-modify-write .* one write access: a fault on it reports W=1/,
    qemu: /\(-smp 1\) TCG executes LOCK-prefixed instructions as a plain load followed by a store.*W=0/,
    where: /^target\/i386\/tcg\/translate\.c: LOCK without CF_PARALLEL/,
  },
  "1g-leaf-accessed-on-fault": {
    title: /1 GiB leaf gets its Accessed flag .*faults on rights/,
    sdm: /^SDM Vol\. 3A 4\.8 sets A in every entry used for a translation/,
    qemu: /sets A in a PDPTE before it looks at PS.*leaves A=1 in the leaf/,
    where: /^mmu_translate\(\): level 3 .*PG_ACCESSED_MASK.*precedes.*PG_PSE_MASK/,
  },
  "info-mem-la57-hangs": {
    title: /`info mem` hangs under 5-level paging/,
    sdm: /^\(monitor command, not architecture\)/,
    qemu: /CR4\.LA57 = 1 .*mem_info_la57\(\) never returns/,
    where: /^target\/i386\/monitor\.c: mem_info_la57\(\)/,
  },
};

describe("KNOWN_QEMU_DEVIATIONS", () => {
  it("recognises each deviation", () => {
    const withPredicate = KNOWN_QEMU_DEVIATIONS.filter((d) => d.matches !== null).map((d) => d.id);
    expect(Object.keys(EXAMPLES)).toEqual(withPredicate);
    for (const [want, cases] of Object.entries(EXAMPLES))
      for (const c of cases) expect(id(c), JSON.stringify(c)).toBe(want);
  });

  it("each entry says what differs, what the SDM says, what QEMU does instead and where", () => {
    expect(KNOWN_QEMU_DEVIATIONS.map((d) => d.id)).toEqual(Object.keys(CONTENT));
    for (const d of KNOWN_QEMU_DEVIATIONS) {
      const want = CONTENT[d.id];
      expect(d.id).toMatch(/^[a-z0-9]+(-[a-z0-9]+)+$/);
      expect(deviation(d.id)).toBe(d);
      expect(d.title, d.id).toMatch(want.title);
      expect(d.sdm, d.id).toMatch(want.sdm);
      expect(d.qemu, d.id).toMatch(want.qemu);
      expect(d.where, d.id).toMatch(want.where);
    }
    // Only monitor deviations lack a predicate: an architectural one must be recognisable in a probe case.
    expect(KNOWN_QEMU_DEVIATIONS.filter((d) => d.matches === null).map((d) => d.id)).toEqual([
      "info-mem-la57-hangs",
    ]);
    expect(() => deviation("no-such-deviation")).toThrow(PagelabError);
    expect(() => deviation("no-such-deviation")).toThrow(/no known QEMU deviation "no-such-deviation"/);
  });

  it("explains nothing else", () => {
    expect(id({ pagelab: -1, qemu: 0x1 })).toBeNull(); // QEMU faults where pagelab does not
    expect(id({ pagelab: 0x1, qemu: 0x3 })).toBeNull(); // a different error code
    expect(id({ pagelab: 0x9, qemu: 0x8, qemuPath: [0x1027, 0x2027, 0x3007, 0x600021] })).toBeNull(); // and A/D differ
    expect(id({ kind: "lock", smp: 2, pagelab: 0x2, qemu: 0x0 })).toBeNull(); // parallel TCG must follow the SDM
    expect(
      id({ shift: 9, pagelab: 0x5, qemu: 0x5, pagelabPath: [0x1027, 0x83], qemuPath: [0x1027, 0xa3] }),
    ).toBeNull();
    expect(
      id({ shift: 18, pagelab: 0x5, qemu: 0x5, pagelabPath: [0x1027, 0x83], qemuPath: [0x1027, 0xe3] }),
    ).toBeNull();
  });

  it("a comparison reports pass, known deviation or failure", () => {
    const spec: CaseSpec = {
      id: 0,
      label: "t",
      va: 0x1000n,
      kind: "read",
      ctl: 6,
      shift: 0,
      path: [0, 8, 16, 24],
    };
    const header = {
      levels: 4,
      maxphys: 40,
      pdpe1gb: true,
      smep: true,
      smap: true,
      la57: true,
      pku: true,
      nx: true,
      cases: 1,
    };
    const pl = { code: 9, cr2: 0x1000n, path: [1, 2, 3, 4] };
    const q = { id: 0, vector: 14, error: 8, cr2: 0x1000n, rip: 0n, path: [1, 2, 3, 4] };
    expect(compareCase(spec, pl, q, header, 1).verdict).toBe("deviation");
    expect(compareCase(spec, pl, { ...q, error: 9 }, header, 1).verdict).toBe("pass");
    expect(compareCase(spec, pl, { ...q, error: 9, cr2: 0x2000n }, header, 1).verdict).toBe("fail");
    expect(compareCase(spec, pl, { ...q, vector: 13 }, header, 1).verdict).toBe("fail");
    expect(compareCase(spec, pl, undefined, header, 1).verdict).toBe("fail");
  });
});
