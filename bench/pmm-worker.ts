/**
 * One row of the PMM benchmark in a fresh isolate (see bench/pmm-lab.ts): the design named by
 * `workerData.key`, replayed on a trace or timed on the round trip, posted back to the parent.
 */
import { parentPort, workerData } from "node:worker_threads";
import { designFor, measureReplay, measureTight, type Trace } from "./pmm-lab.ts";

const job = workerData as { key: string; trace?: Trace };
const d = designFor(job.key);
parentPort!.postMessage(job.trace === undefined ? { tightNs: measureTight(d), design: d.name } : measureReplay(d, job.trace));
