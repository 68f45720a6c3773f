import { describe, expect, it } from "vitest";
import { bootKernel } from "../../../src/kernel/boot/index.ts";
import { bulkCopyFrame, readWords, writeWords } from "../../../src/machine/phys-mem.ts";

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

describe("word runs (readWords/writeWords) count exactly as the word-by-word loop", () => {
  for (const kmap of ["direct", "quickmap", "hybrid", "recursive"]) {
    it(`${kmap}: same counters and bytes as read32/write32, cold and warm TLB`, () => {
      const loop = bootKernel({ map: "qemu:256M", pmm: "buddy", kmap });
      const bulk = bootKernel({ map: "qemu:256M", pmm: "buddy", kmap });
      const frames = [0, 1, 2].map(() => loop.pmmAllocator.alloc(0));
      expect([0, 1, 2].map(() => bulk.pmmAllocator.alloc(0))).toEqual(frames);
      expect(bulk.machine.counters).toEqual(loop.machine.counters);
      let seed = 7;
      const rnd = (n: number) => {
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
        return seed % n;
      };
      const src = new Uint32Array(1024);
      const a = new Uint32Array(1024);
      const b = new Uint32Array(1024);
      for (let step = 0; step < 60; step++) {
        const f = frames[rnd(3)];
        const n = 1 + rnd(40) + (rnd(4) === 0 ? 900 : 0);
        const off = 4 * rnd(1024 - n + 1);
        const pa = f * 4096 + off;
        if (rnd(5) === 0) {
          loop.machine.cpu0.flushAllIncludingGlobal(); // a cold TLB: the run's first access walks
          bulk.machine.cpu0.flushAllIncludingGlobal();
        }
        if (rnd(2) === 0) {
          for (let i = 0; i < n; i++) src[i] = (step * 7919 + i * 2654435761) >>> 0;
          for (let i = 0; i < n; i++) loop.pmmPort.write32(pa + 4 * i, src[i]);
          writeWords(bulk.pmmPort, pa, src, 0, n);
        } else {
          for (let i = 0; i < n; i++) a[i] = loop.pmmPort.read32(pa + 4 * i);
          readWords(bulk.pmmPort, pa, b, 0, n);
          expect(b.subarray(0, n)).toEqual(a.subarray(0, n));
        }
        expect(bulk.machine.counters).toEqual(loop.machine.counters);
      }
    });
  }
});
