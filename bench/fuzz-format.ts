/**
 * One format's share of `npm run bench -- fuzz`: `node --import tsx/esm bench/fuzz-format.ts FORMAT RUNS SEED`
 * runs RUNS generated and mutated inputs of FORMAT (parsed with --format, or detected by content)
 * through the oracle of test/firmware/fuzz-gen.ts and prints one JSON line with its figures.
 */
import fc from "fast-check";
import type { FormatId } from "../src/firmware/detect.ts";
import { type FuzzCase, fuzzCase, runCase, seeds } from "../test/firmware/fuzz-gen.ts";

const [format, runsArg, seedArg] = process.argv.slice(2) as [FormatId, string, string];
const runs = Number(runsArg);
const seed = Number(seedArg);
let ok = 0;
let rejected = 0;
let slowest = 0;
let slowestCase: FuzzCase | undefined;
const t0 = performance.now();
const result = fc.check(
  fc.property(fuzzCase(seeds(), [format]), (c) => {
    const t = performance.now();
    const outcome = runCase(c);
    const dt = performance.now() - t;
    if (dt > slowest) [slowest, slowestCase] = [dt, c];
    if (outcome === "ok") ok++;
    else rejected++;
    // A hang: no input of a few KiB may take this long.
    if (dt > 2000) throw new Error(`input took ${dt.toFixed(0)} ms (a hang?)`);
  }),
  { seed, numRuns: runs },
);
process.stdout.write(
  `${JSON.stringify({
    format,
    seed,
    inputs: result.numRuns,
    ok,
    rejected,
    seconds: (performance.now() - t0) / 1000,
    slowestMs: slowest,
    slowestBytes: slowestCase?.bytes.length ?? 0,
    failure: result.failed
      ? `${String(result.errorInstance)}; counterexample: ${JSON.stringify(result.counterexample, (_k, v) => (v instanceof Uint8Array ? Buffer.from(v).toString("base64") : v))}`
      : null,
  })}\n`,
);
