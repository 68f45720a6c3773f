/**
 * One bring-up (#12): `pagelab pmm`, `pagelab boot --json` and `compare` measure the same kernel for the
 * same map and design, so they report the same free frames and the same metadata.
 */
import { describe, expect, it } from "vitest";
import { planMatrix, type ResultRow, runSpecs } from "../../src/lab/compare.ts";
import { pagelab } from "../cli/run.ts";

const MAP = "qemu:256M";

async function sweepRow(pmm: string): Promise<ResultRow> {
  const specs = planMatrix({ maps: [MAP], pmms: [pmm], kmaps: ["direct"], workloads: [], sweep: [MAP] });
  const rows: ResultRow[] = [];
  await runSpecs(specs, 0, (r) => rows.push(r));
  const sweep = rows.filter((r) => r.kind === "sweep");
  expect(sweep).toHaveLength(1);
  return sweep[0];
}

describe("one bring-up behind pmm, boot and compare", () => {
  for (const design of ["buddy", "bitmap", "stack-pages", "freelist"]) {
    it(`${design} on ${MAP}: the same free frames and metadata in all three`, async () => {
      const p = pagelab("pmm", "--design", design, "--map", MAP, "--json");
      expect(p.stderr).toBe("");
      expect(p.status).toBe(0);
      const pmm = JSON.parse(p.stdout)[0];
      const b = pagelab("boot", "--pmm", design, "--map", MAP, "--json");
      expect(b.status).toBe(0);
      const boot = JSON.parse(b.stdout);
      const row = await sweepRow(design);
      expect(row.error).toBeNull();

      expect(boot.freePagesAfterBoot).toBeGreaterThan(60_000);
      expect(pmm.freeFramesAfterBoot).toBe(boot.freePagesAfterBoot);
      expect(row.freePagesAfterBoot).toBe(boot.freePagesAfterBoot);
      expect(pmm.metadataBytes).toBe(boot.metadataStandingBytes);
      expect(pmm.transientBytesBoot).toBe(boot.metadataTransientBytes);
      expect(row.metadataBytes).toBe(boot.metadataBytes);
      expect(row.usablePages).toBe(boot.usablePages);
      // The frames memblock handed over, as the boot's conservation check counts them.
      const handover = boot.checks.map((c: string) => /= (\d+) given to the PMM/.exec(c)).find(Boolean);
      expect(pmm.managedFrames).toBe(Number(handover[1]));
    }, 120_000);
  }
});
