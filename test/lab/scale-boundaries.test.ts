/**
 * Every PMM design booted, checks on, on cheap sparse maps that put a little RAM at and across the
 * boundaries the code relies on: 2^32 frames (16 TiB), 2^46 bytes (64 TiB, where a 4-level direct map
 * stops) and the last frames below 2^52 (MAXPHYADDR 52). Each boot takes milliseconds.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DESIGN_NAMES } from "../../src/kernel/pmm/designs.ts";
import { bootKernel } from "../../src/kernel/boot/index.ts";

function tmpMap(entries: [number, number][]): string {
  const dir = mkdtempSync(join(tmpdir(), "pagelab-bounds-"));
  const f = join(dir, "map.json");
  const hex = (n: number) => `0x${n.toString(16)}`;
  writeFileSync(
    f,
    JSON.stringify({
      entries: entries.map(([s, e]) => ({ start: hex(s), end: hex(e - 1), type: "usable" })),
    }),
  );
  return f;
}

const MiB = 2 ** 20;
const BOUNDS = tmpMap([
  [0, 0x9fc00],
  [MiB, 256 * MiB],
  [2 ** 44 - 4 * MiB, 2 ** 44 + 4 * MiB], // across 2^32 frames
  [2 ** 46 - 4 * MiB, 2 ** 46 + 4 * MiB], // across 64 TiB
  [2 ** 52 - 8 * MiB, 2 ** 52], // the last frames of a 52-bit physical address space
]);
// Frame 0 is trimmed as Linux's trim_bios_range does: 158 low frames.
const PAGES_BELOW_64T = (0x9e000 + 255 * MiB + 8 * MiB + 4 * MiB) / 4096;
const ALL_PAGES = PAGES_BELOW_64T + (4 * MiB + 8 * MiB) / 4096;

describe("scale: RAM at the 2^32-frame, 2^46-byte and 2^52-byte boundaries", () => {
  for (const pmm of DESIGN_NAMES) {
    it(`#2: ${pmm} boots with checks at every boundary, 4- and 5-level, direct and windows`, () => {
      for (const [levels, kmap] of [
        [4, "direct"],
        [5, "direct"],
        [4, "quickmap"],
        [5, "recursive"],
      ] as const) {
        const r = bootKernel({ map: BOUNDS, pmm, kmap, levels, hostBudget: 2 ** 30 });
        const what = `${pmm} ${levels}-level ${kmap}`;
        expect(r.checks.length, what).toBeGreaterThanOrEqual(5);
        // A 4-level direct map stops at 64 TiB, as Linux's MAX_PHYSMEM_BITS; everything else reaches 2^52.
        const clipped = levels === 4 && kmap === "direct";
        expect(r.usablePages, what).toBe(clipped ? PAGES_BELOW_64T : ALL_PAGES);
        if (clipped) expect(r.bootSteps[0].log.join("\n")).toMatch(/RAM above it are ignored, as Linux does/);
        const st = r.pmmAllocator.stats();
        expect(st.freeFrames, what).toBe(r.freePagesAfterBoot);
        expect(
          st.perRegion?.reduce((s, x) => s + x.freeFrames, 0),
          what,
        ).toBe(st.freeFrames);
        // The frames right at each boundary are handed out and taken back like any other.
        const a = r.pmmAllocator;
        const got: number[] = [];
        for (let p = a.alloc(0); p >= 0; p = a.alloc(0)) got.push(p);
        expect(got.length, what).toBeGreaterThanOrEqual(st.freeFrames); // stacks also hand out their own pages
        for (const b of [2 ** 32, 2 ** 34]) {
          // buddy-64's 4.4 MiB of records fill the 16 TiB range's upper half, frame 2^32 included.
          if ((!clipped || b < 2 ** 33) && pmm !== "buddy-64")
            expect(got, `${what}: frame ${b}`).toContain(b);
        }
        for (const p of got) a.free(p, 0);
        a.check();
      }
    });
  }
});
