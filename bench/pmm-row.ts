/**
 * One row of the PMM benchmark in a process of its own (see bench/pmm-lab.ts), printed as JSON:
 * `node --import tsx/esm bench/pmm-row.ts KEY [order0|mixed]` replays the trace on the design named by
 * KEY; without a trace it times the order-0 round trip.
 */
import { designFor, measureReplay, measureTight, trace } from "./pmm-lab.ts";

const [key, traceName] = process.argv.slice(2);
const d = designFor(key);
const row =
  traceName === undefined
    ? { design: d.name, tightNs: measureTight(d) }
    : measureReplay(d, trace(traceName as "order0" | "mixed"));
console.log(JSON.stringify(row));
