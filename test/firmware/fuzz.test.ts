/**
 * Seeded fuzz of every parser (a few thousand inputs; the 1,000,000-input run is
 * `npm run bench -- fuzz`): no crash other than PagelabError, no hang, and every accepted input gives a
 * valid, sanitized map that the rest of the pipeline accepts.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FORMATS } from "../../src/firmware/detect.ts";
import { fuzzCase, runCase, seeds } from "./fuzz-gen.ts";

const SEED = 20261125;

describe("fuzz: every parser, seeded", () => {
  const seedBytes = seeds();

  it("every seed input is itself valid", () => {
    for (const f of FORMATS) expect(runCase({ format: f, forced: true, bytes: seedBytes[f] }), f).toBe("ok");
  });

  it("3000 mutated and random inputs: only PagelabErrors, only valid maps, none slow", () => {
    const counts = { ok: 0, rejected: 0 };
    let slowest = 0;
    fc.assert(
      fc.property(fuzzCase(seedBytes), (c) => {
        const t0 = performance.now();
        counts[runCase(c)]++;
        slowest = Math.max(slowest, performance.now() - t0);
      }),
      { seed: SEED, numRuns: 3000 },
    );
    console.log(
      `fuzz (seed ${SEED}): ${counts.ok} accepted, ${counts.rejected} rejected with PagelabError, slowest ${slowest.toFixed(1)} ms`,
    );
    expect(counts.ok + counts.rejected).toBe(3000);
    expect(counts.ok).toBeGreaterThan(300);
    expect(counts.rejected).toBeGreaterThan(300);
    expect(slowest).toBeLessThan(2000);
  });
});
