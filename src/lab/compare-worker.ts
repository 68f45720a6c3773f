/**
 * Worker thread of `pagelab compare`: receives run specs, answers with result rows (one kernel at a
 * time; the previous one is garbage once its row is sent). Started through compare-worker.mjs, which
 * registers tsx's loader first (Node 20 does not pass it on to ESM workers).
 */
import { parentPort } from "node:worker_threads";
import { type RunSpec, runOneLoading } from "./compare.ts";

parentPort?.on("message", (spec: RunSpec) => {
  void runOneLoading(spec).then((row) => parentPort?.postMessage(row));
});
