/**
 * Workloads benchmark (host time; simulated costs are counters):
 *  - simulated operations per host second for each workload, on qemu:4G with 4 CPUs, for the buddy
 *    and the stack under the direct map and quickmap (the workload's own time, boot excluded; the best
 *    of 3 runs, since this shared machine is noisy);
 *  - the wall time of the default `pagelab compare` (no arguments), the contract's "under a minute",
 *    through the real binary with its worker threads.
 * The trace replay runs on test/fixtures/traces/kmem-sample.trace (small: its rate is mostly parsing).
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { planMatrix, runOne } from "../src/lab/compare.ts";
import { WORKLOAD_NAMES } from "../src/lab/workloads/index.ts";

const TRACE = fileURLToPath(new URL("../test/fixtures/traces/kmem-sample.trace", import.meta.url));
const BIN = fileURLToPath(new URL("../bin/pagelab.mjs", import.meta.url));

function rate(r: number): string {
  return r >= 1e6 ? `${(r / 1e6).toFixed(2)} M/s` : `${(r / 1e3).toFixed(1)} k/s`;
}

export default async function workloadsBench(): Promise<void> {
  console.log("simulated operations per host second (workload only, best of 3; qemu:4G, 4 CPUs)");
  console.log(
    `${"workload".padEnd(12)} ${"pmm".padEnd(7)} ${"kmap".padEnd(9)} ${"ops".padStart(7)} ${"rate".padStart(11)}`,
  );
  for (const workload of WORKLOAD_NAMES) {
    for (const pmm of ["buddy", "stack"]) {
      for (const kmap of ["direct", "quickmap"]) {
        const [spec] = planMatrix({
          pmms: [pmm],
          kmaps: [kmap],
          workloads: [workload],
          sweep: [],
          trace: workload === "ftrace" ? TRACE : undefined,
        });
        let best = 0;
        let ops = 0;
        let error = "";
        for (let i = 0; i < 3; i++) {
          const row = runOne(spec);
          if (row.error) {
            error = `${row.error.code}: ${row.error.message.slice(0, 60)}`;
            break;
          }
          ops = row.opsTotal;
          best = Math.max(best, row.opsPerHostSecond);
        }
        console.log(
          `${workload.padEnd(12)} ${pmm.padEnd(7)} ${kmap.padEnd(9)} ${String(ops).padStart(7)} ${error ? error : rate(best).padStart(11)}`,
        );
      }
    }
  }
  const out = mkdtempSync(join(tmpdir(), "pagelab-bench-compare-"));
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [BIN, "compare", "--out", out, "--json"], { encoding: "utf8" });
  const wall = (performance.now() - t0) / 1000;
  if (r.status !== 0) console.log(`default compare failed: ${r.stderr.slice(-400)}`);
  else {
    const s = JSON.parse(r.stdout) as { runs: number; completed: number; wallMs: number };
    console.log(
      `\ndefault pagelab compare: ${s.runs} runs (${s.completed} completed), ${wall.toFixed(1)} s wall ` +
        `(${(s.wallMs / 1000).toFixed(1)} s in the matrix, the rest is start-up and the report)`,
    );
  }
  rmSync(out, { recursive: true, force: true });
}
