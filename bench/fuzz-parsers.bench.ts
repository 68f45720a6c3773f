/**
 * `npm run bench -- fuzz`: FUZZ_RUNS (default 1,000,000) generated and mutated inputs PER FORMAT through
 * every firmware-map parser (fast-check, seed fixed per format, see test/firmware/fuzz-gen.ts for the
 * generators and the oracle), one child process per format, FUZZ_JOBS at once (default: every core).
 * Prints, per format, how many inputs were accepted as valid maps and how many rejected with a clear
 * PagelabError, the slowest input, crashes and hangs; any crash, invalid map or hang is reported with
 * its counterexample and fails the run. 12 formats x 10^6 take about an hour per core here: set
 * FUZZ_RUNS=100000 for a quick pass, FUZZ_FORMATS=multiboot2,uefi for some formats only.
 */
import { spawn } from "node:child_process";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { FORMATS } from "../src/firmware/detect.ts";

const RUNS = Number(process.env.FUZZ_RUNS ?? 1_000_000);
const SEED = Number(process.env.FUZZ_SEED ?? 42);
const JOBS = Math.max(1, Number(process.env.FUZZ_JOBS ?? availableParallelism()));
/** FUZZ_FORMATS=a,b: only these formats (each keeps its seed, SEED + its index in FORMATS). */
const ONLY = process.env.FUZZ_FORMATS?.split(",").map((f) => f.trim());
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
  const chosen = FORMATS.map((f, i) => ({ f, i })).filter((x) => ONLY === undefined || ONLY.includes(x.f));
  const unknown = (ONLY ?? []).filter((f) => !(FORMATS as readonly string[]).includes(f));
  if (unknown.length > 0)
    throw new Error(`FUZZ_FORMATS: unknown ${unknown.join(", ")} (formats: ${FORMATS.join(", ")})`);
  console.log(
    `${RUNS} inputs per format, ${chosen.length} formats, ${JOBS} at once (seed ${SEED} + format index)`,
  );
  const t0 = performance.now();
  const results: Figures[] = [];
  let next = 0;
  const lane = async () => {
    while (next < chosen.length) {
      const { f, i } = chosen[next++];
      const r = await one(f, SEED + i);
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
