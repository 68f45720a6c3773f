import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { ResultRow } from "../../src/lab/compare.ts";
import { pagelab } from "../cli/run.ts";

describe("pagelab compare with your own allocator, and the audit in every row", () => {
  it("validates each design file, puts the good one in the comparison and the broken one as an error row", () => {
    const out = mkdtempSync(join(tmpdir(), "pagelab-cmp-"));
    const r = pagelab(
      "compare",
      "--pmm",
      "buddy,./examples/first-fit.ts,./test/fixtures/pmm/twice-stack.ts",
      "--kmap",
      "direct,quickmap",
      "--workload",
      "page-churn",
      "--ops",
      "1000",
      "--maps",
      "qemu:256M",
      "--sweep",
      "none",
      "--out",
      out,
    );
    expect(r.status, r.stderr).toBe(0);
    const doc = JSON.parse(readFileSync(join(out, "results.json"), "utf8"));
    const rows: ResultRow[] = doc.rows ?? doc;
    const ff = rows.filter((x) => x.pmm === "./examples/first-fit.ts");
    expect(ff.map((x) => x.error)).toEqual([null, null]);
    expect(ff.every((x) => x.opsTotal > 0)).toBe(true);
    const bad = rows.filter((x) => x.pmm.endsWith("twice-stack.ts"));
    expect(bad.map((x) => x.error?.code)).toEqual(["PMM_VALIDATION", "PMM_VALIDATION"]);
    expect(bad[0].error!.message).toMatch(/shortest failing sequence: alloc\(0\) -> 0x[0-9a-f]+; free\(/);
    // the audit stands beside the speed: direct exposes all RAM, quickmap a sliver, none is W+X
    const buddy = (k: string) => rows.find((x) => x.pmm === "buddy" && x.kmap === k)!.audit!;
    expect(buddy("direct").ramReadableFraction).toBe(1);
    expect(buddy("quickmap").ramReadableFraction).toBeLessThan(0.05);
    expect(buddy("direct").kaslrBits).toBeGreaterThan(14);
    expect(rows.filter((x) => x.audit).every((x) => x.audit!.ok && x.audit!.wxBytes === 0)).toBe(true);
    const md = readFileSync(join(out, "report.md"), "utf8");
    expect(md).toMatch(/kernel mappings can read 100 % of RAM under direct \(direct-map KASLR 14\.6 bits\)/);
    expect(md).toMatch(/ended with PMM_VALIDATION/);
  }, 60_000);
});
