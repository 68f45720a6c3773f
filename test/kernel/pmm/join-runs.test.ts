import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { fillRun, joinRuns } from "../../../src/kernel/pmm/common.ts";

/** The runs a frame-at-a-time loop makes of a list of frame numbers. */
function naive(pfns: number[]): [number, number][] {
  const out: [number, number][] = [];
  for (const p of pfns) {
    const last = out[out.length - 1];
    if (last !== undefined && last[0] + last[1] === p) last[1]++;
    else out.push([p, 1]);
  }
  return out;
}

describe("joinRuns (the stacks' forEachFree)", () => {
  it("gives the runs of the frame-at-a-time loop, across pages and across 2^32 boundaries", () => {
    const piece = fc.record({
      start: fc.oneof(fc.nat(1 << 20), fc.constantFrom(0xffffff00, 0x1fffffffff00, 2 ** 32 - 3)),
      len: fc.integer({ min: 1, max: 700 }),
    });
    fc.assert(
      fc.property(
        fc.array(piece, { minLength: 1, maxLength: 8 }),
        fc.integer({ min: 1, max: 512 }),
        (pieces, page) => {
          const pfns = pieces.flatMap((p) => Array.from({ length: p.len }, (_, i) => p.start + i));
          const got: [number, number][] = [];
          const run = new Float64Array([-1, 0]);
          const words = new Uint32Array(2 * page);
          for (let i = 0; i < pfns.length; i += page) {
            const k = Math.min(page, pfns.length - i);
            for (let j = 0; j < k; j++) {
              words[2 * j] = pfns[i + j] >>> 0;
              words[2 * j + 1] = Math.floor(pfns[i + j] / 2 ** 32);
            }
            joinRuns(words, k, run, (p, n) => got.push([p, n]));
          }
          if (run[0] >= 0) got.push([run[0], run[1]]);
          expect(got).toEqual(naive(pfns));
        },
      ),
      { numRuns: 300, seed: 5 },
    );
  });

  it("calls bad() for an entry at or above 2^53", () => {
    const words = new Uint32Array([1, 0, 0, 0x200000]);
    expect(() =>
      joinRuns(
        words,
        2,
        new Float64Array([-1, 0]),
        () => {},
        (j) => {
          throw new Error(`entry ${j}`);
        },
      ),
    ).toThrow("entry 1");
  });
});

describe("fillRun (the stacks' bulk push)", () => {
  it("stores p..p+k-1 as little-endian u32 halves, carrying across 2^32", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.nat(1 << 30),
          fc.integer({ min: 2 ** 32 - 600, max: 2 ** 32 + 5 }),
          fc.constant(2 ** 40 - 512),
        ),
        fc.integer({ min: 1, max: 512 }),
        (p, k) => {
          const run = new Uint32Array(1024).fill(7);
          fillRun(run, p, k);
          for (let i = 0; i < k; i++) {
            expect(run[2 * i]).toBe((p + i) % 2 ** 32);
            expect(run[2 * i + 1]).toBe(Math.floor((p + i) / 2 ** 32));
          }
          expect(run[2 * k] ?? 7).toBe(7); // nothing past the run
        },
      ),
    );
  });
});
