/**
 * `npm run bench -- fuzz`: 1,000,000 (FUZZ_RUNS) generated and mutated inputs through every firmware-map parser
 * (fast-check, seed fixed, see test/firmware/fuzz-gen.ts for the generators and the oracle). Prints how
 * many were accepted, how many rejected with a PagelabError, the slowest input and the time taken; any
 * crash, invalid map or hang is reported with its counterexample and fails the run.
 */
import fc from "fast-check";
import { FORMATS } from "../src/firmware/detect.ts";
import { type FuzzCase, fuzzCase, runCase, seeds } from "../test/firmware/fuzz-gen.ts";

const RUNS = Number(process.env.FUZZ_RUNS ?? 1_000_000);
const SEED = Number(process.env.FUZZ_SEED ?? 42);

export default async function fuzzParsers(): Promise<void> {
  const seedBytes = seeds();
  const counts = new Map<string, { ok: number; rejected: number }>(
    FORMATS.map((f) => [f, { ok: 0, rejected: 0 }]),
  );
  let slowest = 0;
  let slowestCase: FuzzCase | undefined;
  const t0 = performance.now();
  const result = fc.check(
    fc.property(fuzzCase(seedBytes), (c) => {
      const t = performance.now();
      const outcome = runCase(c);
      const dt = performance.now() - t;
      if (dt > slowest) [slowest, slowestCase] = [dt, c];
      const row = counts.get(c.format);
      if (row) row[outcome]++;
      if (dt > 2000) throw new Error(`input took ${dt.toFixed(0)} ms (a hang?)`);
    }),
    { seed: SEED, numRuns: RUNS },
  );
  const seconds = (performance.now() - t0) / 1000;
  let ok = 0;
  let rejected = 0;
  for (const [format, r] of counts) {
    console.log(
      `  ${format.padEnd(11)} ${String(r.ok).padStart(6)} accepted ${String(r.rejected).padStart(6)} rejected`,
    );
    ok += r.ok;
    rejected += r.rejected;
  }
  console.log(
    `fuzz: ${result.numRuns} inputs (seed ${SEED}) in ${seconds.toFixed(1)} s (${Math.round(result.numRuns / seconds)} inputs/s): ${ok} accepted as valid maps, ${rejected} rejected with PagelabError, ${result.failed ? 1 : 0} crashes`,
  );
  console.log(
    `slowest input: ${slowest.toFixed(1)} ms (${slowestCase?.format}, ${slowestCase?.bytes.length} bytes)`,
  );
  if (result.failed) {
    console.log(
      `FAILED after ${result.numRuns} inputs: ${String(result.errorInstance)}\ncounterexample: ${JSON.stringify(result.counterexample, (_k, v) => (v instanceof Uint8Array ? Buffer.from(v).toString("base64") : v))}`,
    );
    process.exitCode = 1;
  }
}
