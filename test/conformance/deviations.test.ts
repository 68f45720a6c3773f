/** The known-deviation table explains exactly its own differences, nothing else (no QEMU needed). */
import { describe, expect, it } from "vitest";
import { type DeviationContext, explainDeviation } from "../../src/lab/qemu/deviations.ts";
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

describe("KNOWN_QEMU_DEVIATIONS", () => {
  it("recognises each deviation", () => {
    expect(id({ pagelab: 0x9, qemu: 0x8 })).toBe("rsvd-without-p");
    expect(id({ shift: 18, pdpe1gb: false, pagelab: 0x9, qemu: -1, qemuPath: [0x1027, 0xa3] })).toBe(
      "1g-without-pdpe1gb",
    );
    expect(id({ kind: "lock", pagelab: 0x2, qemu: 0x0 })).toBe("locked-rmw-faults-as-read");
    const ro = [0x1027, 0x2027, 0x3027, 0x600001];
    expect(
      id({
        kind: "lock",
        pagelab: 0x3,
        qemu: 0x3,
        pagelabPath: ro,
        qemuPath: [0x1027, 0x2027, 0x3027, 0x600021],
      }),
    ).toBe("locked-rmw-faults-as-read");
    expect(
      id({ shift: 18, pagelab: 0x5, qemu: 0x5, pagelabPath: [0x1027, 0x83], qemuPath: [0x1027, 0xa3] }),
    ).toBe("1g-leaf-accessed-on-fault");
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
