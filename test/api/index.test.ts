import { describe, expect, it } from "vitest";
import * as pagelab from "pagelab";

describe("library API (import from 'pagelab')", () => {
  it("boots a machine and walks its page tables through the public exports", () => {
    const r = pagelab.bootKernel({ map: "qemu:256M", pmm: "bitmap", kmap: "recursive" });
    expect(r.checks.length).toBeGreaterThanOrEqual(5);
    const { vpn } = pagelab.vaToVpn(0xffffffff80000000n, 4);
    const w = pagelab.peekWalk(r.machine.cpu0, vpn);
    expect(w?.pfn).toBe(Number(r.kernelPhys) / 4096);
    expect(pagelab.DESIGN_NAMES).toContain("buddy");
    expect(pagelab.loadMap("qemu:4G").entries.length).toBeGreaterThan(3);
  });
});
