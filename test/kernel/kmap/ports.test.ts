import { describe, expect, it } from "vitest";
import { bootKernel } from "../../../src/kernel/boot/index.ts";
import { bulkCopyFrame } from "../../../src/machine/phys-mem.ts";

describe("kernel ports: copy_page through the kernel's mappings", () => {
  for (const kmap of ["direct", "quickmap", "hybrid"]) {
    // Under quickmap the window still points at the source the test just filled: the copy moves it once,
    // to the destination (never once per word, as a word-by-word copy through one window would).
    it(`${kmap}: copies the bytes, translating each page once (window remaps: ${kmap === "quickmap" ? 1 : 0})`, () => {
      const r = bootKernel({ map: "qemu:256M", pmm: "buddy", kmap, checkStale: true });
      const port = r.pmmPort;
      const a = r.pmmAllocator.alloc(0);
      const b = r.pmmAllocator.alloc(0);
      for (let o = 0; o < 4096; o += 4) port.write32(a * 4096 + o, (o * 2654435761) >>> 0);
      const c = r.machine.counters;
      const remaps = c.windowRemaps;
      const reads = c.memReads;
      bulkCopyFrame(port, a, b);
      expect(c.windowRemaps - remaps).toBe(kmap === "quickmap" ? 1 : 0);
      expect(c.memReads - reads).toBe(0); // one bulk copy, not 1024 word loads
      for (let o = 0; o < 4096; o += 4) expect(port.read32(b * 4096 + o)).toBe((o * 2654435761) >>> 0);
      expect(r.machine.staleReports()).toEqual([]);
    });
  }
});
