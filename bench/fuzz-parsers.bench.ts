/**
 * `npm run bench -- fuzz`: FUZZ_RUNS (default 1,000,000) generated and mutated inputs PER FORMAT through
 * every firmware-map parser (fast-check, seed fixed per format, see test/firmware/fuzz-gen.ts for the
 * generators and the oracle), one child process per format, FUZZ_JOBS at once (default: every core).
 * Prints, per format, how many inputs were accepted as valid maps and how many rejected with a clear
 * PagelabError, the slowest input, crashes and hangs; any crash, invalid map or hang is reported with
 * its counterexample and fails the run. 12 formats x 10^6 take about an hour per core here: set
 * FUZZ_RUNS=100000 for a quick pass.
 */
import { spawn } from "node:child_process";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { FORMATS } from "../src/firmware/detect.ts";

const RUNS = Number(process.env.FUZZ_RUNS ?? 1_000_000);
const SEED = Number(process.env.FUZZ_SEED ?? 42);
const JOBS = Math.max(1, Number(process.env.FUZZ_JOBS ?? availableParallelism()));
const ONE = fileURLToPath(new URL("./fuzz-format.ts", import.meta.url));

interface Figures {
  format: string;
  seed: number;
  inputs: number;
  ok: number;
  rejected: number;
  seconds: number;
  slowestMs: number;
  slowestBytes: number;
  failure: string | null;
}

function one(format: string, seed: number): Promise<Figures> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx/esm", ONE, format, String(RUNS), String(seed)], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    child.stderr.on("data", (d) => {
      err += d;
    });
    child.on("close", (code) => {
      try {
        resolve(JSON.parse(out.trim().split("\n").pop() ?? "") as Figures);
      } catch {
        const failure = `the fuzz process for ${format} crashed (exit ${code}): ${err.trim().split("\n").slice(-3).join(" | ")}`;
        resolve({
          format,
          seed,
          inputs: 0,
          ok: 0,
          rejected: 0,
          seconds: 0,
          slowestMs: 0,
          slowestBytes: 0,
          failure,
        });
      }
    });
  });
}

export default async function fuzzParsers(): Promise<void> {
  console.log(
    `${RUNS} inputs per format, ${FORMATS.length} formats, ${JOBS} at once (seed ${SEED} + format index)`,
  );
  const t0 = performance.now();
  const results: Figures[] = [];
  let next = 0;
  const lane = async () => {
    while (next < FORMATS.length) {
      const i = next++;
      const r = await one(FORMATS[i], SEED + i);
      results.push(r);
      console.log(
        `  ${r.format.padEnd(11)} ${String(r.inputs).padStart(8)} inputs ${String(r.ok).padStart(8)} accepted ${String(r.rejected).padStart(8)} rejected  ` +
          `${Math.round(r.inputs / Math.max(r.seconds, 1e-9))} inputs/s, slowest ${r.slowestMs.toFixed(1)} ms (${r.slowestBytes} bytes)${r.failure ? `  FAILED: ${r.failure}` : ""}`,
      );
    }
  };
  await Promise.all(Array.from({ length: JOBS }, lane));
  const sum = (f: (r: Figures) => number) => results.reduce((a, r) => a + f(r), 0);
  const failed = results.filter((r) => r.failure !== null);
  const hangs = failed.filter((r) => /a hang\?/.test(r.failure!)).length;
  console.log(
    `fuzz: ${sum((r) => r.inputs)} inputs in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${sum((r) => r.ok)} accepted as valid maps, ` +
      `${sum((r) => r.rejected)} rejected with a clear PagelabError, ${failed.length - hangs} crashes, ${hangs} hangs`,
  );
  if (failed.length > 0) process.exitCode = 1;
}
