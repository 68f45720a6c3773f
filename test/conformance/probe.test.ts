/**
 * Conformance with a real MMU, part 2: real accesses. The probe kernel (src/lab/qemu/probe/) boots in
 * QEMU on page tables pagelab built and exported, performs reads, writes, fetches and locked RMWs at
 * CPL0 and CPL3 under CR0.WP, EFER.NXE, CR4.SMEP, CR4.SMAP (with and without EFLAGS.AC) and LA57, and
 * reports the page-fault error codes, CR2 and the A/D bits the CPU set on every entry of the walk's
 * path. pagelab's Cpu computes the same cases; every difference must be a known QEMU deviation
 * (src/lab/qemu/deviations.ts), reported as such.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeWithTool, toolFailed } from "../tools.ts";
import { exportPageTables, importPageTables } from "../../src/lab/export.ts";
import { probeWorkdir, runProbe } from "../../src/lab/qemu/probe.ts";
import { compareProbe, type ProbeReport } from "../../src/lab/qemu/probe-compare.ts";
import {
  buildProbeSpace,
  type CaseSpec,
  USER_RIP_VA,
  USER_STACK_VA,
} from "../../src/lab/qemu/probe-space.ts";
import { tablesAsBlobs } from "../../src/lab/qemu/translate.ts";
import { checkQemu, checkToolchain } from "../../src/lab/qemu/tools.ts";
import type { Levels } from "../../src/machine/x86/vaddr.ts";

const qemu = checkQemu();
const cc = checkToolchain();
const reason = !qemu.ok ? qemu.reason : !cc.ok ? cc.reason : "";

let work: ReturnType<typeof probeWorkdir> | null = null;
let tmp = "";

async function probe(
  levels: Levels,
  opts: { cpu?: string; smp?: number; filter?: (c: CaseSpec) => boolean } = {},
): Promise<ProbeReport | string> {
  const space = buildProbeSpace(levels);
  const cases = opts.filter ? space.cases.filter(opts.filter) : space.cases;
  // The tables go to QEMU through the exporter, as `pagelab boot --export` will hand them over.
  const dir = join(tmp, `l${levels}-${opts.cpu ?? "max"}-${opts.smp ?? 1}`);
  exportPageTables(space.machine.mem, space.mapper.root, levels, dir);
  const exported = importPageTables(dir);
  const run = await runProbe({
    kernel: work!.kernel,
    cpu: opts.cpu,
    smp: opts.smp,
    tables: tablesAsBlobs(exported.mem, exported.tables),
    plan: {
      levels,
      cr3: exported.root * 4096,
      userRip: USER_RIP_VA,
      userRsp: USER_STACK_VA + 0x1000n,
      cases: cases.map((c) => ({ id: c.id, va: c.va, kind: c.kind, ctl: c.ctl, path: c.path })),
    },
  });
  const h = run.output.header;
  if (h === null && run.exitCode === 7)
    return "QEMU's CPU model has no LA57 (CPUID.(7,0):ECX[16]): 5-level paging cannot be probed";
  if (h === null || !run.output.done) {
    throw new Error(
      `the probe did not finish (exit ${run.exitCode}, timed out: ${run.timedOut}):\n${run.serial.slice(-2000)}\n${run.stderr.slice(0, 1000)}`,
    );
  }
  expect(run.output.other).toEqual([]);
  expect(h.levels).toBe(levels);
  // pagelab's side runs on the export with QEMU's MAXPHYADDR.
  const mine = importPageTables(dir, { maxPhysAddrBits: h.maxphys });
  // Where QEMU's CPU lacks SMEP or SMAP the probe leaves the bit clear: those cases say nothing.
  const usable = cases.filter((c) => (h.smep || (c.ctl & 8) === 0) && (h.smap || (c.ctl & 16) === 0));
  if (usable.length < cases.length) {
    console.warn(
      `  ${cases.length - usable.length} SMEP/SMAP cases not compared: QEMU's CPU lacks SMEP or SMAP`,
    );
  }
  const report = compareProbe(mine.mem, mine.root, levels, h, usable, run.output.results, opts.smp ?? 1);
  const devs = Object.entries(report.deviations)
    .map(([id, n]) => `${id} x${n}`)
    .join(", ");
  console.log(
    `${levels}-level, -cpu ${opts.cpu ?? "max"} -smp ${opts.smp ?? 1} (MAXPHYADDR ${h.maxphys}, pdpe1gb ${+h.pdpe1gb}, smep ${+h.smep}, smap ${+h.smap}, la57 ${+h.la57}): ` +
      `${report.total} cases, ${report.pass} equal, ${report.total - report.pass - report.failures.length} known deviations (${devs || "none"}), ${report.failures.length} failures; QEMU ${run.ms} ms`,
  );
  for (const f of report.failures.slice(0, 30)) console.log(`  FAIL ${f.spec.label}: ${f.why}`);
  return report;
}

async function probeReport(levels: Levels, opts: Parameters<typeof probe>[1]): Promise<ProbeReport> {
  const r = await probe(levels, opts);
  if (typeof r === "string") throw new Error(r);
  return r;
}

describeWithTool(
  reason,
  `QEMU${qemu.ok ? ` ${qemu.version}` : ""} probe kernel agrees with pagelab's MMU`,
  () => {
    beforeAll(() => {
      tmp = mkdtempSync(join(tmpdir(), "pagelab-probe-test-"));
      work = probeWorkdir();
    });
    afterAll(() => {
      work?.cleanup();
      rmSync(tmp, { recursive: true, force: true });
    });

    for (const levels of [4, 5] as const) {
      it(`${levels}-level: read/write/fetch/lock at CPL0 and CPL3, WP, NXE, SMEP, SMAP(+AC), 4K/2M/1G, upper-level rights, reserved bits, recursive slot`, async (ctx) => {
        const r = await probe(levels);
        // A QEMU without LA57 cannot probe 5-level paging: that skips here, and fails under CI.
        if (typeof r === "string") return toolFailed(ctx, r);
        expect(r.total).toBeGreaterThan(700);
        expect(r.failures.map((f) => `${f.spec.label}: ${f.why}`)).toEqual([]);
        expect(r.pass).toBeGreaterThan(r.total / 2);
      });
    }

    it("CPUID without Page1GB: QEMU still maps 1 GiB pages (known deviation 1g-without-pdpe1gb)", async () => {
      const r = await probeReport(4, {
        cpu: "max,pdpe1gb=off",
        filter: (c) => c.label.startsWith("1G ") && (c.ctl & 1) === 0 && c.label.endsWith(" base"),
      });
      expect(r.failures.map((f) => `${f.spec.label}: ${f.why}`)).toEqual([]);
      expect(r.deviations["1g-without-pdpe1gb"]).toBe(r.total);
    });

    it("with -smp 2 (parallel TCG) locked RMWs are single write accesses, as the SDM says", async () => {
      const r = await probeReport(4, { smp: 2, filter: (c) => c.kind === "lock" });
      expect(r.failures.map((f) => `${f.spec.label}: ${f.why}`)).toEqual([]);
      expect(r.deviations["locked-rmw-faults-as-read"]).toBeUndefined();
    });
  },
);
