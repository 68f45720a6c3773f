import { describe, expect, it } from "vitest";
import { auditBoot, kaslrEstimate } from "../../src/lab/audit.ts";
import { type BootOptions, bootKernel } from "../../src/kernel/boot/index.ts";
import { pagelab } from "../cli/run.ts";

function audit(opts: BootOptions) {
  const r = bootKernel({ map: "qemu:4G", pmm: "bitmap", ...opts });
  return auditBoot(r);
}

describe("pagelab audit", () => {
  it("a direct map exposes all RAM; quickmap and recursive expose little; none is W+X", () => {
    const d = audit({ kmap: "direct" });
    expect(d.ok).toBe(true);
    expect(d.wx).toEqual([]);
    expect(d.userKernel).toEqual([]);
    expect(d.executableData).toEqual([]);
    expect(d.ramReadable.fraction).toBe(1);
    const q = audit({ kmap: "quickmap" });
    expect(q.ok).toBe(true);
    expect(q.ramReadable.fraction).toBeLessThan(0.01);
    const h = audit({ kmap: "hybrid" });
    expect(h.ramReadable.fraction).toBeCloseTo(0.75, 2); // 3 of the 4 GiB lie below 4 GiB
    const rec = audit({ kmap: "recursive", pmm: "buddy" });
    expect(rec.ok).toBe(true); // the recursive slot is RW but NX
    expect(rec.ramReadable.bytes).toBeGreaterThanOrEqual(16 * 2 ** 20); // the buddy's page records
  });

  it("says whose RAM is readable, from the boot's ownership records", () => {
    const sum = (o: Record<string, number>) => Object.values(o).reduce((a, b) => a + b, 0);
    const boot = bootKernel({ map: "qemu:4G", pmm: "bitmap", kmap: "quickmap" });
    const q = auditBoot(boot);
    expect(sum(q.ramReadable.byOwner)).toBe(q.ramReadable.bytes);
    // quickmap: the image and the PMM's metadata stay mapped, and whatever the windows show now.
    expect(q.ramReadable.byOwner["kernel-image"]).toBe(2 * 2 ** 20);
    const meta = Math.ceil(boot.metadataStandingBytes / 4096) * 4096;
    expect(q.ramReadable.byOwner["pmm-metadata"]).toBe(meta);
    expect(q.ramReadable.byOwner.other).toBeLessThanOrEqual(2 * 4096);
    const d = audit({ kmap: "direct" });
    expect(sum(d.ramReadable.byOwner)).toBe(d.ramReadable.bytes);
    expect(d.ramReadable.byOwner["page-table"]).toBeGreaterThan(0);
    // The first MiB, where it is RAM (below the 0xa0000 hole).
    expect(d.ramReadable.byOwner.reserved).toBeGreaterThan(600 * 1024);
    expect(d.ramReadable.byOwner.reserved).toBeLessThan(640 * 1024);
    expect(d.ramReadable.byOwner.other).toBeGreaterThan(4 * 2 ** 30 - 64 * 2 ** 20);
  });

  it("finds W+X in a direct map without NX, and MMIO mapped with --map-holes", () => {
    const bad = audit({ kmap: "direct", execDirectMap: true });
    expect(bad.ok).toBe(false);
    expect(bad.wx.reduce((s, r) => s + r.bytes, 0)).toBeGreaterThan(4 * 2 ** 30 - 2 ** 20);
    expect(bad.executableData.length).toBeGreaterThan(0);
    const holes = audit({ kmap: "direct", mapHoles: true });
    const lapic = holes.nonRamInDirectMap.find(
      (r) => BigInt(r.start) <= 0xffff8880fee00000n && BigInt(r.end) >= 0xffff8880fee00fffn,
    );
    expect(lapic).toBeDefined();
  });

  it("estimates Linux's direct-map KASLR entropy", () => {
    const k4 = kaslrEstimate("direct", 4, [{ start: 0, end: 2 ** 20, node: 0 }]);
    expect(k4.positions).toBe(25089); // (117.5 TB - 44 TB) / 3 in 1 GiB steps, + 1
    expect(k4.entropyBits).toBeCloseTo(14.6, 1);
    expect(kaslrEstimate("quickmap", 4, []).entropyBits).toBe(0);
    expect(kaslrEstimate("direct", 5, [{ start: 0, end: 2 ** 20, node: 0 }]).entropyBits).toBeGreaterThan(10);
  });

  it("the CLI exits 1 on W+X, like Linux's boot-time check, and 0 otherwise", () => {
    const ok = pagelab("audit", "--pmm", "bitmap", "--map", "qemu:256M");
    expect(ok.status).toBe(0);
    expect(ok.stdout).toMatch(/Checked W\+X mappings: passed/);
    const bad = pagelab("audit", "--pmm", "bitmap", "--map", "qemu:256M", "--exec-direct-map", "--json");
    expect(bad.status).toBe(1);
    expect(JSON.parse(bad.stdout).wx.length).toBeGreaterThan(0);
  });
});
