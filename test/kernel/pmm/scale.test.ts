/**
 * PMM designs at sizes the default machine never reaches, kept cheap: simulated RAM stores a chunk
 * memset to one value as that value, so a bitmap of 2^32 frames costs nothing until it is written.
 */
import { describe, expect, it } from "vitest";
import { Counters } from "../../../src/machine/counters.ts";
import { PhysMem } from "../../../src/machine/phys-mem.ts";
import { bitmapDesign } from "../../../src/kernel/pmm/bitmap.ts";
import type { PmmEnv } from "../../../src/kernel/pmm/interface.ts";
import { simRegions } from "../../../src/kernel/pmm/sim-region.ts";
import { freeListDesign } from "../../../src/kernel/pmm/freelist.ts";
import { bringUp } from "../../../src/kernel/pmm/setup.ts";

const T = 2 ** 32;
const MiB = 2 ** 20;

describe("bitmap: a region of more than 2^32 frames", () => {
  it("#2: frames 2^32 and more into a region are freed, taken and checked where they lie (64 TiB lost 186 free frames)", () => {
    const mem = new PhysMem({ maxPhysAddrBits: 52, counters: new Counters() });
    const env: PmmEnv = { port: mem, counters: mem.counters, region: simRegions(mem) };
    const start = 0x100000; // 4 GiB
    const layout = { usable: [{ start, end: start + T + 2048 }] };
    const a = bitmapDesign().create(env, layout, 2 ** 50);
    // The top of the region first, with an unaligned end (as a free range ending under top-down metadata).
    a.addFree(start + T, 186);
    a.check();
    expect(a.stats().freeFrames).toBe(186);
    const p = a.alloc(0); // next-fit from the bottom finds the only free frames, 2^32 frames in
    expect(p).toBe(start + T);
    const q = a.alloc(3);
    expect(q).toBe(start + T + 8);
    a.check();
    a.free(p, 0);
    a.free(q, 3);
    expect(() => a.free(q, 3)).toThrow(/already free/);
    a.check();
    // Then everything below, in one call whose whole-word part and tail both matter.
    a.addFree(start, T);
    a.addFree(start + T + 186 + 6, 2048 - 186 - 6);
    a.check();
    const st = a.stats();
    expect(st.freeFrames).toBe(T + 2048 - 6);
    expect(st.perRegion?.[0].freeFrames).toBe(T + 2048 - 6);
    expect(st.largestFreeRun).toBe(T + 186);
    expect(mem.backedBytes).toBeLessThan(64 * MiB); // 1.5 GiB of bitmaps, nearly all uniform
  });
});

describe("host memory in proportion to what a design writes", () => {
  it("#11: a free list threaded through every frame of 4 GiB backs a 64-byte line per frame, not 4 GiB", () => {
    const up = bringUp(freeListDesign(), { usable: [{ start: 0x100, end: 0x100000 }], cpus: 1, colours: 1 });
    const free = up.alloc.stats().freeFrames;
    expect(free).toBeGreaterThan(1_000_000);
    // one 64-byte line per free frame (no chunk is made dense for its page count): 64 MiB, where whole
    // pages would be 4 GiB
    expect(up.mem.backedBytes).toBeGreaterThanOrEqual(64 * free);
    expect(up.mem.backedBytes).toBeLessThan(64 * free + MiB);
    // and the list is whole: every frame comes back out, each once, then the allocator is empty
    const seen = new Uint8Array(0x100000);
    for (let p = up.alloc.alloc(0); p >= 0; p = up.alloc.alloc(0)) {
      expect(seen[p]).toBe(0);
      seen[p] = 1;
    }
    expect(seen.reduce((a, x) => a + x, 0)).toBe(up.freed.reduce((a, r) => a + r.end - r.start, 0));
  });
});
