/**
 * Large-page benchmark (issue 8): the seeded large-page workload (src/kernel/pmm/large-page-workload.ts)
 * on 4 GiB of RAM for `large-stacks`, `buddy` and `huge-pool`. Per phase: the success rate of 2 MiB and
 * 1 GiB requests, memory references per operation (Counters: 32-bit reads + writes through the port),
 * and host ns per operation; per design: standing metadata and the design's own events (splits,
 * compaction passes and the references they cost). Everything but ns/op is deterministic.
 * `npm run bench -- large-pages`.
 */
import { getDesign } from "../src/kernel/pmm/designs.ts";
import { makeLargePageTrace, runLargePageWorkload } from "../src/kernel/pmm/large-page-workload.ts";

const GiB = 0x40000; // frames
const LAYOUT = { usable: [{ start: 0x100, end: 4 * GiB }] };
const DESIGNS = ["large-stacks", "buddy", "huge-pool"];

const pct = (ok: number, n: number) => (n === 0 ? "    -" : `${((100 * ok) / n).toFixed(1).padStart(5)}%`);

export default async function main(): Promise<void> {
  const trace = makeLargePageTrace({ frames: 4 * GiB - 0x100, ops: 40_000, seed: 8 });
  const warm = makeLargePageTrace({ frames: GiB, ops: 5_000, seed: 9 });
  console.log(`RAM 4 GiB [0x100000, 4 GiB); trace seed 8: ${trace.kind.length} operations in 4 phases`);
  console.log("(phases: mixed, fragment, large after fragmentation, recover after freeing everything)");
  for (const name of DESIGNS) {
    runLargePageWorkload(getDesign(name), { usable: [{ start: 0x100, end: GiB + 0x1000 }] }, warm); // JIT
    const r = runLargePageWorkload(getDesign(name), LAYOUT, trace);
    const ev = Object.entries(r.events)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ");
    console.log(
      `\n${name}: metadata ${(r.metadataBytes / 1024).toFixed(0)} KiB standing, ${(r.transientBytesEnd / 1024).toFixed(0)} KiB transient at the end${ev ? `; ${ev}` : ""}`,
    );
    console.log("  phase        ops      2 MiB ok         1 GiB ok      refs/op   ns/op");
    for (const p of r.phases) {
      console.log(
        `  ${p.phase.padEnd(9)} ${String(p.ops).padStart(7)}  ${String(p.successes[1]).padStart(5)}/${String(p.requests[1]).padEnd(5)} ${pct(p.successes[1], p.requests[1])}  ${String(p.successes[2]).padStart(3)}/${String(p.requests[2]).padEnd(3)} ${pct(p.successes[2], p.requests[2])}  ${p.refsPerOp.toFixed(1).padStart(7)} ${p.nsPerOp.toFixed(0).padStart(7)}`,
      );
    }
  }
}
