/**
 * Worker thread of `pagelab compare`: receives a boot group (runs that boot the same machine, see
 * `groupByBoot`), answers with a result row per run as each is done (the group's kernel, booted once,
 * is garbage once its last row is sent). Started through compare-worker.mjs, which
 * registers tsx's loader first (Node 20 does not pass it on to ESM workers).
 */
import { parentPort } from "node:worker_threads";
import { type RunSpec, runGroupLoading } from "./compare.ts";

parentPort?.on("message", (group: RunSpec[]) => {
  void runGroupLoading(group, (row) => parentPort?.postMessage(row));
});
